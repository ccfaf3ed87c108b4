"""Logit lens of value vectors (ConVA paper Sec. 3.1, Tab. 3).

Decodes each value's vector through the model's final norm gain and
unembedding (see :mod:`conva_tl.analysis.logit_lens` for the convention) at its
best layer and at a few chosen layers, prints the top and bottom tokens and
writes them to ``logit_lens.csv`` in ``--out``.

Vectors come from ``--vectors`` (the folder ``conva fit`` writes); values
missing there are fitted first and saved in that folder (gates are not fitted).

Usage:
    python analyses/logit_lens.py [--vectors out/vectors] [--out out/logit_lens]
        [--values security power ...] [--layers 8 15 22] [--k 10]
        [--use v|mean_diff] [--no-final-norm] [--model NAME_OR_FOLDER]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis.vector_reports import logit_lens_report


def run(args: argparse.Namespace) -> int:
    model, vectors = C.fitted_vectors(args)
    report = logit_lens_report(
        model, vectors, args.layers, k=args.k, use=args.use, apply_final_norm=not args.no_final_norm
    )
    return C.show(args.out, report)


def main(argv: list[str] | None = None) -> int:
    """Run the logit lens; print the table and write the CSV. 0 on success, 2 on bad input."""
    p = C.parser("logit_lens", __doc__, values=None, use=True)
    p.add_argument(
        "--layers",
        nargs="+",
        type=int,
        metavar="L",
        help="layers decoded besides each value's best (default: 1/4, 1/2, 3/4 depth)",
    )
    p.add_argument("--k", type=int, default=10, help="tokens per side (default: 10)")
    p.add_argument(
        "--no-final-norm",
        action="store_true",
        help="project through W_U only, without the final norm's gain",
    )
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
