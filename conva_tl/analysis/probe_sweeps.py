"""Probe sweeps on cached activations (paper Appx. B, Sec. 4.2): training-set size and transfer.

Many probes are fitted on one all-layer activation tensor
(:func:`conva_tl.activations.cache_resid_post`, cached on disk by
:mod:`conva_tl.analysis.activation_cache`): :func:`train_size_sweep` fits on a
share of the training pairs, :func:`transfer_table` trains on one view of the
texts (pooling, input format, data source) and tests on every view. The
held-out split is the one :func:`conva_tl.probes.fit_probes` uses, so these
numbers line up with the accuracies stored in the artifacts; the summaries
count passing layers with :class:`conva_tl.probes.LayerRule`.

:func:`heldout_split` and :func:`fit_layer_probes` are not
:func:`conva_tl.probes.fit_probes`: a sweep fits on subsets too small for
``fit_probes``' own split (two pairs at 20%) and needs the training-split fit,
not the refit on every text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule, LinearProbe, grouped_split

__all__ = [
    "heldout_split",
    "fit_layer_probes",
    "layer_accuracy",
    "probe_layers",
    "train_size_sweep",
    "train_size_summary",
    "transfer_table",
    "transfer_summary",
]


def heldout_split(
    groups: Sequence[int] | np.ndarray, *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` indices: :func:`conva_tl.probes.grouped_split`, as :func:`fit_probes` splits."""
    return grouped_split(groups, test_size=test_size, seed=seed)


def fit_layer_probes(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
    idx: Sequence[int] | np.ndarray,
    *,
    C: float = DEFAULT_C,
) -> tuple[Float[Tensor, "layer d_model"], Float[Tensor, " layer"]]:
    """One :class:`LinearProbe` per layer on the rows ``idx``: ``(w, b)``."""
    y = np.asarray(labels)[np.asarray(idx)]
    X_all = acts.double().numpy()[:, np.asarray(idx)]
    w = torch.zeros(acts.shape[0], acts.shape[2])
    b = torch.zeros(acts.shape[0])
    for layer in range(acts.shape[0]):
        probe = LinearProbe(C=C, standardize=DEFAULT_STANDARDIZE).fit(X_all[layer], y)
        w[layer] = torch.from_numpy(probe.coef_).float()
        b[layer] = float(probe.intercept_)
    return w, b


def layer_accuracy(
    w: Float[Tensor, "layer d_model"],
    b: Float[Tensor, " layer"],
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
) -> Float[Tensor, " layer"]:
    """Accuracy of each layer's probe (``w.e + b > 0`` predicts 1) on ``acts``."""
    scores = torch.einsum("lbd,ld->lb", acts.double(), w.double()) + b.double()[:, None]
    y = torch.as_tensor(np.asarray(labels), dtype=torch.bool)
    return ((scores > 0) == y).float().mean(-1)


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).float()


def train_size_sweep(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    *,
    value: str,
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    repeats: int = 1,
    test_size: float = 0.2,
    seed: int = 0,
    C: float = DEFAULT_C,
    layers: Sequence[int] | None = None,
    released_w: Float[Tensor, "layer d_model"] | None = None,
) -> pd.DataFrame:
    """Held-out accuracy and direction of probes fitted on a fraction of the training pairs (paper Appx. B).

    The test split is fixed (:func:`heldout_split`); for each fraction f a
    random ``f * n_train_groups`` (rounded half up) of the training groups (pairs) is used,
    ``repeats`` times with different draws. ``cos_ref`` is the cosine of the
    resulting value vector to the one fitted on all training pairs (so f = 1
    gives accuracy equal to :func:`conva_tl.probes.fit_probes`' held-out
    accuracy and ``cos_ref`` = 1); ``cos_released`` (with ``released_w``) is
    the cosine to the shipped vector, refitted on every pair.

    Returns:
        One row per fraction x repeat x layer: ``value, fraction, repeat,
        n_pairs, layer, accuracy, cos_ref`` (and ``cos_released``).
    """
    layer_ids = list(range(acts.shape[0])) if layers is None else list(layers)
    if len(layer_ids) != acts.shape[0]:
        raise ConvaError(f"{len(layer_ids)} layer ids for activations of {acts.shape[0]} layers")
    if released_w is not None and released_w.shape != acts.shape[::2]:
        raise ConvaError(
            f"released_w of shape {tuple(released_w.shape)}, expected {tuple(acts.shape[::2])}"
        )
    if any(not 0.0 < f <= 1.0 for f in fractions) or repeats < 1:
        raise ConvaError(
            f"fractions must be in (0, 1] and repeats >= 1, got {list(fractions)}, {repeats}"
        )
    y, g = np.asarray(labels), np.asarray(groups)
    train, test = heldout_split(g, test_size=test_size, seed=seed)
    train_groups = np.unique(g[train])
    ref_w, ref_b = fit_layer_probes(acts, y, train, C=C)
    rows = []
    for f in fractions:
        k = max(1, int(f * len(train_groups) + 0.5))  # half up (round() would round 4.5 to 4)
        for r in range(repeats if k < len(train_groups) else 1):
            chosen = np.random.default_rng([seed, r]).permutation(train_groups)[:k]
            idx = train[
                np.isin(g[train], chosen)
            ]  # keeps the split's row order: f = 1 is the reference fit
            if len(np.unique(y[idx])) < 2:
                raise ConvaError(
                    f"{value}: {k} training groups hold only one label; use a larger fraction"
                )
            w, b = (ref_w, ref_b) if k == len(train_groups) else fit_layer_probes(acts, y, idx, C=C)
            acc = layer_accuracy(w, b, acts[:, test], y[test])
            cos = _cos(w, ref_w)
            rel = _cos(w, released_w) if released_w is not None else None
            for i, layer in enumerate(layer_ids):
                row = {
                    "value": value,
                    "fraction": float(f),
                    "repeat": r,
                    "n_pairs": int(k),
                    "layer": layer,
                    "accuracy": float(acc[i]),
                    "cos_ref": float(cos[i]),
                }
                if rel is not None:
                    row["cos_released"] = float(rel[i])
                rows.append(row)
    return pd.DataFrame(rows)


def transfer_table(
    data: Mapping[str, tuple[Tensor, Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
    *,
    test_size: float = 0.2,
    seed: int = 0,
    C: float = DEFAULT_C,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Train on each dataset's training split, test on every dataset's test split.

    ``data`` maps a name (``"raw"``, ``"chat"``; ``"last"``, ``"mean"``;
    ``"pairs"``, ``"straightforward"``) to ``(acts, labels, groups)``. For two
    views of the same texts (same groups) the splits coincide, so a transfer
    score never tests on a text the probe saw in the other view.

    Returns:
        One row per train x test x layer: ``train, test, layer, accuracy``.
    """
    splits = {
        name: heldout_split(g, test_size=test_size, seed=seed) for name, (_, _, g) in data.items()
    }
    n_layers = {a.shape[0] for a, _, _ in data.values()}
    if len(n_layers) != 1:
        raise ConvaError(f"activations disagree on the number of layers: {sorted(n_layers)}")
    layer_ids = list(range(n_layers.pop())) if layers is None else list(layers)
    rows = []
    for train_name, (acts, y, _) in data.items():
        w, b = fit_layer_probes(acts, y, splits[train_name][0], C=C)
        for test_name, (acts_t, y_t, _) in data.items():
            test = splits[test_name][1]
            acc = layer_accuracy(w, b, acts_t[:, test], np.asarray(y_t)[test])
            rows += [
                {"train": train_name, "test": test_name, "layer": layer, "accuracy": float(acc[i])}
                for i, layer in enumerate(layer_ids)
            ]
    return pd.DataFrame(rows)


def probe_layers(n_layers: int, layers: Sequence[int] | None = None, *, step: int = 2) -> list[int]:
    """The layers a probe sweep fits: ``layers``, else every ``step``-th layer and the last."""
    if layers:
        bad = [x for x in layers if not 0 <= x < n_layers]
        if bad:
            raise ConvaError(f"--layers must be in 0..{n_layers - 1}, got {bad}")
        return sorted(set(layers))
    if step < 1:
        raise ConvaError(f"--layer-step must be >= 1, got {step}")
    return sorted(set(range(0, n_layers, step)) | {n_layers - 1})


def transfer_summary(
    df: pd.DataFrame, n_layers: int, *, rule: LayerRule | None = None
) -> pd.DataFrame:
    """Per value x train x test of a :func:`transfer_table`: the best in-domain layer and accuracies.

    ``best_layer`` is the train view's best layer tested on itself; ``acc_best_layer`` the
    accuracy there on the test view, ``acc_max`` / ``acc_mean`` over the fitted layers, and
    ``layers>T`` how many fitted layers outside ``rule``'s excluded last layers pass its
    threshold T (default :class:`~conva_tl.probes.LayerRule`: T = 0.9, last 5 excluded).
    """
    rule = rule or LayerRule()
    rows = []
    for (value, train), g in df.groupby(["value", "train"], sort=False):
        own = g[g.test == train].set_index("layer")["accuracy"]
        best = int(own.idxmax())
        for test, h in g.groupby("test", sort=False):
            acc = h.set_index("layer")["accuracy"]
            allowed = acc[acc.index < n_layers - rule.exclude_last]
            rows.append(
                {
                    "value": value,
                    "train": train,
                    "test": test,
                    "best_layer": best,
                    "acc_best_layer": float(acc[best]),
                    "acc_max": float(acc.max()),
                    "acc_mean": float(acc.mean()),
                    f"layers>{rule.threshold:g}": int((allowed > rule.threshold).sum()),
                }
            )
    return pd.DataFrame(rows)


def train_size_summary(
    df: pd.DataFrame, n_layers: int, *, rule: LayerRule | None = None
) -> pd.DataFrame:
    """Per value x fraction of a :func:`train_size_sweep`, at the best layer of the largest fraction.

    ``accuracy`` (mean, min, max over draws), ``cos_ref``, ``cos_released`` there;
    ``layers_passing``: fitted layers passing ``rule`` (default
    :class:`~conva_tl.probes.LayerRule`), mean over draws; ``mean_accuracy`` over all layers.
    """
    rule = rule or LayerRule()
    rows = []
    for value, g in df.groupby("value", sort=False):
        full = g[g.fraction == g.fraction.max()].groupby("layer")["accuracy"].mean()
        best = int(full.idxmax())
        for f, h in g.groupby("fraction"):
            at = h[h.layer == best]
            ok = h[(h.layer < n_layers - rule.exclude_last) & (h.accuracy > rule.threshold)]
            passing = ok.groupby("repeat").size().reindex(h.repeat.unique(), fill_value=0)
            rows.append(
                {
                    "value": value,
                    "fraction": f,
                    "n_pairs": int(h.n_pairs.iloc[0]),
                    "best_layer": best,
                    "accuracy": at.accuracy.mean(),
                    "accuracy_min": at.accuracy.min(),
                    "accuracy_max": at.accuracy.max(),
                    "cos_ref": at.cos_ref.mean(),
                    "cos_released": at.cos_released.mean() if "cos_released" in at else np.nan,
                    "layers_passing": float(np.mean(passing)),
                    "mean_accuracy": h.accuracy.mean(),
                }
            )
    return pd.DataFrame(rows)
