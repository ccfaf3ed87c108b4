"""Per-layer logistic probes and the value vectors they define (paper Eq. 1-4).

For a value, the pooled ``resid_post`` activations of its positive and
negative texts (:mod:`conva_tl.activations`) train one logistic regression per
layer, P_V(e) = sigmoid(w.e + b). The held-out split keeps both sentences of a
pair on the same side (the authors' code split pairs apart, which lets the
probe recognise a scenario it has already seen). The unit normal v = w/|w| is
the value vector; layers whose held-out accuracy passes the :class:`LayerRule`
become the control layers of :mod:`conva_tl.steering`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from torch import Tensor

from conva_tl.errors import ArtifactError, ConvaError, DataError
from conva_tl.model_protocol import HookedModel

__all__ = [
    "DEFAULT_C",
    "DEFAULT_STANDARDIZE",
    "AUTHORS_C",
    "MIN_W_NORM",
    "MIN_HELDOUT_GROUPS",
    "LinearProbe",
    "LayerRule",
    "ValueVectors",
    "fit_probes",
    "grouped_split",
    "layer_ranges",
]

logger = logging.getLogger(__name__)

#: Default inverse L2 strength, on centred activations divided by their RMS
#: (``standardize``). Chosen because it gives the best-calibrated probes on
#: the embedded model: 5-fold grouped cross-validated log-loss over 10 values
#: x layers 8/11/14/17/20 was 0.960 at C=10, 0.646 at 1, 0.460 at 0.1, 0.445 at
#: 0.03 and 0.480 at 0.01, with accuracy flat (0.78-0.79);
#: ``analyses/ablate_calibration.py`` measures it. Calibration matters for
#: control, not only for reading: the push onto the P0 contour goes
#: logit(P0)/|w| beyond the decision boundary, and a saturated probe (large |w|)
#: makes that a fraction of a percent of the residual norm, so P0 stops acting
#: as a strength knob.
DEFAULT_C = 0.03
DEFAULT_STANDARDIZE = True
#: The authors' code: ``LogisticRegression(C=1)`` on raw activations
#: (``C=AUTHORS_C, standardize=False`` reproduces it).
AUTHORS_C = 1.0
#: Smallest probe norm |w| a control layer may have. The closed-form push is
#: (logit(P0) - w.e - b) / |w| along v: below this bound it is over a million
#: times the logit gap, far outside any residual stream (and a zero probe, the
#: mark of an unfitted layer, gives 0/0). Fitted probes on the embedded model
#: have |w| of order 1e-2 to 1.
MIN_W_NORM = 1e-6
#: Held-out groups (pairs) below which :func:`fit_probes` warns: accuracy then
#: moves in steps of more than 1/10 and the layer rule reads noise.
MIN_HELDOUT_GROUPS = 10


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic regression P(y=1|e) = sigmoid(w.e + b), scikit-learn style.

    Args:
        C: inverse L2 strength (default :data:`DEFAULT_C`; the authors' code: 1.0 on
            raw activations).
        max_iter: solver iterations.
        standardize: centre the activations and divide them by one scalar (their
            RMS) before fitting, then map w and b back to the raw activation
            space (the space steering works in). The scale is shared by all
            features, so this changes the meaning of C, not the geometry.

    Attributes:
        coef_: ``w`` in raw activation space, shape ``(d_model,)``.
        intercept_: ``b``.
    """

    def __init__(
        self, C: float = DEFAULT_C, max_iter: int = 2000, standardize: bool = DEFAULT_STANDARDIZE
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if set(np.unique(y).tolist()) != {0, 1}:
            raise ConvaError("a probe needs both labels 0 and 1 in its training data")
        mu = X.mean(0) if self.standardize else np.zeros(X.shape[1])
        # One scale for all features (their RMS about the mean): the L2 penalty
        # stays isotropic, so the direction is that of a plain logistic
        # regression in the space steering acts in, while C means the same at
        # every layer (residual norms grow ~7x with depth) and lbfgs converges
        # in a few iterations instead of hundreds.
        sd = float(np.sqrt(((X - mu) ** 2).mean())) + 1e-6 if self.standardize else 1.0
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((X - mu) / sd, y)
        w = clf.coef_[0] / sd
        self.coef_ = w
        self.intercept_ = float(clf.intercept_[0] - (w * mu).sum())
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


@dataclass(frozen=True)
class LayerRule:
    """Which layers to control (paper Sec. 3.2).

    Attributes:
        threshold: minimum held-out accuracy (strictly greater).
        exclude_last: never control the last N layers (they "organise the output
            words"; steering there hurts fluency).
        max_layers: keep at most this many, the most accurate first.
        min_depth: never control layers below this fraction of the depth (the
            first ``ceil(min_depth * n_layers)`` layers; 0 = the paper's rule).
        fallback_top: when no layer passes the threshold, control this many of
            the most accurate allowed layers instead of none (0 = the paper's
            strict rule). A small model's probes can fall just short of 0.9 on
            held-out pairs; the authors' code used fixed layer ranges instead.
    """

    threshold: float = 0.9
    exclude_last: int = 5
    max_layers: int | None = None
    fallback_top: int = 3
    min_depth: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ConvaError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.exclude_last < 0:
            raise ConvaError(f"exclude_last must be >= 0, got {self.exclude_last}")
        if not 0.0 <= self.min_depth < 1.0:
            raise ConvaError(f"min_depth must be in [0, 1), got {self.min_depth}")
        if self.max_layers is not None and self.max_layers < 1:
            raise ConvaError(f"max_layers must be >= 1 or None, got {self.max_layers}")

    def select(
        self, accuracy: Sequence[float], candidates: Sequence[int] | None = None
    ) -> tuple[int, ...]:
        """Control layers for per-layer held-out ``accuracy``.

        Args:
            accuracy: held-out accuracy of every layer of the model.
            candidates: layers that have a fitted probe (default: all); the
                threshold and the fallback only ever pick among them.
        """
        n_allowed = max(len(accuracy) - self.exclude_last, 0)
        pool = range(n_allowed) if candidates is None else sorted(set(candidates))
        first = math.ceil(self.min_depth * len(accuracy) - 1e-9)
        allowed = [i for i in pool if first <= i < n_allowed]
        chosen = [i for i in allowed if accuracy[i] > self.threshold]
        if not chosen and self.fallback_top > 0:
            ranked = sorted(allowed, key=lambda i: (-accuracy[i], i))
            chosen = sorted(ranked[: self.fallback_top])
        if self.max_layers is not None:
            chosen = sorted(sorted(chosen, key=lambda i: -accuracy[i])[: self.max_layers])
        return tuple(chosen)


@dataclass(frozen=True, eq=False)
class ValueVectors:
    """Per-layer probes of one value and the layers chosen for control.

    Attributes:
        value: canonical value name.
        w: probe weights per layer (raw activation space).
        b: probe biases per layer.
        accuracy: held-out accuracy per layer (pairs kept together).
        train_accuracy: accuracy on the training split per layer.
        control_layers: the layers :mod:`conva_tl.steering` acts on.
        mean_diff: mean(positive) - mean(negative) activation per layer: for
            pairs, the mean paired difference, i.e. the CAA steering vector.
        metadata: provenance (model, hook, pooling, input format, dataset, ...).

    ``-vectors`` is the probe of the opposite stance (w, b negated): steering
    with it pushes away from the value. ``==`` compares tensors exactly.
    """

    value: str
    w: Float[Tensor, "layer d_model"]
    b: Float[Tensor, " layer"]
    accuracy: Float[Tensor, " layer"]
    train_accuracy: Float[Tensor, " layer"]
    control_layers: tuple[int, ...]
    mean_diff: Float[Tensor, "layer d_model"]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.w.shape[0])

    @property
    def v(self) -> Float[Tensor, "layer d_model"]:
        """Unit value vectors v = w / |w| (paper Eq. 4)."""
        return self.w / self.w.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @property
    def best_layer(self) -> int:
        """The layer with the highest held-out accuracy (earliest on ties)."""
        return int(torch.argmax(self.accuracy))

    @property
    def fitted_layers(self) -> tuple[int, ...]:
        """Layers with a usable probe: finite and |w| >= :data:`MIN_W_NORM`.

        Layers left out of ``identify(..., layers=...)`` hold zero probes and
        are never fitted.
        """
        norms = self.w.float().norm(dim=-1)
        ok = torch.isfinite(norms) & (norms >= MIN_W_NORM) & torch.isfinite(self.b.float())
        return tuple(int(i) for i in torch.nonzero(ok).flatten().tolist())

    def check_layers(self, layers: Sequence[int]) -> None:
        """Raise :class:`ArtifactError` unless every layer can be steered with this probe."""
        bad_range = [x for x in layers if not 0 <= int(x) < self.n_layers]
        if bad_range:
            raise ArtifactError(
                f"control layers {bad_range} of {self.value!r} are outside 0..{self.n_layers - 1}"
            )
        fitted = set(self.fitted_layers)
        unusable = [int(x) for x in layers if int(x) not in fitted]
        if unusable:
            norms = ", ".join(f"{x}: {float(self.w[x].float().norm()):.3g}" for x in unusable)
            raise ArtifactError(
                f"{self.value!r} has no usable probe at control layer(s) {unusable} (|w| {norms}; "
                f"a layer needs a finite probe with |w| >= {MIN_W_NORM:g}, zero means unfitted). "
                f"Steer fitted layers only (fitted: {list(self.fitted_layers) or 'none'}), "
                "or identify() with these layers."
            )

    def check_model(self, model: HookedModel) -> None:
        """Raise :class:`ArtifactError` unless the probes have the model's layers and width."""
        n_layers, d_model = int(model.cfg.n_layers), int(model.cfg.d_model)
        if tuple(self.w.shape) != (n_layers, d_model) or tuple(self.mean_diff.shape) != (
            n_layers,
            d_model,
        ):
            name = getattr(model.cfg, "model_name", "the model")
            raise ArtifactError(
                f"value vectors for {self.value!r} have {self.n_layers} layers x "
                f"d_model {self.w.shape[1]}, but {name} has {n_layers} layers x d_model "
                f"{d_model}. Fit them on this model (conva fit) or load the model they came from."
            )

    def logits(self, acts: Float[Tensor, "layer batch d_model"]) -> Float[Tensor, "layer batch"]:
        """w.e + b for activations of every layer."""
        return torch.einsum("lbd,ld->lb", acts.float(), self.w.float()) + self.b.float()[:, None]

    def predict_proba(
        self, acts: Float[Tensor, "layer batch d_model"]
    ) -> Float[Tensor, "layer batch"]:
        """P_V(e) per layer and text."""
        return torch.sigmoid(self.logits(acts))

    def with_layers(
        self, layers: Sequence[int] | None = None, *, rule: LayerRule | None = None
    ) -> ValueVectors:
        """A copy controlling other layers: explicit ``layers`` or a new ``rule``."""
        if (layers is None) == (rule is None):
            raise ConvaError("give exactly one of layers= or rule=")
        if rule is not None:
            chosen = rule.select(self.accuracy.tolist(), candidates=self.fitted_layers)
            meta = {**self.metadata, "layer_rule": rule.__dict__}
        else:
            chosen = tuple(sorted({int(x) for x in layers or ()}))
            self.check_layers(chosen)
            meta = {**self.metadata, "layer_rule": {"explicit": list(chosen)}}
        return replace(self, control_layers=chosen, metadata=meta)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: accuracies, |w|, b, and whether it is controlled."""
        return pd.DataFrame(
            {
                "layer": range(self.n_layers),
                "test_accuracy": self.accuracy.tolist(),
                "train_accuracy": self.train_accuracy.tolist(),
                "w_norm": self.w.norm(dim=-1).tolist(),
                "bias": self.b.tolist(),
                "control": [i in self.control_layers for i in range(self.n_layers)],
            }
        ).set_index("layer")

    def __neg__(self) -> ValueVectors:
        meta = {k: v for k, v in self.metadata.items() if k != "negated"}
        if not self.metadata.get("negated", False):
            meta["negated"] = True
        return replace(self, w=-self.w, b=-self.b, metadata=meta)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValueVectors):
            return NotImplemented
        return (
            self.value == other.value
            and self.control_layers == other.control_layers
            and all(
                torch.equal(getattr(self, k), getattr(other, k))
                for k in ("w", "b", "accuracy", "train_accuracy", "mean_diff")
            )
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ValueVectors({self.value!r}, layers={self.n_layers}, d_model={self.w.shape[1]}, "
            f"best_layer={self.best_layer} (acc {float(self.accuracy.max()):.2f}), "
            f"control_layers={list(self.control_layers)})"
        )


def fit_probes(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int],
    groups: Sequence[int],
    *,
    value: str,
    test_size: float = 0.2,
    k_folds: int | None = None,
    C: float = DEFAULT_C,
    standardize: bool = DEFAULT_STANDARDIZE,
    refit: bool = True,
    seed: int = 0,
    rule: LayerRule | None = None,
    metadata: dict[str, Any] | None = None,
    layers: Sequence[int] | None = None,
    n_layers: int | None = None,
) -> ValueVectors:
    """Fit one probe per layer on cached activations.

    Args:
        acts: pooled activations ``[layer, text, d_model]``.
        labels: 1 (value) / 0 (opposite stance) per text.
        groups: texts of one group (a pair) stay on one side of every split.
        value: the value's canonical name.
        test_size: held-out fraction of groups (ignored when ``k_folds`` is set).
        k_folds: report mean accuracy over grouped k folds instead of one split.
        C: inverse L2 regularisation strength.
        standardize: see :class:`LinearProbe`.
        refit: after measuring held-out accuracy, refit w and b on all texts
            (default) rather than keeping the training-split fit.
        seed: seed of the split.
        rule: how control layers are chosen (default :class:`LayerRule()`).
        metadata: provenance stored on the result.
        layers: the model layer of each row of ``acts`` (default ``0..layer-1``).
        n_layers: the model's depth (default: ``max(layers) + 1``). The result
            has this many rows, with zero probes (never controlled) on the
            layers not fitted.

    Raises:
        DataError: too few groups for the split, or a single label.
    """
    y = np.asarray(labels)
    g = np.asarray(groups)
    n_rows, n, d = acts.shape
    if len(y) != n or len(g) != n:
        raise ConvaError(f"{n} activations but {len(y)} labels and {len(g)} groups")
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not 0 < C < float("inf"):
        raise ConvaError(f"C must be a positive number (inverse L2 strength), got {C!r}")
    row_layers = list(range(n_rows)) if layers is None else [int(x) for x in layers]
    depth = (max(row_layers) + 1 if row_layers else 0) if n_layers is None else int(n_layers)
    if len(row_layers) != n_rows or len(set(row_layers)) != n_rows:
        raise ConvaError(f"layers must name {n_rows} distinct layers, got {list(row_layers)}")
    if any(not 0 <= x < depth for x in row_layers):
        raise ConvaError(f"layers {row_layers} must lie in 0..{depth - 1}")
    splits = _splits(value, y, g, test_size=test_size, k_folds=k_folds, seed=seed)
    X_all = acts.double().numpy()
    w = torch.zeros(depth, d, dtype=torch.float32)
    b = torch.zeros(depth, dtype=torch.float32)
    acc = torch.zeros(depth, dtype=torch.float32)
    train_acc = torch.zeros(depth, dtype=torch.float32)
    mean_diff = torch.zeros(depth, d, dtype=torch.float32)
    for row, layer in enumerate(row_layers):
        X = X_all[row]
        accs, taccs, probe = [], [], None
        for train, test in splits:
            probe = LinearProbe(C=C, standardize=standardize).fit(X[train], y[train])
            accs.append(probe.score(X[test], y[test]))
            taccs.append(probe.score(X[train], y[train]))
        if refit or probe is None:
            probe = LinearProbe(C=C, standardize=standardize).fit(X, y)
        w[layer] = torch.from_numpy(probe.coef_).float()
        b[layer] = float(probe.intercept_)
        acc[layer] = float(np.mean(accs))
        train_acc[layer] = float(np.mean(taccs))
    rule = rule or LayerRule()
    meta = {
        **(metadata or {}),
        "n_texts": int(n),
        "test_size": None if k_folds else test_size,
        "k_folds": k_folds,
        "C": C,
        "standardize": standardize,
        "refit": refit,
        "seed": seed,
        "layer_rule": rule.__dict__,
    }
    control = rule.select(acc.tolist(), candidates=row_layers)
    passing = [i for i in control if acc[i] > rule.threshold]
    if not passing:
        best = max(row_layers, key=lambda i: (float(acc[i]), -i)) if row_layers else -1
        logger.warning(
            "%s: no fitted layer passes held-out accuracy > %.2f outside the last %d of %d "
            "(best: model layer %d at %.2f); %s. Lower LayerRule.threshold or pick layers explicitly.",
            value,
            rule.threshold,
            rule.exclude_last,
            depth,
            best,
            float(acc[best]) if row_layers else float("nan"),
            f"falling back to the {len(control)} most accurate fitted layers {list(control)}"
            if control
            else "nothing will be steered",
        )
    pos, neg = torch.from_numpy(y == 1), torch.from_numpy(y == 0)
    idx = torch.tensor(row_layers, dtype=torch.long)
    mean_diff[idx] = (acts[:, pos].double().mean(1) - acts[:, neg].double().mean(1)).float()
    return ValueVectors(value, w, b, acc, train_acc, control, mean_diff, meta)


def grouped_split(
    groups: Sequence[int] | np.ndarray, *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row indices with every group (pair) wholly on one side.

    The one held-out split of the package: :func:`fit_probes` and the ablation
    sweeps both use it, so a pair's two sentences never straddle train and test.
    """
    if isinstance(test_size, bool) or not 0.0 < float(test_size) < 1.0:
        raise ConvaError(f"test_size must be in (0, 1), got {test_size!r}")
    g = np.asarray(groups)
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(g)), groups=g))
    return train, test


def layer_ranges(layers: Sequence[int]) -> str:
    """``(3, 4, 5, 9)`` -> ``"3-5,9"``; ``"-"`` when empty."""
    if not layers:
        return "-"
    parts, start, prev = [], layers[0], layers[0]
    for x in [*layers[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ",".join(parts)


def _splits(
    value: str,
    y: np.ndarray,
    g: np.ndarray,
    *,
    test_size: float,
    k_folds: int | None,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The grouped held-out split(s); refuses data too small to split, warns when coarse."""
    n_groups = len(np.unique(g))
    if set(np.unique(y).tolist()) != {0, 1}:
        raise DataError(
            f"{value}: a probe needs texts of both labels (1 = value, 0 = opposite stance), "
            f"got labels {sorted(set(np.unique(y).tolist()))}"
        )
    if k_folds is not None:
        if isinstance(k_folds, bool) or not isinstance(k_folds, int) or k_folds < 2:
            raise ConvaError(f"k_folds must be an integer >= 2, got {k_folds!r}")
        if n_groups < k_folds:
            raise DataError(
                f"{value}: {n_groups} groups (pairs) cannot fill {k_folds} folds; "
                f"give at least {k_folds} pairs or fewer folds"
            )
        n_test = n_groups
        splits = list(GroupKFold(n_splits=k_folds).split(np.zeros(len(y)), y, g))
    else:
        if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
            raise ConvaError(f"test_size must be a number in (0, 1), got {test_size!r}")
        if not 0.0 < test_size < 1.0:
            raise ConvaError(f"test_size must be in (0, 1), got {test_size}")
        n_test = math.ceil(test_size * n_groups)
        if n_groups - n_test < 2 or n_test < 1:
            raise DataError(
                f"{value}: {n_groups} groups (pairs) are too few for a held-out split with "
                f"test_size={test_size} ({n_groups - n_test} to train on, {n_test} to test); "
                f"give at least {MIN_HELDOUT_GROUPS} pairs"
            )
        splits = [grouped_split(g, test_size=test_size, seed=seed)]
    if n_test < MIN_HELDOUT_GROUPS:
        warnings.warn(
            f"{value}: held-out accuracy rests on only {n_test} groups (pairs) of {n_groups}; "
            f"it moves in steps of 1/{n_test} and the layer rule reads noise. "
            f"Give more pairs (at least {MIN_HELDOUT_GROUPS} held out) or use k_folds.",
            stacklevel=2,
        )
    for train, _ in splits:
        if len(set(y[train].tolist())) < 2:
            raise DataError(
                f"{value}: a training split has only one label; give more texts of each label"
            )
    return splits
