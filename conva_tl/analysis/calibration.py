"""How well calibrated a value probe is, as a function of its regularisation C.

ConVA reads P_V as a probability and pushes each token to the P0 contour, so
the probe's calibration sets the control strength: the push ends
logit(P0)/|w| beyond the decision boundary. A weakly regularised probe on a
few hundred sentences in a 576-dimensional space separates its training data,
|w| grows, P_V saturates at 0 or 1, and P0 = 0.9 then sits a hair's breadth
from the boundary. :func:`calibration_table` measures, per C and layer, the
grouped cross-validated log-loss and accuracy (pairs stay on one side of each
split), |w|, and that margin next to the residual stream's RMS norm; the C
with the lowest log-loss is the best-calibrated probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from jaxtyping import Float
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.probes import DEFAULT_STANDARDIZE, LinearProbe
from conva_tl.steering import logit

__all__ = ["calibration_table", "best_C"]


def calibration_table(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    Cs: Sequence[float],
    *,
    layers: Sequence[int] | None = None,
    folds: int = 5,
    p0: float = 0.9,
    standardize: bool = DEFAULT_STANDARDIZE,
) -> pd.DataFrame:
    """Grouped k-fold calibration of the probes at each C and layer.

    Args:
        acts: pooled activations, one row per text (:func:`~conva_tl.activations.cache_resid_post`).
        labels: 1 = the value's positive text.
        groups: pair ids; a pair never straddles a split.
        Cs: inverse L2 strengths to compare.
        layers: indices into ``acts``'s first axis (default: all).
        folds: cross-validation folds.
        p0: the target probability whose margin is reported.
        standardize: as :class:`~conva_tl.probes.LinearProbe`.

    Returns:
        One row per C x layer: ``C, layer, logloss, accuracy, w_norm,
        margin`` (logit(p0)/|w|, the push beyond the boundary), ``resid_norm``
        (mean L2 norm of the activations) and ``margin_rel`` = margin / resid_norm.
    """
    y = np.asarray(labels)
    g = np.asarray(groups)
    if len(set(g.tolist())) < folds:
        raise ConvaError(
            f"{folds}-fold cross-validation needs at least {folds} pairs, got {len(set(g.tolist()))}"
        )
    if not Cs or min(Cs) <= 0:
        raise ConvaError(f"Cs must be positive numbers, got {list(Cs)}")
    layer_ids = list(range(acts.shape[0])) if layers is None else list(layers)
    target = logit(p0)
    splits = list(GroupKFold(folds).split(np.zeros(len(y)), y, g))
    rows = []
    for layer in layer_ids:
        X = acts[layer].double().numpy()
        norm = float(np.linalg.norm(X, axis=1).mean())
        for C in Cs:
            p = np.zeros(len(y))
            w_norms = []
            for train, test in splits:
                probe = LinearProbe(C=C, standardize=standardize).fit(X[train], y[train])
                p[test] = probe.predict_proba(X[test])[:, 1]
                w_norms.append(float(np.linalg.norm(probe.coef_)))
            w_norm = float(np.mean(w_norms))
            margin = target / w_norm
            rows.append(
                {
                    "C": float(C),
                    "layer": layer,
                    "logloss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
                    "accuracy": float(((p > 0.5) == y).mean()),
                    "w_norm": w_norm,
                    "margin": margin,
                    "resid_norm": norm,
                    "margin_rel": margin / norm,
                }
            )
    return pd.DataFrame(rows)


def best_C(table: pd.DataFrame) -> float:
    """The C with the lowest mean cross-validated log-loss over the table's rows."""
    if table.empty:
        raise ConvaError("empty calibration table")
    return float(table.groupby("C")["logloss"].mean().idxmin())
