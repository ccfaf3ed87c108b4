"""How value vectors are identified: the settings a fit records and a rerun compares.

:class:`FitSettings` is stamped into every saved vector's metadata by
:meth:`conva_tl.store.ArtifactStore.fit`; the store compares it with what a
command asks for before it reuses (or refuses) saved vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from conva_tl.datasets import KIND_FOLDERS
from conva_tl.errors import ConvaError
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule

__all__ = ["FitSettings"]


@dataclass(frozen=True)
class FitSettings:
    """How value vectors are identified (recorded so a rerun can resume)."""

    kind: str = "pairs"
    pooling: str = "last"
    input_format: str = "raw"
    test_size: float = 0.2
    C: float = DEFAULT_C
    standardize: bool = DEFAULT_STANDARDIZE
    seed: int = 0
    threshold: float = LayerRule.threshold
    exclude_last: int = LayerRule.exclude_last
    fallback_top: int = LayerRule.fallback_top
    min_depth: float = LayerRule.min_depth
    max_layers: int | None = LayerRule.max_layers

    def __post_init__(self) -> None:
        if self.kind not in KIND_FOLDERS:
            raise ConvaError(f"kind must be one of {', '.join(KIND_FOLDERS)}, got {self.kind!r}")
        if self.pooling not in ("last", "mean"):
            raise ConvaError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")
        if self.input_format not in ("raw", "chat", "answer"):
            raise ConvaError(
                f"input_format must be 'raw', 'chat' or 'answer', got {self.input_format!r}"
            )
        if not _real(self.C) or not 0 < self.C < float("inf"):
            raise ConvaError(f"C (inverse L2 strength) must be a positive number, got {self.C!r}")
        if not _real(self.test_size) or not 0 < self.test_size < 1:
            raise ConvaError(f"test_size must be in (0, 1), got {self.test_size!r}")
        for name in ("seed", "exclude_last", "fallback_top"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or (name != "seed" and val < 0):
                raise ConvaError(f"{name} must be an integer >= 0, got {val!r}")
        if not _real(self.threshold) or not 0 <= self.threshold < 1:
            raise ConvaError(f"threshold must be in [0, 1), got {self.threshold!r}")
        self.rule()  # validates min_depth and max_layers

    def rule(self) -> LayerRule:
        """The control-layer rule these settings describe."""
        return LayerRule(
            threshold=self.threshold,
            exclude_last=self.exclude_last,
            fallback_top=self.fallback_top,
            min_depth=self.min_depth,
            max_layers=self.max_layers,
        )


def _real(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
