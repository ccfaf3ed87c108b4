"""Ablation of the training data: context-controlled pairs vs straightforward sentences (paper Sec. 4.2).

The paper's pairs keep the scenario and change only the stance on the value;
its "straightforward" ablation data are value-promoting and value-opposing
sentences written independently ("ConVA w.o. CCD"). Two questions:

1. Probes. For each value both sets are encoded (raw text, last token; shared
   activation cache); a probe per layer is fitted on each set's training split
   and tested on both sets' held-out splits. Cross-data transfer is the point:
   a straightforward probe tested on the pairs' held-out split shows whether it
   learned the value or the topic words that differ between its sentences.
2. Steering. ConVA with the pairs vectors (--vectors) and with the
   straightforward vectors (--vectors/straightforward, the layout of `conva
   evaluate`'s conva-sf), at --p0, ungated by default, answering the same
   questions; every answer read by the same pairs probe. CSR/FR with a judge,
   else the judge-free measures of ablate_p0.py.

Writes data.csv (steering: value x setting), transfer.csv (value x train x
test x layer), transfer_summary.csv, answers.csv, data.png, transfer.png and
run.json to --out (default out/ablations/data).

Usage:
    python analyses/ablate_data.py [--values tradition stimulation] [--p0 0.9] [--questions 4]
        [--max-new-tokens 32] [--layer-step 2] [--pairs N] [--vectors out/vectors]
"""

from __future__ import annotations

import _common as C
import pandas as pd

from conva_tl.analysis import run_settings, transfer_table
from conva_tl.methods import Base, ConVA
from conva_tl.pipeline import DEFAULT_P0

NAME = "data"
KINDS = ("pairs", "straightforward")


def run(args) -> int:
    s = C.steering_setup(args)
    model = s["model"]
    n_layers = int(model.cfg.n_layers)
    layers = C.fit_layers(args, n_layers)
    frames = []
    for v in s["values"]:
        data = {}
        for kind in KINDS:
            cs = C.contrast_data(v, kind, args.pairs)
            data[kind] = (C.activations_for(model, args, cs)[layers], cs.labels, cs.groups)
        frames.append(
            transfer_table(
                data, test_size=args.test_size, seed=args.seed, C=args.C, layers=layers
            ).assign(value=v)
        )
    transfer = pd.concat(frames)[["value", "train", "test", "layer", "accuracy"]]
    tsum = C.transfer_summary(transfer, n_layers)
    sf, _ = C.get_vectors(model, args, s["values"], kind="straightforward")
    gates = s["gates"] or {}
    methods = {}
    for v in s["values"]:
        sf_gate = gates.get(v)
        if (
            sf_gate is not None
            and sf[v].control_layers
            and sf_gate.block > min(sf[v].control_layers)
        ):
            sf_gate = None  # would read steered activations
        methods[v] = {
            "base": Base(),
            "pairs": ConVA(s["vectors"][v], p0=args.p0, gate=gates.get(v), name="conva-pairs"),
            "straightforward": ConVA(sf[v], p0=args.p0, gate=sf_gate, name="conva-sf"),
        }
    cols = {
        v: {
            "pairs": {"n_layers": len(s["vectors"][v].control_layers)},
            "straightforward": {"n_layers": len(sf[v].control_layers)},
            "base": {"n_layers": 0},
        }
        for v in s["values"]
    }
    res = run_settings(
        model, s["contexts"], methods, config=s["config"], judge=s["judge"], columns=cols
    )
    C.print_table(
        tsum,
        list(tsum.columns),
        title="Probe accuracy across data (fitted on `train`, tested on "
        "`test`'s held-out split; best_layer = best layer of train->train):",
    )
    C.print_table(
        res.table,
        ["value", "setting", "n_layers", *C.STEERING_COLUMNS[2:]],
        title=f"Steering with vectors from each data set (P0 {args.p0:g}, "
        f"{'gated' if args.gate else 'ungated'}; answers read by the pairs probe):",
    )
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
            title=f"Vectors from pairs vs straightforward data (P0 {args.p0:g}; dashed: base)",
        ),
        settings=C.run_settings(args, model),
        extra={"transfer": transfer, "transfer_summary": tsum, "answers": res.answers},
    )
    paths.append(
        C.plot_transfer(
            transfer,
            args.out / "transfer.png",
            title="Pairs vs straightforward probes (dashed: tested on the other data)",
        )
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__)
    C.probe_options(p, layer_step=2)
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
