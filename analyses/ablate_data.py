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

import argparse

import _common as C

from conva_tl.analysis import data_report
from conva_tl.pipeline import DEFAULT_P0


def run(args: argparse.Namespace) -> int:
    s = C.steering_setup(args)
    return C.finish(args, s.model, data_report(s, C.probe_sweep(args, s.model), p0=args.p0))


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_data", __doc__, layer_step=2)
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
