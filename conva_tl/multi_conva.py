"""Several values steered at once, as one :class:`~conva_tl.generate.Intervention`.

:class:`MultiConVA` turns value requests ("raise benevolence to 0.9, hold power
at or below 0.3") into one :class:`~conva_tl.multi.ConstraintSet` per control
layer and binds :func:`~conva_tl.multi.multi_resid_hook` there, so
:func:`conva_tl.generate.generate` and :func:`conva_tl.methods.steer` run it like
any single-value method. A layer uses the requests whose values have it among
their control layers.

Gates: ``gate`` is one gate for the whole request (rows where it is closed are
not steered at all, as in :class:`~conva_tl.methods.ConVA`); ``gates`` maps a
value to its own gate, and a value's constraints then apply only to rows where
its gate opens.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.gate import ActivationGate, TextGate, gate_hook
from conva_tl.generate import GenerationContext
from conva_tl.hooks import HookFn, resid_post_name
from conva_tl.model_protocol import HookedModel
from conva_tl.multi import MAX_CONSTRAINTS, RCOND, ConstraintSet, multi_resid_hook, value_gate_key
from conva_tl.probes import ValueVectors
from conva_tl.steering import logit
from conva_tl.values import canonical_value

__all__ = ["MultiConVA", "value_gate_hook", "parse_requests"]

Request = tuple[ValueVectors, float]


def value_gate_hook(
    resid: Float[Tensor, "batch pos d_model"],
    hook: Any,
    *,
    gate: ActivationGate,
    ctx: GenerationContext,
) -> None:
    """Read-only hook: on the prompt pass, record one value's own gate decision per row."""
    if ctx.is_prompt_pass(resid):
        scores = gate.score(resid, ctx.real_tokens(resid))
        ctx.state[value_gate_key(canonical_value(gate.value))] = (scores > gate.threshold).cpu()
    return None


def _check_gate(gate: Any, what: str) -> None:
    if gate is not None and not isinstance(gate, (ActivationGate, TextGate)):
        raise ConvaError(
            f"{what} must be an ActivationGate, a TextGate (threshold + score_texts) or None"
        )


@dataclass(frozen=True, eq=False)
class MultiConVA:
    """Gated minimal control of several values at once (issue 12).

    Every token gets the smallest push (Euclidean norm) that puts each targeted
    value's probe reading at or above its P0 and each capped value's at or
    below its Pmax, on every layer where those values have control layers. With
    one target it is :class:`~conva_tl.methods.ConVA` per token.

    Attributes:
        targets: ``{value: (vectors, P0)}``: readings to raise to at least P0.
        caps: ``{value: (vectors, Pmax)}``: readings to hold at most Pmax. A value
            may appear in both (a band).
        gate: one gate for the whole request, or ``None`` (always on).
        gates: ``{value: gate}``: per-value gates; that value's constraints
            apply only to rows where its gate opens.
        layers: override the control layers (every request then applies on all of them).
        on_infeasible: ``"warn"`` (default), ``"error"`` or ``"ignore"`` when the
            requests conflict; the least-violation push is applied unless it is
            ``"error"`` (see :mod:`conva_tl.multi`).
        rcond: relative eigenvalue cut-off for dependent probe directions.
        prompt: optional ``question -> (user, system)`` rewrite.

    Example:
        >>> m = MultiConVA(  # doctest: +SKIP
        ...     targets={"benevolence": (vv["benevolence"], 0.9)}, caps={"power": (vv["power"], 0.3)}
        ... )
        >>> generate(model, ["Should I take the promotion?"], intervention=m)  # doctest: +SKIP
    """

    targets: Mapping[str, Request] = field(default_factory=dict)
    caps: Mapping[str, Request] = field(default_factory=dict)
    gate: Any = None
    gates: Mapping[str, Any] = field(default_factory=dict)
    layers: tuple[int, ...] | None = None
    on_infeasible: str = "warn"
    rcond: float = RCOND
    prompt: Any = None
    name: str = "conva-multi"

    def __post_init__(self) -> None:
        requests = self.requests
        if not requests:
            raise ConvaError("MultiConVA needs at least one target or cap")
        if len(requests) > MAX_CONSTRAINTS:
            raise ConvaError(f"at most {MAX_CONSTRAINTS} requests, got {len(requests)}")
        if self.on_infeasible not in ("warn", "error", "ignore"):
            raise ConvaError(
                f"on_infeasible must be 'warn', 'error' or 'ignore', got {self.on_infeasible!r}"
            )
        _check_gate(self.gate, "gate")
        values = {value for _, value, _, _, _ in requests}
        first = min(self.control_layers, default=None)
        for key, g in [(None, self.gate), *self.gates.items()]:
            if key is not None:
                _check_gate(g, f"gates[{key!r}]")
                if canonical_value(key) not in values:
                    raise ConvaError(f"gates has {key!r}, which is neither a target nor a cap")
            if isinstance(g, ActivationGate):
                if key is not None and canonical_value(g.value) != canonical_value(key):
                    raise ConvaError(f"gates[{key!r}] is a gate for {g.value!r}")
                own = first if key is None else self._first_layer(canonical_value(key))
                if own is not None and g.block > own:
                    raise ConvaError(
                        f"the gate for {g.value!r} reads block {g.block}'s input but its control "
                        f"starts at layer {own}: it would see steered activations"
                    )
                if first is not None and g.block > first:
                    warnings.warn(
                        f"the gate for {g.value!r} reads block {g.block}'s input, after another "
                        f"value's control starts (layer {first}): it sees that value's push",
                        UserWarning,
                        stacklevel=3,
                    )

    @classmethod
    def from_vectors(
        cls,
        vectors: Mapping[str, ValueVectors],
        targets: Mapping[str, float] | None = None,
        caps: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> MultiConVA:
        """Build from fitted vectors and ``{value: probability}`` requests.

        Example:
            >>> MultiConVA.from_vectors(vv, {"benevolence": 0.9}, caps={"power": 0.3})  # doctest: +SKIP
        """

        def pick(req: Mapping[str, float] | None) -> dict[str, Request]:
            out = {}
            for value, p in (req or {}).items():
                name = canonical_value(value)
                if name not in vectors:
                    raise ConvaError(f"no vectors for {value!r}: fit it first (conva fit)")
                out[name] = (vectors[name], float(p))
            return out

        return cls(targets=pick(targets), caps=pick(caps), **kwargs)

    @property
    def requests(self) -> list[tuple[str, str, ValueVectors, float, float]]:
        """``(label, value, vectors, probability, sign)`` per constraint; sign -1 = cap."""
        out = []
        for sign, group, op in ((1.0, self.targets, ">="), (-1.0, self.caps, "<=")):
            for key, (vectors, p) in group.items():
                value = canonical_value(key)
                if vectors.value != value:
                    raise ConvaError(f"{key!r} was given the vectors of {vectors.value!r}")
                logit(p)  # validates 0 < p < 1
                out.append((f"{value}{op}{p:g}", value, vectors, float(p), sign))
        return out

    def _first_layer(self, value: str) -> int | None:
        if self.layers is not None:
            return min(self.layers, default=None)
        own = [
            layer for _, v, vv, _, _ in self.requests if v == value for layer in vv.control_layers
        ]
        return min(own, default=None)

    @property
    def control_layers(self) -> tuple[int, ...]:
        if self.layers is not None:
            return tuple(self.layers)
        return tuple(
            sorted({layer for _, _, vv, _, _ in self.requests for layer in vv.control_layers})
        )

    def constraint_set(self, layer: int) -> ConstraintSet | None:
        """The requests that apply at ``layer`` (None if there are none)."""
        here = [r for r in self.requests if self.layers is not None or layer in r[2].control_layers]
        if not here:
            return None
        return ConstraintSet(
            labels=tuple(r[0] for r in here),
            values=tuple(r[1] for r in here),
            w=torch.stack([r[2].w[layer].float() for r in here]),
            b=torch.tensor([float(r[2].b[layer]) for r in here]),
            bound=torch.tensor([math.log(r[3] / (1 - r[3])) for r in here]),
            sign=torch.tensor([r[4] for r in here]),
            rcond=self.rcond,
        )

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return self.prompt(question) if self.prompt is not None else (question, None)

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        hooks: list[tuple[str, HookFn]] = []
        for key, g in [(None, self.gate), *self.gates.items()]:
            if isinstance(g, ActivationGate):
                fn = gate_hook if key is None else value_gate_hook
                hooks.append((g.hook_name, functools.partial(fn, gate=g, ctx=ctx)))
            elif g is not None:
                if not ctx.texts:
                    raise ConvaError(
                        "a text gate needs the prompt texts: use conva_tl.generate() "
                        "or steer(..., texts=...)"
                    )
                scores = g.score_texts(ctx.texts).float()
                if key is None:
                    ctx.state["gate_score"] = scores
                    ctx.state["gate_open"] = scores > g.threshold
                else:
                    ctx.state[value_gate_key(canonical_value(key))] = scores > g.threshold
        for layer in self.control_layers:
            cs = self.constraint_set(layer)
            if cs is not None:
                hooks.append(
                    (
                        resid_post_name(layer),
                        functools.partial(
                            multi_resid_hook,
                            layer=layer,
                            constraints=cs,
                            ctx=ctx,
                            on_infeasible=self.on_infeasible,
                        ),
                    )
                )
        return hooks


_SPEC = re.compile(r"^\s*([A-Za-z_-]+)\s*(>=|<=|=)?\s*([0-9.eE+-]+)?\s*$")


def parse_requests(
    specs: list[str], default_p0: float
) -> tuple[dict[str, float], dict[str, float]]:
    """``["benevolence=0.9", "power<=0.3", "security"]`` -> ``(targets, caps)``.

    ``value`` or ``value>=P`` / ``value=P`` is a target (P defaults to
    ``default_p0``), ``value<=P`` a cap.
    """
    targets: dict[str, float] = {}
    caps: dict[str, float] = {}
    for spec in specs:
        m = _SPEC.match(spec)
        if m is None or (m.group(2) is None) != (m.group(3) is None):
            raise ConvaError(
                f"cannot read the value request {spec!r}: write VALUE, VALUE=P, VALUE>=P "
                "or VALUE<=P with P in (0, 1), e.g. benevolence=0.9 or 'power<=0.3'"
            )
        value = canonical_value(m.group(1))
        try:
            p = float(m.group(3)) if m.group(3) is not None else default_p0
        except ValueError as exc:
            raise ConvaError(f"{spec!r}: {m.group(3)!r} is not a probability") from exc
        logit(p)
        group = caps if m.group(2) == "<=" else targets
        if value in group:
            raise ConvaError(f"{value!r} is requested twice in the same direction ({spec!r})")
        group[value] = p
    return targets, caps
