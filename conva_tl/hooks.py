"""Hook names and a checked, self-cleaning way to attach forward hooks.

All canonical hook names come from :func:`hook_name`. :func:`hooked` is the one
place the toolkit attaches temporary hooks: it rejects names the model does not
have (listing close matches) instead of letting a hook silently never fire,
counts how often each hook ran, and removes exactly its own hooks in
``finally``: a user's own hooks survive.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from conva_tl.errors import HookError

__all__ = ["HookFn", "hook_name", "resid_post_name", "check_hook_names", "hooked", "HookCounter"]

HookFn = Callable[..., Any]


def hook_name(layer: int, point: str = "hook_resid_post") -> str:
    """Full canonical hook name, e.g. ``blocks.3.hook_resid_post``."""
    return f"blocks.{int(layer)}.{point}"


def resid_post_name(layer: int) -> str:
    """Name of the residual stream after block ``layer``."""
    return hook_name(layer, "hook_resid_post")


def check_hook_names(model: Any, names: Sequence[str]) -> None:
    """Raise :class:`HookError` for any name the model has no hook point for."""
    available = model.hook_dict
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, list(available), n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise HookError(
                f"the model has no hook point {name!r} (it has {model.cfg.n_layers} blocks, "
                f"numbered 0..{model.cfg.n_layers - 1}){hint}"
            )


class HookCounter(Counter):
    """How many times each hook name fired inside a :func:`hooked` block."""


@contextmanager
def hooked(model: Any, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[HookCounter]:
    """Attach forward hooks for the duration of a ``with`` block.

    Args:
        model: a ``TransformerBridge``.
        fwd_hooks: ``(hook_name, fn)`` pairs; ``fn(tensor, hook)`` may return a
            replacement tensor.

    Yields:
        A counter of hook calls by name, filled as the model runs.
    """
    names = [name for name, _ in fwd_hooks]
    check_hook_names(model, names)
    counter = HookCounter()

    def counting(name: str, fn: HookFn) -> HookFn:
        def wrapped(tensor: Any, hook: Any) -> Any:
            counter[name] += 1
            return fn(tensor, hook=hook)

        return wrapped

    wrapped_hooks = [(name, counting(name, fn)) for name, fn in fwd_hooks]
    with model.hooks(fwd_hooks=wrapped_hooks):
        yield counter
