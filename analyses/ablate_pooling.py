"""Ablation of the pooling of probe activations: last token (the authors' code) vs mean over tokens.

For each value the pair sentences are encoded twice (raw text, every layer;
shared activation cache): the residual stream at the last token, and its mean
over all tokens. A probe per layer is fitted on each view's training pairs
(the `conva fit` split: 20% of pairs held out, seed 0) and tested on both
views' held-out pairs. Transfer matters for steering: ConVA applies a probe
fitted at one position to every token, so a last-token probe that also reads
mean-pooled activations is closer to what per-token control assumes.
Needs no generation and no judge.

Writes pooling.csv (value x train x test x layer), summary.csv, pooling.png
and run.json to --out (default out/ablations/pooling).

Usage:
    python analyses/ablate_pooling.py [--values tradition stimulation] [--layers ...] [--layer-step 2] [--pairs N]
"""

from __future__ import annotations

import _common as C
import pandas as pd

from conva_tl.analysis import transfer_table

NAME = "pooling"
VIEWS = ("last", "mean")


def run(args) -> int:
    model = C.load_subject(args)
    n_layers = int(model.cfg.n_layers)
    layers = C.fit_layers(args, n_layers)
    frames = []
    for v in C.values_of(args):
        cs = C.contrast_data(v, "pairs", args.pairs)
        data = {
            view: (C.activations_for(model, args, cs, pooling=view)[layers], cs.labels, cs.groups)
            for view in VIEWS
        }
        frames.append(
            transfer_table(
                data, test_size=args.test_size, seed=args.seed, C=args.C, layers=layers
            ).assign(value=v)
        )
    df = pd.concat(frames)[["value", "train", "test", "layer", "accuracy"]]
    summary = C.transfer_summary(df, n_layers)
    C.print_table(
        summary,
        list(summary.columns),
        title="Pooling: held-out accuracy (probe fitted on `train` "
        "pooling, tested on `test` pooling; best_layer = best layer of train->train):",
    )
    print("\nJudge-free by design: probe accuracy only.")
    paths = C.write_outputs(
        args.out,
        NAME,
        df,
        lambda p: C.plot_transfer(
            df,
            p,
            title="Pooling: last token vs mean over tokens (dashed: tested on the other pooling)",
        ),
        settings=C.run_settings(args, model),
        extra={"summary": summary},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__, generation=False, judge=False)
    C.probe_options(p, layer_step=2)
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
