"""What the ablation runs start from: the subject model, value vectors, gates, judge, sweep contexts.

:func:`load_subject` loads the model on the fast path (:mod:`conva_tl.fast`) or
as a TransformerBridge (:mod:`conva_tl.model`); :class:`VectorSource` gets value
vectors and gates from a ``conva fit`` folder, fitting what is missing
(:mod:`conva_tl.pipeline`); :func:`make_judge` builds a
:class:`conva_tl.judge.Judge` when one is configured; :func:`steering_setup`
bundles all of it with one :class:`~conva_tl.analysis.sweep_context.SweepContext`
per value into a :class:`SteeringSetup`, the input of
:mod:`conva_tl.analysis.steering_reports`. Nothing here is cached across calls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from conva_tl.analysis.sweep_context import SweepContext, prepare_context
from conva_tl.errors import ConvaError
from conva_tl.fit_settings import FitSettings
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.store import ArtifactStore
from conva_tl.values import canonical_value

__all__ = [
    "BACKENDS",
    "load_subject",
    "set_threads",
    "VectorSource",
    "make_judge",
    "SteeringSetup",
    "steering_setup",
]

#: ``fast``: a plain HF model with the toolkit's hooks (same numbers, ~2x faster on CPU);
#: ``bridge``: a TransformerBridge.
BACKENDS = ("fast", "bridge")


def load_subject(
    name: str | None = None, *, backend: str = "fast", device: str | None = None
) -> Any:
    """The subject model ``name`` (default: the embedded SmolLM2) on ``backend``."""
    if backend not in BACKENDS:
        raise ConvaError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "fast":
        from conva_tl.fast import load_fast_model

        return load_fast_model(name, device=device)
    from conva_tl.model import load_model

    return load_model(name, device=device)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads``: ``threads``, else 1 on a CPU whose load exceeds its cores.

    On a shared CPU, several processes each spinning 2+ BLAS threads slow one
    another down several-fold (measured 5x on the 2-core dev machine); one
    thread each is then faster. Called by a script's ``main``, never on import.
    """
    if threads is None:
        try:
            busy = os.getloadavg()[0] > (os.cpu_count() or 1)
        except OSError:
            busy = False
        threads = 1 if busy else None
    if threads is not None:
        if threads < 1:
            raise ConvaError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class VectorSource:
    """A ``conva fit`` artifact folder that value vectors (and gates) come from.

    Attributes:
        folder: pairs vectors live here, straightforward ones in ``folder/straightforward``
            (the layout ``conva evaluate`` uses).
        trust: use whatever vectors the folder holds (any data or settings); otherwise only
            vectors fitted with the default settings on the shipped data are reused and
            others are an error naming ``conva fit --overwrite``
            (:meth:`conva_tl.store.ArtifactStore.vectors` with ``require``).
        progress: show fitting progress.
    """

    folder: Path
    trust: bool = False
    progress: bool = False

    def load(
        self, model: HookedModel, values: Sequence[str], *, gates: bool = False, kind: str = "pairs"
    ) -> tuple[dict[str, ValueVectors], dict[str, ActivationGate]]:
        """Vectors (and with ``gates`` the gates) of ``values``; missing ones are fitted and saved."""
        folder = Path(self.folder) if kind == "pairs" else Path(self.folder) / kind
        settings = FitSettings(kind=kind)
        require = None if self.trust else settings
        store = ArtifactStore(folder)
        vectors = store.vectors(
            model, values, settings=settings, require=require, progress=self.progress
        )
        gate_map = store.gates(model, vectors, progress=self.progress) if gates else {}
        return vectors, gate_map


def make_judge(
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    cache: Path | None = None,
) -> Any:
    """A :class:`conva_tl.judge.Judge` when a judge model is named (or ``$CONVA_JUDGE_MODEL``), else ``None``."""
    from conva_tl.judge import judge_from_options

    return judge_from_options(model, base_url=base_url, api_key_env=api_key_env, cache=cache)


@dataclass(frozen=True)
class SteeringSetup:
    """What every steering ablation of one run shares.

    Attributes:
        model: the subject model.
        values: canonical value names.
        vectors: their value vectors.
        gates: their gates when steering is gated, else ``None``.
        contexts: one :class:`~conva_tl.analysis.sweep_context.SweepContext` per value.
        config: decoding settings.
        judge: a :class:`conva_tl.judge.Judge`, or ``None`` for judge-free measures only.
        source: where the vectors came from (other kinds are loaded from there too).
    """

    model: HookedModel
    values: tuple[str, ...]
    vectors: Mapping[str, ValueVectors]
    gates: Mapping[str, ActivationGate] | None
    contexts: Mapping[str, SweepContext]
    config: GenerationConfig
    judge: Any
    source: VectorSource

    @property
    def gated(self) -> bool:
        return self.gates is not None

    def describe(self) -> str:
        """``gated``/``ungated``, for table titles."""
        return "gated" if self.gated else "ungated"

    @property
    def n_questions(self) -> int:
        return max((len(c.questions) for c in self.contexts.values()), default=0)


def steering_setup(
    model: HookedModel,
    values: Sequence[str],
    source: VectorSource,
    *,
    gate: bool = False,
    n_questions: int = 4,
    n_unrelated: int = 16,
    config: GenerationConfig | None = None,
    judge: Any = None,
) -> SteeringSetup:
    """Vectors (and gates, with ``gate``) of ``values`` and one sweep context per value."""
    config = config or GenerationConfig(max_new_tokens=32, batch_size=8)
    names = tuple(canonical_value(v) for v in values)
    vectors, gates = source.load(model, names, gates=gate)
    contexts = {
        v: prepare_context(
            model,
            vectors[v],
            n_questions=n_questions,
            n_unrelated=n_unrelated,
            batch_size=config.batch_size,
        )
        for v in names
    }
    return SteeringSetup(
        model, names, vectors, gates if gate else None, contexts, config, judge, source
    )
