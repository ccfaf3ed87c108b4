"""Value-vector identification: data -> cached activations -> per-layer probes.

The thin pipeline stage a user runs. :func:`identify` caches the texts of all
requested values in one batched pass over the model (so ten values cost one
sorted, padded sweep rather than ten), then fits each value's probes with
:func:`conva_tl.probes.fit_probes` and records provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from conva_tl._version import __version__
from conva_tl.activations import cache_resid_post, resolve_layers
from conva_tl.datasets import ContrastSet, contrast_set
from conva_tl.errors import DataError
from conva_tl.hooks import resid_post_name
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule, ValueVectors, fit_probes
from conva_tl.values import VALUES, canonical_value

__all__ = ["identify", "identify_one", "value_names", "custom_sets"]

logger = logging.getLogger(__name__)


def identify(
    model: HookedModel,
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
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        values: value names (default: all ten).
        kind: shipped data to use, ``"pairs"`` (context-controlled) or ``"straightforward"``.
        data: your own :class:`ContrastSet` per value instead of shipped data;
            keys are value names in any spelling, each set must be for its key.
        pooling: ``"last"`` token (the authors' code) or ``"mean"``.
        input_format: ``"raw"`` sentences (the paper) or ``"chat"`` template.
        layers: which layers to fit (default: all). Unfitted layers get zero
            probes and accuracy 0 and are never chosen as control layers.
        test_size, k_folds, C, standardize, seed, rule: see :func:`fit_probes`.
        batch_size: texts per forward pass.
        progress: progress bar for the activation pass.

    Returns:
        ``{value: ValueVectors}`` in the order given.

    Example:
        >>> vectors = identify(model, ["security"])  # doctest: +SKIP
        >>> vectors["security"].control_layers  # doctest: +SKIP
    """
    names = value_names(values)
    given = custom_sets(data, names)
    sets = {v: given.get(v) or contrast_set(v, kind) for v in names}
    fitted_layers = resolve_layers(model, layers)  # checked before the expensive pass
    texts = [t for v in names for t in sets[v].texts]
    t0 = time.perf_counter()
    acts = cache_resid_post(
        model,
        texts,
        layers=fitted_layers,
        pooling=pooling,
        input_format=input_format,
        batch_size=batch_size,
        progress=progress,
    )
    logger.info(
        "cached %d texts x %d layers in %.1fs", len(texts), acts.shape[0], time.perf_counter() - t0
    )
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
            layers=fitted_layers,
            n_layers=model.cfg.n_layers,
        )
        out[v] = vv
    return out


def identify_one(model: HookedModel, value: str, **kwargs: Any) -> ValueVectors:
    """:func:`identify` for a single value."""
    return identify(model, [value], **kwargs)[canonical_value(value)]


def value_names(values: Sequence[str]) -> list[str]:
    """Canonical, de-duplicated value names; an empty or bare-string list is an error."""
    if isinstance(values, str):
        raise DataError(f"values must be a list of value names: wrap one value as [{values!r}]")
    names = list(dict.fromkeys(canonical_value(v) for v in values))
    if not names:
        raise DataError("values is empty: name at least one of " + ", ".join(VALUES))
    return names


def custom_sets(
    data: Mapping[str, ContrastSet] | None, names: Sequence[str]
) -> dict[str, ContrastSet]:
    """``data`` keyed by canonical value name, each set checked against its key.

    Raises:
        DataError: a key is not a value, a set is not a :class:`ContrastSet`, a
            set was built for another value, or a key names a value not in ``names``.
    """
    out: dict[str, ContrastSet] = {}
    for key, cs in (data or {}).items():
        canon = canonical_value(key)
        if not isinstance(cs, ContrastSet):
            raise DataError(
                f"data[{key!r}] is a {type(cs).__name__}, expected a ContrastSet "
                "(build one with conva_tl.datasets.contrast_set(value, path=...))"
            )
        if cs.value != canon:
            raise DataError(
                f"data[{key!r}] holds texts for {cs.value!r}, not {canon!r}: "
                f"give it under the key {cs.value!r} or build the set for {canon!r}"
            )
        if canon in out:
            raise DataError(f"data has two sets for {canon!r} (keys differ only in spelling)")
        out[canon] = cs
    extra = [v for v in out if v not in names]
    if extra:
        raise DataError(
            f"data has sets for {', '.join(extra)}, which values does not include "
            f"({', '.join(names)}): add them to values or drop them from data"
        )
    return out
