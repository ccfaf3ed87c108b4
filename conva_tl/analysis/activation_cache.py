"""All-layer sentence activations cached on disk, so several probe sweeps share one pass.

:func:`cached_activations` wraps :func:`conva_tl.activations.cache_resid_post`
and stores its ``[layer, text, d_model]`` tensor as safetensors (with a JSON
note of what it holds) under a folder, keyed by a hash of the model's name and
shape, the texts, the pooling and the input format. :class:`ProbeData` is what
the probe sweeps of :mod:`conva_tl.analysis.probe_reports` read: a value's
contrast set, optionally limited to its first pairs, and its cached activations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from conva_tl.activations import cache_resid_post
from conva_tl.datasets import ContrastSet, contrast_set
from conva_tl.errors import ConvaError
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel

__all__ = ["cached_activations", "limit_contrast_set", "ProbeData"]

logger = logging.getLogger(__name__)


def cached_activations(
    model: HookedModel,
    texts: Sequence[str],
    *,
    pooling: str = "last",
    input_format: str = "raw",
    cache_dir: Path | None,
    batch_size: int = 32,
    progress: bool = False,
) -> Float[Tensor, "layer batch d_model"]:
    """:func:`~conva_tl.activations.cache_resid_post` over all layers, stored under ``cache_dir``.

    Without ``cache_dir`` nothing is stored. An unreadable file (a run killed while
    writing) is recomputed; files are written to a temporary name and renamed.
    """
    info = model_info(model).to_dict()
    key = hashlib.sha256(
        json.dumps([info, list(texts), pooling, input_format]).encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return load_file(str(path))["acts"]
        except Exception as exc:  # a truncated file from a killed run: recompute
            logger.warning("ignoring unreadable activation cache %s: %s", path, exc)
    acts = cache_resid_post(
        model,
        texts,
        pooling=pooling,
        input_format=input_format,
        batch_size=batch_size,
        progress=progress,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"acts": acts.contiguous()}, str(tmp))
        tmp.replace(path)
        note = {
            "model": info,
            "n_texts": len(texts),
            "pooling": pooling,
            "input_format": input_format,
        }
        path.with_suffix(".json").write_text(json.dumps(note, indent=2))
    return acts


def limit_contrast_set(cs: ContrastSet, n: int | None) -> ContrastSet:
    """The first ``n`` pairs of ``cs`` (straightforward data: ``n`` sentences per label)."""
    if n is None:
        return cs
    if n < 2:
        raise ConvaError(f"--pairs must be >= 2, got {n}")
    if cs.kind == "pairs":
        return cs.subset(sorted(set(cs.groups))[:n])
    pos = [g for g, y in zip(cs.groups, cs.labels, strict=True) if y == 1][:n]
    neg = [g for g, y in zip(cs.groups, cs.labels, strict=True) if y == 0][:n]
    return cs.subset(pos + neg)


@dataclass(frozen=True)
class ProbeData:
    """Where a probe sweep gets its texts and activations.

    Attributes:
        pairs: use the first N pairs per value (straightforward data: N sentences per label;
            ``None`` = all).
        cache_dir: activation cache folder (``None``: no cache).
        batch_size: texts per forward pass.
        progress: log progress.
    """

    pairs: int | None = None
    cache_dir: Path | None = None
    batch_size: int = 32
    progress: bool = False

    def __post_init__(self) -> None:
        if self.pairs is not None and self.pairs < 2:
            raise ConvaError(f"--pairs must be >= 2, got {self.pairs}")
        if self.batch_size < 1:
            raise ConvaError(f"batch_size must be >= 1, got {self.batch_size}")

    def contrast_set(self, value: str, kind: str = "pairs") -> ContrastSet:
        """The value's shipped contrast set of ``kind``, limited to :attr:`pairs`."""
        return limit_contrast_set(contrast_set(value, kind), self.pairs)

    def activations(
        self,
        model: HookedModel,
        cs: ContrastSet,
        *,
        pooling: str = "last",
        input_format: str = "raw",
    ) -> Float[Tensor, "layer batch d_model"]:
        """All-layer activations of ``cs`` through the cache."""
        t0 = time.perf_counter()
        acts = cached_activations(
            model,
            list(cs.texts),
            pooling=pooling,
            input_format=input_format,
            cache_dir=self.cache_dir,
            batch_size=self.batch_size,
            progress=self.progress,
        )
        logger.info(
            "%s/%s %s-%s activations: %.1fs",
            cs.value,
            cs.kind,
            input_format,
            pooling,
            time.perf_counter() - t0,
        )
        return acts
