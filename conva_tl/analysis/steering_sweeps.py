"""The steering sweeps of the ablations: P0, control layers, control mode, data source (Sec. 3.2, 4.2, Appx. I).

Each sweep builds one intervention per setting (:class:`conva_tl.methods.ConVA`)
and measures them all with :func:`conva_tl.analysis.sweep_context.run_settings`
on the same :class:`~conva_tl.analysis.sweep_context.SweepContext` per value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conva_tl.analysis.sweep_context import SweepContext, SweepResult, run_settings
from conva_tl.errors import ConvaError
from conva_tl.gate import resolve_gate
from conva_tl.generate import GenerationConfig
from conva_tl.methods import Base, ConVA
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import LayerRule, ValueVectors, layer_ranges

__all__ = [
    "sweep_p0",
    "layer_settings",
    "sweep_layers",
    "sweep_control_mode",
    "sweep_data",
]

logger = logging.getLogger(__name__)


def _check_vectors(
    vectors: Mapping[str, ValueVectors], contexts: Mapping[str, SweepContext]
) -> None:
    missing = [v for v in contexts if v not in vectors]
    if missing:
        raise ConvaError(f"no value vectors for {missing}")


def sweep_p0(
    model: HookedModel,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    p0s: Sequence[float],
    *,
    config: GenerationConfig,
    gates: Mapping[str, Any] | None = None,
    mode: str = "per_token",
    judge: Any = None,
    include_base: bool = True,
    trace: bool = True,
) -> SweepResult:
    """ConVA at each target probability P0 (paper Appx. I), plus the unsteered base.

    With ``trace`` (default) every row also has the control actually applied
    (:func:`~conva_tl.analysis.measures.eps_summary`: mean |eps|, share of
    (token, layer) cells moved, mean P_V before control).
    """
    _check_vectors(vectors, contexts)
    methods: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, dict[str, Any]]] = {}
    for v in contexts:
        m: dict[str, Any] = {"base": Base()} if include_base else {}
        c: dict[str, dict[str, Any]] = {"base": {"p0": float("nan")}} if include_base else {}
        for p0 in p0s:
            key = f"p0={p0:g}"
            m[key] = ConVA(vectors[v], p0=float(p0), gate=(gates or {}).get(v), mode=mode)
            c[key] = {"p0": float(p0)}
        methods[v], cols[v] = m, c
    return run_settings(
        model, contexts, methods, config=config, judge=judge, columns=cols, trace=trace
    )


#: The thresholds of the layer ablation; the default rule's threshold is always added.
LAYER_THRESHOLDS = (0.8, 0.85, 0.9, 0.95)


def layer_settings(
    vv: ValueVectors,
    thresholds: Sequence[float] = LAYER_THRESHOLDS,
    *,
    threshold: float = LayerRule.threshold,
    exclude_last: int = LayerRule.exclude_last,
) -> dict[str, dict[str, Any]]:
    """The layer sets of the layer ablation (paper Sec. 3.2).

    ``best``: the single most accurate layer outside the last ``exclude_last``;
    ``acc>T``: every layer with held-out accuracy > T outside the last
    ``exclude_last`` (``T = threshold`` is the paper's rule, the default control
    layers); ``acc>T incl. last N``: the default threshold without the exclusion.

    Returns:
        ``{setting: {"layers": tuple, "threshold": float, "exclude_last": int}}``.
    """
    acc = vv.accuracy.tolist()
    allowed = max(len(acc) - exclude_last, 1)
    best = int(np.argmax(acc[:allowed]))
    out: dict[str, dict[str, Any]] = {
        "best": {"layers": (best,), "threshold": float("nan"), "exclude_last": exclude_last}
    }
    for t in sorted(set(thresholds) | {threshold}):
        out[f"acc>{t:g}"] = {
            "layers": LayerRule(t, exclude_last).select(acc),
            "threshold": float(t),
            "exclude_last": exclude_last,
        }
    if exclude_last:
        out[f"acc>{threshold:g} incl. last {exclude_last}"] = {
            "layers": LayerRule(threshold, 0).select(acc),
            "threshold": float(threshold),
            "exclude_last": 0,
        }
    return out


def sweep_layers(
    model: HookedModel,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    *,
    config: GenerationConfig,
    thresholds: Sequence[float] = LAYER_THRESHOLDS,
    threshold: float = LayerRule.threshold,
    exclude_last: int = LayerRule.exclude_last,
    p0: float = 0.9,
    gates: Mapping[str, Any] | None = None,
    judge: Any = None,
    include_base: bool = True,
    trace: bool = True,
) -> SweepResult:
    """ConVA on each layer set of :func:`layer_settings` (identical sets are measured once).

    ``trace`` adds the applied-control columns, as in :func:`sweep_p0`.
    """
    _check_vectors(vectors, contexts)
    methods: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, dict[str, Any]]] = {}
    for v in contexts:
        vv = vectors[v]
        m: dict[str, Any] = {"base": Base()} if include_base else {}
        c: dict[str, dict[str, Any]] = (
            {"base": {"n_layers": 0, "layers": "-"}} if include_base else {}
        )
        by_layers: dict[tuple[int, ...], Any] = {}
        for name, spec in layer_settings(
            vv, thresholds, threshold=threshold, exclude_last=exclude_last
        ).items():
            layers = spec["layers"]
            if layers not in by_layers:
                gate = resolve_gate((gates or {}).get(v), layers, model=model)
                by_layers[layers] = ConVA(vv, p0=p0, gate=gate, layers=layers)
            m[name] = by_layers[layers]
            c[name] = {
                "n_layers": len(layers),
                "layers": layer_ranges(layers),
                "threshold": spec["threshold"],
                "exclude_last": spec["exclude_last"],
            }
        methods[v], cols[v] = m, c
    return run_settings(
        model, contexts, methods, config=config, judge=judge, columns=cols, trace=trace
    )


def sweep_control_mode(
    model: HookedModel,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    *,
    config: GenerationConfig,
    modes: Sequence[str] = ("per_token", "per_prompt"),
    p0: float = 0.9,
    gates: Mapping[str, Any] | None = None,
    judge: Any = None,
    include_base: bool = False,
) -> SweepResult:
    """Per-token control (the paper) vs one eps per prompt (the authors' code), traced."""
    _check_vectors(vectors, contexts)
    methods = {
        v: {
            **({"base": Base()} if include_base else {}),
            **{m: ConVA(vectors[v], p0=p0, gate=(gates or {}).get(v), mode=m) for m in modes},
        }
        for v in contexts
    }
    return run_settings(model, contexts, methods, config=config, judge=judge, trace=True)


def sweep_data(
    model: HookedModel,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    straightforward: Mapping[str, ValueVectors],
    *,
    config: GenerationConfig,
    p0: float = 0.9,
    gates: Mapping[str, Any] | None = None,
    judge: Any = None,
) -> SweepResult:
    """ConVA with vectors from the context-controlled pairs vs the straightforward sentences (Sec. 4.2).

    Settings ``base``, ``pairs`` (method name ``conva-pairs``) and
    ``straightforward`` (``conva-sf``), each with an ``n_layers`` column. Both
    use the value's gate; where it sits after the straightforward vectors' first
    control layer it is scored from the prompt text (:func:`~conva_tl.gate.resolve_gate`).
    """
    _check_vectors(vectors, contexts)
    _check_vectors(straightforward, contexts)
    methods: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, dict[str, Any]]] = {}
    for v in contexts:
        gate = (gates or {}).get(v)
        sf_layers = straightforward[v].control_layers
        sf_gate = resolve_gate(gate, sf_layers, model=model)
        methods[v] = {
            "base": Base(),
            "pairs": ConVA(vectors[v], p0=p0, gate=gate, name="conva-pairs"),
            "straightforward": ConVA(straightforward[v], p0=p0, gate=sf_gate, name="conva-sf"),
        }
        cols[v] = {
            "pairs": {"n_layers": len(vectors[v].control_layers)},
            "straightforward": {"n_layers": len(sf_layers)},
            "base": {"n_layers": 0},
        }
    return run_settings(model, contexts, methods, config=config, judge=judge, columns=cols)
