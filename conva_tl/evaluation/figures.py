"""The evaluation's figures: per-value scores per method (paper Fig. 2), control priority
(Fig. 4) and gate score histograms (Fig. 3).

Each function returns the ``Figure`` (drawn with :func:`conva_tl.report.new_figure`,
no pyplot) and also saves it when given a path; :mod:`conva_tl.evaluation.runner`
and :mod:`conva_tl.evaluation.capability` hand them to a :class:`conva_tl.report.Report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from conva_tl.report import METRIC_LABELS, new_figure
from conva_tl.values import VALUES

__all__ = ["plot_comparison", "plot_priority", "plot_gate_histograms", "reported_metrics"]


def reported_metrics(table: pd.DataFrame) -> list[str]:
    """CSR and FR when the table is judged, else the judge-free P_V and distinctness."""
    return ["csr", "fr"] if "csr" in table.columns else ["p_v", "distinct"]


def _value_order(values: Sequence[str]) -> list[str]:
    return sorted(values, key=lambda v: VALUES.index(v) if v in VALUES else len(VALUES))


def plot_comparison(
    table: pd.DataFrame, path: str | Path | None = None, *, title: str = ""
) -> Figure:
    """Per-value scores, one line per method (paper Fig. 2).

    A radar over the values in circumplex order when there are 3 or more values,
    else grouped bars. CSR and FR when judged, else P_V and distinctness.
    """
    values = _value_order(list(dict.fromkeys(table["value"])))
    methods = list(dict.fromkeys(table["method"]))
    metrics = reported_metrics(table)
    radar = len(values) >= 3
    fig = new_figure(5.5 * len(metrics), 5.0)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1, projection="polar" if radar else None)
        for m in methods:
            y = [
                float(table[(table.value == v) & (table.method == m)][metric].mean())
                for v in values
            ]
            if radar:
                angles = [2 * math.pi * i / len(values) for i in range(len(values))]
                ax.plot(angles + angles[:1], y + y[:1], marker="o", ms=3, label=m)
            else:
                width = 0.8 / len(methods)
                offset = (methods.index(m) - (len(methods) - 1) / 2) * width
                ax.bar([i + offset for i in range(len(values))], y, width, label=m)
        if radar:
            ax.set_xticks(
                [2 * math.pi * i / len(values) for i in range(len(values))], values, fontsize=8
            )
            ax.set_ylim(0, 1)
            ax.set_rlabel_position(180.0 / len(values))  # type: ignore[attr-defined]  # polar axes
            ax.tick_params(axis="y", labelsize=7)
        else:
            ax.set_xticks(range(len(values)), values)
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3, axis="y")
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
    fig.axes[-1].legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def plot_priority(
    table: pd.DataFrame, path: str | Path | None = None, *, title: str = ""
) -> Figure:
    """Grouped bars per value, one bar per method (paper Fig. 4)."""
    values = _value_order(list(dict.fromkeys(table["value"])))
    methods = list(dict.fromkeys(table["method"]))
    metric = reported_metrics(table)[0]
    fig = new_figure(min(14.0, max(6.0, 0.25 * len(values) * len(methods) + 2.0)), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(methods)
    x = np.arange(len(values))
    for i, m in enumerate(methods):
        y = [float(table[(table.value == v) & (table.method == m)][metric].mean()) for v in values]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, y, width, label=m)
    ax.set_xticks(x, values, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title or "Control priority: ConVA under opposite and same-value prompts")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def plot_gate_histograms(scores: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Gate score histograms per value: value-related vs unrelated prompt sets (paper Fig. 3).

    ``scores`` has columns ``value``, ``set`` and ``score`` (and ``threshold``).
    """
    values = list(dict.fromkeys(scores["value"]))
    cols = min(len(values), 3)
    rows = -(-len(values) // cols)
    fig = new_figure(4.2 * cols, 3.2 * rows)
    bins = np.linspace(0, 1, 26)
    for k, v in enumerate(values):
        ax = fig.add_subplot(rows, cols, k + 1)
        g = scores[scores.value == v]
        for name in dict.fromkeys(g["set"]):
            ax.hist(
                g[g.set == name]["score"], bins=bins.tolist(), alpha=0.5, density=True, label=name
            )
        if "threshold" in g.columns and len(g):
            ax.axvline(
                float(g["threshold"].iloc[0]), color="k", ls="--", lw=1, label="threshold g0"
            )
        ax.set_title(v, fontsize=10)
        ax.set_xlabel("gate score")
    fig.axes[0].legend(fontsize=7)
    fig.suptitle("Gate scores: value-related vs unrelated prompts")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig
