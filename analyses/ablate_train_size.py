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

import _common as C
import numpy as np
import pandas as pd

from conva_tl.analysis import fit_layer_probes, train_size_sweep
from conva_tl.probes import LayerRule

NAME = "train_size"


def summarize(df: pd.DataFrame, n_layers: int, rule: LayerRule) -> pd.DataFrame:
    rows = []
    for value, g in df.groupby("value", sort=False):
        full = g[g.fraction == g.fraction.max()].groupby("layer")["accuracy"].mean()
        best = int(full.idxmax())
        for f, h in g.groupby("fraction"):
            at = h[h.layer == best]
            ok = h[(h.layer < n_layers - rule.exclude_last) & (h.accuracy > rule.threshold)]
            passing = ok.groupby("repeat").size().reindex(h.repeat.unique(), fill_value=0)
            rows.append(
                {
                    "value": value,
                    "fraction": f,
                    "n_pairs": int(h.n_pairs.iloc[0]),
                    "best_layer": best,
                    "accuracy": at.accuracy.mean(),
                    "accuracy_min": at.accuracy.min(),
                    "accuracy_max": at.accuracy.max(),
                    "cos_ref": at.cos_ref.mean(),
                    "cos_released": at.cos_released.mean() if "cos_released" in at else np.nan,
                    "layers_passing": float(np.mean(passing)),
                    "mean_accuracy": h.accuracy.mean(),
                }
            )
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, path):
    fig = C.new_figure(12.0, 3.6)
    panels = [
        ("accuracy", "held-out accuracy at the best layer"),
        ("cos_ref", "cos(v, v from all training pairs)"),
        ("layers_passing", "fitted layers passing acc > 0.9 (not last 5)"),
    ]
    for k, (col, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for i, (v, g) in enumerate(summary.groupby("value", sort=False)):
            ax.plot(g.n_pairs, g[col], marker="o", color=f"C{i}", label=v)
            if col == "accuracy":
                ax.fill_between(
                    g.n_pairs, g.accuracy_min, g.accuracy_max, color=f"C{i}", alpha=0.15
                )
        ax.set(xlabel="training pairs", title=title)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle("Training-set size (fixed held-out pairs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def run(args) -> int:
    model = C.load_subject(args)
    n_layers = int(model.cfg.n_layers)
    layers = C.fit_layers(args, n_layers)
    frames = []
    for v in C.values_of(args):
        cs = C.contrast_data(v, "pairs", args.pairs)
        acts = C.activations_for(model, args, cs)[layers]
        released, _ = fit_layer_probes(acts, cs.labels, np.arange(len(cs)), C=args.C)
        frames.append(
            train_size_sweep(
                acts,
                cs.labels,
                cs.groups,
                value=v,
                fractions=args.fractions,
                repeats=args.repeats,
                test_size=args.test_size,
                seed=args.seed,
                C=args.C,
                layers=layers,
                released_w=released,
            )
        )
    df = pd.concat(frames)
    summary = summarize(df, n_layers, LayerRule())
    C.print_table(
        summary,
        list(summary.columns),
        title=f"Training-set size (layers {layers[0]}..{layers[-1]} "
        f"step {args.layer_step if not args.layers else '-'}; {args.repeats} draws per fraction):",
    )
    print("\nJudge-free by design: probe accuracy and vector direction only.")
    paths = C.write_outputs(
        args.out,
        NAME,
        df,
        lambda p: plot(summary, p),
        settings=C.run_settings(args, model),
        extra={"summary": summary},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__, generation=False, judge=False)
    C.probe_options(p, layer_step=3)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    p.add_argument(
        "--repeats", type=int, default=2, help="random draws per fraction below 100%% (default: 2)"
    )
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
