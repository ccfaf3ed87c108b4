"""Caching the residual stream after each block (``blocks.{l}.hook_resid_post``).

This is the first stage of the method: texts go in, one pooled vector per
layer and text comes out, ready for :mod:`conva_tl.probes`. Only the requested
hook points are read, each is pooled inside its hook (so the full
``batch pos d_model`` tensor of a layer is never kept), and the forward pass
stops after the deepest requested block (``hooked(..., stop_after=...)``: the
bridge's ``stop_at_layer`` would still run the final norm and the unembedding
when the last block is requested). Texts are sorted by length before
batching, which keeps padding small, and the result is returned in the input
order.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from conva_tl.errors import ConvaError
from conva_tl.hooks import hooked, resid_post_name
from conva_tl.model_protocol import HookedModel
from conva_tl.prompts import format_inputs
from conva_tl.tokens import iter_batches

__all__ = ["Pooling", "pool", "resolve_layers", "cache_resid_post"]

logger = logging.getLogger(__name__)

Pooling = Literal["last", "mean"]


def pool(
    resid: Float[Tensor, "batch pos d_model"],
    attention_mask: Int[Tensor, "batch pos"],
    pooling: str,
) -> Float[Tensor, "batch d_model"]:
    """Pool over positions: the last real token, or the mean over real tokens.

    Batches are left-padded, so the last real token is always at position -1.
    """
    if pooling == "last":
        return resid[:, -1, :]
    if pooling == "mean":
        mask = attention_mask.to(resid.device, torch.float32).unsqueeze(-1)
        return ((resid.float() * mask).sum(1) / mask.sum(1).clamp_min(1.0)).to(resid.dtype)
    raise ConvaError(f"pooling must be 'last' or 'mean', got {pooling!r}")


def resolve_layers(model: HookedModel, layers: Sequence[int] | None) -> list[int]:
    """Validate a layer selection (``None`` = all), sorted and de-duplicated."""
    n = int(model.cfg.n_layers)
    if layers is None:
        return list(range(n))
    out = sorted({int(layer) for layer in layers})
    bad = [layer for layer in out if not 0 <= layer < n]
    if bad or not out:
        raise ConvaError(f"layers must be a non-empty subset of 0..{n - 1}, got {list(layers)}")
    return out


@torch.inference_mode()
def cache_resid_post(
    model: HookedModel,
    texts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    input_format: str = "raw",
    system: str | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> Float[Tensor, "layer batch d_model"]:
    """Residual stream after each requested block, pooled per text, on CPU.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        texts: the sentences (``raw``) or user questions (``chat``).
        layers: block indices to read (default: all).
        pooling: ``"last"`` real token, or ``"mean"`` over real tokens.
        input_format: ``"raw"`` text or the tokenizer's ``"chat"`` template.
        system: system prompt for ``chat`` input.
        batch_size: texts per forward pass.
        progress: show a progress bar (default: when there are > 4 batches).

    Returns:
        Float32 tensor ``[len(layers), len(texts), d_model]``; row ``i`` of the
        second axis belongs to ``texts[i]``.

    Example:
        >>> acts = cache_resid_post(model, ["I locked the door."], layers=[3])  # doctest: +SKIP
        >>> acts.shape  # doctest: +SKIP
        torch.Size([1, 1, 576])
    """
    layer_list = resolve_layers(model, layers)
    formatted = format_inputs(model.tokenizer, texts, input_format, system=system)
    batches = iter_batches(model.tokenizer, formatted, batch_size)
    out = torch.empty(len(layer_list), len(formatted), int(model.cfg.d_model), dtype=torch.float32)
    slot = {layer: k for k, layer in enumerate(layer_list)}
    device = model.cfg.device
    n_batches = -(-len(formatted) // batch_size)
    show = progress if progress is not None else n_batches > 4
    for idx, cpu_batch in tqdm(
        batches, total=n_batches, disable=not show, desc="caching resid_post", unit="batch"
    ):
        batch = cpu_batch.to(device)
        rows = torch.tensor(idx)
        save = functools.partial(
            _save_pooled,
            out=out,
            slot=slot,
            rows=rows,
            mask=batch.attention_mask,
            pooling=pooling,
        )
        fwd = [(resid_post_name(layer), _bind(save, layer)) for layer in layer_list]
        with hooked(model, fwd, stop_after=resid_post_name(layer_list[-1])):
            model(
                batch.input_ids,
                attention_mask=batch.attention_mask,
                return_type=None,
            )
    return out


def _save_pooled(
    resid: Tensor,
    hook: Any,
    *,
    layer: int,
    out: Tensor,
    slot: dict[int, int],
    rows: Tensor,
    mask: Tensor,
    pooling: str,
) -> None:
    out[slot[layer], rows] = pool(resid, mask, pooling).float().cpu()


def _bind(fn: Any, layer: int) -> Any:
    def bound(resid: Tensor, hook: Any) -> None:
        fn(resid, hook, layer=layer)

    return bound
