"""Value structure of the model vs Schwartz's circumplex (ConVA paper Sec. 4.5, Fig. 5, Appx. F).

Computes the cosine similarity of the value vectors at every layer and tests,
layer by layer, whether it follows the circumplex (rank correlation with the
distance around the circle, permutation p-value over value labels, within- vs
between-group similarity, cosine of opposites; see
:mod:`conva_tl.analysis.structure`). Writes to ``--out``:

* ``structure_by_layer.csv``: one row per layer with the statistics and rank;
* ``cosine_matrices.csv``: every layer's cosine matrix (long format);
* ``cosine_layer{L}.png``: the heatmap at ``--layer`` (Fig. 5 style) and at
  the most circumplex-like layer; ``cosine_grid.png``: all layers (Appx. F);
* ``structure_by_layer.png``, ``accuracy.png``;
* ``mds_layer{B}.png`` and ``mds_layer{B}.json``: classical MDS at the most
  circumplex-like layer B, Procrustes-fitted to the theoretical circle.

Vectors come from ``--vectors`` (what ``conva fit`` writes); values missing
there are fitted first and saved in that folder (gates are not fitted).

Usage:
    python analyses/value_structure.py [--vectors out/vectors] [--out out/value_structure]
        [--layer 15] [--values ...] [--n-permutations 10000] [--use v|mean_diff]
"""

from __future__ import annotations

import argparse

import _common as C

from conva_tl.analysis.vector_reports import value_structure_report


def run(args: argparse.Namespace) -> int:
    _, vectors = C.fitted_vectors(args)
    report = value_structure_report(
        vectors,
        layer=args.layer,
        use=args.use,
        n_permutations=args.n_permutations,
        seed=args.seed,
        top=args.top,
    )
    return C.show(args.out, report)


def main(argv: list[str] | None = None) -> int:
    """Run the structure analysis; print the ranking; write CSVs and figures. 0 on success."""
    p = C.parser("value_structure", __doc__, values=None, use=True)
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="layer of the single heatmap (default: the middle layer, as the paper's Fig. 5)",
    )
    p.add_argument(
        "--n-permutations", type=int, default=10000, help="label permutations (default: 10000)"
    )
    p.add_argument("--seed", type=int, default=0, help="permutation seed (default: 0)")
    p.add_argument("--top", type=int, default=5, help="how many best layers to print (default: 5)")
    return C.run(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
