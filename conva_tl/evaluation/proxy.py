"""Is a judge-free measure a usable proxy for judged control success?

A probe that steered the answers also reading them is circular: it rises
whatever a judge says. A proxy earns its place only if it tracks judged labels.
This module reads the answers with probes that did NOT steer them (by default
those fitted on the *straightforward* sentences, a different data set from the
pairs that steer) and measures how well that reading ranks the judged labels:

* per answer: Spearman's rho between the proxy logit (z-scored within each
  value, since every value has its own probe) and the mean judged CSR
  (0, 0.5, 1) and the AUROC of the proxy for "both annotators said Yes";
* per value x method cell: Spearman's rho between the mean proxy and the mean
  judged CSR.

Used by ``analyses/control_quality.py proxy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from conva_tl.errors import ConvaError

__all__ = ["proxy_agreement"]


def proxy_agreement(frame: pd.DataFrame, proxy: np.ndarray) -> dict[str, Any]:
    """Rank agreement of a per-answer proxy with the two annotators' CSR labels.

    Args:
        frame: :func:`conva_tl.evaluation.annotation.join_labels` output
            (``value``, ``method``, ``csr_1``, ``csr_2``).
        proxy: one reading per row of ``frame`` (NaN: no reading).

    Returns:
        ``n``, ``answer_spearman``, ``answer_auroc``, ``cells``, ``cell_spearman``
        and the per-value answer-level Spearman (``per_value``).
    """
    if len(proxy) != len(frame):
        raise ConvaError(f"{len(proxy)} proxy readings for {len(frame)} labelled answers")
    df = frame.assign(
        proxy=proxy, csr=(frame["csr_1"].astype(float) + frame["csr_2"].astype(float)) / 2
    ).dropna(subset=["proxy"])
    # each value has its own probe (offset and scale): compare within value
    df["proxy"] = df.groupby("value")["proxy"].transform(
        lambda x: (x - x.mean()) / (x.std() or 1.0)
    )
    if len(df) < 3:
        raise ConvaError("need at least 3 answers with a proxy reading")
    both = (df["csr"] == 1.0).astype(int)
    cells = df.groupby(["value", "method"])[["proxy", "csr"]].mean()
    per_value = {
        str(v): float(spearmanr(g["proxy"], g["csr"]).statistic)
        for v, g in df.groupby("value")
        if g["csr"].nunique() > 1
    }
    return {
        "n": len(df),
        "answer_spearman": float(spearmanr(df["proxy"], df["csr"]).statistic),
        "answer_auroc": float(roc_auc_score(both, df["proxy"])) if both.nunique() > 1 else None,
        "cells": len(cells),
        "cell_spearman": float(spearmanr(cells["proxy"], cells["csr"]).statistic),
        "per_value": per_value,
    }
