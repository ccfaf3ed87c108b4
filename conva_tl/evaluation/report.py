"""Tables, figures and notices of an evaluation run.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no
pyplot, no global backend switch), so importing this module changes nothing
for a user's own plotting. :func:`write_outputs` is called by
:mod:`conva_tl.evaluation.runner`; :mod:`conva_tl.evaluation.capability` uses
:func:`plot_gate_histograms`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from conva_tl.values import VALUES

__all__ = [
    "format_table",
    "judge_notice",
    "plot_comparison",
    "plot_priority",
    "plot_gate_histograms",
    "write_outputs",
]

_LABELS = {
    "csr": "control success rate (CSR)",
    "fr": "fluency rate (FR)",
    "p_v": "mean probe reading P_V of the answer",
    "probe_logit": "mean probe logit w.e + b of the answer",
    "distinct": "distinct-word ratio (fluency proxy)",
}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def format_table(table: pd.DataFrame, metric: str, *, digits: int = 2) -> str:
    """A methods x values pivot of one metric with a ``mean`` column, as text."""
    pivot = table.pivot(index="method", columns="value", values=metric)
    pivot = pivot.reindex(
        index=list(dict.fromkeys(table["method"])), columns=list(dict.fromkeys(table["value"]))
    )
    pivot["mean"] = pivot.mean(axis=1)
    return f"{_LABELS.get(metric, metric)}:\n" + pivot.round(digits).to_string()


def judge_notice(kind: str, out_dir: str | Path) -> str:
    """What needs a judge, and how to configure one (printed on offline runs)."""
    return (
        "No judge configured: CSR (control success, paper Appx. D) and FR (fluency, Appx. E) "
        "need an LLM judge and are NOT in these results.\n"
        "Reported instead (judge-free): p_v (and probe_logit) = the value probe's reading of each answer, "
        "words = answer length, distinct = distinct-word ratio (repetition proxy for fluency).\n"
        "To add CSR and FR, rerun the same command with a judge added; every stored answer is "
        "reused (same --out, values, methods and generation options):\n"
        f"  conva evaluate {kind} ... --out {out_dir} --base-url URL --judge-model NAME [--api-key-env VAR]\n"
        "  (the key is read from $OPENAI_API_KEY unless --api-key-env names another variable; "
        "OPENAI_BASE_URL and CONVA_JUDGE_MODEL work as defaults; a local server with no key "
        "takes any placeholder, e.g. OPENAI_API_KEY=EMPTY)."
    )


def _metrics(table: pd.DataFrame) -> list[str]:
    return ["csr", "fr"] if "csr" in table.columns else ["p_v", "distinct"]


def _value_order(values: Sequence[str]) -> list[str]:
    return sorted(values, key=lambda v: VALUES.index(v) if v in VALUES else len(VALUES))


def plot_comparison(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Per-value scores, one line per method (paper Fig. 2).

    A radar over the values in circumplex order when there are 3 or more values,
    else grouped bars. CSR and FR when judged, else P_V and distinctness.
    """
    values = _value_order(list(dict.fromkeys(table["value"])))
    methods = list(dict.fromkeys(table["method"]))
    metrics = _metrics(table)
    radar = len(values) >= 3
    fig = _new_figure(5.5 * len(metrics), 5.0)
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
        ax.set_title(_LABELS.get(metric, metric), fontsize=10)
    fig.axes[-1].legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return Path(path)


def plot_priority(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Grouped bars per value, one bar per method (paper Fig. 4)."""
    values = _value_order(list(dict.fromkeys(table["value"])))
    methods = list(dict.fromkeys(table["method"]))
    metric = _metrics(table)[0]
    fig = _new_figure(min(14.0, max(6.0, 0.25 * len(values) * len(methods) + 2.0)), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(methods)
    x = np.arange(len(values))
    for i, m in enumerate(methods):
        y = [float(table[(table.value == v) & (table.method == m)][metric].mean()) for v in values]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, y, width, label=m)
    ax.set_xticks(x, values, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title or "Control priority: ConVA under opposite and same-value prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return Path(path)


def plot_gate_histograms(scores: pd.DataFrame, path: str | Path) -> Path:
    """Gate score histograms per value: value-related vs unrelated prompt sets (paper Fig. 3).

    ``scores`` has columns ``value``, ``set`` and ``score`` (and ``threshold``).
    """
    values = list(dict.fromkeys(scores["value"]))
    cols = min(len(values), 3)
    rows = -(-len(values) // cols)
    fig = _new_figure(4.2 * cols, 3.2 * rows)
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
    fig.savefig(path, dpi=130)
    return Path(path)


def write_outputs(result: Any, *, settings: dict[str, Any]) -> None:
    """Write ``results.csv``, ``scores.csv``, ``table.txt``, ``run.json`` and the figure."""
    out = Path(result.out_dir)
    paths = {
        "answers": out / "answers.jsonl",
        "results": out / "results.csv",
        "scores": out / "scores.csv",
        "table": out / "table.txt",
        "run": out / "run.json",
        "figure": out / f"{result.kind}.png",
    }
    result.table.to_csv(paths["results"], index=False)
    result.scores.to_csv(paths["scores"], index=False)
    if not result.judged:
        result.notice = judge_notice(result.kind, out)
    parts = [format_table(result.table, m) for m in _metrics(result.table)]
    if result.judged:
        unparsed = int(result.table["csr_unparsed"].sum()), int(result.table["fr_unparsed"].sum())
        parts.append(
            f"unparseable judge labels (left out of the rates): CSR {unparsed[0]}, FR {unparsed[1]}"
        )
    if result.judged:
        parts.append(format_table(result.table, "p_v"))
    parts.append(format_table(result.table, "probe_logit", digits=1))
    parts.append(format_table(result.table, "words", digits=1))
    parts.append(
        "Post-processing, the same for every method: answers that hit the token limit are cut after "
        "their last complete sentence; answers that ended on their own are kept whole."
    )
    if result.notice:
        parts.append(result.notice)
    paths["table"].write_text("\n\n".join(parts) + "\n")
    plot = plot_comparison if result.kind == "comparison" else plot_priority
    plot(result.table, paths["figure"])
    paths["run"].write_text(
        json.dumps(
            {**settings, "judged": result.judged, "timing": result.timing}, indent=2, default=str
        )
    )
    result.paths = paths
