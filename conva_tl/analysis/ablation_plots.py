"""Figures of the ablation runs, in the style of :mod:`conva_tl.plotting`.

Each function builds a fresh :class:`matplotlib.figure.Figure` (no ``pyplot``
state, any backend) from an ablation table and returns it:
:func:`plot_measures` (steering measures per setting, the base as a dashed
line), :func:`plot_transfer` (probe accuracy by layer, train view x test view),
:func:`plot_layer_accuracy`, :func:`plot_gate_thresholds`,
:func:`plot_train_size` and :func:`plot_calibration`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from conva_tl.probes import LayerRule, ValueVectors
from conva_tl.report import new_figure

__all__ = [
    "plot_measures",
    "plot_transfer",
    "plot_layer_accuracy",
    "plot_gate_thresholds",
    "plot_train_size",
    "plot_calibration",
]


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_measures(
    table: pd.DataFrame,
    x: str,
    metrics: Sequence[tuple[str, str]],
    *,
    title: str,
    categorical: bool = False,
    baseline: str | None = "base",
) -> Figure:
    """One panel per metric, one line per value over ``x``; the ``baseline`` setting as a dashed line."""
    fig = new_figure(4.0 * len(metrics), 3.6)
    rows = table[table["setting"] != baseline] if baseline else table
    base = table[table["setting"] == baseline] if baseline else table.iloc[0:0]
    labels = list(dict.fromkeys(rows[x].astype(str))) if categorical else None
    for k, (col, label) in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for i, (value, g) in enumerate(rows.groupby("value", sort=False)):
            color = f"C{i}"
            xs = [labels.index(s) for s in g[x].astype(str)] if labels else g[x]
            ax.plot(xs, g[col], marker="o", color=color, label=value)
            b = base[base["value"] == value]
            if len(b) and col in b:
                ax.axhline(float(b[col].iloc[0]), color=color, ls="--", lw=1, alpha=0.7)
        if labels:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(x)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, title="dashed: base" if len(base) else None, title_fontsize=7)
    return _finish(fig, title)


def plot_transfer(
    df: pd.DataFrame, *, title: str, threshold: float = LayerRule.threshold
) -> Figure:
    """Accuracy by layer, one panel per value: solid = tested on its own view, dashed = transfer."""
    values = list(dict.fromkeys(df["value"]))
    fig = new_figure(5.0 * len(values), 3.8)
    trains = list(dict.fromkeys(df["train"]))
    for k, v in enumerate(values):
        ax = fig.add_subplot(1, len(values), k + 1)
        g = df[df.value == v]
        for i, tr in enumerate(trains):
            for te, h in g[g.train == tr].groupby("test", sort=False):
                ax.plot(
                    h.layer,
                    h.accuracy,
                    color=f"C{i}",
                    ls="-" if te == tr else "--",
                    marker=".",
                    label=f"train {tr} -> test {te}",
                )
        ax.axhline(threshold, color="k", ls=":", lw=0.8)
        ax.set(xlabel="layer", ylabel="held-out accuracy", title=v, ylim=(0.3, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, title)


def plot_layer_accuracy(
    vectors: Mapping[str, ValueVectors],
    thresholds: Sequence[float],
    exclude_last: int,
    *,
    threshold: float = LayerRule.threshold,
) -> Figure:
    """:func:`conva_tl.plotting.plot_accuracy_curves` with every threshold of the layer ablation.

    ``threshold`` (the rule's, dashed) and ``exclude_last`` (shaded) as there; the other
    ``thresholds`` dotted; each labelled at the left.
    """
    # imported here: conva_tl.plotting imports conva_tl.analysis.structure, whose package
    # imports this module
    from conva_tl.plotting import plot_accuracy_curves

    fig = plot_accuracy_curves(dict(vectors), threshold=threshold, exclude_last=exclude_last)
    ax = fig.axes[0]
    for t in thresholds:
        if t != threshold:
            ax.axhline(t, color="k", ls=":", lw=0.8)
        ax.text(0, t, f" {t:g}", fontsize=7, va="bottom")
    ax.set_title("Probe accuracy and the layer thresholds")
    return fig


def plot_gate_thresholds(
    table: pd.DataFrame, scores: pd.DataFrame, fitted: Mapping[str, float]
) -> Figure:
    """Per value: share gated open and KL cost over g0 per prompt set, and the score histograms."""
    values = list(dict.fromkeys(table["value"]))
    fig = new_figure(12.0, 3.4 * len(values))
    sets = [c.removeprefix("open_") for c in table.columns if c.startswith("open_")]
    for r, v in enumerate(values):
        t = table[table.value == v]
        ax = fig.add_subplot(len(values), 3, 3 * r + 1)
        for s in sets:
            ax.plot(t["g0"], t[f"open_{s}"], marker=".", label=s)
        ax.axvline(fitted.get(v, 0.5), color="k", ls="--", lw=0.8)
        ax.set(
            xlabel="g0", ylabel="share gated open", title=f"{v}: gate open rate", ylim=(-0.02, 1.02)
        )
        ax.legend(fontsize=7)
        ax = fig.add_subplot(len(values), 3, 3 * r + 2)
        for s in sets:
            ax.plot(t["g0"], t[f"kl_{s}"], marker=".", label=s)
        ax.axvline(fitted.get(v, 0.5), color="k", ls="--", lw=0.8)
        ax.set(
            xlabel="g0", ylabel="mean KL(base||steered), nats", title=f"{v}: cost of gated control"
        )
        ax = fig.add_subplot(len(values), 3, 3 * r + 3)
        g = scores[scores.value == v]
        for s in sets:
            ax.hist(g[g.set == s]["score"], bins=np.linspace(0, 1, 21).tolist(), alpha=0.5, label=s)
        ax.set(xlabel="gate score", title=f"{v}: gate scores")
    return _finish(fig, "Gate threshold g0 (dashed: the gate's fitted threshold)")


def _lines_per_value(
    fig: Figure, df: pd.DataFrame, x: str, panels: Sequence[tuple[str, str]], *, logx: bool = False
) -> list:
    axes = []
    for k, (col, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for i, (value, g) in enumerate(df.groupby("value", sort=False)):
            ax.plot(g[x], g[col], marker="o", color=f"C{i}", label=value)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        axes.append(ax)
    return axes


def plot_train_size(summary: pd.DataFrame, rule: LayerRule | None = None) -> Figure:
    """Accuracy at the best layer (band: min-max over draws), cos to the full fit, passing layers."""
    rule = rule or LayerRule()
    fig = new_figure(12.0, 3.6)
    panels = [
        ("accuracy", "held-out accuracy at the best layer"),
        ("cos_ref", "cos(v, v from all training pairs)"),
        (
            "layers_passing",
            f"fitted layers passing acc > {rule.threshold:g} (not last {rule.exclude_last})",
        ),
    ]
    axes = _lines_per_value(fig, summary, "n_pairs", panels)
    for i, (_, g) in enumerate(summary.groupby("value", sort=False)):
        axes[0].fill_between(g.n_pairs, g.accuracy_min, g.accuracy_max, color=f"C{i}", alpha=0.15)
    for ax in axes:
        ax.set_xlabel("training pairs")
    fig.axes[0].legend(fontsize=8)
    return _finish(fig, "Training-set size (fixed held-out pairs)")


def plot_calibration(df: pd.DataFrame) -> Figure:
    """CV log-loss, accuracy and the P0 margin relative to the residual norm over C, per value."""
    fig = new_figure(12.0, 3.6)
    per_c = (
        df.groupby(["value", "C"], sort=False)[["logloss", "accuracy", "margin_rel"]]
        .mean()
        .reset_index()
    )
    panels = [
        ("logloss", "CV log-loss (lower = better calibrated)"),
        ("accuracy", "CV accuracy"),
        ("margin_rel", "P0 margin / residual norm"),
    ]
    _lines_per_value(fig, per_c, "C", panels, logx=True)
    fig.axes[0].legend(fontsize=7)
    return _finish(
        fig, "Probe regularisation: calibration, accuracy and control margin (mean over layers)"
    )
