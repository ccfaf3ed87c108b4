"""Ablation of the control mode: per-token (the paper) vs per-prompt (the authors' code).

The paper computes eps for every token at every controlled layer (Eq. 6); the
authors' code computes one eps per prompt and layer from the chat prompt's
last token and adds it unchanged to every position (REFERENCE.md). Both run
here at --p0 (default: conva_tl.pipeline.DEFAULT_P0) with the trace on, and
each reports CSR/FR with a judge, else the judge-free measures (probe reading
P_V of the answers, KL on unrelated prompts and on the questions, perplexity
under the base model, distinct-2), plus the control actually applied: mean
|eps| over all traced (token, layer) cells, over prompt tokens and over
generated tokens, and the share of cells moved.

Writes control_mode.csv, answers.csv, control_mode.png and run.json to --out
(default out/ablations/control_mode).

Usage:
    python analyses/ablate_control_mode.py [--values tradition stimulation] [--p0 0.9] [--questions 4]
        [--max-new-tokens 32] [--vectors out/vectors] [--gate]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import control_mode_report
from conva_tl.pipeline import DEFAULT_P0


def run(args: argparse.Namespace) -> int:
    s = C.steering_setup(args)
    return C.finish(args, s.model, control_mode_report(s, p0=args.p0))


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_control_mode", __doc__)
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
