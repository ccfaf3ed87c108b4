"""A fast path: the toolkit's hooks on a plain Hugging Face model, no bridge.

The ``TransformerBridge`` makes every hook point available, but it rewires the
HF model (eager attention, a wrapper per component) and on a GPU that costs
about 2.5x in generation speed. ConVA needs only two hook points:
``blocks.{l}.hook_resid_post`` (the output of decoder layer ``l``, where the
steering hooks of :mod:`conva_tl.steering` act) and
``blocks.{l}.hook_resid_pre`` (its input, read by
:func:`conva_tl.gate.gate_hook`). :class:`FastModel` provides exactly those on
an unbridged HF causal LM (SDPA attention) with torch forward hooks that call
the *same* typed hook functions with ``(tensor, hook)`` and substitute their
return value, so :func:`conva_tl.generate.generate`,
:func:`conva_tl.activations.cache_resid_post`,
:func:`conva_tl.identify.identify`, :func:`conva_tl.methods.steer` and
:func:`conva_tl.hooks.hooked` take it unchanged.

Its ``__call__`` mirrors the subset of the bridge's forward that the toolkit
uses: left-padded batches get position ids derived from the attention mask
(as the bridge does), ``past_key_values``/``use_cache`` run the HF KV cache,
``return_type`` is ``"logits"``, ``"logits_and_cache"`` or ``None``, and
``stop_at_layer`` ends the pass before that block (``None`` and
``stop_at_layer`` skip the unembedding altogether).

Example:
    >>> fast = load_fast_model()  # doctest: +SKIP
    >>> generate(fast, ["Should I lend my savings to a friend?"], intervention=ConVA(vv))  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from conva_tl.errors import ConvaError, HookError, ModelLoadError
from conva_tl.hooks import hook_name

__all__ = [
    "FastConfig",
    "FastHookPoint",
    "FastModel",
    "load_fast_model",
    "mask_positions",
    "HOOK_POINTS",
]

#: The hook points a :class:`FastModel` has, per decoder layer.
HOOK_POINTS = ("hook_resid_pre", "hook_resid_post")

_RETURN_TYPES = ("logits", "logits_and_cache", None)


@dataclass(frozen=True)
class FastConfig:
    """The ``cfg`` attributes the toolkit reads from a model (bridge-compatible names)."""

    model_name: str
    n_layers: int
    d_model: int
    d_vocab: int
    n_heads: int
    d_head: int
    d_mlp: int
    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class FastHookPoint:
    """What a hook function receives as ``hook``: its full name and layer."""

    name: str
    block: int
    point: str

    def layer(self) -> int:
        """Block index, as ``HookPoint.layer()`` gives it."""
        return self.block


class _StopForward(Exception):
    """Raised by the ``stop_at_layer`` hook; carries the residual stream there."""

    def __init__(self, resid: Tensor) -> None:
        super().__init__("stop_at_layer")
        self.resid = resid


def _hidden_of(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _input_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _checked(new: Any, old: Tensor, point: FastHookPoint) -> Tensor:
    if not isinstance(new, Tensor) or new.shape != old.shape:
        got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
        raise HookError(
            f"hook on {point.name} must return None or a tensor of shape {tuple(old.shape)}, got {got}"
        )
    return new.to(old.dtype)


def _post_hook(fn: Callable[..., Any], point: FastHookPoint) -> Callable[..., Any]:
    """Torch forward hook on a decoder layer: ``fn(resid_post, hook)`` may replace it."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        hidden = _hidden_of(output)
        new = fn(hidden, point)
        if new is None:
            return None
        new = _checked(new, hidden, point)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def _pre_hook(fn: Callable[..., Any], point: FastHookPoint) -> Callable[..., Any]:
    """Torch forward pre-hook on a decoder layer: ``fn(resid_pre, hook)`` may replace it."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = _input_of(args, kwargs)
        new = fn(hidden, point)
        if new is None:
            return None
        new = _checked(new, hidden, point)
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def _stop_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    raise _StopForward(_input_of(args, kwargs))


def mask_positions(
    attention_mask: Int[Tensor, "batch total"], n_new: int
) -> Int[Tensor, "batch new"]:
    """Position ids of the last ``n_new`` columns: index among the row's real tokens.

    Left padding would otherwise shift every real token's rotary position. The
    bridge derives them the same way; leading padding gets 0 (it is masked out
    as keys, so its value never reaches a real token).
    """
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(pos < 0, 0)
    return pos[:, attention_mask.shape[1] - n_new :]


class FastModel:
    """An unbridged HF causal LM with the toolkit's hook points and call signature.

    Args:
        hf_model: a decoder-only HF model with ``model.layers`` (Llama, Qwen2,
            Mistral, Gemma, SmolLM, ...). It is used as is: never boot the same
            object into a bridge, which rewires it in place.
        tokenizer: its tokenizer (a pad token is set to EOS when missing).
        model_name: the name artifacts record (:func:`conva_tl.model.model_info`).

    Attributes:
        cfg: :class:`FastConfig` (``n_layers``, ``d_model``, ``d_vocab``, ``device``, ...).
        hook_dict: ``{name: FastHookPoint}`` for ``blocks.{l}.hook_resid_pre``
            and ``blocks.{l}.hook_resid_post``.
    """

    def __init__(self, hf_model: Any, tokenizer: Any, model_name: str) -> None:
        base = getattr(hf_model, getattr(hf_model, "base_model_prefix", "model"), None)
        layers = getattr(base, "layers", None)
        if not isinstance(layers, torch.nn.ModuleList) or not hasattr(base, "norm"):
            raise ModelLoadError(
                f"FastModel needs a decoder-only HF model with .model.layers and .model.norm; "
                f"{type(hf_model).__name__} has neither. Use conva_tl.model.load_model() (the bridge)."
            )
        if getattr(hf_model.config, "_attn_implementation", None) == "eager":
            hf_model.set_attn_implementation("sdpa")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.hf_model = hf_model.eval()
        self.tokenizer = tokenizer
        self._base: Any = base  # the decoder stack (LlamaModel and the like)
        self._layers = layers
        c = hf_model.config
        n_heads = int(c.num_attention_heads)
        self.cfg = FastConfig(
            model_name=model_name,
            n_layers=len(layers),
            d_model=int(c.hidden_size),
            d_vocab=int(c.vocab_size),
            n_heads=n_heads,
            d_head=int(getattr(c, "head_dim", None) or c.hidden_size // n_heads),
            d_mlp=int(getattr(c, "intermediate_size", 0) or 0),
            device=next(hf_model.parameters()).device,
            dtype=next(hf_model.parameters()).dtype,
        )
        self.hook_dict: dict[str, FastHookPoint] = {
            hook_name(layer, point): FastHookPoint(hook_name(layer, point), layer, point)
            for layer in range(len(layers))
            for point in HOOK_POINTS
        }

    def __repr__(self) -> str:
        return f"FastModel({self.cfg.model_name!r}, n_layers={self.cfg.n_layers}, device={self.cfg.device})"

    def to(self, device: str | torch.device) -> FastModel:
        """Move the model; returns ``self`` with an updated ``cfg.device``."""
        self.hf_model.to(device)
        self.cfg = replace(self.cfg, device=next(self.hf_model.parameters()).device)
        return self

    def eval(self) -> FastModel:
        self.hf_model.eval()
        return self

    # ---- hooks -----------------------------------------------------------------

    def add_hook(self, name: str, fn: Callable[..., Any]) -> torch.utils.hooks.RemovableHandle:
        """Attach ``fn(tensor, hook)`` at a hook point; remove it with ``.remove()``.

        Prefer :meth:`hooks` or :func:`conva_tl.hooks.hooked`, which remove it for you.
        """
        point = self.hook_dict.get(name) if isinstance(name, str) else None
        if point is None:
            close = difflib.get_close_matches(str(name), list(self.hook_dict), n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise HookError(
                f"FastModel has no hook point {name!r}: it has {', '.join(HOOK_POINTS)} for blocks "
                f"0..{self.cfg.n_layers - 1}{hint}. Use the bridge (load_model) for other hook points."
            )
        layer = self._layers[point.block]
        if point.point == "hook_resid_post":
            return layer.register_forward_hook(_post_hook(fn, point))
        return layer.register_forward_pre_hook(_pre_hook(fn, point), with_kwargs=True)

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
        bwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[FastModel]:
        """Forward hooks for the duration of a ``with`` block (the bridge's signature).

        Hooks on the same point run in the order given; only these hooks are
        removed at the end, whatever else is attached.
        """
        if bwd_hooks:
            raise HookError(
                "FastModel supports forward hooks only; use the bridge for backward hooks"
            )
        handles: list[torch.utils.hooks.RemovableHandle] = []
        try:
            for name, fn in fwd_hooks:
                handles.append(self.add_hook(name, fn))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    # ---- forward ---------------------------------------------------------------

    def __call__(
        self,
        input: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch total"] | None = None,
        past_key_values: Any = None,
        return_type: str | None = "logits",
        use_cache: bool = False,
        stop_at_layer: int | None = None,
        logits_to_keep: int | None = None,
    ) -> Any:
        """One forward pass, as the toolkit calls the bridge.

        Args:
            input: token ids ``[batch, pos]`` (the new tokens only when a cache is given).
            attention_mask: ``[batch, cached + pos]``, 1 for real tokens (default: all real).
            past_key_values: the HF cache from an earlier ``"logits_and_cache"`` call.
            return_type: ``"logits"``, ``"logits_and_cache"`` (``(logits, cache)``)
                or ``None`` (no unembedding; returns ``None``).
            use_cache: keep keys/values (implied by ``past_key_values``).
            stop_at_layer: run blocks ``0..stop_at_layer-1`` only and return the
                residual stream entering block ``stop_at_layer`` (negative counts
                from the end).
            logits_to_keep: unembed only the last ``k`` positions (0 = all).
                Default: all for ``"logits"``; the last one for
                ``"logits_and_cache"``, the incremental-decoding entry point,
                as HF ``generate`` does (``logits[:, -1]`` is the same either way).
        """
        if return_type not in _RETURN_TYPES:
            raise ConvaError(
                f"FastModel return_type must be one of {_RETURN_TYPES}, got {return_type!r}"
            )
        return self._forward(
            input,
            attention_mask,
            past_key_values,
            return_type,
            use_cache,
            stop_at_layer,
            logits_to_keep,
        )

    def _forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        past_key_values: Any,
        return_type: str | None,
        use_cache: bool,
        stop_at_layer: int | None,
        logits_to_keep: int | None,
    ) -> Any:
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        device = self.cfg.device
        input_ids = input_ids.to(device)
        past = 0 if past_key_values is None else int(past_key_values.get_seq_length())
        if attention_mask is None:
            attention_mask = torch.ones(
                input_ids.shape[0], past + input_ids.shape[1], dtype=torch.long, device=device
            )
        attention_mask = attention_mask.to(device)
        if attention_mask.shape[1] != past + input_ids.shape[1]:
            raise ConvaError(
                f"attention_mask covers {attention_mask.shape[1]} positions but the cache holds {past} "
                f"and the input has {input_ids.shape[1]}: pass the mask of cached + new tokens"
            )
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": mask_positions(attention_mask, input_ids.shape[1]),
        }
        if stop_at_layer is not None:
            return self._run_until(kwargs, stop_at_layer)
        use_cache = bool(
            use_cache or past_key_values is not None or return_type == "logits_and_cache"
        )
        if return_type is None:
            self._base(**kwargs, use_cache=False)
            return None
        keep = (
            logits_to_keep
            if logits_to_keep is not None
            else (1 if return_type == "logits_and_cache" else 0)
        )
        out = self.hf_model(
            **kwargs, past_key_values=past_key_values, use_cache=use_cache, logits_to_keep=keep
        )
        if return_type == "logits_and_cache":
            return out.logits, out.past_key_values
        return out.logits

    def _run_until(
        self, kwargs: dict[str, Any], stop_at_layer: int
    ) -> Float[Tensor, "batch pos d_model"]:
        n = self.cfg.n_layers
        stop = n + stop_at_layer if stop_at_layer < 0 else stop_at_layer
        if not 0 <= stop <= n:
            raise ConvaError(f"stop_at_layer must be in -{n}..{n}, got {stop_at_layer}")
        # Registered after any user hook, so hooks on the input of block `stop` still fire.
        target: torch.nn.Module = self._layers[stop] if stop < n else self._base.norm
        handle = target.register_forward_pre_hook(_stop_hook, with_kwargs=True)
        try:
            self._base(**kwargs, use_cache=False)
        except _StopForward as done:
            return done.resid
        finally:
            handle.remove()
        raise ConvaError("stop_at_layer hook did not fire")  # pragma: no cover


def load_fast_model(
    name: str | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
) -> FastModel:
    """Load a model (default: the embedded SmolLM2) as a :class:`FastModel`.

    Same arguments as :func:`conva_tl.model.load_model`; no bridge is booted.
    """
    from conva_tl.model import load_hf_model

    hf_model, tok, model_name = load_hf_model(name, dtype=dtype)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return FastModel(hf_model.to(device), tok, model_name)
