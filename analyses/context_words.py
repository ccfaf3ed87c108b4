"""Frequent context word analysis of all ten values (ConVA paper Sec. 3.1, Tab. 2).

Runs :func:`conva_tl.analysis.context_word_table` on the shipped
context-controlled pairs and straightforward sentences, prints the table and
writes ``context_words.csv`` and ``context_words.png`` (common top-k words per
value, pairs vs straightforward) to ``--out``.

Usage:
    python analyses/context_words.py [--out out/context_words] [--top-k 25] [--values ...]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis.context_word_report import context_words_report


def run(args: argparse.Namespace) -> int:
    return C.show(args.out, context_words_report(args.values, top_k=args.top_k))


def main(argv: list[str] | None = None) -> int:
    """Run the analysis, print the table, write the CSV and the figure."""
    p = C.parser("context_words", __doc__, model=False, values=None)
    p.add_argument("--top-k", type=int, default=25, help="top words per side (default: 25)")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
