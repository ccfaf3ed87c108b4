"""Ablation of the target probability P0 (ConVA paper Eq. 6, Appx. I, Tab. 16).

ConVA moves every token's activation onto the probe's P_V = P0 contour, so P0
sets the control strength. For each value this answers the first --questions
held-out dilemma questions under the unsteered model and under ConVA at each
--p0 (ungated by default: --gate steers with the fitted gate), and reports, per
setting, CSR/FR when a judge is configured and always the judge-free measures:
the probe reading P_V of the answers, KL(base || steered) of the first answer
token on value-unrelated prompts and on the questions, the answers' perplexity
under the unsteered model and their distinct-2 ratio. The paper tuned P0 per
value in 0.88-0.975 for Llama-2-7b-chat; this is the basis for the embedded
model's default (conva_tl.pipeline.DEFAULT_P0).

Writes p0.csv (one row per value x setting), answers.csv, p0.png and run.json
to --out (default out/ablations/p0).

Usage:
    python analyses/ablate_p0.py [--values tradition stimulation] [--p0 0.6 0.75 0.9 0.95 0.99]
        [--questions 4] [--max-new-tokens 32] [--model NAME] [--vectors out/vectors] [--gate]
        [--judge-model NAME --base-url URL --api-key-env VAR]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import p0_report
from conva_tl.analysis.steering_reports import P0_GRID


def run(args: argparse.Namespace) -> int:
    s = C.steering_setup(args)
    return C.finish(args, s.model, p0_report(s, args.p0, mode=args.mode))


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_p0", __doc__)
    p.add_argument(
        "--p0",
        type=float,
        nargs="+",
        default=list(P0_GRID),
        help=f"target probabilities (default: {' '.join(f'{x:g}' for x in P0_GRID)})",
    )
    p.add_argument("--mode", choices=("per_token", "per_prompt"), default="per_token")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
