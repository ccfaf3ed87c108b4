"""Frequent context word analysis of all ten values (ConVA paper Sec. 3.1, Tab. 2).

Runs :func:`conva_tl.analysis.context_word_table` on the shipped
context-controlled pairs and straightforward sentences, prints the table and
writes ``context_words.csv`` and ``context_words.png`` (common top-k words per
value, pairs vs straightforward) to ``--out``.

Usage:
    python analyses/context_words.py [--out out/context_words] [--top-k 25]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from conva_tl.analysis import KINDS, context_word_table, format_table  # noqa: E402
from conva_tl.values import VALUES  # noqa: E402


def plot_common(df: pd.DataFrame, top_k: int, path: Path) -> None:
    """Grouped bars of ``n_common`` per value, one bar per data kind."""
    pivot = df.pivot(index="value", columns="kind", values="n_common").reindex(list(VALUES))
    x = np.arange(len(pivot))
    width = 0.8 / len(KINDS)
    fig, ax = plt.subplots(figsize=(10, 4))
    labels = {
        "pairs": "context-controlled pairs (free-worded)",
        "pairs-minimal": "context-controlled pairs (minimal edits)",
        "straightforward": "straightforward",
    }
    for i, kind in enumerate(KINDS):
        offset = (i - (len(KINDS) - 1) / 2) * width
        bars = ax.bar(x + offset, pivot[kind], width, label=labels[kind])
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, pivot.index, rotation=30, ha="right")
    ax.set_ylabel(f"common words in both top-{top_k} lists")
    ax.set_ylim(0, top_k)
    ax.set_title("Frequent context words shared by positive and negative samples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the analysis, print the table, write the CSV and the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/context_words"),
        help="output folder (default: out/context_words)",
    )
    parser.add_argument("--top-k", type=int, default=25, help="top words per side (default: 25)")
    args = parser.parse_args(argv)

    df = context_word_table(VALUES, KINDS, top_k=args.top_k)
    print(format_table(df))

    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out / "context_words.csv", args.out / "context_words.png"
    df.to_csv(csv_path, index=False)
    plot_common(df, args.top_k, png_path)
    print(f"\nwrote {csv_path}\nwrote {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
