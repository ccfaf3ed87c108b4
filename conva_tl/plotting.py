"""Figures and interactive token views shared by the analysis scripts and notebooks.

Matplotlib functions build a fresh :class:`matplotlib.figure.Figure` (no
``pyplot`` state, so nothing leaks between calls and any backend works) or draw
into an ``ax`` you pass, and return the figure. They take the outputs of
:mod:`conva_tl.probes` (held-out accuracy per layer) and
:mod:`conva_tl.analysis.structure` (cosine matrices, per-layer circumplex
statistics, MDS). The token-level circuitsvis views are in
:mod:`conva_tl.token_views`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from jaxtyping import Float
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle
from torch import Tensor

from conva_tl.analysis.structure import GROWTH_VALUES, circumplex_order, procrustes_to_circle
from conva_tl.errors import ConvaError
from conva_tl.probes import ValueVectors
from conva_tl.values import GROUPS, canonical_value, get_value, group_of

__all__ = [
    "GROUP_COLORS",
    "plot_accuracy_curves",
    "plot_cosine_heatmap",
    "plot_cosine_grid",
    "plot_structure_by_layer",
    "plot_mds",
]

#: One colour per higher-order group (Schwartz's usual quadrant colours).
GROUP_COLORS: dict[str, str] = {
    "openness to change": "tab:orange",
    "self-enhancement": "tab:red",
    "conservation": "tab:blue",
    "self-transcendence": "tab:green",
}


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy()
        if isinstance(x, Tensor)
        else np.asarray(x, dtype=np.float64)
    )


def plot_accuracy_curves(
    vectors: dict[str, ValueVectors] | Sequence[ValueVectors],
    *,
    threshold: float | None = None,
    exclude_last: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Held-out probe accuracy per layer, one line per value.

    The dashed line is the control threshold and the shaded band the last
    layers that are never controlled; both default to the layer rule stored in
    the vectors' metadata (the paper's 0.9 and 5).
    """
    items = list(vectors.values()) if isinstance(vectors, dict) else list(vectors)
    if not items:
        raise ConvaError("no value vectors to plot")
    rule = items[0].metadata.get("layer_rule", {})
    threshold = float(rule.get("threshold", 0.9)) if threshold is None else threshold
    exclude_last = int(rule.get("exclude_last", 5)) if exclude_last is None else exclude_last
    fig, ax = _new_axes(ax, (9.0, 4.5))
    n_layers = max(vv.n_layers for vv in items)
    by_name = {vv.value: vv for vv in items}
    cmap = _value_cmap()
    for name in circumplex_order(list(by_name)):
        vv = by_name[name]
        ax.plot(range(vv.n_layers), vv.accuracy.tolist(), marker=".", color=cmap(name), label=name)
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    if exclude_last > 0:
        ax.axvspan(
            n_layers - exclude_last - 0.5,
            n_layers - 0.5,
            color="grey",
            alpha=0.2,
            label=f"last {exclude_last} layers (not controlled)",
        )
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("layer (resid_post)")
    ax.set_ylabel("held-out probe accuracy")
    ax.set_title("Value probe accuracy by layer")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return fig


def _value_cmap() -> Any:
    tab = matplotlib.colormaps["tab10"]
    return lambda name: tab(get_value(name).position % 10)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _outline(ax: Axes, order: list[str], members: Sequence[str], color: str, lw: float) -> None:
    idx = [i for i, v in enumerate(order) if v in members]
    for a, b in _runs(idx):
        ax.add_patch(
            Rectangle(
                (a - 0.5, a - 0.5),
                b - a + 1,
                b - a + 1,
                fill=False,
                edgecolor=color,
                ls="--",
                lw=lw,
            )
        )


def _reorder(
    cos: np.ndarray, values: Sequence[str], start: str | None
) -> tuple[np.ndarray, list[str]]:
    names = [canonical_value(v) for v in values]
    if cos.shape != (len(names), len(names)):
        raise ConvaError(f"cosine matrix of shape {cos.shape} for {len(names)} values")
    order = circumplex_order(names, start=start)
    idx = [names.index(v) for v in order]
    return cos[np.ix_(idx, idx)], order


def plot_cosine_heatmap(
    cos: Float[Tensor, "value value"] | np.ndarray,
    values: Sequence[str],
    layer: int | None = None,
    ax: Axes | None = None,
    *,
    start: str | None = None,
    growth: bool = False,
    vmax: float | None = None,
    annotate: bool = True,
) -> Figure:
    """Cosine similarity of value vectors at one layer, like the paper's Fig. 5.

    Values are ordered around the circumplex (from ``start``, default
    self-direction); the four higher-order groups are outlined with red dashed
    boxes and, with ``growth=True``, Schwartz's "self-expansion and growth"
    values in yellow (start at ``"benevolence"`` to make them one block).
    The colour scale is symmetric, ``[-vmax, vmax]``, by default the largest
    off-diagonal magnitude (probe normals are nearly orthogonal in a wide
    residual stream, so a fixed [-1, 1] would wash the structure out).
    """
    mat, order = _reorder(_np(cos), values, start)
    n = len(order)
    off = np.abs(mat[~np.eye(n, dtype=bool)])
    scale = vmax if vmax is not None else max(float(off.max()) if off.size else 1.0, 1e-3)
    fig, ax = _new_axes(ax, (6.5, 5.5))
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.set_xticks(range(n), order, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), order, fontsize=8)
    if annotate and n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{mat[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if abs(mat[i, j]) > 0.6 * scale else "black",
                )
    for members in GROUPS.values():
        _outline(ax, order, members, "red", 2.0)
    if growth:
        _outline(ax, order, GROWTH_VALUES, "gold", 1.5)
    ax.set_title(
        "Cosine similarity of value vectors" + (f", layer {layer}" if layer is not None else "")
    )
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine")
    return fig


def plot_cosine_grid(
    cos_by_layer: Float[Tensor, "layer value value"] | np.ndarray,
    values: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    ncols: int = 6,
    vmax: float | None = None,
) -> Figure:
    """Small cosine heatmaps for every layer (the paper's Appx. F), one colour scale."""
    cube = _np(cos_by_layer)
    chosen = list(range(cube.shape[0])) if layers is None else [int(x) for x in layers]
    if not chosen:
        raise ConvaError("no layers to plot")
    mats = []
    order: list[str] = []
    for layer in chosen:
        mat, order = _reorder(cube[layer], values, None)
        mats.append(mat)
    n = len(order)
    off = np.concatenate([np.abs(m[~np.eye(n, dtype=bool)]) for m in mats])
    scale = vmax if vmax is not None else max(float(off.max()) if off.size else 1.0, 1e-3)
    nrows = -(-len(chosen) // ncols)
    fig = Figure(figsize=(2.2 * ncols + 1, 2.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    short = [v[:4] for v in order]
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= len(chosen):
            ax.axis("off")
            continue
        im = ax.imshow(mats[k], cmap="RdBu_r", vmin=-scale, vmax=scale)
        for members in GROUPS.values():
            _outline(ax, order, members, "red", 1.0)
        ax.set_title(f"layer {chosen[k]}", fontsize=9)
        row, col = divmod(k, ncols)
        ax.set_xticks(
            range(n),
            short if row == nrows - 1 or k + ncols >= len(chosen) else [],
            rotation=90,
            fontsize=6,
        )
        ax.set_yticks(range(n), short if col == 0 else [], fontsize=6)
    fig.suptitle("Cosine similarity of value vectors at every layer (circumplex order)")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="cosine")
    return fig


def plot_structure_by_layer(df: pd.DataFrame, *, alpha: float = 0.05) -> Figure:
    """The per-layer output of :func:`~conva_tl.analysis.structure.structure_by_layer`.

    Top: the cosine-vs-circumplex-distance correlation (negative =
    circumplex-like); filled markers where the permutation p-value is below
    ``alpha``. Bottom: mean within- and between-group cosine, the cosine of
    opposites, and the probes' mean held-out accuracy (right axis).
    """
    d = df.sort_index()
    layers = d.index.to_numpy()
    fig = Figure(figsize=(9, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.axhline(0, color="grey", lw=0.8)
    top.plot(layers, d["statistic"], color="tab:purple", lw=1)
    sig = d["p_value"] < alpha
    top.scatter(
        layers[sig],
        d["statistic"][sig],
        color="tab:purple",
        zorder=3,
        label=f"p < {alpha:g} (permutation)",
    )
    top.scatter(
        layers[~sig],
        d["statistic"][~sig],
        facecolor="white",
        edgecolor="tab:purple",
        zorder=3,
        label=f"p >= {alpha:g}",
    )
    if "rank" in d:
        for layer, row in d[d["rank"] <= 3].iterrows():
            top.annotate(
                f"#{int(row['rank'])}",
                (layer, row["statistic"]),
                textcoords="offset points",
                xytext=(0, -12),
                ha="center",
                fontsize=8,
            )
    method = str(d["method"].iloc[0]) if "method" in d else "spearman"
    top.set_ylabel(f"{method} r(cosine, circumplex distance)")
    top.set_title("How circumplex-like are the value vectors at each layer? (lower = more)")
    top.legend(fontsize=8)
    for col, color, label in (
        ("within", "tab:green", "within-group mean cosine"),
        ("between", "tab:red", "between-group mean cosine"),
        ("opposite_cos", "tab:blue", "opposite values' mean cosine"),
    ):
        if col in d:
            bottom.plot(layers, d[col], marker=".", color=color, label=label)
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.set_ylabel("cosine")
    bottom.set_xlabel("layer")
    if "mean_accuracy" in d:
        right = bottom.twinx()
        right.plot(layers, d["mean_accuracy"], ls="--", color="grey", label="mean probe accuracy")
        right.set_ylabel("mean held-out accuracy", color="grey")
        right.set_ylim(0.4, 1.02)
    bottom.legend(fontsize=8, loc="upper left")
    return fig


def plot_mds(
    embedding: Float[np.ndarray, "value 2"],
    values: Sequence[str],
    *,
    fit: dict[str, Any] | None = None,
    layer: int | None = None,
) -> Figure:
    """The MDS picture of one layer (aligned to the circle) beside the theoretical circumplex.

    Args:
        embedding: ``[value, 2]`` from :func:`~conva_tl.analysis.structure.mds_embedding`.
        values: its row names.
        fit: a :func:`~conva_tl.analysis.structure.procrustes_to_circle` result
            (computed without permutations if not given).
        layer: shown in the title.
    """
    names = [canonical_value(v) for v in values]
    fit = fit or procrustes_to_circle(embedding, names, n_permutations=0)
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, pts, title in (
        (left, fit["aligned"], "value vectors (classical MDS, Procrustes-aligned)"),
        (right, fit["target"], "Schwartz's circumplex (theory)"),
    ):
        ax.add_patch(Circle((0, 0), 1.0, fill=False, color="lightgrey", ls=":"))
        for (x, y), v in zip(pts, names, strict=True):
            ax.scatter([x], [y], color=GROUP_COLORS[group_of(v)], s=60, zorder=3)
            ax.annotate(v, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_aspect("equal")
        lim = max(1.25, float(np.abs(pts).max()) + 0.35)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_title(title, fontsize=10)
    for (x0, y0), (x1, y1) in zip(fit["aligned"], fit["target"], strict=True):
        left.plot([x0, x1], [y0, y1], color="lightgrey", lw=0.8, zorder=1)
    for group, color in GROUP_COLORS.items():
        right.scatter([], [], color=color, label=group)
    right.legend(fontsize=8, loc="lower right")
    p = fit.get("p_value", float("nan"))
    extra = f", permutation p = {p:.3g}" if np.isfinite(p) else ""
    where = f"Layer {layer}: " if layer is not None else ""
    fig.suptitle(f"{where}Procrustes disparity to the circle {fit['disparity']:.3f}{extra}")
    return fig
