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

import _common as C
import pandas as pd

from conva_tl.analysis.calibration import best_C, calibration_table

NAME = "calibration"


def run(args) -> int:
    model = C.load_subject(args)
    layers = C.fit_layers(args, int(model.cfg.n_layers))
    frames = []
    for v in C.values_of(args):
        cs = C.contrast_data(v, "pairs", args.pairs)
        acts = C.activations_for(model, args, cs)
        frames.append(
            calibration_table(
                acts,
                cs.labels,
                cs.groups,
                args.Cs,
                layers=layers,
                folds=args.folds,
                p0=args.p0,
                standardize=not args.raw_scale,
            ).assign(value=v)
        )
    df = pd.concat(frames)[
        [
            "value",
            "C",
            "layer",
            "logloss",
            "accuracy",
            "w_norm",
            "margin",
            "resid_norm",
            "margin_rel",
        ]
    ]
    summary = (
        df.groupby("C", sort=False)[["logloss", "accuracy", "w_norm", "margin", "margin_rel"]]
        .mean()
        .reset_index()
    )
    C.print_table(
        summary,
        list(summary.columns),
        title=f"Probe calibration ({args.folds}-fold grouped CV, mean over "
        f"values and layers {layers[0]}..{layers[-1]}; margin = logit({args.p0})/|w|):",
    )
    print(
        f"\nbest-calibrated C (lowest mean log-loss): {best_C(df):g}"
        f"{' on raw activations' if args.raw_scale else ' on standardized activations'}"
    )
    print("Judge-free by design: probe calibration only.")
    paths = C.write_outputs(
        args.out,
        NAME,
        df,
        lambda p: _plot(df, p),
        settings=C.run_settings(args, model),
        extra={"summary": summary},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _plot(df: pd.DataFrame, path):
    fig = C.new_figure(12.0, 3.6)
    per_c = (
        df.groupby(["value", "C"], sort=False)[["logloss", "accuracy", "margin_rel"]]
        .mean()
        .reset_index()
    )
    for k, (col, label) in enumerate(
        [
            ("logloss", "CV log-loss (lower = better calibrated)"),
            ("accuracy", "CV accuracy"),
            ("margin_rel", "P0 margin / residual norm"),
        ]
    ):
        ax = fig.add_subplot(1, 3, k + 1)
        for i, (value, g) in enumerate(per_c.groupby("value", sort=False)):
            ax.plot(g["C"], g[col], marker="o", color=f"C{i}", label=value)
        ax.set_xscale("log")
        ax.set_xlabel("C")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(
        "Probe regularisation: calibration, accuracy and control margin (mean over layers)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__, generation=False, judge=False)
    C.probe_options(p, layer_step=3)
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
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
