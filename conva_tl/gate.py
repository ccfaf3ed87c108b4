"""The gate g(x): is this prompt related to the value? (paper Eq. 5)

The paper gates with a DeBERTa human-value detector that is not available
offline. The default here, :class:`ActivationGate`, is a logistic regression on
the model's own residual stream (mean over the prompt's tokens at one block's
input), fitted on the value's *gate* dilemma questions against the shared
value-unrelated prompts, and measured on a held-out split. It reads a block
at or below the first control layer, so on the prompt pass it decides before
any steering happens, inside the same forward pass: no extra model call.

Any object with ``threshold`` and ``score_texts(texts)`` (a :class:`TextGate`)
also works, e.g. a wrapped external classifier; such gates are scored from the
prompt text before generation.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Bool, Float
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import Tensor

from conva_tl.activations import cache_resid_post, pool
from conva_tl.datasets import load_questions, load_unrelated
from conva_tl.errors import ArtifactError, ConvaError
from conva_tl.generate import GenerationContext
from conva_tl.hooks import hook_name
from conva_tl.probes import ValueVectors
from conva_tl.values import canonical_value

__all__ = [
    "TextGate",
    "ActivationGate",
    "fit_gate",
    "fit_gates",
    "gate_hook",
    "CallableGate",
    "checked_scores",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class TextGate(Protocol):
    """A gate scored from prompt text: scores in [0, 1], open when > threshold."""

    threshold: float

    def score_texts(self, texts: list[str]) -> Float[Tensor, " batch"]: ...


def checked_scores(raw: Any, n_texts: int, source: str) -> Float[Tensor, " batch"]:
    """``raw`` as a float tensor of one finite score per text, or a clear error.

    Args:
        raw: what a gate's scoring function returned.
        n_texts: how many texts it scored.
        source: the gate, for the message.

    Raises:
        ConvaError: ``raw`` is not numbers, has another shape, or is not finite.
    """
    expected = f"one score in [0, 1] per text: a sequence or tensor of shape ({n_texts},)"
    if raw is None:
        raise ConvaError(f"{source} returned None for {n_texts} texts; it must return {expected}")
    try:
        scores = torch.as_tensor(raw, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConvaError(
            f"{source} returned {type(raw).__name__}, not numbers ({exc}); it must return {expected}"
        ) from None
    if tuple(scores.shape) != (n_texts,):
        raise ConvaError(
            f"{source} returned scores of shape {tuple(scores.shape)} for {n_texts} texts; "
            f"it must return {expected} (flatten a column of scores)"
        )
    if not bool(torch.isfinite(scores).all()):
        raise ConvaError(
            f"{source} returned non-finite scores {scores.tolist()}; it must return {expected}"
        )
    return scores


@dataclass(frozen=True)
class CallableGate:
    """Wrap any ``texts -> scores`` function (e.g. an external value detector).

    ``fn(texts)`` must return one score per text (a list, array or tensor of
    shape ``(len(texts),)``); the gate opens where the score exceeds ``threshold``.
    """

    fn: Any
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConvaError(f"CallableGate needs a function texts -> scores, got {self.fn!r}")
        _check_threshold(self.threshold)

    def score_texts(self, texts: list[str]) -> Float[Tensor, " batch"]:
        return checked_scores(self.fn(texts), len(texts), f"CallableGate({self.fn!r})")


def _check_threshold(threshold: Any) -> None:
    # Any finite number: below 0 the gate is always open, above 1 always shut
    # (the g0 sweeps use both ends).
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
    ):
        raise ConvaError(
            f"gate threshold g0 must be a finite number (scores are in [0, 1]), got {threshold!r}"
        )


@dataclass(frozen=True, eq=False)
class ActivationGate:
    """Logistic gate on the mean residual stream entering block ``block``.

    Attributes:
        value: the value it detects prompts for.
        block: reads ``blocks.{block}.hook_resid_pre`` (= resid_post of block-1).
        w, b: logistic weights on that activation.
        threshold: g0; the gate opens when score > threshold.
        metrics: held-out AUROC and accuracy, data sizes.
    """

    value: str
    block: int
    w: Float[Tensor, " d_model"]
    b: float
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ConvaError(f"gate block must be an integer >= 1, got {self.block!r}")
        _check_threshold(self.threshold)

    @property
    def hook_name(self) -> str:
        return hook_name(self.block, "hook_resid_pre")

    def check_model(self, model: Any) -> None:
        """Raise :class:`ArtifactError` unless the gate reads a block and width the model has."""
        n_layers, d_model = int(model.cfg.n_layers), int(model.cfg.d_model)
        if tuple(self.w.shape) != (d_model,) or not 1 <= self.block < n_layers:
            raise ArtifactError(
                f"gate for {self.value!r} reads block {self.block} with weights of shape "
                f"{tuple(self.w.shape)}, but the model has blocks 1..{n_layers - 1} and "
                f"d_model {d_model}: fit the gate on this model (fit_gate)"
            )

    def score(
        self, resid: Float[Tensor, "batch pos d_model"], token_mask: Bool[Tensor, "batch pos"]
    ) -> Float[Tensor, " batch"]:
        """Gate score per row from the block's input activations."""
        pooled = pool(resid, token_mask.long(), "mean").float()
        return torch.sigmoid(pooled @ self.w.to(pooled.device) + self.b)

    def score_texts_with(self, model: Any, texts: list[str]) -> Float[Tensor, " batch"]:
        """Scores for chat prompts, computed with ``model`` (no steering)."""
        if self.block == 0:
            raise ConvaError("score_texts_with supports blocks >= 1")
        acts = cache_resid_post(
            model, texts, layers=[self.block - 1], pooling="mean", input_format="chat"
        )
        return torch.sigmoid(acts[0] @ self.w + self.b)

    def with_threshold(self, threshold: float) -> ActivationGate:
        return ActivationGate(self.value, self.block, self.w, self.b, threshold, self.metrics)


def gate_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    gate: ActivationGate,
    ctx: GenerationContext,
) -> None:
    """Read-only hook: on the prompt pass, record each row's gate decision."""
    if not ctx.is_prompt_pass(resid):
        return None
    scores = gate.score(resid, ctx.real_tokens(resid))
    ctx.state["gate_score"] = scores.detach().cpu()
    ctx.state["gate_open"] = (scores > gate.threshold).cpu()
    return None


def _first_control(vectors: ValueVectors | None) -> int:
    return min(vectors.control_layers) if vectors is not None and vectors.control_layers else 8


def _candidates(first: int, n_layers: int) -> list[int]:
    return sorted({min(max(1, first // 2), n_layers), min(max(1, first), n_layers)})


def fit_gates(
    model: Any,
    vectors: dict[str, ValueVectors],
    *,
    threshold: float = 0.5,
    C: float = 0.1,
    test_size: float = 0.3,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> dict[str, ActivationGate]:
    """Fit one gate per value with a single shared activation pass.

    The unrelated prompts are cached once for every value and the gate
    questions of all values together, at every candidate block any value needs.
    """
    names = list(vectors)
    cands = {v: _candidates(_first_control(vectors[v]), model.cfg.n_layers) for v in names}
    blocks = sorted({b for c in cands.values() for b in c})
    neg = [p.prompt for p in load_unrelated()]
    pos = {v: [q.question for q in load_questions(v, split="gate")] for v in names}
    texts = neg + [q for v in names for q in pos[v]]
    acts = cache_resid_post(
        model,
        texts,
        layers=[b - 1 for b in blocks],
        pooling="mean",
        input_format="chat",
        batch_size=batch_size,
        progress=progress,
    )
    slot = {b: k for k, b in enumerate(blocks)}
    out, start = {}, len(neg)
    for v in names:
        rows = list(range(len(neg))) + list(range(start, start + len(pos[v])))
        start += len(pos[v])
        y = np.array([0] * len(neg) + [1] * len(pos[v]))
        per_block = {b: acts[slot[b]][rows].double().numpy() for b in cands[v]}
        out[v] = _fit_from_acts(
            v, per_block, y, threshold=threshold, C=C, test_size=test_size, seed=seed
        )
    return out


def _fit_from_acts(
    value: str,
    per_block: dict[int, np.ndarray],
    y: np.ndarray,
    *,
    threshold: float,
    C: float,
    test_size: float,
    seed: int,
) -> ActivationGate:
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y
    )
    best = None
    for blk, X in per_block.items():
        clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(
            X[idx_train], y[idx_train]
        )
        p = clf.predict_proba(X[idx_test])[:, 1]
        auroc = float(roc_auc_score(y[idx_test], p))
        acc = float(((p > threshold) == y[idx_test]).mean())
        if best is None or auroc > best[1]:
            best = (blk, auroc, acc, X)
    blk, auroc, acc, X = best  # type: ignore[misc]
    final = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(X, y)
    metrics = {
        "heldout_auroc": auroc,
        "heldout_accuracy": acc,
        "n_positive": int(y.sum()),
        "n_negative": int((1 - y).sum()),
        "test_size": test_size,
        "candidates": sorted(per_block),
        "C": C,
    }
    logger.info("gate %s: block %d, held-out AUROC %.3f, accuracy %.3f", value, blk, auroc, acc)
    return ActivationGate(
        value,
        blk,
        torch.from_numpy(final.coef_[0]).float(),
        float(final.intercept_[0]),
        threshold,
        metrics,
    )


def fit_gate(
    model: Any,
    value: str,
    *,
    vectors: ValueVectors | None = None,
    block: int | None = None,
    threshold: float = 0.5,
    C: float = 0.1,
    test_size: float = 0.3,
    seed: int = 0,
    positives: list[str] | None = None,
    negatives: list[str] | None = None,
) -> ActivationGate:
    """Fit the default gate for a value and measure it on held-out prompts.

    Args:
        model: a ``TransformerBridge``.
        value: the value.
        vectors: the value's vectors; the gate's block is then chosen among
            blocks 1..first control layer (so it decides before any steering).
        block: read this block's input instead of choosing.
        threshold: g0 (class-balanced fit, so 0.5 is the natural default).
        C: inverse L2 strength.
        test_size: held-out fraction for the reported AUROC / accuracy.
        seed: split seed.
        positives / negatives: override the value's gate questions / the
            shipped unrelated prompts.
    """
    value = canonical_value(value)
    pos = positives or [q.question for q in load_questions(value, split="gate")]
    neg = negatives or [p.prompt for p in load_unrelated()]
    candidates = (
        [block] if block is not None else _candidates(_first_control(vectors), model.cfg.n_layers)
    )
    if any(c < 1 or c > model.cfg.n_layers for c in candidates):
        raise ConvaError(f"gate block must be in 1..{model.cfg.n_layers}, got {candidates}")
    acts = cache_resid_post(
        model, pos + neg, layers=[c - 1 for c in candidates], pooling="mean", input_format="chat"
    )
    y = np.array([1] * len(pos) + [0] * len(neg))
    per_block = {c: acts[k].double().numpy() for k, c in enumerate(candidates)}
    return _fit_from_acts(
        value, per_block, y, threshold=threshold, C=C, test_size=test_size, seed=seed
    )
