"""Tokenizing batches the same way everywhere: left padding, no added specials.

Raw sentences get no BOS (SmolLM2's template has none and chat-formatted text
already carries its own special tokens), so ``add_special_tokens=False`` makes
the token ids independent of how a tokenizer was configured by whoever loaded
it. Left padding keeps every row's last real token at position ``-1``, which
both last-token pooling and generation rely on; :func:`token_positions` gives
each column's index among its row's real tokens (the position ids of a
left-padded batch, for hooks and for :class:`conva_tl.fast.FastModel`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from conva_tl.errors import ConvaError

__all__ = ["Batch", "tokenize_batch", "token_positions", "iter_batches"]


@dataclass(frozen=True)
class Batch:
    """A left-padded batch of token ids and its attention mask."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def to(self, device: torch.device | str | None) -> Batch:
        """Move both tensors (``None``, as a config may give it: leave them where they are)."""
        return Batch(self.input_ids.to(device), self.attention_mask.to(device))


def tokenize_batch(tokenizer: Any, texts: Sequence[str], *, max_length: int | None = None) -> Batch:
    """Tokenize ``texts`` with left padding and no added special tokens."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ConvaError("texts must be a non-empty list of strings")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(
        list(texts),
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
        truncation=max_length is not None,
        max_length=max_length,
    )
    if bool((enc["attention_mask"].sum(dim=1) == 0).any()):
        raise ConvaError("an empty text tokenized to zero tokens; remove empty strings")
    return Batch(enc["input_ids"], enc["attention_mask"])


def token_positions(attention_mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """Index of each column among its row's real tokens; padding gets ``-1``.

    Example:
        >>> token_positions(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])).tolist()
        [[-1, -1, 0, 1], [0, 1, 2, 3]]
    """
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, -1)


def iter_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int, *, by_length: bool = True
) -> Iterator[tuple[list[int], Batch]]:
    """The one batching loop: ``(indices, batch)`` over ``texts``, ``batch_size`` at a time.

    Args:
        tokenizer: tokenizes each chunk with :func:`tokenize_batch`.
        texts: the (already formatted) texts.
        batch_size: texts per batch (>= 1, checked now, not on the first step).
        by_length: sort by token count first, which keeps padding small
            (callers put results back in input order with the indices); False
            keeps the input order.

    Yields:
        The indices into ``texts`` of a batch's rows and the tokenized batch (on CPU).
    """
    if batch_size < 1:
        raise ConvaError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(texts)))
    if by_length:
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order.sort(key=lambda i: lengths[i])
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return ((idx, tokenize_batch(tokenizer, [texts[i] for i in idx])) for idx in chunks)
