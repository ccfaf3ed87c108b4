"""How value vectors relate to each other, against Schwartz's circumplex (paper Sec. 4.5).

The paper shows the pairwise cosine similarities of the ten value vectors at
one layer (Fig. 5; all layers in Appx. F) and reads group structure off the
heatmap by eye. This module turns that reading into statistics:

* :func:`cosine_matrices`: ``[layer, value, value]`` cosines, values in
  circumplex order (:data:`conva_tl.values.VALUES`);
* :func:`circumplex_test`: at one layer, the rank correlation between a
  pair's cosine and its distance around the circle (negative if the vectors
  are circumplex-like: neighbours similar, opposites dissimilar), with a
  one-sided permutation p-value from shuffling the value labels (a Mantel
  test: it keeps the dependence between pairs that share a value), plus
  within- vs between-group similarity (:data:`conva_tl.values.GROUPS`) and the
  cosine of motivational opposites;
* :func:`structure_by_layer`: the test at every layer, one row each, ranked;
* :func:`mds_embedding` and :func:`procrustes_to_circle`: a 2-D picture of
  one layer's vectors and how far it is from the theoretical circle.

Probe normals of layers where a probe is near chance are close to noise, so
``structure_by_layer`` also reports the probes' mean held-out accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from scipy.stats import rankdata
from torch import Tensor

from conva_tl.analysis.logit_lens import direction_of
from conva_tl.errors import ConvaError
from conva_tl.probes import ValueVectors
from conva_tl.values import (
    GROUPS,
    VALUES,
    canonical_value,
    circumplex_angle,
    circumplex_distance,
    get_value,
    group_of,
    opposite_value,
)

__all__ = [
    "GROWTH_VALUES",
    "circumplex_order",
    "cosine_matrices",
    "circumplex_test",
    "structure_by_layer",
    "mds_embedding",
    "procrustes_to_circle",
]

#: Schwartz's (2012) "self-expansion and growth" values (the paper's yellow box in Fig. 5).
GROWTH_VALUES: tuple[str, ...] = (
    "self-direction",
    "stimulation",
    "hedonism",
    "benevolence",
    "universalism",
)


def circumplex_order(values: Sequence[str], start: str | None = None) -> list[str]:
    """Canonical names sorted around the circle, optionally starting at ``start``."""
    names = sorted({canonical_value(v) for v in values}, key=lambda v: get_value(v).position)
    if start is not None:
        offset = get_value(start).position
        names.sort(key=lambda v: (get_value(v).position - offset) % len(VALUES))
    return names


def _as_list(vectors: dict[str, ValueVectors] | Sequence[ValueVectors]) -> list[ValueVectors]:
    items = list(vectors.values()) if isinstance(vectors, dict) else list(vectors)
    if len({vv.value for vv in items}) != len(items):
        raise ConvaError("each value may appear only once")
    shapes = {tuple(vv.w.shape) for vv in items}
    if len(shapes) > 1:
        raise ConvaError(f"value vectors come from different models (shapes {sorted(shapes)})")
    order = circumplex_order([vv.value for vv in items])
    by_name = {vv.value: vv for vv in items}
    return [by_name[v] for v in order]


def cosine_matrices(
    vectors: dict[str, ValueVectors] | Sequence[ValueVectors], use: str = "v"
) -> Float[Tensor, "layer value value"]:
    """Pairwise cosine similarity of value directions at every layer.

    Values are in circumplex order (``circumplex_order(vectors)``), whatever
    order they were given in.
    """
    items = _as_list(vectors)
    if len(items) < 2:
        raise ConvaError(f"need at least two values to compare, got {len(items)}")
    d = torch.stack([direction_of(vv, use) for vv in items], dim=1).double()  # layer value d_model
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = torch.einsum("lvd,lwd->lvw", d, d)
    return cos.clamp(-1.0, 1.0).float()


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def circumplex_test(
    cos_matrix_at_layer: Float[Tensor, "value value"] | np.ndarray,
    values: Sequence[str],
    n_permutations: int = 10000,
    seed: int = 0,
    method: str = "spearman",
) -> dict[str, Any]:
    """Is one layer's cosine structure circumplex-like?

    Args:
        cos_matrix_at_layer: ``[value, value]`` cosine similarities.
        values: names of its rows, any order.
        n_permutations: label permutations for the p-values.
        seed: seed of the local random generator.
        method: ``"spearman"`` (rank correlation, default) or ``"pearson"``.

    Returns:
        ``statistic``: correlation between cosine and circumplex distance over
        all value pairs (negative = circumplex-like); ``p_value``: one-sided,
        the share of label permutations with a statistic at least as negative
        (``(1 + hits) / (1 + n_permutations)``); ``within``, ``between``: mean
        cosine of pairs in the same / different higher-order groups;
        ``group_gap`` = within - between and its one-sided ``group_p_value``;
        ``opposite_cos``: mean cosine of diametrically opposed pairs present
        (NaN if none) and ``opposites`` per pair; ``n_values``, ``n_pairs``.

    The null hypothesis is "labels unrelated to the geometry": permuting labels
    keeps the observed cosines and the circle's distances and only breaks the
    link between them. With ten values there are 10! labelings, 20 of which
    (rotations and reflections of the circle) give the observed statistic.
    """
    names = [canonical_value(v) for v in values]
    cos = np.asarray(
        cos_matrix_at_layer.detach().cpu()
        if isinstance(cos_matrix_at_layer, Tensor)
        else cos_matrix_at_layer,
        dtype=np.float64,
    )
    n = len(names)
    if cos.shape != (n, n):
        raise ConvaError(f"cosine matrix has shape {cos.shape} but {n} value names were given")
    if len(set(names)) != n or n < 3:
        raise ConvaError(f"need at least three distinct values, got {names}")
    if method not in ("spearman", "pearson"):
        raise ConvaError(f"method must be 'spearman' or 'pearson', got {method!r}")
    if n_permutations < 1:
        raise ConvaError(f"n_permutations must be >= 1, got {n_permutations}")
    iu, ju = _pairs(n)
    sims = cos[iu, ju]
    dist = np.array([[circumplex_distance(a, b) for b in names] for a in names], dtype=np.float64)
    group = np.array([list(GROUPS).index(group_of(v)) for v in names])
    same = (group[:, None] == group[None, :]).astype(np.float64)

    # Round away float32 noise (~1e-7) so pairs that are geometrically tied rank as ties.
    x = rankdata(np.round(sims, 6)) if method == "spearman" else sims.copy()
    x = x - x.mean()
    x_norm = np.linalg.norm(x)

    def corr(dmats: np.ndarray) -> np.ndarray:
        y = dmats[..., iu, ju]
        if method == "spearman":
            y = rankdata(y, axis=-1)
        y = y - y.mean(-1, keepdims=True)
        denom = x_norm * np.linalg.norm(y, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(denom > 0, y @ x / np.where(denom > 0, denom, 1.0), np.nan))

    def gap(smats: np.ndarray) -> np.ndarray:
        s = smats[..., iu, ju]
        n_same = s.sum(-1)
        n_diff = s.shape[-1] - n_same
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray((s @ sims) / n_same - ((1 - s) @ sims) / n_diff)

    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_permutations, n)), axis=1)
    perm_dist = dist[perms[:, :, None], perms[:, None, :]]
    perm_same = same[perms[:, :, None], perms[:, None, :]]
    statistic = float(corr(dist))
    null = corr(perm_dist)
    observed_gap = float(gap(same))
    null_gap = gap(perm_same)
    # A constant cosine vector (e.g. all-zero probes) has no correlation: NaN, not p = 1/(n+1).
    p_value = (
        float((1 + np.sum(null <= statistic + 1e-12)) / (1 + n_permutations))
        if np.isfinite(statistic)
        else float("nan")
    )
    group_p = (
        float((1 + np.sum(null_gap >= observed_gap - 1e-12)) / (1 + n_permutations))
        if np.isfinite(observed_gap)
        else float("nan")
    )
    mask = same[iu, ju].astype(bool)
    opposites = {
        f"{a}/{opposite_value(a)}": float(cos[i, names.index(opposite_value(a))])
        for i, a in enumerate(names)
        if opposite_value(a) in names
        and get_value(a).position < get_value(opposite_value(a)).position
    }
    return {
        "statistic": statistic,
        "p_value": p_value,
        "method": method,
        "within": float(sims[mask].mean()) if mask.any() else float("nan"),
        "between": float(sims[~mask].mean()) if (~mask).any() else float("nan"),
        "group_gap": observed_gap,
        "group_p_value": group_p,
        "opposite_cos": float(np.mean(list(opposites.values()))) if opposites else float("nan"),
        "opposites": opposites,
        "mean_cos": float(sims.mean()),
        "n_values": n,
        "n_pairs": int(len(sims)),
        "n_permutations": int(n_permutations),
    }


def structure_by_layer(
    vectors: dict[str, ValueVectors] | Sequence[ValueVectors],
    layers: Sequence[int] | None = None,
    *,
    use: str = "v",
    n_permutations: int = 10000,
    seed: int = 0,
    method: str = "spearman",
) -> pd.DataFrame:
    """:func:`circumplex_test` at every layer, one row per layer.

    Columns: ``statistic, p_value, p_fdr`` (Benjamini-Hochberg over the layers
    tested), ``within, between, group_gap, group_p_value, opposite_cos,
    mean_cos, mean_accuracy, min_accuracy`` (held-out probe accuracy across the
    values) and ``rank`` (1 = most circumplex-like, i.e. most negative
    statistic). Indexed by layer, in layer order; sort by ``rank`` to see the
    best layers first.
    """
    items = _as_list(vectors)
    names = [vv.value for vv in items]
    cos = cosine_matrices(items, use=use)
    n_layers = cos.shape[0]
    chosen = list(range(n_layers)) if layers is None else sorted({int(x) for x in layers})
    if not chosen or any(not 0 <= x < n_layers for x in chosen):
        raise ConvaError(f"layers must be a non-empty subset of 0..{n_layers - 1}, got {layers}")
    acc = torch.stack([vv.accuracy.float() for vv in items])  # value layer
    rows = []
    for layer in chosen:
        res = circumplex_test(
            cos[layer], names, n_permutations=n_permutations, seed=seed, method=method
        )
        res.pop("opposites")
        rows.append(
            {
                "layer": layer,
                **res,
                "mean_accuracy": float(acc[:, layer].mean()),
                "min_accuracy": float(acc[:, layer].min()),
            }
        )
    df = pd.DataFrame(rows).set_index("layer")
    df.insert(2, "p_fdr", _bh(df["p_value"].to_numpy()))
    df["rank"] = df["statistic"].rank(method="min", na_option="bottom").astype(int)
    return df


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite entries (NaN stays NaN)."""
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    n = len(ok)
    if n == 0:
        return out
    order = ok[np.argsort(p[ok])]
    scaled = p[order] * n / np.arange(1, n + 1)
    out[order] = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    return out


def mds_embedding(
    cos_matrix: Float[Tensor, "value value"] | np.ndarray, distance: str = "chord"
) -> Float[np.ndarray, "value 2"]:
    """Classical (Torgerson) MDS of one layer's value vectors into two dimensions.

    Args:
        cos_matrix: ``[value, value]`` cosine similarities.
        distance: ``"chord"`` (default) uses sqrt(2 - 2 cos), the Euclidean
            distance between the unit vectors, for which classical MDS is exact
            (it equals PCA of the centred unit vectors); ``"cosine"`` uses 1 - cos.

    Returns:
        ``[value, 2]`` coordinates, centred; the sign of each axis is fixed so
        the result is deterministic (the largest-magnitude coordinate is positive).
    """
    cos = np.asarray(
        cos_matrix.detach().cpu() if isinstance(cos_matrix, Tensor) else cos_matrix,
        dtype=np.float64,
    )
    if cos.ndim != 2 or cos.shape[0] != cos.shape[1] or cos.shape[0] < 3:
        raise ConvaError(f"need a square cosine matrix of at least 3 values, got shape {cos.shape}")
    cos = (cos + cos.T) / 2
    if distance == "chord":
        d2 = np.clip(2.0 - 2.0 * cos, 0.0, None)
    elif distance == "cosine":
        d2 = np.clip(1.0 - cos, 0.0, None) ** 2
    else:
        raise ConvaError(f"distance must be 'chord' or 'cosine', got {distance!r}")
    np.fill_diagonal(d2, 0.0)
    n = cos.shape[0]
    j = np.eye(n) - np.ones((n, n)) / n
    b = -0.5 * j @ d2 @ j
    evals, evecs = np.linalg.eigh(b)
    top = np.argsort(evals)[::-1][:2]
    coords = evecs[:, top] * np.sqrt(np.clip(evals[top], 0.0, None))
    for k in range(2):
        if coords[np.argmax(np.abs(coords[:, k])), k] < 0:
            coords[:, k] *= -1
    return coords


def _disparity(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
    # Orthogonal Procrustes (rotation or reflection) of centred, unit-norm x onto y.
    u, s, vt = np.linalg.svd(y.T @ x)
    r = (u @ vt).T  # x @ r ~ y
    return float(1.0 - s.sum() ** 2), r, float(s.sum())


def procrustes_to_circle(
    embedding: Float[np.ndarray, "value 2"],
    values: Sequence[str],
    *,
    n_permutations: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a 2-D embedding to the theoretical circumplex circle (Procrustes).

    Both point sets are centred and scaled to unit Frobenius norm; the best
    rotation (reflections allowed, since MDS fixes no handedness) maps the
    embedding onto the circle points at :func:`conva_tl.values.circumplex_angle`.

    Returns:
        ``disparity``: residual sum of squares after the fit, in [0, 1]
        (0 = exactly the circle up to rotation, reflection, scale and shift;
        the same quantity as ``scipy.spatial.procrustes``); ``p_value``: share
        of label permutations fitting at least as well (NaN when
        ``n_permutations=0``); ``aligned``: the
        embedding mapped into the circle's frame, on the unit circle's scale;
        ``target``: the circle points ``[value, 2]``; ``rotation``: the
        ``2 x 2`` matrix; ``reflected``: whether it flips the handedness.
    """
    names = [canonical_value(v) for v in values]
    x = np.asarray(embedding, dtype=np.float64)
    if x.shape != (len(names), 2):
        raise ConvaError(f"embedding has shape {x.shape}, expected ({len(names)}, 2)")
    angles = np.array([circumplex_angle(v) for v in names])
    target = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y_mean = target.mean(0)
    y = target - y_mean
    y_scale = np.linalg.norm(y)
    x = x - x.mean(0)
    x_scale = np.linalg.norm(x)
    if x_scale == 0 or y_scale == 0:
        raise ConvaError("degenerate configuration: all points coincide")
    x, y = x / x_scale, y / y_scale
    disparity, r, s = _disparity(x, y)
    rng = np.random.default_rng(seed)
    if n_permutations < 0:
        raise ConvaError(f"n_permutations must be >= 0, got {n_permutations}")
    null = np.array(
        [_disparity(x[rng.permutation(len(names))], y)[0] for _ in range(n_permutations)]
    )
    p_value = (
        float((1 + np.sum(null <= disparity + 1e-12)) / (1 + n_permutations))
        if n_permutations
        else float("nan")
    )
    aligned = (x @ r) * s * y_scale + y_mean
    return {
        "disparity": disparity,
        "p_value": p_value,
        "aligned": aligned,
        "target": target,
        "rotation": r,
        "reflected": bool(np.linalg.det(r) < 0),
    }
