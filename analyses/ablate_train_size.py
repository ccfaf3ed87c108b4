"""Ablation of the training-set size (ConVA paper Appx. B): how many pairs does a value vector need?

For each value the pair sentences are encoded once (raw text, last token,
every layer; shared cache with the other probe ablations). The held-out split
is fixed (the one `conva fit` uses: 20% of the pairs, seed 0); probes are
fitted on a random --fractions share of the training pairs (--repeats draws
each) and reported per layer: held-out accuracy on the fixed test pairs,
cosine of the resulting value vector v to the one from all training pairs
(cos_ref; 1 at 100%) and to the released vector refitted on every pair
(cos_released). The summary is at the best layer of the 100% fit, plus the
number of fitted layers that pass the control rule (accuracy > 0.9, last 5
excluded). Needs no generation and no judge.

Writes train_size.csv (per layer), summary.csv, train_size.png and run.json to
--out (default out/ablations/train_size).

Usage:
    python analyses/ablate_train_size.py [--values tradition stimulation] [--fractions 0.2 0.4 0.6 0.8 1.0]
        [--repeats 2] [--layers ...] [--layer-step 3] [--pairs N]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import train_size_report


def run(args: argparse.Namespace) -> int:
    return C.probe_report(args, train_size_report, fractions=args.fractions, repeats=args.repeats)


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_train_size", __doc__, generation=False, layer_step=3)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    p.add_argument(
        "--repeats", type=int, default=2, help="random draws per fraction below 100%% (default: 2)"
    )
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
