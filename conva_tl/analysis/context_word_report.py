"""The frequent context word analysis (paper Sec. 3.1, Tab. 2) as a report with its figure.

:func:`context_words_report` runs :func:`conva_tl.analysis.context_words.context_word_table`
on the shipped data and returns an :class:`~conva_tl.report.Report`
(``context_words.csv``, ``context_words.png``: common top-k words per value and
data kind) for ``analyses/context_words.py`` to print and write.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from conva_tl.analysis.context_words import KINDS, context_word_table, context_word_text
from conva_tl.report import Report, new_figure
from conva_tl.values import VALUES, canonical_value

__all__ = ["KIND_LABELS", "plot_common_words", "context_words_report"]

#: Legend labels of the data kinds.
KIND_LABELS = {
    "pairs": "context-controlled pairs (free-worded)",
    "pairs-minimal": "context-controlled pairs (minimal edits)",
    "straightforward": "straightforward",
}


def plot_common_words(df: pd.DataFrame, top_k: int) -> Figure:
    """Grouped bars of ``n_common`` per value (in ``df``'s value order), one bar per data kind."""
    kinds = list(dict.fromkeys(df["kind"]))
    pivot = df.pivot(index="value", columns="kind", values="n_common").reindex(
        list(dict.fromkeys(df["value"]))
    )
    x = np.arange(len(pivot))
    width = 0.8 / len(kinds)
    fig = new_figure(10.0, 4.0)
    ax = fig.add_subplot()
    for i, kind in enumerate(kinds):
        offset = (i - (len(kinds) - 1) / 2) * width
        bars = ax.bar(x + offset, pivot[kind], width, label=KIND_LABELS.get(kind, kind))
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, pivot.index, rotation=30, ha="right")
    ax.set_ylabel(f"common words in both top-{top_k} lists")
    ax.set_ylim(0, top_k)
    ax.set_title("Frequent context words shared by positive and negative samples")
    ax.legend()
    fig.tight_layout()
    return fig


def context_words_report(
    values: Sequence[str] | None = None, kinds: Sequence[str] = KINDS, *, top_k: int = 25
) -> Report:
    """The context word table of ``values`` (default: all ten) x ``kinds``, printed fixed-width."""
    names = [canonical_value(v) for v in values] if values else list(VALUES)
    df = context_word_table(names, kinds, top_k=top_k)
    return Report(
        "context_words",
        df,
        context_word_text(df),
        figures={"context_words.png": lambda: plot_common_words(df, top_k)},
        dpi=150,
    )
