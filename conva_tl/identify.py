"""Value-vector identification: data -> cached activations -> per-layer probes.

The thin pipeline stage a user runs. :func:`identify` caches the texts of all
requested values in one batched pass over the model (so ten values cost one
sorted, padded sweep rather than ten), then fits each value's probes with
:func:`conva_tl.probes.fit_probes` and records provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from conva_tl._version import __version__
from conva_tl.activations import cache_resid_post
from conva_tl.datasets import ContrastSet, contrast_set
from conva_tl.hooks import resid_post_name
from conva_tl.model import model_info
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule, ValueVectors, fit_probes
from conva_tl.values import VALUES, canonical_value

__all__ = ["identify", "identify_one"]

logger = logging.getLogger(__name__)


def identify(
    model: Any,
    values: Sequence[str] = VALUES,
    *,
    kind: str = "pairs",
    data: dict[str, ContrastSet] | None = None,
    pooling: str = "last",
    input_format: str = "raw",
    layers: Sequence[int] | None = None,
    test_size: float = 0.2,
    k_folds: int | None = None,
    C: float = DEFAULT_C,
    standardize: bool = DEFAULT_STANDARDIZE,
    seed: int = 0,
    rule: LayerRule | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> dict[str, ValueVectors]:
    """Fit value vectors for several values from one shared activation pass.

    Args:
        model: a ``TransformerBridge``.
        values: value names (default: all ten).
        kind: shipped data to use, ``"pairs"`` (context-controlled) or ``"straightforward"``.
        data: your own :class:`ContrastSet` per value instead of shipped data.
        pooling: ``"last"`` token (the authors' code) or ``"mean"``.
        input_format: ``"raw"`` sentences (the paper) or ``"chat"`` template.
        layers: which layers to fit (default: all). Unfitted layers get zero
            probes and accuracy 0.
        test_size, k_folds, C, standardize, seed, rule: see :func:`fit_probes`.
        batch_size: texts per forward pass.
        progress: progress bar for the activation pass.

    Returns:
        ``{value: ValueVectors}`` in the order given.

    Example:
        >>> vectors = identify(model, ["security"])  # doctest: +SKIP
        >>> vectors["security"].control_layers  # doctest: +SKIP
    """
    names = [canonical_value(v) for v in values]
    sets = {v: (data or {}).get(v) or contrast_set(v, kind) for v in names}
    texts = [t for v in names for t in sets[v].texts]
    t0 = time.perf_counter()
    acts = cache_resid_post(
        model,
        texts,
        layers=layers,
        pooling=pooling,
        input_format=input_format,
        batch_size=batch_size,
        progress=progress,
    )
    logger.info(
        "cached %d texts x %d layers in %.1fs", len(texts), acts.shape[0], time.perf_counter() - t0
    )
    fitted_layers = list(range(model.cfg.n_layers)) if layers is None else sorted(set(layers))
    out: dict[str, ValueVectors] = {}
    start = 0
    for v in names:
        cs = sets[v]
        chunk = acts[:, start : start + len(cs)]
        start += len(cs)
        meta = {
            "model": model_info(model).to_dict(),
            "hook": resid_post_name(0).replace(".0.", ".{layer}."),
            "pooling": pooling,
            "input_format": input_format,
            "dataset": {"kind": cs.kind, "n_texts": len(cs), "sha256": cs.sha256},
            "fitted_layers": fitted_layers,
            "conva_tl_version": __version__,
        }
        vv = fit_probes(
            chunk,
            cs.labels,
            cs.groups,
            value=v,
            test_size=test_size,
            k_folds=k_folds,
            C=C,
            standardize=standardize,
            seed=seed,
            rule=LayerRule() if rule is None else rule,
            metadata=meta,
        )
        out[v] = _expand(vv, fitted_layers, model.cfg.n_layers, rule or LayerRule())
    return out


def identify_one(model: Any, value: str, **kwargs: Any) -> ValueVectors:
    """:func:`identify` for a single value."""
    return identify(model, [value], **kwargs)[canonical_value(value)]


def _expand(vv: ValueVectors, fitted: list[int], n_layers: int, rule: LayerRule) -> ValueVectors:
    """Place probes fitted on a layer subset into full-depth tensors."""
    if len(fitted) == n_layers:
        return vv
    w = torch.zeros(n_layers, vv.w.shape[1])
    b = torch.zeros(n_layers)
    acc = torch.zeros(n_layers)
    tacc = torch.zeros(n_layers)
    diff = torch.zeros_like(w)
    idx = torch.tensor(fitted)
    w[idx], b[idx], acc[idx], tacc[idx], diff[idx] = (
        vv.w,
        vv.b,
        vv.accuracy,
        vv.train_accuracy,
        vv.mean_diff,
    )
    return ValueVectors(vv.value, w, b, acc, tacc, rule.select(acc.tolist()), diff, vv.metadata)
