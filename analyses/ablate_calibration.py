"""Probe calibration against the regularisation strength C (the basis of conva fit's default C).

ConVA pushes each token onto the probe's P_V = P0 contour, which lies
logit(P0)/|w| beyond the decision boundary. A saturated probe (weak L2, large
|w|) puts that contour right at the boundary and P0 stops acting as a strength
knob; a calibrated one makes P0 mean what it says. For each value the pair
sentences are encoded once (raw text, last token, every layer; shared
activation cache) and, per C and layer, 5-fold grouped cross-validation gives
the held-out log-loss and accuracy, |w|, the margin logit(P0)/|w| and that
margin relative to the residual norm. The C with the lowest mean log-loss is
reported as the best-calibrated one. Needs no generation and no judge.

Writes calibration.csv (value x C x layer), summary.csv (per C), calibration.png
and run.json to --out (default out/ablations/calibration).

Usage:
    python analyses/ablate_calibration.py [--values tradition stimulation] [--Cs 10 1 0.3 0.1 0.03 0.01]
        [--layers ...] [--layer-step 3] [--folds 5] [--p0 0.9] [--raw-scale]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis import calibration_report


def run(args: argparse.Namespace) -> int:
    return C.probe_report(
        args,
        calibration_report,
        Cs=args.Cs,
        folds=args.folds,
        p0=args.p0,
        standardize=not args.raw_scale,
    )


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_calibration", __doc__, generation=False, layer_step=3)
    p.add_argument(
        "--Cs",
        type=float,
        nargs="+",
        default=[10.0, 1.0, 0.3, 0.1, 0.03, 0.01],
        help="inverse L2 strengths to compare (default: 10 1 0.3 0.1 0.03 0.01)",
    )
    p.add_argument(
        "--folds", type=int, default=5, help="grouped cross-validation folds (default: 5)"
    )
    p.add_argument(
        "--p0", type=float, default=0.9, help="target probability for the margin (default: 0.9)"
    )
    p.add_argument(
        "--raw-scale", action="store_true", help="fit on raw activations (the authors' code)"
    )
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
