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

import argparse

import _common as C

from conva_tl.analysis import input_format_report


def run(args: argparse.Namespace) -> int:
    return C.probe_report(args, input_format_report)


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_input_format", __doc__, generation=False, layer_step=2)
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
