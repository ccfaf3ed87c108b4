"""The methods compared in the paper, behind one interface, and ``steer()``.

Each method is a small frozen dataclass implementing
:class:`~conva_tl.generate.Intervention`: ``rewrite_prompt`` (what the user
turn becomes) and ``fwd_hooks`` (typed hooks from :mod:`conva_tl.steering`,
bound to the batch's context). :func:`conva_tl.generate.generate` runs any of
them; :func:`steer` applies ConVA to whatever the user runs inside a ``with``
block (``model.generate``, ``run_with_cache``, a plain forward).

* :class:`Base` - the unmodified model.
* :class:`ICA` - in-context alignment, the paper's Appx. C prompt.
* :class:`CAA` - add ``coef`` x the mean paired difference on the control layers.
* :class:`SummedCAA` - several CAA vectors at once (a negative ``coef`` subtracts):
  the multi-value baseline, as repeng adds control vectors.
* :class:`ConVA` - gated minimal control; ``gate=None`` is the paper's
  "ConVA w.o. gate"; ``mode="per_prompt"`` reproduces the authors' code.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from conva_tl.errors import ArtifactError, ConvaError
from conva_tl.gate import ActivationGate, TextGate, checked_scores, gate_hook
from conva_tl.generate import GenerationContext, Intervention
from conva_tl.hooks import HookCounter, HookFn, hooked, resid_post_name
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.steering import caa_resid_hook, conva_prompt_resid_hook, conva_resid_hook, logit
from conva_tl.values import canonical_value, get_value

__all__ = [
    "DEFAULT_P0",
    "DEFAULT_CAA_COEF",
    "Base",
    "ICA",
    "CAA",
    "SummedCAA",
    "ConVA",
    "ica_prompt",
    "steer",
    "Steering",
    "trace_frame",
]

#: Default P0 for the embedded SmolLM2-135M-Instruct, chosen by judged control success
#: (blind annotation, README "Choices made explicit"; analyses/results/control_quality.json):
#: on 120 held-out dilemma questions CSR was .31 at 0.9, .34 at 0.97 and .29 at 0.995, and
#: fluency fell as P0 rose past 0.97. Inside the paper's 0.88-0.975 for Llama-2-7b-chat.
DEFAULT_P0 = 0.97
#: Default CAA coefficient on the embedded model: the judged-fair baseline. At 0.5 on the
#: pairs' control layers CAA's fluency fell to .81 and its CSR to .19; at 0.25, .95 and .24.
DEFAULT_CAA_COEF = 0.25

#: ConVA's control modes: the paper's per-token rule, the authors' code's
#: per-prompt eps, and per-token on the answer only (the prompt's last token on).
MODES = ("per_token", "per_prompt", "per_token_answer", "per_token_prompt")

#: The paper's ICA template (Appx. C, Tab. 9), quoted as a method parameter.
ICA_TEMPLATE = "You have a high level of {value}. {Value} means {definition}. {question}"


def ica_prompt(value: str, question: str, template: str = ICA_TEMPLATE) -> str:
    """The ICA user message for a value and question."""
    v = get_value(value)
    return template.format(
        value=v.name, Value=v.name.capitalize(), definition=v.definition, question=question
    )


@dataclass(frozen=True)
class Base:
    """The unmodified model."""

    name: str = "base"

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return question, None

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        return []


@dataclass(frozen=True)
class ICA:
    """In-context alignment: ask the model to role-play a person high in the value."""

    value: str
    template: str = ICA_TEMPLATE
    name: str = "ica"

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return ica_prompt(canonical_value(self.value), question, self.template), None

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        return []


@dataclass(frozen=True)
class CAA:
    """Contrastive activation addition at the value's control layers.

    Attributes:
        vectors: the value's vectors; ``mean_diff`` is the steering vector.
        coef: multiplier of the mean paired difference (the authors used
            0.05-0.6 per value on Llama-2-7b).
        layers: override the control layers.
    """

    vectors: ValueVectors
    coef: float = DEFAULT_CAA_COEF
    layers: tuple[int, ...] | None = None
    name: str = "caa"

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return question, None

    def __post_init__(self) -> None:
        if not isinstance(self.vectors, ValueVectors):
            raise ConvaError(f"CAA needs ValueVectors, got {type(self.vectors).__name__}")
        coef = self.coef
        if isinstance(coef, bool) or not isinstance(coef, numbers.Real) or not math.isfinite(coef):
            raise ConvaError(f"CAA coef must be a finite number, got {coef!r}")
        layers = self.control_layers
        bad = [x for x in layers if not 0 <= int(x) < self.vectors.n_layers]
        if bad:
            raise ArtifactError(
                f"CAA layers {bad} are outside 0..{self.vectors.n_layers - 1} of {self.vectors.value!r}"
            )
        empty = [int(x) for x in layers if float(self.vectors.mean_diff[x].norm()) == 0.0]
        if empty:
            raise ArtifactError(
                f"{self.vectors.value!r} has a zero steering vector (unfitted) at layer(s) {empty}: "
                f"CAA would add nothing there. Use fitted layers ({list(self.vectors.fitted_layers)})."
            )

    @property
    def control_layers(self) -> tuple[int, ...]:
        return self.layers if self.layers is not None else self.vectors.control_layers

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        self.vectors.check_model(model)
        layers = self.control_layers
        return [
            (
                resid_post_name(layer),
                functools.partial(
                    caa_resid_hook, vector=self.vectors.mean_diff[layer], coef=self.coef, ctx=ctx
                ),
            )
            for layer in layers
        ]


@dataclass(frozen=True)
class SummedCAA:
    """Several values' CAA vectors added together, each on its own control layers.

    The baseline for multi-value control: a sum promises nothing about any
    probe's reading (compare :class:`~conva_tl.multi_conva.MultiConVA`). Give a
    part a negative ``coef`` to push its value down.

    Example:
        >>> SummedCAA((CAA(vv["power"]), CAA(vv["universalism"], coef=-0.25)))  # doctest: +SKIP
    """

    parts: tuple[CAA, ...]
    name: str = "caa-sum"

    def __post_init__(self) -> None:
        if not self.parts or not all(isinstance(p, CAA) for p in self.parts):
            raise ConvaError(
                "SummedCAA needs a non-empty tuple of CAA parts, e.g. (CAA(a), CAA(b))"
            )

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return question, None

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        return [hook for part in self.parts for hook in part.fwd_hooks(model, ctx)]


@dataclass(frozen=True)
class ConVA:
    """Gated value vector activation (paper Sec. 3.2).

    Attributes:
        vectors: the value's probes; control happens on ``control_layers``.
        p0: target probability P0 (the paper: 1 - 0.1^x, 0.88-0.975 for Llama-2).
        gate: an :class:`ActivationGate`, a :class:`TextGate`, or ``None``
            (always on: the paper's "ConVA w.o. gate" ablation).
        mode: ``"per_token"`` (the paper), ``"per_prompt"`` (the authors' code),
            ``"per_token_answer"`` (per token, but of the prompt only its last token) or
            ``"per_token_prompt"`` (per token, the prompt only: the answer is unsteered).
        layers: override the control layers.
        prompt: optional ``question -> (user, system)`` rewrite combined with
            control (the paper's Sec. 4.4 control-priority experiment).
    """

    vectors: ValueVectors
    p0: float = DEFAULT_P0
    gate: Any = None
    mode: str = "per_token"
    layers: tuple[int, ...] | None = None
    prompt: Any = None
    name: str = "conva"

    def __post_init__(self) -> None:
        if not isinstance(self.vectors, ValueVectors):
            raise ConvaError(f"ConVA needs ValueVectors, got {type(self.vectors).__name__}")
        logit(self.p0)  # validates 0 < p0 < 1
        # Never steer along a zero (unfitted) or degenerate probe: eps would be 0/0.
        self.vectors.check_layers(self.control_layers)
        if self.mode not in MODES:
            raise ConvaError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.gate is not None and not isinstance(self.gate, (ActivationGate, TextGate)):
            raise ConvaError(
                "gate must be an ActivationGate, a TextGate (threshold + score_texts) or None"
            )
        if isinstance(self.gate, ActivationGate):
            if canonical_value(self.gate.value) != self.vectors.value:
                raise ConvaError(
                    f"gate is for {self.gate.value!r} but the vectors are for {self.vectors.value!r}"
                )
            first = min(self.control_layers, default=None)
            if first is not None and self.gate.block > first:
                raise ConvaError(
                    f"the gate reads block {self.gate.block}'s input but control starts at layer {first}: "
                    "it would see steered activations. Refit the gate with fit_gate(..., vectors=...)."
                )

    @property
    def control_layers(self) -> tuple[int, ...]:
        return self.layers if self.layers is not None else self.vectors.control_layers

    def rewrite_prompt(self, question: str) -> tuple[str, str | None]:
        return self.prompt(question) if self.prompt is not None else (question, None)

    def fwd_hooks(self, model: HookedModel, ctx: GenerationContext) -> list[tuple[str, HookFn]]:
        self.vectors.check_model(model)  # before any forward pass
        if isinstance(self.gate, ActivationGate):
            self.gate.check_model(model)
        hooks: list[tuple[str, HookFn]] = []
        if isinstance(self.gate, ActivationGate):
            hooks.append(
                (self.gate.hook_name, functools.partial(gate_hook, gate=self.gate, ctx=ctx))
            )
        elif self.gate is not None:
            if not ctx.texts:
                raise ConvaError(
                    "a text gate needs the prompt texts: use conva_tl.generate() or steer(..., texts=...)"
                )
            scores = checked_scores(
                self.gate.score_texts(ctx.texts), len(ctx.texts), type(self.gate).__name__
            )
            ctx.state["gate_score"] = scores
            ctx.state["gate_open"] = scores > self.gate.threshold
        hook_fn: Any = {
            "per_token": conva_resid_hook,
            "per_token_answer": functools.partial(conva_resid_hook, positions="answer"),
            "per_token_prompt": functools.partial(conva_resid_hook, positions="prompt"),
            "per_prompt": conva_prompt_resid_hook,
        }[self.mode]
        for layer in self.control_layers:
            hooks.append(
                (
                    resid_post_name(layer),
                    functools.partial(
                        hook_fn,
                        layer=layer,
                        w=self.vectors.w[layer],
                        b=float(self.vectors.b[layer]),
                        p0=self.p0,
                        ctx=ctx,
                    ),
                )
            )
        return hooks


@dataclass
class Steering:
    """What :func:`steer` yields: the live context and how often hooks fired."""

    ctx: GenerationContext
    calls: HookCounter
    method: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def trace_frame(self) -> pd.DataFrame:
        return trace_frame(self.ctx)


@contextmanager
def steer(
    model: HookedModel,
    vectors: ValueVectors | Intervention,
    *,
    p0: float = DEFAULT_P0,
    gate: Any = None,
    mode: str = "per_token",
    layers: tuple[int, ...] | None = None,
    texts: list[str] | None = None,
    trace: bool = False,
) -> Iterator[Steering]:
    """Apply ConVA to everything the model runs inside the ``with`` block.

    ``vectors`` may instead be a ready intervention (e.g. a
    :class:`~conva_tl.multi_conva.MultiConVA`); ``p0``, ``gate``, ``mode`` and
    ``layers`` are then its own.

    Outside :func:`conva_tl.generate.generate` the hooks treat every pass over
    more than one token as a new prompt (its gate decision is taken there) and
    one-token passes as decoding steps, which is how ``model.generate`` with a
    KV cache runs. Use one prompt (or an unpadded batch) per block.

    Example:
        >>> with steer(model, vectors["security"], p0=0.9) as s:  # doctest: +SKIP
        ...     model.generate("Should I invest my savings in crypto?", max_new_tokens=40)
    """
    if isinstance(vectors, Intervention):
        method: Any = vectors
    else:
        method = ConVA(vectors, p0=p0, gate=gate, mode=mode, layers=layers)
    ctx = GenerationContext(texts=list(texts or []), trace=[] if trace else None)
    with hooked(model, method.fwd_hooks(model, ctx)) as calls:
        yield Steering(ctx, calls, method)


def trace_frame(ctx: GenerationContext) -> pd.DataFrame:
    """The per-token trace of a run with ``trace`` on, one row per (token, layer)."""
    if ctx.trace is None:
        raise ConvaError("this run was not traced: pass trace=True")
    cols = ["row", "step", "position", "layer", "gate_score", "p_before", "p_after", "eps"]
    cols += list(dict.fromkeys(k for r in ctx.trace for k in r if k not in cols))  # per-value
    return pd.DataFrame(ctx.trace, columns=cols)
