"""Exact control of several values at once: the smallest push onto all contours.

For one token's residual e at a layer, every requested value gives a linear
constraint on the push d: a target P_V(e + d) >= P0 is w.d >= logit(P0) - w.e - b,
a cap P_V(e + d) <= Pmax is -w.d >= w.e + b - logit(Pmax). Written a_i.d >= c_i
(``a_i = +-w_i``), the smallest push is the least-distance programme

    min |d|  subject to  A d >= c,

whose dual is min_{lam >= 0} 1/2 lam^T G lam - c^T lam on the Gram matrix
G = A A^T of the constraint normals, with d = A^T lam. G depends only on the
probes, so it is factored once per layer; every token's c is then solved
exactly by enumerating the active sets (2^k of them, k <= 10): each subset's
equality solve is one batched matmul and the subset that satisfies the KKT
conditions is picked per token. With one constraint this is the paper's closed
form (:func:`conva_tl.steering.conva_shift`).

Infeasible requests (normals that are linearly dependent with incompatible
targets, e.g. raising a value and capping the same value lower) have no such d.
Then the solver returns the *least-violation* push: the readings' shortfalls
s_i = max(c_i - a_i.d, 0) (in logits, on the side each request asks for) have
the smallest sum of squares any d can reach, and among the pushes that reach it
the shortest. Directions whose Gram eigenvalue is below ``rcond`` x the largest
count as dependent, so nearly-opposite requests get a bounded least-violation
push rather than a huge exact one.

:func:`multi_resid_hook` applies this on ``blocks.{l}.hook_resid_post`` with the
same real-token and gate masks as :func:`conva_tl.steering.conva_resid_hook`;
:class:`conva_tl.multi_conva.MultiConVA` is the intervention that binds it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.generate import GenerationContext
from conva_tl.steering import gate_open

__all__ = [
    "RCOND",
    "FEASIBILITY_TOL",
    "LeastNormPush",
    "LeastNormSolver",
    "min_norm_push",
    "ConstraintSet",
    "multi_resid_hook",
]

#: Gram eigenvalues below RCOND x the largest one count as zero (float32 solves
#: cannot resolve a better-conditioned distinction).
RCOND = 1e-6
#: A request is reported infeasible when a shortfall after the push exceeds this (logits).
FEASIBILITY_TOL = 1e-3
MAX_CONSTRAINTS = 10
_CHUNK_ELEMS = 1 << 22  # tokens x subsets x constraints per batched step


def _subset_masks(k: int) -> Bool[Tensor, "n_subsets k"]:
    idx = torch.arange(1 << k)
    return ((idx[:, None] >> torch.arange(k)) & 1).bool()


@dataclass(frozen=True)
class _ActiveSets:
    """min_{lam >= 0} 1/2 lam^T Q lam - r^T lam for a fixed PSD Q, by active-set enumeration."""

    q: Tensor  # [k, k] float32
    inverses: Tensor  # [n_subsets, k, k] float32: pinv(Q_SS) embedded, zero outside S
    masks: Tensor  # [n_subsets, k] bool
    scale: Tensor  # [k] float32: diag(Q), to put dual and primal residuals in one unit

    @classmethod
    def build(cls, q64: Tensor, rcond: float) -> _ActiveSets:
        k = q64.shape[0]
        masks = _subset_masks(k)
        m = masks.double()
        outer = m[:, :, None] * m[:, None, :]
        fill = q64.diagonal().abs().max().clamp_min(1e-30)
        # Identity (scaled like Q) outside S keeps pinv's relative cut-off about Q_SS alone.
        padded = q64 * outer + torch.diag_embed((1.0 - m) * fill)
        inverses = torch.linalg.pinv(padded, rtol=rcond, hermitian=True) * outer
        return cls(q64.float(), inverses.float(), masks, q64.diagonal().float().clamp_min(0.0))

    def solve(self, r: Float[Tensor, "n k"]) -> Float[Tensor, "n k"]:
        dev = r.device
        q, inv, masks, scale = (t.to(dev) for t in (self.q, self.inverses, self.masks, self.scale))
        chunk = max(1, _CHUNK_ELEMS // (inv.shape[0] * max(inv.shape[1], 1)))
        out = []
        for r_chunk in r.split(chunk):
            lam = torch.einsum("sij,nj->nsi", inv, r_chunk)  # every subset's equality solve
            grad = lam @ q - r_chunk[:, None, :]  # Q lam - r (Q symmetric)
            kkt = torch.where(
                masks, torch.maximum(grad.abs(), (-lam * scale).clamp_min(0)), (-grad).clamp_min(0)
            )
            best = kkt.amax(-1).argmin(-1)  # ties go to the smallest subset (index 0 = none)
            out.append(lam[torch.arange(lam.shape[0], device=dev), best])
        return torch.cat(out) if out else r.new_zeros(r.shape)


@dataclass(frozen=True)
class LeastNormPush:
    """The solver's answer for n tokens.

    Attributes:
        d: the push, ``[n, d_model]``.
        lam: the dual multipliers, ``[n, k]``; ``lam > 0`` marks an active constraint.
        shortfall: max(c - A d, 0) after the push, ``[n, k]``, in logits.
    """

    d: Float[Tensor, "n d_model"]
    lam: Float[Tensor, "n k"]
    shortfall: Float[Tensor, "n k"]

    @property
    def infeasible(self) -> Bool[Tensor, " n"]:
        return self.shortfall.amax(-1) > FEASIBILITY_TOL


class LeastNormSolver:
    """Smallest |d| with A d >= c (least violation if none), for a fixed A and many c.

    Args:
        a: the constraint normals, one per row (at most 10).
        rcond: relative eigenvalue cut-off of G = A A^T (see the module docstring).

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> LeastNormSolver(a).solve(torch.tensor([[1.0, 2.0]])).d
        tensor([[1., 1.]])
    """

    def __init__(self, a: Float[Tensor, "k d_model"], rcond: float = RCOND) -> None:
        k = a.shape[0]
        if not 1 <= k <= MAX_CONSTRAINTS:
            raise ConvaError(f"between 1 and {MAX_CONSTRAINTS} constraints are supported, got {k}")
        if not bool(torch.isfinite(a).all()):
            raise ConvaError("constraint normals (probe weights) contain NaN or inf")
        a64 = a.detach().double().cpu()
        evals, evecs = torch.linalg.eigh(a64 @ a64.T)
        if float(evals.max()) <= 0.0:
            raise ConvaError("every constraint normal is zero: the probes cannot be steered")
        keep = evals > rcond * evals.max()
        kept, null = evecs[:, keep], evecs[:, ~keep]
        self.a = a.detach().float()
        self.rank = int(keep.sum())
        self._dual = _ActiveSets.build((kept * evals[keep]) @ kept.T, rcond)
        proj = null @ null.T
        self._proj = proj.float() if self.rank < k else None
        self._violation = _ActiveSets.build(proj, rcond) if self.rank < k else None

    def solve(self, c: Float[Tensor, "n k"]) -> LeastNormPush:
        """Solve every row of ``c`` at once (float32 on ``c``'s device)."""
        c = c.float()
        if not bool(torch.isfinite(c).all()):
            raise ConvaError("constraint offsets contain NaN or inf (check the residual stream)")
        a = self.a.to(c.device)
        s = self._least_shortfall(c)
        lam = self._dual.solve(c - s) if s is not None else self._dual.solve(c)
        d = lam @ a
        shortfall = (c - d @ a.T).clamp_min(0.0)
        return LeastNormPush(d, lam, shortfall)

    def _least_shortfall(self, c: Tensor) -> Tensor | None:
        """Smallest-norm shortfall vector any d can reach (None when A has full row rank).

        The reachable shortfalls are K = c + range(G) + R^k_+ (less), so the
        least one is the projection of 0 onto K: s = P (c + p) with P the
        projector onto null(G) and p = argmin_{p >= 0} |P (c + p)|^2, itself an
        active-set problem of the same form.
        """
        if self._violation is None or self._proj is None:
            return None
        proj = self._proj.to(c.device)
        p = self._violation.solve(-(c @ proj))
        return ((c + p) @ proj).clamp_min(0.0)


def min_norm_push(
    a: Float[Tensor, "k d_model"], c: Float[Tensor, "n k"], *, rcond: float = RCOND
) -> LeastNormPush:
    """Functional form of :class:`LeastNormSolver`: ``LeastNormSolver(a, rcond).solve(c)``."""
    return LeastNormSolver(a, rcond).solve(c)


@dataclass(eq=False)
class ConstraintSet:
    """The requests that apply at one layer, in the probes' own terms.

    Attributes:
        labels: one per constraint, e.g. ``"benevolence>=0.9"``, ``"power<=0.3"``.
        values: the value each constraint reads (its per-value gate key).
        w: probe weights, ``[k, d_model]``; b: their biases, ``[k]``.
        bound: logit(P0) for targets, logit(Pmax) for caps, ``[k]``.
        sign: +1 for a target (reading >= bound), -1 for a cap (reading <= bound).
        rcond: passed to the solver.
    """

    labels: tuple[str, ...]
    values: tuple[str, ...]
    w: Float[Tensor, "k d_model"]
    b: Float[Tensor, " k"]
    bound: Float[Tensor, " k"]
    sign: Float[Tensor, " k"]
    rcond: float = RCOND
    _solvers: dict[tuple[bool, ...], LeastNormSolver] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        k = len(self.labels)
        if not 1 <= k <= MAX_CONSTRAINTS or len(self.values) != k:
            raise ConvaError(f"a layer takes 1 to {MAX_CONSTRAINTS} labelled constraints, got {k}")
        if len(set(self.labels)) != k:
            raise ConvaError(f"constraint labels must be distinct, got {self.labels}")
        if not bool(torch.isfinite(self.bound).all()):
            raise ConvaError("constraint probabilities must be strictly between 0 and 1")

    def solver(self, enabled: tuple[bool, ...]) -> LeastNormSolver:
        """The factored solver for a subset of the constraints (cached)."""
        if enabled not in self._solvers:
            idx = torch.tensor(enabled)
            self._solvers[enabled] = LeastNormSolver(
                self.sign[idx, None] * self.w[idx].float(), self.rcond
            )
        return self._solvers[enabled]

    def readings(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos k"]:
        """w_i.x + b_i (logits) for every constraint."""
        return x.float() @ self.w.to(x.device, torch.float32).T + self.b.to(x.device)

    def offsets(self, readings: Float[Tensor, "batch pos k"]) -> Float[Tensor, "batch pos k"]:
        """c_i: the a_i.d each constraint needs (<= 0 when already satisfied)."""
        sign = self.sign.to(readings.device)
        return sign * (self.bound.to(readings.device) - readings)


def value_gate_key(value: str) -> str:
    """Where a per-value gate's decision lives in ``ctx.state``."""
    return f"gate_open:{value}"


def _enabled(ctx: GenerationContext, cs: ConstraintSet, resid: Tensor) -> Tensor:
    batch, dev = resid.shape[0], resid.device
    allowed = ctx.real_tokens(resid) & gate_open(ctx, batch, dev)[:, None]
    per_value = []
    for value in cs.values:
        opened = ctx.state.get(value_gate_key(value))
        per_value.append(
            torch.ones(batch, dtype=torch.bool, device=dev) if opened is None else opened.to(dev)
        )
    return allowed[..., None] & torch.stack(per_value, -1)[:, None, :]


def multi_resid_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    layer: int,
    constraints: ConstraintSet,
    ctx: GenerationContext,
    on_infeasible: str = "warn",
) -> Float[Tensor, "batch pos d_model"]:
    """Multi-value ConVA per token: the smallest push meeting every applicable request.

    A constraint applies to a real token of a row whose gate (if any) is open and
    whose value's own gate (if any, ``ctx.state[value_gate_key(value)]``) is open.
    Tokens are grouped by the set of constraints that apply to them; each group
    is solved in one batched call.
    """
    if on_infeasible not in ("warn", "error", "ignore"):
        raise ConvaError(
            f"on_infeasible must be 'warn', 'error' or 'ignore', got {on_infeasible!r}"
        )
    x = resid.float()
    readings = constraints.readings(x)
    k = readings.shape[-1]
    c = constraints.offsets(readings).reshape(-1, k)
    enabled = _enabled(ctx, constraints, resid).reshape(-1, k)
    d = torch.zeros_like(x).reshape(-1, x.shape[-1])
    lam = torch.zeros_like(c)
    shortfall = torch.zeros_like(c)
    # One solve per distinct set of applicable constraints (gates), never per token.
    for pattern in torch.unique(enabled, dim=0):
        if not bool(pattern.any()):
            continue
        rows = (enabled == pattern).all(-1)
        push = constraints.solver(tuple(pattern.tolist())).solve(c[rows][:, pattern])
        d[rows] = push.d
        lam[rows.nonzero()[:, :1], pattern.nonzero()[:, 0]] = push.lam
        shortfall[rows.nonzero()[:, :1], pattern.nonzero()[:, 0]] = push.shortfall
    if bool((shortfall > FEASIBILITY_TOL).any()):
        _report(constraints, layer, shortfall, on_infeasible)
    out = x + d.reshape(x.shape)
    if ctx.trace is not None:
        after = readings + d.reshape(x.shape) @ constraints.w.to(x.device, torch.float32).T
        _record(ctx, layer, resid, constraints, (readings, after), lam, shortfall, d)
    return out.to(resid.dtype)


def _report(cs: ConstraintSet, layer: int, shortfall: Tensor, mode: str) -> None:
    worst = shortfall.amax(0).tolist()
    short = [
        f"{lab} by {s:.3g}" for lab, s in zip(cs.labels, worst, strict=True) if s > FEASIBILITY_TOL
    ]
    if mode == "error":
        raise ConvaError(
            f"layer {layer}: the value requests cannot all be met (short, in logits: "
            f"{', '.join(short)}). Relax a target or a cap, drop one of the conflicting values, "
            "or pass on_infeasible='warn' to apply the least-violation push."
        )
    if mode == "warn":
        # No numbers in the text, so the warnings filter shows it once per layer and request.
        warnings.warn(
            f"layer {layer}: the value requests {', '.join(cs.labels)} conflict; applied the "
            "least-violation push (the trace's violation[...] columns say by how much)",
            RuntimeWarning,
            stacklevel=2,
        )


def _record(
    ctx: GenerationContext,
    layer: int,
    resid: Tensor,
    cs: ConstraintSet,
    logits: tuple[Tensor, Tensor],
    lam: Tensor,
    shortfall: Tensor,
    d: Tensor,
) -> None:
    """One trace row per real token: |d| as ``eps``, then four columns per constraint."""
    if ctx.trace is None:
        return
    real = ctx.real_tokens(resid)
    pos = ctx.token_positions(resid)
    shape = (*resid.shape[:2], -1)
    norm = d.reshape(shape).norm(dim=-1).cpu()
    p_before, p_after = (torch.sigmoid(t).cpu() for t in logits)
    active, short = (lam > 0).reshape(shape).cpu(), shortfall.reshape(shape).cpu()
    scores = ctx.state.get("gate_score")
    for r, col in zip(*(t.tolist() for t in torch.nonzero(real, as_tuple=True)), strict=True):
        rec: dict[str, Any] = {
            "row": r,
            "step": ctx.step,
            "position": int(pos[r, col]),
            "layer": layer,
            "gate_score": float(scores[r]) if scores is not None else math.nan,
            "p_before": math.nan,
            "p_after": math.nan,
            "eps": float(norm[r, col]),
        }
        for i, label in enumerate(cs.labels):
            rec[f"p_before[{label}]"] = float(p_before[r, col, i])
            rec[f"p_after[{label}]"] = float(p_after[r, col, i])
            rec[f"active[{label}]"] = bool(active[r, col, i])
            rec[f"violation[{label}]"] = float(short[r, col, i])
        ctx.trace.append(rec)
