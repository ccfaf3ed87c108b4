"""Ablation of the probe's input format: raw sentences (the paper) vs chat-formatted sentences.

The paper fits its probes on raw sentences, but steering reads chat-formatted
prompts: a train/apply mismatch (REFERENCE.md). For each value the pair
sentences are encoded as raw text and as a chat user turn (the tokenizer's
template with the generation prompt), last token, every layer (shared
activation cache). A probe per layer is fitted on each format's training pairs
(the `conva fit` split) and tested on both formats' held-out pairs: e.g. a
probe fitted on raw sentences evaluated on chat-formatted ones.
Needs no generation and no judge.

Writes input_format.csv (value x train x test x layer), summary.csv,
input_format.png and run.json to --out (default out/ablations/input_format).

Usage:
    python analyses/ablate_input_format.py [--values tradition stimulation] [--layers ...] [--layer-step 2]
        [--pairs N]
"""

from __future__ import annotations

import _common as C
import pandas as pd

from conva_tl.analysis import transfer_table

NAME = "input_format"
VIEWS = ("raw", "chat")


def run(args) -> int:
    model = C.load_subject(args)
    n_layers = int(model.cfg.n_layers)
    layers = C.fit_layers(args, n_layers)
    frames = []
    for v in C.values_of(args):
        cs = C.contrast_data(v, "pairs", args.pairs)
        data = {
            view: (
                C.activations_for(model, args, cs, input_format=view)[layers],
                cs.labels,
                cs.groups,
            )
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
        title="Input format: held-out accuracy (probe fitted on "
        "`train` format, tested on `test` format; best_layer = best layer of train->train):",
    )
    print("\nJudge-free by design: probe accuracy only.")
    paths = C.write_outputs(
        args.out,
        NAME,
        df,
        lambda p: C.plot_transfer(
            df, p, title="Input format: raw vs chat template (dashed: tested on the other format)"
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
