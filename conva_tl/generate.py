"""Batched generation with a KV cache, under optional interventions.

One loop serves every method: the prompt batch is left-padded, the first
forward pass fills the bridge's Hugging Face KV cache, and each later step
feeds one token per row. Interventions (see :mod:`conva_tl.methods`) attach
their hooks for the whole loop and read the per-step
:class:`GenerationContext` (which positions are real tokens, whether this is
the prompt pass) so that the same typed hook serves the prompt and every
decoding step.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from conva_tl.errors import ConvaError
from conva_tl.hooks import HookFn, hooked
from conva_tl.model_protocol import HookedModel
from conva_tl.prompts import format_inputs
from conva_tl.tokens import Batch, iter_batches, token_positions

__all__ = [
    "GenerationContext",
    "Intervention",
    "GenerationConfig",
    "generate",
    "generate_batch",
    "check_context",
    "context_length",
]

logger = logging.getLogger(__name__)


@dataclass
class GenerationContext:
    """What hooks may know about the forward pass that is running.

    Attributes:
        token_mask: ``[batch, pos]`` True for real tokens of the current input
            (left padding is False); ``None`` when unknown (then all are real).
        prompt_pass: True on the pass over the prompt, False on decoding steps.
        texts: the formatted prompt texts of the batch.
        state: scratch space that an intervention fills on the prompt pass and
            reads on later steps (gate decisions, per-prompt eps, traces).
    """

    token_mask: Bool[Tensor, "batch pos"] | None = None
    positions: Int[Tensor, "batch pos"] | None = None
    prompt_pass: bool = True
    step: int = 0
    managed: bool = False
    texts: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] | None = None

    def is_prompt_pass(self, resid: Tensor) -> bool:
        """True on a prompt pass; outside :func:`generate`, any pass over > 1 token."""
        return self.prompt_pass if self.managed else resid.shape[1] > 1

    def real_tokens(self, resid: Tensor) -> Bool[Tensor, "batch pos"]:
        """Mask of real (non-padding) positions of ``resid``."""
        if self.managed and self.token_mask is not None:
            return self.token_mask.to(resid.device)
        return torch.ones(resid.shape[:2], dtype=torch.bool, device=resid.device)

    def token_positions(self, resid: Tensor) -> Int[Tensor, "batch pos"]:
        """Index of each input position among the row's real tokens (-1 = padding)."""
        if self.managed and self.positions is not None:
            return self.positions.to(resid.device)
        start = int(self.state.get("_seen", 0)) if not self.is_prompt_pass(resid) else 0
        return (torch.arange(resid.shape[1], device=resid.device) + start).expand(resid.shape[:2])


@runtime_checkable
class Intervention(Protocol):
    """Something that changes a generation: a prompt rewrite and/or hooks."""

    @property
    def name(self) -> str:
        """Short label, e.g. ``"conva"``."""
        ...

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        """Return ``(user_message, system_prompt)`` for a question."""
        ...

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        """Hooks to attach for one batch; they may read and write ``ctx``."""
        ...


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings.

    Attributes:
        max_new_tokens: stop after this many tokens.
        do_sample: sample instead of greedy decoding.
        temperature: softmax temperature when sampling.
        top_p: nucleus mass when sampling.
        seed: seed of the local generator used for sampling.
        use_cache: reuse keys/values between steps (turn off only to test it).
        batch_size: prompts per batch.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    use_cache: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "seed", "batch_size"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, numbers.Integral):
                raise ConvaError(f"{name} must be an integer, got {val!r}")
        for name in ("temperature", "top_p"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, numbers.Real) or not math.isfinite(val):
                raise ConvaError(f"{name} must be a finite number, got {val!r}")
        for name in ("do_sample", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ConvaError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.max_new_tokens < 1:
            raise ConvaError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ConvaError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConvaError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ConvaError(f"batch_size must be >= 1, got {self.batch_size}")


def _stop_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return {i for i in ids if i is not None}


def _next_token(logits: Tensor, cfg: GenerationConfig, gen: torch.Generator | None) -> Tensor:
    logits = logits.float()
    if not cfg.do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < cfg.top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)


def context_length(model: HookedModel) -> int | None:
    """The longest sequence the model was trained for (``cfg.n_ctx``), if known."""
    n_ctx = getattr(model.cfg, "n_ctx", None)
    return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None


def check_context(
    model: HookedModel, batch: Batch, max_new_tokens: int, *, first_row: int = 0
) -> None:
    """Raise :class:`ConvaError` if a prompt plus ``max_new_tokens`` overflows the context.

    Past its context a model answers garbage (positions it never saw) while
    taking longest; nothing is truncated silently.
    """
    n_ctx = context_length(model)
    if n_ctx is None:
        return
    lengths = batch.attention_mask.sum(dim=1).tolist()
    for row, n in enumerate(lengths):
        if n + max_new_tokens > n_ctx:
            hint = (
                f"lower max_new_tokens to {n_ctx - n}"
                if n < n_ctx
                else f"shorten it by at least {n - n_ctx + max_new_tokens} tokens"
            )
            raise ConvaError(
                f"prompt {first_row + row} is {n} tokens (after the chat template); with "
                f"max_new_tokens={max_new_tokens} that exceeds the model's context of {n_ctx} "
                f"tokens: {hint}"
            )


@torch.inference_mode()
def generate_batch(
    model: HookedModel,
    batch: Batch,
    cfg: GenerationConfig,
    *,
    ctx: GenerationContext | None = None,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
) -> list[list[int]]:
    """Generate new token ids for one tokenized batch under the given hooks."""
    ctx = ctx if ctx is not None else GenerationContext()
    ctx.managed = True
    device = model.cfg.device
    batch = batch.to(device)
    stops = _stop_ids(model.tokenizer)
    gen = torch.Generator().manual_seed(cfg.seed) if cfg.do_sample else None
    n = batch.input_ids.shape[0]
    ids, mask = batch.input_ids, batch.attention_mask
    new: list[list[int]] = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    pad = model.tokenizer.pad_token_id
    cache = None
    with hooked(model, list(fwd_hooks)):
        for step in range(cfg.max_new_tokens):
            ctx.prompt_pass, ctx.step = step == 0, step
            positions = token_positions(mask)
            if step == 0 or not cfg.use_cache:
                inp, ctx.token_mask, ctx.positions = ids, mask.bool(), positions
            else:
                inp, ctx.token_mask, ctx.positions = (
                    ids[:, -1:],
                    mask[:, -1:].bool(),
                    positions[:, -1:],
                )
            if cfg.use_cache:
                logits, cache = model(
                    inp,
                    attention_mask=mask,
                    past_key_values=cache,
                    return_type="logits_and_cache",
                    use_cache=True,
                )
            else:
                logits = model(inp, attention_mask=mask, return_type="logits")
            tok = _next_token(logits[:, -1, :], cfg, gen)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            for row in range(n):
                if not done[row]:
                    t = int(tok[row])
                    if t in stops:
                        done[row] = True
                    else:
                        new[row].append(t)
            ids = torch.cat([ids, tok[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if bool(done.all()):
                break
    return new


def generate(
    model: HookedModel,
    questions: Sequence[str],
    *,
    intervention: Intervention | None = None,
    config: GenerationConfig | None = None,
    input_format: str = "chat",
    system: str | None = None,
    progress: bool | None = None,
    trace: bool = False,
    **overrides: Any,
) -> Any:
    """Answer questions, optionally under an intervention; returns the new text only.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        questions: user messages (``chat``) or raw prompts (``raw``).
        intervention: a method from :mod:`conva_tl.methods` (``None`` = base model).
        config: decoding settings; keyword ``overrides`` replace single fields
            (``max_new_tokens=40``).
        input_format: ``"chat"`` (default) or ``"raw"``.
        system: system prompt (``chat`` only); an intervention may set its own.
        progress: show a progress bar over batches.
        trace: also return the per-token steering trace (a DataFrame with
            gate score, P_V before/after and eps per row, position and layer).

    Example:
        >>> generate(model, ["Should I lend my savings to a friend?"], max_new_tokens=30)  # doctest: +SKIP
    """
    if isinstance(questions, str):
        raise ConvaError("questions must be a list of strings: wrap one question as [question]")
    questions = list(questions)
    for i, q in enumerate(questions):
        if not isinstance(q, str):
            raise ConvaError(
                f"questions[{i}] is {type(q).__name__} {q!r}, expected a string; "
                "pass the question text"
            )
    if intervention is not None and not isinstance(intervention, Intervention):
        raise ConvaError(
            f"intervention must be a method such as ConVA(vectors) or Base(), got "
            f"{type(intervention).__name__}"
        )
    cfg = config or GenerationConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(cfg.__dict__))
        if unknown:
            raise ConvaError(
                f"generate() got unknown options {unknown}; decoding options are "
                f"{', '.join(cfg.__dict__)}"
            )
        cfg = GenerationConfig(**{**cfg.__dict__, **overrides})
    texts: list[str] = []
    for q in questions:
        user, sys_prompt = intervention.rewrite_prompt(q) if intervention else (q, None)
        texts.extend(
            format_inputs(model.tokenizer, [user], input_format, system=sys_prompt or system)
        )
    answers: list[str] = []
    records: list[dict[str, Any]] = []
    # Tokenize everything first: a prompt the context cannot hold is refused
    # before any batch is generated, not after minutes of work.
    batches = list(iter_batches(model.tokenizer, texts, cfg.batch_size, by_length=False))
    for idx, batch in batches:
        check_context(model, batch, cfg.max_new_tokens, first_row=idx[0])
    show = progress if progress is not None else len(batches) > 2
    for idx, batch in tqdm(batches, disable=not show, desc="generating", unit="batch"):
        start = idx[0]
        chunk = [texts[i] for i in idx]
        ctx = GenerationContext(texts=chunk, trace=[] if trace else None)
        hooks = intervention.fwd_hooks(model, ctx) if intervention else []
        out = generate_batch(model, batch, cfg, ctx=ctx, fwd_hooks=hooks)
        answers.extend(model.tokenizer.decode(t, skip_special_tokens=True).strip() for t in out)
        for rec in ctx.trace or []:
            records.append({**rec, "row": rec["row"] + start})
    if trace:
        import pandas as pd

        cols = ["row", "step", "position", "layer", "gate_score", "p_before", "p_after", "eps"]
        cols += list(dict.fromkeys(k for r in records for k in r if k not in cols))  # per-value
        return answers, pd.DataFrame(records, columns=cols)
    return answers
