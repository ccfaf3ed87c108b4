"""Judge-free measures of a steered model, for ablations that run without an LLM judge.

Most measures already live in the evaluation harness and are reused from
there, not rewritten:

* the next-token distribution at the answer start under a method's hooks and
  KL(base || steered): :func:`conva_tl.evaluation.capability.answer_start_logprobs`
  and :func:`~conva_tl.evaluation.capability.next_token_kl`, combined here by
  :func:`kl_to_base`;
* answer length and distinct-word ratio (distinct-1, column ``distinct``),
  the distinct-n-gram ratio (:func:`distinct_n`; the sweeps report distinct-2 as
  ``distinct2``) and the probe's logit of each answer (:func:`answer_probe_readings`):
  all from :mod:`conva_tl.evaluation.scoring`, the one place answers are measured.

Added here, because the harness does not have them:

* :func:`answer_nll` / :func:`pooled_perplexity`: the perplexity of an answer
  under the *unsteered* model, given its chat prompt: a fluency proxy (a
  steered model that drifts into text the base model finds unlikely scores high);
* :func:`eps_summary`: the size of the control actually applied, from the
  per-token trace of ``generate(..., trace=True)``.

:func:`conva_tl.analysis.sweep_context.measure_method` computes all of them per setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.evaluation.capability import answer_start_logprobs, next_token_kl
from conva_tl.evaluation.scoring import answer_probe_readings, answer_stats, distinct_n
from conva_tl.model_protocol import HookedModel
from conva_tl.prompts import format_chat

__all__ = [
    "answer_probe_readings",
    "kl_to_base",
    "distinct_n",
    "answer_stats",
    "answer_nll",
    "pooled_perplexity",
    "eps_summary",
]


def kl_to_base(
    model: HookedModel,
    prompts: Sequence[str],
    method: Any,
    *,
    base: Float[Tensor, "batch d_vocab"] | None = None,
    batch_size: int = 8,
) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"] | None]:
    """KL(base || steered) of the first answer token for each chat prompt.

    Args:
        model: the model.
        prompts: user messages (formatted with the chat template).
        method: an intervention (its hooks and prompt rewrite apply).
        base: the unsteered log-probs of the same prompts, if already computed
            (:func:`conva_tl.evaluation.capability.answer_start_logprobs` with no method).
        batch_size: prompts per pass.

    Returns:
        ``(kl, gate_scores)``: KL in nats per prompt, and the scores the
        method's gate gave them (``None`` without a gate).
    """
    if base is None:
        base, _ = answer_start_logprobs(model, prompts, None, batch_size=batch_size)
    steered, gate = answer_start_logprobs(model, prompts, method, batch_size=batch_size)
    return next_token_kl(base, steered), gate


@torch.inference_mode()
def answer_nll(
    model: HookedModel,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    system: str | None = None,
    batch_size: int = 8,
) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Summed negative log-likelihood of each answer's tokens given its chat prompt.

    Run it on the model *without* any intervention hooks: it then measures how
    likely the unsteered model finds what the steered model wrote. The answer
    is re-tokenized from its text (as a reader would see it).

    Returns:
        ``(nll_sum, n_tokens)`` per answer, in nats; an empty answer has
        ``n_tokens == 0`` and ``nll_sum == 0``.
    """
    if len(questions) != len(answers):
        raise ConvaError(f"{len(questions)} questions but {len(answers)} answers")
    tok = model.tokenizer
    prompts = [
        tok(format_chat(tok, q, system=system), add_special_tokens=False)["input_ids"]
        for q in questions
    ]
    replies = [tok(a, add_special_tokens=False)["input_ids"] if a.strip() else [] for a in answers]
    nll = torch.zeros(len(answers), dtype=torch.float32)
    count = torch.zeros(len(answers), dtype=torch.long)
    todo = [i for i, r in enumerate(replies) if r]
    device = model.cfg.device
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        seqs = [prompts[i] + replies[i] for i in idx]
        width = max(len(s) for s in seqs)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        target = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, (i, s) in enumerate(zip(idx, seqs, strict=True)):
            ids[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
            target[row, width - len(replies[i]) :] = True
        logits = model(ids.to(device), attention_mask=mask.to(device), return_type="logits")
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
        tok_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        tgt = target[:, 1:]
        nll[torch.tensor(idx)] = -(tok_logp * tgt).sum(-1)
        count[torch.tensor(idx)] = tgt.sum(-1)
    return nll, count


def pooled_perplexity(nll: Float[Tensor, " batch"], n_tokens: Int[Tensor, " batch"]) -> float:
    """exp(total NLL / total tokens) over all answers (NaN when there are no tokens)."""
    total = int(n_tokens.sum())
    return math.exp(float(nll.sum()) / total) if total else float("nan")


def eps_summary(trace: pd.DataFrame) -> dict[str, float]:
    """How much control a traced run applied (``generate(..., trace=True)``).

    Returns:
        ``eps_abs`` mean |eps| over all traced (token, layer) cells (rows with a
        closed gate count with eps = 0);
        ``eps_abs_prompt`` / ``eps_abs_generated`` the same over prompt tokens
        (step 0) and generated tokens (later steps); ``moved`` the share of
        cells with eps != 0; ``p_before`` the mean P_V before control;
        ``saturated`` the share of cells whose P_V before control is below 0.01
        or above 0.99 (where P0 in 0.6-0.99 changes little: a saturated probe
        makes eps depend on the distance to the boundary, not on P0).
        NaN where the trace has no such cells.
    """
    if trace.empty:
        nan = float("nan")
        return {
            "eps_abs": nan,
            "eps_abs_prompt": nan,
            "eps_abs_generated": nan,
            "moved": nan,
            "p_before": nan,
            "saturated": nan,
        }
    eps = trace["eps"].abs()
    prompt = trace["step"] == 0

    def mean(x: pd.Series) -> float:
        return float(x.mean()) if len(x) else float("nan")

    return {
        "eps_abs": mean(eps),
        "eps_abs_prompt": mean(eps[prompt]),
        "eps_abs_generated": mean(eps[~prompt]),
        "moved": mean((eps > 0).astype(float)),
        "p_before": mean(trace["p_before"]),
        "saturated": mean(((trace["p_before"] < 0.01) | (trace["p_before"] > 0.99)).astype(float)),
    }
