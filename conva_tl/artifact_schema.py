"""Schema checks for the JSON half of an artifact folder.

:mod:`conva_tl.artifacts` writes ``manifest.json``, ``<value>.json`` and
``gate-<value>.json`` next to the safetensors files; this module reads them
back and checks every field (presence, type, range, and that the recorded
value is the one the file name and the request say), so a hand-edited or
renamed file fails with one :class:`~conva_tl.errors.ArtifactError` naming the
file and the field instead of loading as something else.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
from pathlib import Path
from typing import Any

from conva_tl.errors import ArtifactError, DataError
from conva_tl.values import canonical_value

__all__ = ["read_json", "check_manifest", "check_vectors_meta", "check_gate_meta"]

FORMAT_VERSION = 1
_REFIT = "fit it again (conva fit) or restore the file"
_GATE_KINDS = ("neutral", "specific")  # conva_tl.gate.GATE_KINDS; this module imports no model code


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; a missing, non-UTF-8 or corrupt file is an ArtifactError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; {_REFIT}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path} is a folder, expected a JSON file") from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path} is not UTF-8 text (byte {exc.start}); {_REFIT}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt (line {exc.lineno}: {exc.msg}); {_REFIT}") from None


def _field(path: Path, obj: dict[str, Any], key: str, *, required: bool = True) -> Any:
    if key not in obj:
        if not required:
            return None
        close = difflib.get_close_matches(key, [str(k) for k in obj], n=1)
        hint = f" (it has {close[0]!r}: misspelt?)" if close else ""
        raise ArtifactError(f"{path}: required field {key!r} is missing{hint}; {_REFIT}")
    return obj[key]


def _int(path: Path, key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArtifactError(
            f"{path}: field {key!r} must be an integer, got {type(value).__name__} {value!r}"
        )
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ArtifactError(
            f"{path}: field {key!r} is {value}, expected {lo if lo is not None else '...'}"
            f"..{hi if hi is not None else ''}"
        )
    return value


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ArtifactError(
            f"{path}: field {key!r} must be a finite number, got {type(value).__name__} {value!r}"
        )
    return float(value)


def _object(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(obj).__name__}; {_REFIT}")
    return obj


def _version(path: Path, obj: dict[str, Any]) -> None:
    version = _int(path, "format_version", _field(path, obj, "format_version"))
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version} is newer than this conva-tl reads "
            f"({FORMAT_VERSION}); upgrade conva-tl"
        )


def _value(path: Path, obj: dict[str, Any], expected: str) -> str:
    raw = _field(path, obj, "value")
    if not isinstance(raw, str):
        raise ArtifactError(f"{path}: field 'value' must be a string, got {raw!r}")
    try:
        value = canonical_value(raw)
    except DataError as exc:
        raise ArtifactError(f"{path}: field 'value': {exc}") from None
    if value != expected:
        raise ArtifactError(
            f"{path} holds {value!r}, not {expected!r} (a renamed file?): "
            f"rename it back to {value!r} or fit {expected!r}"
        )
    return value


def check_manifest(path: Path, obj: Any) -> list[str]:
    """The value names a manifest lists (checked: an object with a list of value names)."""
    obj = _object(path, obj)
    values = _field(path, obj, "values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ArtifactError(f"{path}: field 'values' must be a list of value names, got {values!r}")
    out = []
    for v in values:
        try:
            out.append(canonical_value(v))
        except DataError as exc:
            raise ArtifactError(f"{path}: field 'values': {exc}") from None
    return out


def check_vectors_meta(path: Path, obj: Any, expected: str, n_layers: int) -> dict[str, Any]:
    """A checked ``<value>.json``: ``{"control_layers": tuple, "metadata": dict}``."""
    obj = _object(path, obj)
    _version(path, obj)
    _value(path, obj, expected)
    layers = _field(path, obj, "control_layers")
    if not isinstance(layers, list):
        raise ArtifactError(
            f"{path}: field 'control_layers' must be a list of layer indices, "
            f"got {type(layers).__name__} {layers!r}"
        )
    checked = tuple(_int(path, "control_layers", x, 0, n_layers - 1) for x in layers)
    if len(set(checked)) != len(checked):
        raise ArtifactError(f"{path}: field 'control_layers' repeats a layer: {list(checked)}")
    metadata = _field(path, obj, "metadata")
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: field 'metadata' must be an object, got {metadata!r}")
    return {"control_layers": tuple(sorted(checked)), "metadata": metadata}


def check_gate_meta(path: Path, obj: Any, expected: str, n_layers: int | None) -> dict[str, Any]:
    """A checked ``gate-<value>.json``: block, b, threshold, metrics and kind.

    ``kind`` is optional: gates saved before it existed are ``"neutral"``.
    """
    obj = _object(path, obj)
    _version(path, obj)
    _value(path, obj, expected)
    block = _int(
        path, "block", _field(path, obj, "block"), 1, None if n_layers is None else n_layers - 1
    )
    b = _number(path, "b", _field(path, obj, "b"))
    threshold = _number(path, "threshold", _field(path, obj, "threshold"))
    metrics = _field(path, obj, "metrics", required=False)
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, dict):
        raise ArtifactError(f"{path}: field 'metrics' must be an object, got {metrics!r}")
    kind = _field(path, obj, "kind", required=False)
    if kind is None:
        kind = "neutral"
    if kind not in _GATE_KINDS:
        raise ArtifactError(
            f"{path}: field 'kind' must be one of {', '.join(_GATE_KINDS)}, got {kind!r}; {_REFIT}"
        )
    return {"block": block, "b": b, "threshold": threshold, "metrics": metrics, "kind": kind}
