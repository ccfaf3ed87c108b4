"""Token-level circuitsvis views of a value probe and of ConVA's control.

:func:`pv_token_view` colours each token of a text by the probe's reading P_V
at one layer (:func:`pv_per_token` gives the numbers); :func:`steering_token_view`
shows what ConVA did to each token of a traced generation
(``generate(..., trace=True)``): P_V before and after, and eps. They return
circuitsvis ``RenderedHTML`` objects, which notebooks display and scripts can
save with ``str(view)`` or ``view.local_src``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from conva_tl.analysis.logit_lens import render_token
from conva_tl.errors import ConvaError
from conva_tl.hooks import hooked, resid_post_name
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.prompts import format_chat, format_inputs
from conva_tl.tokens import tokenize_batch

__all__ = ["pv_per_token", "pv_token_view", "chat_tokens", "steering_token_view"]


@torch.inference_mode()
def pv_per_token(
    model: HookedModel,
    text: str,
    vectors: dict[str, ValueVectors] | ValueVectors,
    layer: int | None = None,
    *,
    input_format: str = "raw",
) -> tuple[list[str], Float[Tensor, "pos value"], list[str]]:
    """P_V(e) of every token of ``text``, read from ``resid_post`` at ``layer``.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        text: a sentence (``raw``) or a user question (``chat``).
        vectors: one or several values' probes.
        layer: the layer to read; ``None`` reads each value at its best layer.
        input_format: ``"raw"`` or ``"chat"``.

    Returns:
        ``(tokens, probs, labels)``: rendered tokens, ``[pos, value]`` P_V per
        token and value, and one label per value (``"security L12"``).
    """
    items = [vectors] if isinstance(vectors, ValueVectors) else list(vectors.values())
    if not items:
        raise ConvaError("no value vectors given")
    layers = [vv.best_layer if layer is None else int(layer) for vv in items]
    n_layers = int(model.cfg.n_layers)
    if any(not 0 <= x < n_layers for x in layers):
        raise ConvaError(f"layer must be in 0..{n_layers - 1}, got {layer}")
    formatted = format_inputs(model.tokenizer, [text], input_format)
    batch = tokenize_batch(model.tokenizer, formatted).to(model.cfg.device)
    cache: dict[int, Tensor] = {}

    def store(resid: Tensor, hook: Any, *, layer: int) -> None:
        cache[layer] = resid[0].detach().float().cpu()

    def bind(layer: int) -> Any:
        return lambda resid, hook: store(resid, hook, layer=layer)

    needed = sorted(set(layers))
    hooks = [(resid_post_name(x), bind(x)) for x in needed]
    with hooked(model, hooks, stop_after=resid_post_name(needed[-1])):
        model(batch.input_ids, attention_mask=batch.attention_mask, return_type=None)
    probs = torch.stack(
        [
            torch.sigmoid(cache[x] @ vv.w[x].float() + vv.b[x].float())
            for vv, x in zip(items, layers, strict=True)
        ],
        dim=-1,
    )
    ids = batch.input_ids[0].tolist()
    tokens = [render_token(model.tokenizer, t, space=" ") for t in ids]
    labels = [f"{vv.value} L{x}" for vv, x in zip(items, layers, strict=True)]
    return tokens, probs, labels


def pv_token_view(
    model: HookedModel,
    text: str,
    vectors: dict[str, ValueVectors] | ValueVectors,
    layer: int | None = None,
    *,
    input_format: str = "raw",
) -> Any:
    """circuitsvis view of P_V per token along ``text`` (see :func:`pv_per_token`).

    One value gives ``colored_tokens`` on a fixed [0, 1] scale; several give
    ``colored_tokens_multi`` with one selectable series per value.
    """
    from circuitsvis.tokens import colored_tokens, colored_tokens_multi

    tokens, probs, labels = pv_per_token(model, text, vectors, layer, input_format=input_format)
    if probs.shape[1] == 1:
        return colored_tokens(tokens, probs[:, 0], min_value=0.0, max_value=1.0)
    return colored_tokens_multi(tokens, probs, labels=labels)


def chat_tokens(
    model: HookedModel, question: str, answer: str, *, system: str | None = None
) -> list[str]:
    """Rendered tokens of a chat prompt followed by its answer.

    These line up with the ``position`` column of a generation trace (prompt
    tokens first, then generated ones) as long as re-tokenizing the decoded
    answer gives back the generated tokens, which holds for ordinary text.
    """
    text = format_chat(model.tokenizer, question, system=system) + answer
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [render_token(model.tokenizer, t, space=" ") for t in ids]


def steering_token_view(
    tokens: Sequence[str], trace_df: pd.DataFrame, layer: int, *, row: int = 0
) -> Any:
    """circuitsvis view of what ConVA did to each token at one layer.

    Args:
        tokens: the row's tokens in order (e.g. from :func:`chat_tokens`).
        trace_df: the trace of :func:`conva_tl.generate.generate` with
            ``trace=True`` (columns ``row, step, position, layer, p_before,
            p_after, eps``).
        layer: which controlled layer to show.
        row: which prompt of the batch.

    Returns:
        ``colored_tokens_multi`` with four series per token: ``eps`` (how far
        the residual was pushed along v), ``P_V before``, ``P_V after`` and
        ``P_V change``. Positions without a trace entry (the last generated
        token, which is never fed back) are 0.
    """
    from circuitsvis.tokens import colored_tokens_multi

    need = {"row", "position", "layer", "p_before", "p_after", "eps"}
    if not need <= set(trace_df.columns):
        raise ConvaError(
            f"trace_df lacks columns {sorted(need - set(trace_df.columns))}; pass generate(..., trace=True)[1]"
        )
    part = trace_df[(trace_df["row"] == row) & (trace_df["layer"] == layer)]
    if part.empty:
        have = sorted(trace_df.loc[trace_df["row"] == row, "layer"].unique().tolist())
        raise ConvaError(f"no trace for row {row} at layer {layer}; traced layers: {have}")
    part = part.drop_duplicates("position", keep="last").set_index("position")
    n = len(tokens)
    data = torch.zeros(n, 4)
    for pos, rec in part.iterrows():
        if 0 <= int(pos) < n:
            data[int(pos)] = torch.tensor(
                [rec["eps"], rec["p_before"], rec["p_after"], rec["p_after"] - rec["p_before"]],
                dtype=torch.float32,
            )
    labels = [f"eps (L{layer})", "P_V before", "P_V after", "P_V change"]
    return colored_tokens_multi(list(tokens), data, labels=labels)
