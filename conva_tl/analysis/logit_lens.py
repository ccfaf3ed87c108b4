"""Logit lens of value vectors: which tokens a value direction promotes (paper Tab. 3).

A value vector v (:attr:`conva_tl.probes.ValueVectors.v`, the unit probe
normal of one layer) lives in the residual stream, so it can be read the way
the model reads its last residual: through the final norm and the unembedding
``W_U``. :func:`decode_vectors` does this for every requested value and layer
and lists the ``k`` tokens with the highest logits (what the value pushes
towards) and the ``k`` lowest (what the opposite stance pushes towards, i.e.
the top tokens of -v); :func:`format_logit_lens` prints the result as a table.

Convention (:func:`unembed_directions`), chosen so the numbers read as "the
logits the model would emit if its final residual pointed exactly along v":

* The direction is taken as a unit vector (``use="v"``: the probe normal;
  ``use="mean_diff"``: the CAA difference of means, normalised). Its length has
  no meaning, so only the ranking and the relative logits matter.
* ``apply_final_norm=True`` (default) applies the model's final norm to the
  direction. For RMSNorm this is well defined for a bare direction, because
  RMSNorm is scale invariant: RMSNorm(c v) = sqrt(d_model) v * g for every
  c > 0, so a unit v becomes ``sqrt(d_model) * v * g`` with ``g`` the
  elementwise gain (``model.ln_final.weight``). The gain matters, it is not a
  constant: it reweights residual dimensions before ``W_U`` and so changes
  which tokens come first. For a LayerNorm model the direction is also
  centred (LayerNorm subtracts the mean over d_model). The norm's eps and any
  bias are left out: eps is negligible at the scale a real residual has, and a
  bias (like ``b_U``) adds the same offset whatever the direction, so it would
  only move every value's list towards the same frequent tokens.
* ``apply_final_norm=False`` projects v through ``W_U`` alone (the plain
  "direct unembedding" of some papers); the rankings then differ by the gain.
* ``W_U`` is read from the bridge (``model.W_U``, ``[d_model, d_vocab]``). If the
  bridge's weights were processed with ``fold_ln``, the gain already sits
  inside ``W_U`` and the final norm has no weight: a gain of ones is used.

Tokens are rendered readably by :func:`render_token`: byte-level BPE pieces are
mapped back to their bytes and decoded as UTF-8 (an incomplete multi-byte
character shows as ``\\xNN`` escapes instead of a replacement character), a
space is shown as ``·`` and newlines and tabs as ``\\n`` and ``\\t``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from conva_tl.errors import ConvaError
from conva_tl.probes import ValueVectors

__all__ = [
    "Use",
    "direction_of",
    "final_norm_gain",
    "unembed_directions",
    "render_token",
    "decode_vectors",
    "format_logit_lens",
]

Use = Literal["v", "mean_diff"]
_SPACE = "·"


def direction_of(vv: ValueVectors, use: str = "v") -> Float[Tensor, "layer d_model"]:
    """Unit direction per layer: the probe normal ``v`` or the normalised ``mean_diff``."""
    if use == "v":
        return vv.v.float()
    if use == "mean_diff":
        md = vv.mean_diff.float()
        return md / md.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    raise ConvaError(f"use must be 'v' (probe normal) or 'mean_diff' (CAA vector), got {use!r}")


def final_norm_gain(model: Any) -> Float[Tensor, " d_model"]:
    """The elementwise weight of the model's final norm (ones if it has none)."""
    d_model = int(model.cfg.d_model)
    ln = getattr(model, "ln_final", None)
    weight = getattr(ln, "weight", None) if ln is not None else None
    if weight is None:
        original = getattr(model, "original_model", None)
        weight = getattr(getattr(getattr(original, "model", None), "norm", None), "weight", None)
    if weight is None:
        return torch.ones(d_model)
    gain = weight.detach().float().cpu()
    if gain.shape != (d_model,):
        raise ConvaError(f"final norm weight has shape {tuple(gain.shape)}, expected ({d_model},)")
    return gain


def _is_layernorm(model: Any) -> bool:
    return str(getattr(model.cfg, "normalization_type", "RMS") or "RMS").upper().startswith("LN")


@torch.inference_mode()
def unembed_directions(
    model: Any,
    directions: Float[Tensor, "n d_model"],
    *,
    apply_final_norm: bool = True,
) -> Float[Tensor, "n d_vocab"]:
    """Logits of each direction (normalised to unit length) under the module's convention.

    Args:
        model: a ``TransformerBridge`` (needs ``W_U``; ``ln_final`` for the norm).
        directions: residual-stream directions; their lengths are ignored.
        apply_final_norm: apply the final norm's gain (and RMS rescaling) first.

    Returns:
        ``[n, d_vocab]`` float32 logits on CPU.
    """
    W_U = model.W_U.detach().float().cpu()
    d_model = int(W_U.shape[0])
    x = directions.detach().float().cpu()
    if x.shape[-1] != d_model:
        raise ConvaError(f"directions have d_model {x.shape[-1]}, the model's W_U has {d_model}")
    if apply_final_norm:
        if _is_layernorm(model):
            x = x - x.mean(-1, keepdim=True)
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * math.sqrt(d_model)
        x = x * final_norm_gain(model)
    else:
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x @ W_U


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-character table used by byte-level BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in repr(getattr(backend, "decoder", None))


def render_token(tokenizer: Any, token_id: int, *, space: str = _SPACE) -> str:
    """A token as readable text: ``Ġsafety`` -> ``·safety``, ``Ċ`` -> ``\\n``.

    Args:
        tokenizer: a Hugging Face tokenizer.
        token_id: the token.
        space: what a space is shown as (``"·"``; pass ``" "`` for running text).

    Special tokens are shown as they are (``<|im_end|>``).
    """
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return f"<id {int(token_id)}>"
    if piece in set(getattr(tokenizer, "all_special_tokens", ())):
        return piece
    table = _byte_decoder()
    if _is_byte_level(tokenizer) and all(ch in table for ch in piece):
        text = bytes(table[ch] for ch in piece).decode("utf-8", errors="backslashreplace")
    else:
        text = tokenizer.convert_tokens_to_string([piece]).replace("▁", " ")
        if piece.startswith("▁") and not text.startswith(" "):
            text = " " + text  # sentencepiece decoders strip the word-start space
    out = []
    for ch in text:
        if ch == " ":
            out.append(space)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _select_layers(vv: ValueVectors, layers: Sequence[int] | str | None) -> list[int]:
    if layers is None:
        return list(range(vv.n_layers))
    if isinstance(layers, str):
        if layers != "best":
            raise ConvaError(
                f"layers must be None, 'best' or a list of layer indices, got {layers!r}"
            )
        return [vv.best_layer]
    chosen = sorted({int(x) for x in layers})
    bad = [x for x in chosen if not 0 <= x < vv.n_layers]
    if bad or not chosen:
        raise ConvaError(
            f"layers must be a non-empty subset of 0..{vv.n_layers - 1}, got {list(layers)}"
        )
    return chosen


def decode_vectors(
    model: Any,
    vectors: dict[str, ValueVectors] | ValueVectors,
    layers: Sequence[int] | str | None = None,
    k: int = 10,
    apply_final_norm: bool = True,
    use: str = "v",
) -> pd.DataFrame:
    """Top-k and bottom-k tokens of value directions through the unembedding.

    Args:
        model: the ``TransformerBridge`` the vectors were fitted on.
        vectors: one :class:`ValueVectors` or ``{value: ValueVectors}``.
        layers: ``None`` for every layer, ``"best"`` for each value's most
            accurate layer, or a list of layer indices.
        k: tokens per side.
        apply_final_norm: see the module docstring.
        use: ``"v"`` (probe normal, the paper) or ``"mean_diff"`` (CAA vector).

    Returns:
        A long table, one row per (value, layer, side, rank) with columns
        ``value, layer, accuracy, best_layer, use, side ("top"|"bottom"), rank
        (1 = most extreme), token_id, token (rendered), logit``. ``bottom``
        tokens have the lowest logits: they are the top tokens of -v.

    Example:
        >>> df = decode_vectors(model, vectors, layers="best", k=5)  # doctest: +SKIP
        >>> print(format_logit_lens(df))  # doctest: +SKIP
    """
    if k < 1:
        raise ConvaError(f"k must be >= 1, got {k}")
    items = [vectors] if isinstance(vectors, ValueVectors) else list(vectors.values())
    if not items:
        raise ConvaError("no value vectors given")
    d_vocab = int(model.W_U.shape[1])
    k = min(k, d_vocab)
    rows: list[dict[str, Any]] = []
    for vv in items:
        chosen = _select_layers(vv, layers)
        logits = unembed_directions(
            model, direction_of(vv, use)[chosen], apply_final_norm=apply_final_norm
        )
        top = logits.topk(k, dim=-1)
        bottom = logits.topk(k, dim=-1, largest=False)
        for i, layer in enumerate(chosen):
            for side, res in (("top", top), ("bottom", bottom)):
                for rank, (tid, val) in enumerate(
                    zip(res.indices[i].tolist(), res.values[i].tolist(), strict=True), start=1
                ):
                    rows.append(
                        {
                            "value": vv.value,
                            "layer": layer,
                            "accuracy": float(vv.accuracy[layer]),
                            "best_layer": vv.best_layer,
                            "use": use,
                            "side": side,
                            "rank": rank,
                            "token_id": int(tid),
                            "token": render_token(model.tokenizer, tid),
                            "logit": float(val),
                        }
                    )
    return pd.DataFrame(rows)


def format_logit_lens(
    df: pd.DataFrame, *, k: int | None = None, sides: Sequence[str] = ("top", "bottom")
) -> str:
    """A printable table: one block per (value, layer) with its top and bottom tokens.

    Args:
        df: output of :func:`decode_vectors`.
        k: show at most this many tokens per side (default: all in ``df``).
        sides: which sides to show.
    """
    if df.empty:
        return "(no rows)"
    lines = []
    for (value, layer), part in df.groupby(["value", "layer"], sort=False):
        acc = float(part["accuracy"].iloc[0])
        best = " best" if int(part["best_layer"].iloc[0]) == int(layer) else ""
        lines.append(f"{value}  layer {int(layer)}  (held-out acc {acc:.2f}{best})")
        for side in sides:
            sel = part[part["side"] == side].sort_values("rank")
            if k is not None:
                sel = sel.head(k)
            tokens = ", ".join(f"'{t}'" for t in sel["token"])
            lines.append(f"  {side:>6}: {tokens}")
    return "\n".join(lines)
