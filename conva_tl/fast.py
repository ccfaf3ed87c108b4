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
(as the bridge does), ``past_key_values``/``use_cache`` run the HF KV cache, and
``return_type`` is ``"logits"``, ``"logits_and_cache"`` or ``None`` (which
skips the unembedding). To end a pass early, use
``hooked(..., stop_after=...)`` (:func:`conva_tl.hooks.hooked`), as for the
bridge.

Example:
    >>> fast = load_fast_model()  # doctest: +SKIP
    >>> generate(fast, ["Should I lend my savings to a friend?"], intervention=ConVA(vv))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from conva_tl.errors import ConvaError, HookError, ModelLoadError
from conva_tl.hooks import check_hook_names, hook_name
from conva_tl.tokens import token_positions

__all__ = [
    "FastConfig",
    "FastHookPoint",
    "FastModel",
    "load_fast_model",
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


def _position_ids(
    attention_mask: Int[Tensor, "batch total"], n_new: int
) -> Int[Tensor, "batch new"]:
    """HF position ids of the last ``n_new`` columns of a left-padded batch.

    Left padding would otherwise shift every real token's rotary position, so
    they come from :func:`conva_tl.tokens.token_positions`, as the hooks' do.
    HF wants a valid id everywhere: padding (``-1`` there) gets 0; it is masked
    out as keys, so its value never reaches a real token.
    """
    pos = token_positions(attention_mask).clamp_min(0)
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
        check_hook_names(
            self,
            [name],
            advice=f"FastModel has only {' and '.join(HOOK_POINTS)} per block; "
            "use the bridge (load_model) for other hook points",
        )
        point = self.hook_dict[name]
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
        removed at the end, whatever else is attached. ``bwd_hooks``,
        ``reset_hooks_end=False`` (keep the hooks) and ``clear_contexts=True``
        (its hook points have no ``ctx``) are refused rather than ignored.
        """
        if bwd_hooks:
            raise HookError(
                "FastModel supports forward hooks only; use the bridge for backward hooks"
            )
        if not reset_hooks_end or clear_contexts:
            raise HookError(
                f"FastModel.hooks always removes its hooks at the end of the block and its hook "
                f"points keep no context: got reset_hooks_end={reset_hooks_end!r}, "
                f"clear_contexts={clear_contexts!r}; leave both at their defaults (use add_hook "
                "for a hook that outlives the block)"
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
            logits_to_keep,
        )

    def _forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        past_key_values: Any,
        return_type: str | None,
        use_cache: bool,
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
            "position_ids": _position_ids(attention_mask, input_ids.shape[1]),
        }
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
