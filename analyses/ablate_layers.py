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

import _common as C

from conva_tl.analysis import sweep_layers
from conva_tl.pipeline import DEFAULT_P0

NAME = "layers"


def plot_accuracy(vectors, thresholds, exclude_last, path):
    fig = C.new_figure(8.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    n = 0
    for i, (v, vv) in enumerate(vectors.items()):
        ax.plot(range(vv.n_layers), vv.accuracy.tolist(), marker=".", color=f"C{i}", label=v)
        n = max(n, vv.n_layers)
    for t in thresholds:
        ax.axhline(t, color="k", ls=":", lw=0.8)
        ax.text(0, t, f" {t:g}", fontsize=7, va="bottom")
    if exclude_last:
        ax.axvspan(
            n - exclude_last - 0.5,
            n - 0.5,
            color="grey",
            alpha=0.2,
            label=f"last {exclude_last} layers",
        )
    ax.set_xlabel("layer")
    ax.set_ylabel("held-out probe accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Probe accuracy and the layer thresholds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def run(args) -> int:
    s = C.steering_setup(args)
    res = sweep_layers(
        s["model"],
        s["contexts"],
        s["vectors"],
        config=s["config"],
        thresholds=args.thresholds,
        threshold=args.threshold,
        exclude_last=args.exclude_last,
        p0=args.p0,
        gates=s["gates"],
        judge=s["judge"],
    )
    cols = (
        ["value", "setting", "n_layers", "layers"]
        + [c for c in C.STEERING_COLUMNS if c not in ("value", "setting")]
        + list(C.EPS_COLUMNS)
    )
    C.print_table(
        res.table,
        cols,
        title=f"Layer sweep (P0 {args.p0:g}, {'gated' if args.gate else 'ungated'}; "
        f"{args.questions} questions x {args.max_new_tokens} tokens per setting):",
    )
    print(C.EPS_NOTE)
    C.print_judge_status(res.judged)
    paths = C.write_outputs(
        args.out,
        NAME,
        res.table,
        lambda p: C.plot_measures(
            res.table,
            "setting",
            C.steering_metrics(res.judged),
            p,
            categorical=True,
            title=f"Control layers (P0 {args.p0:g}; dashed: unsteered base)",
        ),
        settings=C.run_settings(args, s["model"]),
        extra={"answers": res.answers},
    )
    paths.append(
        plot_accuracy(
            s["vectors"],
            sorted(set(args.thresholds) | {args.threshold}),
            args.exclude_last,
            args.out / "accuracy.png",
        )
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    p.add_argument(
        "--threshold", type=float, default=0.9, help="the default rule's threshold (default: 0.9)"
    )
    p.add_argument(
        "--exclude-last", type=int, default=5, help="layers never controlled (default: 5)"
    )
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
