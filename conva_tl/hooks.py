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
from conva_tl.model_protocol import HookedModel

__all__ = ["HookFn", "hook_name", "resid_post_name", "check_hook_names", "hooked", "HookCounter"]

HookFn = Callable[..., Any]


def hook_name(layer: int, point: str = "hook_resid_post") -> str:
    """Full canonical hook name, e.g. ``blocks.3.hook_resid_post``."""
    return f"blocks.{int(layer)}.{point}"


def resid_post_name(layer: int) -> str:
    """Name of the residual stream after block ``layer``."""
    return hook_name(layer, "hook_resid_post")


def check_hook_names(model: HookedModel, names: Sequence[str], *, advice: str = "") -> None:
    """Raise :class:`HookError` for any name the model has no hook point for.

    The one hook-name check: :func:`hooked` runs it for every model and
    :meth:`conva_tl.fast.FastModel.add_hook` for its own hooks. ``advice`` ends
    the message (what to do instead).
    """
    available = model.hook_dict
    for name in names:
        if not isinstance(name, str) or name not in available:
            close = difflib.get_close_matches(str(name), list(available), n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            tail = f". {advice}" if advice else ""
            raise HookError(
                f"the model has no hook point {name!r} (it has {model.cfg.n_layers} blocks, "
                f"numbered 0..{model.cfg.n_layers - 1}){hint}{tail}"
            )


class HookCounter(Counter):
    """How many times each hook name fired inside a :func:`hooked` block."""


class _StopForward(Exception):
    """Raised after the ``stop_after`` hook of one :func:`hooked` block; caught by it."""

    def __init__(self, owner: HookCounter) -> None:
        super().__init__("stop_after")
        self.owner = owner


@contextmanager
def hooked(
    model: HookedModel,
    fwd_hooks: Sequence[tuple[str, HookFn]],
    *,
    stop_after: str | None = None,
) -> Iterator[HookCounter]:
    """Attach forward hooks for the duration of a ``with`` block.

    Args:
        model: a ``TransformerBridge`` or a :class:`conva_tl.fast.FastModel`.
        fwd_hooks: ``(hook_name, fn)`` pairs; ``fn(tensor, hook)`` may return a
            replacement tensor.
        stop_after: one of the hook names: once its (last) hook has run, the
            forward pass is abandoned and the ``with`` block ends there, so
            nothing deeper runs (not even the unembedding). The one early-stop
            mechanism of the toolkit, the same on every model type; put only
            the forward call in such a block.

    Yields:
        A counter of hook calls by name, filled as the model runs.

    Example:
        >>> with hooked(model, [(resid_post_name(2), save)], stop_after=resid_post_name(2)):  # doctest: +SKIP
        ...     model(tokens, return_type=None)
    """
    names = [name for name, _ in fwd_hooks]
    check_hook_names(model, names)
    if stop_after is not None and stop_after not in names:
        raise HookError(
            f"stop_after={stop_after!r} is not one of the hooks given ({', '.join(names) or 'none'}): "
            "name the hook after which the forward pass may end"
        )
    last = max(i for i, name in enumerate(names) if name == stop_after) if stop_after else -1
    counter = HookCounter()

    def counting(i: int, name: str, fn: HookFn) -> HookFn:
        def wrapped(tensor: Any, hook: Any) -> Any:
            counter[name] += 1
            out = fn(tensor, hook=hook)
            if i == last:
                raise _StopForward(counter)  # nothing deeper is needed
            return out

        return wrapped

    wrapped_hooks = [(name, counting(i, name, fn)) for i, (name, fn) in enumerate(fwd_hooks)]
    try:
        with model.hooks(fwd_hooks=wrapped_hooks):
            yield counter
    except _StopForward as stop:
        if stop.owner is not counter:
            raise  # an enclosing hooked() block's stop
