"""Thin stages a user runs end to end: fit everything, then answer with a method.

:func:`fit_all` identifies value vectors for several values in one activation
pass, fits their gates in a second shared pass, and saves both to an artifact
folder; it is :meth:`conva_tl.store.ArtifactStore.fit`, whose policy (reuse
what was fitted the same way, never replace vectors fitted otherwise unless
told to) is the one every command follows. :func:`contrast_sets_from_files`
reads a user's own data files; :func:`make_method` builds any of the compared
methods by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conva_tl.datasets import ContrastSet, contrast_set, load_pairs, load_straightforward
from conva_tl.errors import ConvaError, DataError
from conva_tl.fit_settings import FitSettings
from conva_tl.gate import ActivationGate
from conva_tl.methods import CAA, DEFAULT_CAA_COEF, DEFAULT_P0, ICA, Base, ConVA
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.store import ArtifactStore, check_output_folder, summary_table
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "FitSettings",
    "check_output_folder",
    "contrast_sets_from_files",
    "fit_all",
    "summary_table",
    "make_method",
    "METHODS",
    "DEFAULT_P0",
    "DEFAULT_CAA_COEF",
]

# DEFAULT_P0 and DEFAULT_CAA_COEF live beside the methods they parameterise (methods.py).


METHODS = ("base", "ica", "caa", "conva", "conva-nogate", "conva-per-prompt")


def contrast_sets_from_files(
    paths: Sequence[str | Path], kind: str = "pairs"
) -> dict[str, ContrastSet]:
    """Your own data files (the shipped JSONL schema), one value per file, by value.

    Raises:
        DataError: a file is missing, not UTF-8, malformed, holds several values,
            or two files hold the same value.
    """
    out: dict[str, ContrastSet] = {}
    for path in map(Path, paths):
        records = load_pairs(path=path) if kind == "pairs" else load_straightforward(path=path)
        found = sorted({r.value for r in records})
        if len(found) != 1:
            raise DataError(
                f"{path}: holds {len(found)} values ({', '.join(found)}); give one file per value"
            )
        cs = contrast_set(found[0], kind, path=path)
        if cs.value in out:
            raise DataError(f"{path}: a second file for {cs.value!r}; give one file per value")
        out[cs.value] = cs
    return out


def fit_all(
    model: HookedModel,
    out_dir: str | Path,
    values: Sequence[str] = VALUES,
    *,
    settings: FitSettings | None = None,
    gates: bool = True,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool | None = True,
    data: dict[str, ContrastSet] | None = None,
    gate_kind: str = "neutral",
) -> tuple[dict[str, ValueVectors], dict[str, ActivationGate]]:
    """``ArtifactStore(out_dir).fit(model, values, ...)``: see :meth:`ArtifactStore.fit`.

    Raises:
        ArtifactError: ``out_dir`` holds vectors for a value in ``values``
            fitted otherwise, and ``overwrite`` is not set.
    """
    return ArtifactStore(out_dir).fit(
        model,
        values,
        settings=settings,
        gates=gates,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        data=data,
        gate_kind=gate_kind,
    )


def make_method(
    name: str,
    value: str,
    vectors: ValueVectors | None = None,
    gate: ActivationGate | None = None,
    *,
    p0: float = DEFAULT_P0,
    caa_coef: float = DEFAULT_CAA_COEF,
) -> Any:
    """Build a method by name: one of :data:`METHODS`."""
    if name not in METHODS:
        raise ConvaError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if name == "base":
        return Base()
    if name == "ica":
        return ICA(value)
    if vectors is None:
        raise ConvaError(f"method {name!r} needs value vectors for {value!r} (conva fit)")
    if vectors.value != canonical_value(value):
        raise ConvaError(
            f"method {name!r} for {canonical_value(value)!r} was given the vectors of "
            f"{vectors.value!r}: pass the vectors of {canonical_value(value)!r}"
        )
    if gate is not None and canonical_value(gate.value) != vectors.value:
        raise ConvaError(
            f"method {name!r} for {vectors.value!r} was given the gate of {gate.value!r}"
        )
    if name == "caa":
        return CAA(vectors, coef=caa_coef)
    if name == "conva-nogate":
        return ConVA(vectors, p0=p0, gate=None, name="conva-nogate")
    if name == "conva-per-prompt":
        return ConVA(vectors, p0=p0, gate=gate, mode="per_prompt", name="conva-per-prompt")
    return ConVA(vectors, p0=p0, gate=gate)
