"""Opening rates of neutral vs value-specific gates (issue 12, item 4).

Fits both gate kinds for all ten values on the embedded model with the vectors
in ``--vectors`` (their first control layers choose the gate blocks), scores
each gate on every value's held-out gate questions and on the neutral prompts
(:func:`conva_tl.gate.gate_opening_matrix`), and writes both matrices with
their summaries to ``analyses/results/gate_opening.json``.

    OMP_NUM_THREADS=2 .venv/bin/python analyses/gate_opening.py --vectors out/v_free
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conva_tl import load_model
from conva_tl.artifacts import load_vectors
from conva_tl.gate import GATE_KINDS, fit_gates, gate_opening_matrix


def summarise(matrix: pd.DataFrame) -> dict[str, float]:
    """Mean diagonal, mean off-diagonal and mean neutral opening rate."""
    square = matrix[list(matrix.index)].to_numpy()
    off = square[~np.eye(len(square), dtype=bool)]
    return {
        "mean_diagonal": round(float(np.diag(square).mean()), 4),
        "mean_off_diagonal": round(float(off.mean()), 4),
        "max_off_diagonal": round(float(off.max()), 4),
        "mean_neutral": round(float(matrix["neutral"].mean()), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", default="out/v_free")
    parser.add_argument("--out", default="analyses/results/gate_opening.json")
    args = parser.parse_args()
    model = load_model()
    vectors = load_vectors(args.vectors, model=model)
    result: dict[str, object] = {
        "command": "OMP_NUM_THREADS=2 .venv/bin/python " + " ".join(sys.argv),
        "vectors": args.vectors,
        "split": "heldout: each value's held-out 30% of gate questions (9 per value), "
        "never a training negative of any specific gate; diagonal and neutral column are "
        "training prompts of the row's gate",
    }
    for kind in GATE_KINDS:
        t0 = time.time()
        gates = fit_gates(model, vectors, kind=kind)
        matrix = gate_opening_matrix(model, gates)
        summary = summarise(matrix)
        print(f"\n{kind} gates ({time.time() - t0:.0f}s): {summary}")
        print(matrix.round(2).to_string())
        result[kind] = {
            "summary": summary,
            "heldout_auroc": {v: round(g.metrics["heldout_auroc"], 4) for v, g in gates.items()},
            "n_negative": {v: g.metrics["n_negative"] for v, g in gates.items()},
            "block": {v: g.block for v, g in gates.items()},
            "matrix": matrix.round(4).to_dict(orient="index"),
        }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
