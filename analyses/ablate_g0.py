"""Ablation of the gate threshold g0 (ConVA paper Eq. 5, Appx. I: g0 in 0.007-0.6 per value).

The gate g(x) decides per prompt whether to steer. For each value this scores
three prompt sets with the value's fitted activation gate (conva_tl.gate,
fitted with `conva fit`, reused from --vectors): the value's held-out eval
dilemma questions (should open), the shipped value-unrelated prompts (should
stay closed; NOTE: they are the gate's own training negatives, so they flatter
it) and multiple-choice prompts (conva_tl.datasets.load_mc; never seen by the
gate). For every g0 it reports the share of each set gated open and the mean
KL(base || steered) of the first answer token under gated ConVA at --p0.

No generation is needed: the gate decides before the first controlled layer,
so a closed prompt's output is exactly the base model's and KL(g0) is the
ungated KL of the prompts whose score exceeds g0 (one steered pass per set).

Writes g0.csv (value x g0), gate_scores.csv (per prompt: score, ungated KL),
auroc.csv, g0.png and run.json to --out (default out/ablations/g0).

Usage:
    python analyses/ablate_g0.py [--values tradition stimulation] [--g0 0.05 0.1 ... 0.95]
        [--questions 12] [--unrelated 16] [--mc 16] [--p0 0.9] [--vectors out/vectors]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import g0_report
from conva_tl.analysis.steering_reports import G0_GRID
from conva_tl.pipeline import DEFAULT_P0
from conva_tl.values import canonical_value


def run(args: argparse.Namespace) -> int:
    model = C.subject(args)
    values = [canonical_value(v) for v in args.values]
    vectors, gates = C.vector_source(args).load(model, values, gates=True)
    report = g0_report(
        model,
        {v: vectors[v] for v in values},
        gates,
        args.g0,
        n_questions=args.questions,
        n_unrelated=args.unrelated,
        n_mc=args.mc,
        p0=args.p0,
        batch_size=args.batch_size,
    )
    return C.finish(args, model, report)


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_g0", __doc__, generation=False)
    p.add_argument("--g0", type=float, nargs="+", default=list(G0_GRID), help="gate thresholds")
    p.add_argument(
        "--questions", type=int, default=12, help="value eval questions per value (default: 12)"
    )
    p.add_argument("--unrelated", type=int, default=16, help="unrelated prompts (default: 16)")
    p.add_argument(
        "--mc", type=int, default=16, help="multiple-choice prompts (default: 16; 0 = none)"
    )
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
