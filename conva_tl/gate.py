"""The gate g(x): is this prompt related to the value? (paper Eq. 5)

The paper gates with a DeBERTa human-value detector that is not available
offline. The default here, :class:`ActivationGate`, is a logistic regression on
the model's own residual stream (mean over the prompt's tokens at one block's
input), fitted on the value's *gate* dilemma questions against the shared
value-unrelated prompts, and measured on a held-out split. It reads a block
at or below the first control layer, so on the prompt pass it decides before
any steering happens, inside the same forward pass: no extra model call.

Two kinds of activation gate are fitted (``kind``): ``"neutral"`` (the
default) separates value-laden prompts from neutral ones, so it opens on every
value's dilemmas alike; ``"specific"`` adds the other values' gate questions as
hard negatives, so it opens on its own value's prompts only.
:func:`gate_opening_matrix` measures both: how often each gate opens on each
value's held-out gate questions and on the neutral prompts.

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
import pandas as pd
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
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "TextGate",
    "ActivationGate",
    "fit_gate",
    "fit_gates",
    "gate_opening_matrix",
    "heldout_questions",
    "GATE_KINDS",
    "gate_hook",
    "CallableGate",
    "checked_scores",
    "PromptScoredGate",
    "resolve_gate",
]

logger = logging.getLogger(__name__)

GATE_KINDS = ("neutral", "specific")


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
        kind: ``"neutral"`` (value-laden vs neutral prompts) or ``"specific"``
            (also against the other values' questions).
    """

    value: str
    block: int
    w: Float[Tensor, " d_model"]
    b: float
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    kind: str = "neutral"

    def __post_init__(self) -> None:
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ConvaError(f"gate block must be an integer >= 1, got {self.block!r}")
        _check_threshold(self.threshold)
        _check_kind(self.kind)

    @property
    def hook_name(self) -> str:
        return hook_name(self.block, "hook_resid_pre")

    def check_model(self, model: HookedModel) -> None:
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

    def score_texts_with(self, model: HookedModel, texts: list[str]) -> Float[Tensor, " batch"]:
        """Scores for chat prompts, computed with ``model`` (no steering)."""
        if self.block == 0:
            raise ConvaError("score_texts_with supports blocks >= 1")
        acts = cache_resid_post(
            model, texts, layers=[self.block - 1], pooling="mean", input_format="chat"
        )
        return torch.sigmoid(acts[0] @ self.w + self.b)

    def with_threshold(self, threshold: float) -> ActivationGate:
        return ActivationGate(
            self.value, self.block, self.w, self.b, threshold, self.metrics, self.kind
        )


@dataclass(frozen=True, eq=False)
class PromptScoredGate:
    """An :class:`ActivationGate` scored from the formatted prompt text before generation.

    What :func:`resolve_gate` returns when the gate reads a block after the first
    control layer, where the in-pass gate would see steered activations. Same
    scores as the in-pass gate, one extra partial pass without steering.
    """

    model: HookedModel
    gate: ActivationGate

    @property
    def threshold(self) -> float:
        return self.gate.threshold

    def score_texts(self, texts: list[str]) -> Float[Tensor, " batch"]:
        acts = cache_resid_post(
            self.model, texts, layers=[self.gate.block - 1], pooling="mean", input_format="raw"
        )
        return torch.sigmoid(acts[0] @ self.gate.w + self.gate.b)


def resolve_gate(
    gate: ActivationGate | None, layers: tuple[int, ...], *, model: HookedModel | None = None
) -> ActivationGate | PromptScoredGate | None:
    """The gate to steer ``layers`` with: the one rule "a gate never reads steered activations".

    A gate that reads its block at or before the first control layer is used as it
    is (in the same forward pass). One that reads a later block is scored from the
    prompt text first (:class:`PromptScoredGate`: same scores, one extra partial
    pass), which needs ``model``; without it this is an error naming the fix.
    :class:`~conva_tl.methods.ConVA` itself refuses such a gate, so every command
    and sweep goes through here.
    """
    if gate is None or not layers or gate.block <= min(layers):
        return gate
    if model is None:
        raise ConvaError(
            f"the gate reads block {gate.block}, after the first control layer ({min(layers)}): "
            "pass model= so that it is scored from the prompt text instead, or refit the gate "
            "with fit_gate(..., vectors=...)"
        )
    return PromptScoredGate(model, gate)


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


def _check_kind(kind: Any) -> None:
    if kind not in GATE_KINDS:
        raise ConvaError(f"gate kind must be one of {', '.join(GATE_KINDS)}, got {kind!r}")


def heldout_questions(value: str, *, test_size: float = 0.3, seed: int = 0) -> list[str]:
    """The gate questions of ``value`` that no *specific* gate trains on as negatives.

    A fixed, seeded share of each value's gate questions; the specific gates
    of the other values leave them out, so :func:`gate_opening_matrix` can
    score them as unseen prompts (neutral gates never see other values'
    questions at all).
    """
    questions = _gate_questions(value)
    train = set(_train_index(value, test_size, seed))
    return [q for i, q in enumerate(questions) if i not in train]


def _gate_questions(value: str, index: list[int] | None = None) -> list[str]:
    questions = [q.question for q in load_questions(canonical_value(value), split="gate")]
    return questions if index is None else [questions[i] for i in index]


def _train_index(value: str, test_size: float, seed: int) -> list[int]:
    """Indices of ``value``'s gate questions outside :func:`heldout_questions`."""
    n = len(_gate_questions(value))
    n_test = max(1, round(test_size * n))
    return sorted(np.random.default_rng(seed).permutation(n)[n_test:].tolist())


def _first_control(vectors: ValueVectors | None) -> int:
    return min(vectors.control_layers) if vectors is not None and vectors.control_layers else 8


def _candidates(first: int, n_layers: int) -> list[int]:
    # a gate hooks blocks.{b}.hook_resid_pre, so b is in 1..n_layers - 1
    top = max(1, n_layers - 1)
    return sorted({min(max(1, first // 2), top), min(max(1, first), top)})


def fit_gates(
    model: HookedModel,
    vectors: dict[str, ValueVectors],
    *,
    threshold: float = 0.5,
    C: float = 0.1,
    test_size: float = 0.3,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
    kind: str = "neutral",
) -> dict[str, ActivationGate]:
    """Fit one gate per value with a single shared activation pass.

    The unrelated prompts are cached once for every value and the gate
    questions of all values together, at every candidate block any value needs.

    Args:
        kind: ``"neutral"`` fits each value's gate questions against the
            unrelated prompts. ``"specific"`` adds, as hard negatives, the gate
            questions of every *other* shipped value (all ten, not only those in
            ``vectors``) except their :func:`heldout_questions`; the fit stays
            class-balanced.
    """
    _check_kind(kind)
    names = list(vectors)
    cands = {v: _candidates(_first_control(vectors[v]), model.cfg.n_layers) for v in names}
    blocks = sorted({b for c in cands.values() for b in c})
    neg = [p.prompt for p in load_unrelated()]
    everyone = list(VALUES) if kind == "specific" else names
    pos = {v: [q.question for q in load_questions(v, split="gate")] for v in everyone}
    order = names + [v for v in everyone if v not in names]
    texts = neg + [q for v in order for q in pos[v]]
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
    first, start = {}, len(neg)
    for v in order:
        first[v], start = start, start + len(pos[v])
    # Other values' held-out questions stay unseen, for gate_opening_matrix.
    train = (
        [first[o] + i for o in order for i in _train_index(o, test_size, seed)]
        if kind == "specific"
        else []
    )
    out = {}
    for v in names:
        own = range(first[v], first[v] + len(pos[v]))
        hard = [r for r in train if r not in own]
        rows = list(range(len(neg))) + hard + list(own)
        y = np.array([0] * (len(neg) + len(hard)) + [1] * len(pos[v]))
        per_block = {b: acts[slot[b]][rows].double().numpy() for b in cands[v]}
        out[v] = _fit_from_acts(
            v,
            per_block,
            y,
            threshold=threshold,
            C=C,
            test_size=test_size,
            seed=seed,
            kind=kind,
            n_hard=len(hard),
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
    kind: str = "neutral",
    n_hard: int = 0,
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
        "n_hard_negative": n_hard,
        "test_size": test_size,
        "seed": seed,
        "candidates": sorted(per_block),
        "C": C,
    }
    logger.info(
        "%s gate %s: block %d, held-out AUROC %.3f, accuracy %.3f", kind, value, blk, auroc, acc
    )
    return ActivationGate(
        value,
        blk,
        torch.from_numpy(final.coef_[0]).float(),
        float(final.intercept_[0]),
        threshold,
        metrics,
        kind,
    )


def fit_gate(
    model: HookedModel,
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
    kind: str = "neutral",
    hard_negatives: list[str] | None = None,
) -> ActivationGate:
    """Fit the default gate for a value and measure it on held-out prompts.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
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
        kind: ``"neutral"`` or ``"specific"`` (see :func:`fit_gates`).
        hard_negatives: for ``"specific"``, override the other values' gate
            questions (default: those not in their :func:`heldout_questions`).
    """
    _check_kind(kind)
    value = canonical_value(value)
    pos = positives or [q.question for q in load_questions(value, split="gate")]
    neg = negatives or [p.prompt for p in load_unrelated()]
    hard: list[str] = []
    if kind == "specific":
        hard = hard_negatives or [
            q
            for o in VALUES
            if o != value
            for q in _gate_questions(o, _train_index(o, test_size, seed))
        ]
    elif hard_negatives:
        raise ConvaError("hard_negatives are for kind='specific'; a neutral gate takes negatives")
    candidates = (
        [block] if block is not None else _candidates(_first_control(vectors), model.cfg.n_layers)
    )
    if any(c < 1 or c >= model.cfg.n_layers for c in candidates):
        raise ConvaError(f"gate block must be in 1..{model.cfg.n_layers - 1}, got {candidates}")
    acts = cache_resid_post(
        model,
        pos + neg + hard,
        layers=[c - 1 for c in candidates],
        pooling="mean",
        input_format="chat",
    )
    y = np.array([1] * len(pos) + [0] * (len(neg) + len(hard)))
    per_block = {c: acts[k].double().numpy() for k, c in enumerate(candidates)}
    return _fit_from_acts(
        value,
        per_block,
        y,
        threshold=threshold,
        C=C,
        test_size=test_size,
        seed=seed,
        kind=kind,
        n_hard=len(hard),
    )


def gate_opening_matrix(
    model: HookedModel,
    gates: dict[str, ActivationGate],
    *,
    split: str = "heldout",
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    """How often each gate opens on each value's questions and on neutral prompts.

    Row ``i`` is the gate of value ``i``; column ``j`` the share of value
    ``j``'s questions on which it opens (score > threshold); column
    ``"neutral"`` the share of the shipped unrelated prompts. Only *gate*
    questions are scored: the *eval* questions are the evaluation set.

    Which entries are unseen: with ``split="heldout"`` (default) the columns
    hold each value's :func:`heldout_questions` (the seed and test size the
    gates recorded), so the off-diagonal entries are prompts the gate never
    trained on, for both kinds. The diagonal and the neutral column are the
    gate's own training prompts (its final fit uses all of them); the gate's
    held-out AUROC in ``metrics`` is the unseen measure of those.
    ``split="gate"`` scores all gate questions: then a specific gate's
    off-diagonal entries are mostly its own training negatives.

    Args:
        model: the ``TransformerBridge`` the gates were fitted on.
        gates: activation gates by value (row and column order).
        split: ``"heldout"`` or ``"gate"``.
        batch_size / progress: for the activation pass.

    Returns:
        DataFrame indexed by gate value, columns the values then ``"neutral"``,
        entries in [0, 1].
    """
    if split not in ("heldout", "gate"):
        raise ConvaError(
            f"split must be 'heldout' or 'gate', got {split!r} (eval questions are the "
            "evaluation set and are never used to judge gates)"
        )
    if not gates:
        raise ConvaError("gate_opening_matrix needs at least one gate")
    names = [canonical_value(v) for v in gates]
    for g in gates.values():
        g.check_model(model)
    recorded = {(g.metrics.get("test_size", 0.3), g.metrics.get("seed", 0)) for g in gates.values()}
    if split == "heldout" and len(recorded) > 1:
        raise ConvaError(
            f"the gates were fitted with different held-out splits {sorted(recorded)} "
            "(test_size, seed): fit them together, or use split='gate'"
        )
    test_size, seed = next(iter(recorded))
    cols = {
        v: heldout_questions(v, test_size=test_size, seed=seed)
        if split == "heldout"
        else [q.question for q in load_questions(v, split="gate")]
        for v in names
    }
    cols["neutral"] = [p.prompt for p in load_unrelated()]
    texts = [t for c in cols.values() for t in c]
    blocks = sorted({g.block for g in gates.values()})
    acts = cache_resid_post(
        model,
        texts,
        layers=[b - 1 for b in blocks],
        pooling="mean",
        input_format="chat",
        batch_size=batch_size,
        progress=progress,
    )
    rows = {}
    for v, g in zip(names, gates.values(), strict=True):
        opened = torch.sigmoid(acts[blocks.index(g.block)] @ g.w + g.b) > g.threshold
        rates, start = {}, 0
        for col, col_texts in cols.items():
            rates[col] = float(opened[start : start + len(col_texts)].float().mean())
            start += len(col_texts)
        rows[v] = rates
    return pd.DataFrame.from_dict(rows, orient="index")
