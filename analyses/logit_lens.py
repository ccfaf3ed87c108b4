"""Logit lens of value vectors (ConVA paper Sec. 3.1, Tab. 3).

Decodes each value's vector through the model's final norm gain and
unembedding (see :mod:`conva_tl.analysis.logit_lens` for the convention) at its
best layer and at a few chosen layers, prints the top and bottom tokens and
writes them to ``logit_lens.csv`` in ``--out``.

Vectors come from ``--vectors`` (the folder ``conva fit`` writes); values
missing there are fitted first and saved in that folder (gates are not fitted).

Usage:
    python analyses/logit_lens.py [--vectors out/vectors] [--out out/logit_lens]
        [--values security power ...] [--layers 8 15 22] [--k 10]
        [--use v|mean_diff] [--no-final-norm] [--model NAME_OR_FOLDER]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from conva_tl.analysis import decode_vectors, format_logit_lens
from conva_tl.errors import ConvaError
from conva_tl.model import load_model
from conva_tl.pipeline import load_or_fit
from conva_tl.values import VALUES


def default_layers(n_layers: int) -> list[int]:
    """A quarter, half and three quarters of the way through the model."""
    return sorted({n_layers // 4, n_layers // 2, (3 * n_layers) // 4})


def main(argv: list[str] | None = None) -> int:
    """Run the logit lens; print the table and write the CSV. 0 on success, 2 on bad input."""
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
        default=Path("out/logit_lens"),
        help="output folder (default: out/logit_lens)",
    )
    parser.add_argument("--values", nargs="+", metavar="V", help="values (default: all ten)")
    parser.add_argument(
        "--layers",
        nargs="+",
        type=int,
        metavar="L",
        help="layers decoded besides each value's best (default: 1/4, 1/2, 3/4 depth)",
    )
    parser.add_argument("--k", type=int, default=10, help="tokens per side (default: 10)")
    parser.add_argument(
        "--use",
        choices=("v", "mean_diff"),
        default="v",
        help="probe normal v (default, the paper) or the CAA mean difference",
    )
    parser.add_argument(
        "--no-final-norm",
        action="store_true",
        help="project through W_U only, without the final norm's gain",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    try:
        model = load_model(args.model, device=args.device)
        vectors = load_or_fit(model, args.vectors, args.values or VALUES)
        layers = args.layers or default_layers(int(model.cfg.n_layers))
        kw = {"k": args.k, "apply_final_norm": not args.no_final_norm, "use": args.use}
        best = decode_vectors(model, vectors, layers="best", **kw)
        chosen = decode_vectors(model, vectors, layers=layers, **kw)
    except ConvaError as exc:
        print(f"logit_lens: error: {exc}", file=sys.stderr)
        return 2

    norm = "W_U only" if args.no_final_norm else "final-norm gain, then W_U"
    print(f"Logit lens of value vectors ({args.use}; {norm}), top/bottom {args.k} tokens\n")
    print("== each value at its best layer ==")
    print(format_logit_lens(best))
    for layer in sorted(set(layers)):
        print(f"\n== layer {layer} ==")
        print(format_logit_lens(chosen[chosen["layer"] == layer]))

    df = pd.concat([best, chosen]).drop_duplicates(["value", "layer", "side", "rank"])
    df = df.sort_values(["value", "layer", "side", "rank"], key=_value_then_natural).reset_index(
        drop=True
    )
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "logit_lens.csv"
    df.to_csv(csv_path, index=False)
    print(f"\nwrote {csv_path}")
    return 0


def _value_then_natural(col: pd.Series) -> pd.Series:
    if col.name == "value":
        return col.map({v: i for i, v in enumerate(VALUES)})
    if col.name == "side":
        return col.map({"top": 0, "bottom": 1})
    return col


if __name__ == "__main__":
    raise SystemExit(main())
