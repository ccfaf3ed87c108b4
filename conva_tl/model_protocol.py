"""What every stage needs from a model: the :class:`HookedModel` protocol.

Each stage (:mod:`conva_tl.activations`, :mod:`conva_tl.generate`,
:mod:`conva_tl.gate`, :mod:`conva_tl.evaluation`, ...) runs unchanged on a
``TransformerBridge`` (:func:`conva_tl.model.load_model`) and on a
:class:`conva_tl.fast.FastModel`. This module states exactly what they rely
on, so that the type hints say it instead of ``Any``: a ``cfg`` with the
bridge's attribute names, a tokenizer, the hook points by name
(``hook_dict``, checked by :func:`conva_tl.hooks.check_hook_names`), the
``hooks(fwd_hooks=...)`` context manager (attached through
:func:`conva_tl.hooks.hooked`) and a forward call on left-padded token ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["ModelConfig", "HookedModel"]


@runtime_checkable
class ModelConfig(Protocol):
    """The ``model.cfg`` attributes the stages read (TransformerLens names)."""

    @property
    def model_name(self) -> str: ...

    @property
    def n_layers(self) -> int: ...

    @property
    def d_model(self) -> int: ...

    @property
    def d_vocab(self) -> int: ...

    @property
    def device(self) -> torch.device | str | None: ...


@runtime_checkable
class HookedModel(Protocol):
    """A causal LM with named residual-stream hook points, as the stages use it.

    Satisfied by ``TransformerBridge`` and :class:`conva_tl.fast.FastModel`.

    Attributes:
        cfg: :class:`ModelConfig` (``n_layers``, ``d_model``, ``d_vocab``,
            ``device``, ``model_name``; ``n_ctx`` is read when present).
        tokenizer: its Hugging Face tokenizer (padding is set per call).
        hook_dict: ``{name: hook point}``; at least ``blocks.{l}.hook_resid_pre``
            and ``blocks.{l}.hook_resid_post`` for every block.
    """

    @property
    def cfg(self) -> ModelConfig: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def hook_dict(self) -> Mapping[str, Any]: ...

    def hooks(
        self,
        fwd_hooks: list[tuple[str, Any]] = ...,
        bwd_hooks: list[tuple[str, Any]] = ...,
        reset_hooks_end: bool = ...,
        clear_contexts: bool = ...,
    ) -> AbstractContextManager[Any]:
        """Attach ``fwd_hooks`` (``(name, fn(tensor, hook))``) for a ``with`` block."""
        ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward pass on token ids ``[batch, pos]`` (the first argument).

        The stages pass ``attention_mask``, ``return_type`` (``"logits"``,
        ``"logits_and_cache"`` or ``None``), ``past_key_values`` and
        ``use_cache`` as keywords.
        """
        ...
