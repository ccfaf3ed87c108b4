"""The gated control hooks (paper Eq. 5-6) and the CAA baseline hook.

Every function here is a typed TransformerLens hook on
``blocks.{l}.hook_resid_post``: ``hook(resid, hook, *, ...) -> resid``, with its
parameters bound by :mod:`conva_tl.methods` through ``functools.partial``. They
read the batch's :class:`~conva_tl.generate.GenerationContext` to know which
positions are padding, whether this is the prompt pass, and whether the gate is
open for each row, so the same hook runs on the prompt and at every decoding
step with the KV cache.

Closed form. For a probe P_V(e) = sigmoid(w.e + b) and v = w/|w|, the smallest
|eps| with P_V(e + eps v) >= P0 is eps = (logit(P0) - w.e - b) / (w.v) when
P_V(e) < P0, else 0 (Appx. K). Since w.v = |w|, the shifted activation lands
exactly on the probe's P0 contour.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.generate import GenerationContext
from conva_tl.probes import MIN_W_NORM

__all__ = [
    "logit",
    "conva_shift",
    "conva_resid_hook",
    "conva_prompt_resid_hook",
    "caa_resid_hook",
    "gate_open",
]


def logit(p: float) -> float:
    """sigmoid^-1(p); ``p`` is a target probability P0 (a number in (0, 1))."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise ConvaError(f"P0 must be a number strictly between 0 and 1, got {p!r}")
    if not 0.0 < float(p) < 1.0:
        raise ConvaError(f"P0 must be strictly between 0 and 1, got {p}")
    return math.log(float(p) / (1.0 - float(p)))


def _usable(w_norm: Tensor) -> bool:
    return bool(torch.isfinite(w_norm)) and float(w_norm) >= MIN_W_NORM


def _keep_finite(resid: Tensor, out: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Where the shifted activation is not finite in the model's dtype, keep the input.

    A safety net: control layers are checked for usable probes before any hook
    is attached, but an overflow on the cast (a huge push on float16) must never
    reach the next block as inf or NaN.
    """
    bad = ~torch.isfinite(out).all(-1) & torch.isfinite(resid).all(-1)
    if bool(bad.any()):
        out = torch.where(bad.unsqueeze(-1), resid, out)
        eps = eps.masked_fill(bad, 0.0)
    return out, eps


def conva_shift(
    resid: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, " d_model"],
    b: float,
    p0: float,
    allowed: Bool[Tensor, "batch pos"],
) -> tuple[
    Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos"], Float[Tensor, "batch pos"]
]:
    """Move every allowed position with P_V < P0 onto the P0 contour.

    Computed in float32 whatever the model's dtype, then cast back. A probe
    with |w| below :data:`~conva_tl.probes.MIN_W_NORM` (or not finite) moves
    nothing, and positions whose shifted value is not finite in the model's
    dtype keep their input: the output is finite wherever the input is.

    Returns:
        ``(new_resid, eps, logit_before)``; ``eps`` is 0 where nothing moved.
    """
    x = resid.float()
    wf = w.to(x.device, torch.float32)
    w_norm = wf.norm()
    before = x @ wf + float(b)
    if not _usable(w_norm):  # a zero or degenerate probe defines no direction: move nothing
        return resid, torch.zeros_like(before), before
    target = logit(p0)
    move = allowed.to(x.device) & (before < target)
    eps = torch.where(move, (target - before) / w_norm, torch.zeros_like(before))
    out = (x + eps.unsqueeze(-1) * (wf / w_norm)).to(resid.dtype)
    out, eps = _keep_finite(resid, out, eps)
    return out, eps, before


def gate_open(ctx: GenerationContext, batch: int, device: torch.device) -> Bool[Tensor, " batch"]:
    """Per-row gate decision recorded on the prompt pass (all open if no gate)."""
    opened = ctx.state.get("gate_open")
    if opened is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    if opened.shape[0] != batch:
        raise ConvaError(
            f"gate decisions for {opened.shape[0]} rows but the batch has {batch}; "
            "run each batch through generate() or a fresh steer() block"
        )
    return opened.to(device)


def _record(
    ctx: GenerationContext,
    layer: int,
    out: Tensor,
    before: Tensor,
    eps: Tensor,
    w: Tensor,
    b: float,
) -> None:
    if ctx.trace is None:
        return
    # P_V of the activation the next block receives, after the cast to the
    # model's dtype (on bfloat16 it can fall visibly short of P0).
    after = out.float() @ w.to(out.device, torch.float32) + float(b)
    real = ctx.real_tokens(out)
    pos = ctx.token_positions(out)
    rows, cols = torch.nonzero(real, as_tuple=True)
    scores = ctx.state.get("gate_score")
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        ctx.trace.append(
            {
                "row": r,
                "step": ctx.step,
                "position": int(pos[r, c]),
                "layer": layer,
                "gate_score": float(scores[r]) if scores is not None else float("nan"),
                "p_before": float(torch.sigmoid(before[r, c])),
                "p_after": float(torch.sigmoid(after[r, c])),
                "eps": float(eps[r, c]),
            }
        )


def conva_resid_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    layer: int,
    w: Float[Tensor, " d_model"],
    b: float,
    p0: float,
    ctx: GenerationContext,
    positions: Literal["all", "answer", "prompt"] = "all",
) -> Float[Tensor, "batch pos d_model"]:
    """ConVA per token (the paper): every real position of every gated row.

    ``positions="answer"`` leaves the prompt's tokens alone except the last one
    (whose residual predicts the first answer token) and steers every generated
    token; ``positions="prompt"`` steers the prompt's tokens only, so the answer
    is generated unsteered from a steered reading of the question.
    """
    allowed = ctx.real_tokens(resid) & gate_open(ctx, resid.shape[0], resid.device)[:, None]
    prompt_pass = ctx.is_prompt_pass(resid)
    if positions == "answer" and prompt_pass:
        allowed = allowed.clone()
        allowed[:, :-1] = False
    elif positions == "prompt" and not prompt_pass:
        allowed = torch.zeros_like(allowed)
    out, eps, before = conva_shift(resid, w, b, p0, allowed)
    _record(ctx, layer, out, before, eps, w, b)
    return out


def conva_prompt_resid_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    layer: int,
    w: Float[Tensor, " d_model"],
    b: float,
    p0: float,
    ctx: GenerationContext,
) -> Float[Tensor, "batch pos d_model"]:
    """ConVA as the authors' code does it: one eps per prompt and layer.

    On the prompt pass eps is computed from the last prompt token (after the
    shifts of earlier layers, which this pass has already applied) and added to
    every real position; every later token gets the same eps unchanged.
    """
    key = f"prompt_eps.{layer}"
    x = resid.float()
    wf = w.to(x.device, torch.float32)
    if not _usable(wf.norm()):  # no direction to push along (see conva_shift)
        return resid
    v = wf / wf.norm()
    before = x @ wf + float(b)
    if ctx.is_prompt_pass(resid):
        opened = gate_open(ctx, resid.shape[0], resid.device)
        _, eps_last, _ = conva_shift(resid[:, -1:], w, b, p0, opened[:, None])
        ctx.state[key] = eps_last[:, 0]
    eps_row = ctx.state.get(key)
    if eps_row is None:
        raise ConvaError("per-prompt ConVA saw a decoding step before any prompt pass")
    eps = eps_row.to(x.device)[:, None] * ctx.real_tokens(resid)
    out, eps = _keep_finite(resid, (x + eps.unsqueeze(-1) * v).to(resid.dtype), eps)
    _record(ctx, layer, out, before, eps, w, b)
    return out


def caa_resid_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    vector: Float[Tensor, " d_model"],
    coef: float,
    ctx: GenerationContext,
) -> Float[Tensor, "batch pos d_model"]:
    """CAA (Rimsky et al.): add ``coef`` x the mean paired difference everywhere."""
    mask = ctx.real_tokens(resid).unsqueeze(-1)
    add = coef * vector.to(resid.device, torch.float32)
    return (resid.float() + mask * add).to(resid.dtype)
