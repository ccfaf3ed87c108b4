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

import argparse

import _common as C

from conva_tl.analysis import pooling_report


def run(args: argparse.Namespace) -> int:
    return C.probe_report(args, pooling_report)


def main(argv: list[str] | None = None) -> int:
    p = C.parser("ablate_pooling", __doc__, generation=False, layer_step=2)
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
