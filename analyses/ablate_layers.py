"""Ablation of the control layers (ConVA paper Sec. 3.2: accuracy > 0.9, last 5 excluded).

Which layers to steer: the single most accurate layer; every layer whose
held-out probe accuracy exceeds a threshold (--thresholds, default 0.8 0.85 0.9
0.95; 0.9 is the paper's rule and the toolkit's default control layers),
always excluding the last --exclude-last layers; and the default threshold
*with* the last layers included. Settings that select the same layers are
measured once. ConVA at --p0 (default: conva_tl.pipeline.DEFAULT_P0), ungated
by default. Measures as in ablate_p0.py: CSR/FR with a judge, else the probe
reading P_V of the answers, KL(base || steered) on unrelated prompts and on
the questions, answer perplexity under the base model, distinct-2.

Writes layers.csv, answers.csv, layers.png (measures per setting),
accuracy.png (held-out accuracy per layer with the thresholds) and run.json to
--out (default out/ablations/layers).

Usage:
    python analyses/ablate_layers.py [--values tradition stimulation] [--thresholds 0.8 0.85 0.9 0.95]
        [--exclude-last 5] [--p0 0.9] [--questions 4] [--max-new-tokens 32] [--vectors out/vectors]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import layers_report
from conva_tl.analysis.steering_sweeps import LAYER_THRESHOLDS
from conva_tl.pipeline import DEFAULT_P0
from conva_tl.probes import LayerRule


def run(args: argparse.Namespace) -> int:
    s = C.steering_setup(args)
    rule = LayerRule(args.threshold, args.exclude_last)
    return C.finish(args, s.model, layers_report(s, args.thresholds, rule=rule, p0=args.p0))


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_layers", __doc__)
    p.add_argument("--thresholds", type=float, nargs="+", default=list(LAYER_THRESHOLDS))
    p.add_argument(
        "--threshold",
        type=float,
        default=LayerRule.threshold,
        help=f"the default rule's threshold (default: {LayerRule.threshold})",
    )
    p.add_argument(
        "--exclude-last",
        type=int,
        default=LayerRule.exclude_last,
        help=f"layers never controlled (default: {LayerRule.exclude_last})",
    )
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
