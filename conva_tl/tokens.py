"""Tokenizing batches the same way everywhere: left padding, no added specials.

Raw sentences get no BOS (SmolLM2's template has none and chat-formatted text
already carries its own special tokens), so ``add_special_tokens=False`` makes
the token ids independent of how a tokenizer was configured by whoever loaded
it. Left padding keeps every row's last real token at position ``-1``, which
both last-token pooling and generation rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from conva_tl.errors import ConvaError

__all__ = ["Batch", "tokenize_batch"]


@dataclass(frozen=True)
class Batch:
    """A left-padded batch of token ids and its attention mask."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def to(self, device: torch.device | str) -> Batch:
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
