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
import json
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from conva_tl.analysis import (  # noqa: E402
    circumplex_test,
    cosine_matrices,
    mds_embedding,
    procrustes_to_circle,
    structure_by_layer,
)
from conva_tl.analysis.structure import circumplex_order  # noqa: E402
from conva_tl.errors import ConvaError  # noqa: E402
from conva_tl.model import load_model  # noqa: E402
from conva_tl.pipeline import load_or_fit  # noqa: E402
from conva_tl.plotting import (  # noqa: E402
    plot_accuracy_curves,
    plot_cosine_grid,
    plot_cosine_heatmap,
    plot_mds,
    plot_structure_by_layer,
)
from conva_tl.values import VALUES  # noqa: E402

SHOWN = [
    "statistic",
    "p_value",
    "p_fdr",
    "within",
    "between",
    "group_gap",
    "group_p_value",
    "opposite_cos",
    "mean_accuracy",
    "rank",
]


def main(argv: list[str] | None = None) -> int:
    """Run the structure analysis; print the ranking; write CSVs and figures. 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model name or folder (default: embedded SmolLM2)"
    )
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")
    parser.add_argument(
        "--vectors",
        type=Path,
        default=Path("out/vectors"),
        help="artifact folder of fitted vectors (default: out/vectors)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/value_structure"),
        help="output folder (default: out/value_structure)",
    )
    parser.add_argument(
        "--values", nargs="+", metavar="V", help="values (default: all ten; at least 3)"
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=None,
        help="layer of the single heatmap (default: the middle layer, as the paper's Fig. 5)",
    )
    parser.add_argument(
        "--n-permutations", type=int, default=10000, help="label permutations (default: 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="permutation seed (default: 0)")
    parser.add_argument(
        "--use",
        choices=("v", "mean_diff"),
        default="v",
        help="probe normal v (default, the paper) or the CAA mean difference",
    )
    parser.add_argument(
        "--top", type=int, default=5, help="how many best layers to print (default: 5)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    try:
        model = load_model(args.model, device=args.device)
        vectors = load_or_fit(model, args.vectors, args.values or VALUES)
        names = circumplex_order(list(vectors))
        n_layers = int(model.cfg.n_layers)
        layer = n_layers // 2 if args.layer is None else args.layer
        if not 0 <= layer < n_layers:
            raise ConvaError(f"--layer must be in 0..{n_layers - 1}, got {layer}")
        cos = cosine_matrices(vectors, use=args.use)
        df = structure_by_layer(
            vectors, use=args.use, n_permutations=args.n_permutations, seed=args.seed
        )
        at_layer = circumplex_test(
            cos[layer], names, n_permutations=args.n_permutations, seed=args.seed
        )
    except ConvaError as exc:
        print(f"value_structure: error: {exc}", file=sys.stderr)
        return 2

    # Constant cosines (e.g. all-zero probes) give NaN statistics everywhere.
    best = int(df["statistic"].idxmin()) if df["statistic"].notna().any() else layer
    emb = mds_embedding(cos[best])
    fit = procrustes_to_circle(
        emb, names, n_permutations=min(args.n_permutations, 2000), seed=args.seed
    )

    ranked = df.sort_values(["rank", "p_value"])
    with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
        print(
            f"Circumplex structure of {len(names)} value vectors ({args.use}), {n_layers} layers, "
            f"{args.n_permutations} label permutations\n"
        )
        print(
            "Most circumplex-like layers (spearman r of cosine vs circumplex distance; lower = more):"
        )
        print(ranked[SHOWN].head(args.top).to_string())
        print("\nAll layers:")
        print(df[SHOWN].to_string())
    n_sig = int((df["p_value"] < 0.05).sum())
    n_fdr = int((df["p_fdr"] < 0.05).sum())
    print(f"\n{n_sig}/{len(df)} layers have p < 0.05; {n_fdr} survive Benjamini-Hochberg at 0.05.")
    print(
        f"Layer {layer}: r = {at_layer['statistic']:.3f} (p = {at_layer['p_value']:.4f}), within-group "
        f"{at_layer['within']:.3f} vs between {at_layer['between']:.3f}; opposites: "
        + ", ".join(f"{k} {v:+.3f}" for k, v in at_layer["opposites"].items())
    )
    print(
        f"MDS at layer {best}: Procrustes disparity to the circle {fit['disparity']:.3f} "
        f"(permutation p = {fit['p_value']:.4f})"
    )

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "structure_by_layer.csv")
    long = [
        {"layer": L, "value_a": a, "value_b": b, "cosine": float(cos[L, i, j])}
        for L in range(cos.shape[0])
        for i, a in enumerate(names)
        for j, b in enumerate(names)
    ]
    pd.DataFrame(long).to_csv(out / "cosine_matrices.csv", index=False)
    written = [out / "structure_by_layer.csv", out / "cosine_matrices.csv"]
    figures = {
        f"cosine_layer{layer}.png": plot_cosine_heatmap(cos[layer], names, layer),
        f"cosine_layer{best}.png": plot_cosine_heatmap(cos[best], names, best),
        "cosine_grid.png": plot_cosine_grid(cos, names),
        "structure_by_layer.png": plot_structure_by_layer(df),
        "accuracy.png": plot_accuracy_curves(vectors),
        f"mds_layer{best}.png": plot_mds(emb, names, fit=fit, layer=best),
    }
    for fname, fig in figures.items():
        fig.savefig(out / fname, dpi=130)
        written.append(out / fname)
    mds_json = out / f"mds_layer{best}.json"
    mds_json.write_text(
        json.dumps(
            {
                "layer": best,
                "values": names,
                "embedding": emb.tolist(),
                "aligned": fit["aligned"].tolist(),
                "disparity": fit["disparity"],
                "p_value": fit["p_value"],
                "reflected": fit["reflected"],
            },
            indent=2,
        )
    )
    written.append(mds_json)
    print("\n" + "\n".join(f"wrote {p}" for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
