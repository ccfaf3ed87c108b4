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

from conva_tl.errors import ConvaError

__all__ = [
    "DEFAULT_C",
    "DEFAULT_STANDARDIZE",
    "AUTHORS_C",
    "LinearProbe",
    "LayerRule",
    "ValueVectors",
    "fit_probes",
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
        fallback_top: when no layer passes the threshold, control this many of
            the most accurate allowed layers instead of none (0 = the paper's
            strict rule). A small model's probes can fall just short of 0.9 on
            held-out pairs; the authors' code used fixed layer ranges instead.
    """

    threshold: float = 0.9
    exclude_last: int = 5
    max_layers: int | None = None
    fallback_top: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ConvaError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.exclude_last < 0:
            raise ConvaError(f"exclude_last must be >= 0, got {self.exclude_last}")

    def select(self, accuracy: Sequence[float]) -> tuple[int, ...]:
        n_allowed = max(len(accuracy) - self.exclude_last, 0)
        chosen = [i for i in range(n_allowed) if accuracy[i] > self.threshold]
        if not chosen and self.fallback_top > 0:
            ranked = sorted(range(n_allowed), key=lambda i: (-accuracy[i], i))
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
            chosen = rule.select(self.accuracy.tolist())
            meta = {**self.metadata, "layer_rule": rule.__dict__}
        else:
            chosen = tuple(sorted({int(x) for x in layers or ()}))
            bad = [x for x in chosen if not 0 <= x < self.n_layers]
            if bad:
                raise ConvaError(f"layers {bad} are outside 0..{self.n_layers - 1}")
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
    """
    y = np.asarray(labels)
    g = np.asarray(groups)
    n_layers, n, d = acts.shape
    if len(y) != n or len(g) != n:
        raise ConvaError(f"{n} activations but {len(y)} labels and {len(g)} groups")
    if k_folds is not None:
        if k_folds < 2:
            raise ConvaError(f"k_folds must be >= 2, got {k_folds}")
        splits = list(GroupKFold(n_splits=k_folds).split(np.zeros(n), y, g))
    else:
        if not 0.0 < test_size < 1.0:
            raise ConvaError(f"test_size must be in (0, 1), got {test_size}")
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        splits = list(splitter.split(np.zeros(n), y, g))
    X_all = acts.double().numpy()
    w = torch.zeros(n_layers, d, dtype=torch.float32)
    b = torch.zeros(n_layers, dtype=torch.float32)
    acc = torch.zeros(n_layers, dtype=torch.float32)
    train_acc = torch.zeros(n_layers, dtype=torch.float32)
    for layer in range(n_layers):
        X = X_all[layer]
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
    control = rule.select(acc.tolist())
    passing = [i for i in control if acc[i] > rule.threshold]
    if not passing:
        logger.warning(
            "%s: no layer passes held-out accuracy > %.2f outside the last %d (best layer %d at %.2f); "
            "%s. Lower LayerRule.threshold or pick layers explicitly.",
            value,
            rule.threshold,
            rule.exclude_last,
            int(acc.argmax()),
            float(acc.max()),
            f"falling back to the {len(control)} most accurate layers {list(control)}"
            if control
            else "nothing will be steered",
        )
    pos, neg = torch.from_numpy(y == 1), torch.from_numpy(y == 0)
    mean_diff = (acts[:, pos].double().mean(1) - acts[:, neg].double().mean(1)).float()
    return ValueVectors(value, w, b, acc, train_acc, control, mean_diff, meta)
