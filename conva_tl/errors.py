"""The package's one exception family.

Every error a user can trigger derives from :class:`ConvaError`, so a notebook
can catch them all at once; messages name the input, what was expected and
what to do instead.
"""

from __future__ import annotations

__all__ = ["ConvaError", "DataError", "ModelLoadError", "ArtifactError", "HookError", "ApiError"]


class ConvaError(Exception):
    """Base class for every error raised by conva-tl."""


class DataError(ConvaError, ValueError):
    """A dataset file or a value name is malformed or unknown."""


class ModelLoadError(ConvaError, RuntimeError):
    """A model could not be found, downloaded or booted into a bridge."""


class ArtifactError(ConvaError, ValueError):
    """A saved artifact is corrupt or does not match the model it is used with."""


class HookError(ConvaError, ValueError):
    """A hook point does not exist or a hook was configured inconsistently."""


class ApiError(ConvaError, RuntimeError):
    """An OpenAI-compatible endpoint failed after all retries."""
