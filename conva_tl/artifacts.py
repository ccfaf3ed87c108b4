"""Saving and loading value vectors: safetensors for tensors, JSON for the rest.

An artifact folder holds ``<value>.safetensors`` (w, b, accuracies) and
``<value>.json`` (control layers, provenance) per value, plus
``manifest.json``. Loading checks every JSON field (:mod:`conva_tl.artifact_schema`),
the value recorded in a file against its name and the request, the tensors
against each other and, when a model is given, against the model's name and
shape, so vectors fitted on one model are never silently applied to another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from conva_tl.artifact_schema import (
    FORMAT_VERSION,
    check_gate_meta,
    check_manifest,
    check_vectors_meta,
    read_json,
)
from conva_tl.errors import ArtifactError
from conva_tl.gate import ActivationGate
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors
from conva_tl.values import canonical_value

__all__ = ["save_vectors", "load_vectors", "check_compatible", "save_gates", "load_gates"]

_TENSORS = ("w", "b", "accuracy", "train_accuracy", "mean_diff")


def save_vectors(folder: str | Path, vectors: ValueVectors | Iterable[ValueVectors]) -> Path:
    """Write value vectors into ``folder`` (created); other values there are kept."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    items = [vectors] if isinstance(vectors, ValueVectors) else list(vectors)
    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] = {"values": []}
    if manifest_path.is_file():
        manifest["values"] = check_manifest(manifest_path, read_json(manifest_path))
    for vv in items:
        tensors = {k: getattr(vv, k).detach().float().contiguous().cpu() for k in _TENSORS}
        save_file(tensors, str(out / f"{vv.value}.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "value": vv.value,
            "control_layers": list(vv.control_layers),
            "metadata": vv.metadata,
        }
        (out / f"{vv.value}.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if vv.value not in manifest["values"]:
            manifest["values"].append(vv.value)
    manifest["format_version"] = FORMAT_VERSION
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return out


def check_compatible(vv: ValueVectors, model: HookedModel) -> None:
    """Raise :class:`ArtifactError` unless ``vv`` was fitted on this model's shape."""
    info = model_info(model)
    rec = vv.metadata.get("model", {})
    problems = []
    if rec.get("d_model") not in (None, info.d_model):
        problems.append(f"d_model {rec['d_model']} vs the model's {info.d_model}")
    if rec.get("n_layers") not in (None, info.n_layers):
        problems.append(f"{rec['n_layers']} layers vs the model's {info.n_layers}")
    if tuple(vv.w.shape) != (info.n_layers, info.d_model):
        problems.append(
            f"weights of shape {tuple(vv.w.shape)} vs ({info.n_layers}, {info.d_model})"
        )
    if rec.get("name") not in (None, info.name):
        problems.append(f"fitted on {rec['name']!r}, not {info.name!r}")
    if problems:
        raise ArtifactError(
            f"value vectors for {vv.value!r} do not match this model: {'; '.join(problems)}. "
            "Fit them again on this model (conva fit) or load the model they came from."
        )


def load_vectors(
    folder: str | Path,
    values: Sequence[str] | None = None,
    *,
    model: HookedModel | None = None,
) -> dict[str, ValueVectors]:
    """Load value vectors from ``folder``; with ``model``, check they fit it."""
    root = Path(folder)
    manifest_path = root / "manifest.json"
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a folder: give the artifact folder conva fit wrote")
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{root} has no manifest.json: not a conva-tl artifact folder (create one with conva fit)"
        )
    have = check_manifest(manifest_path, read_json(manifest_path))
    names = [canonical_value(v) for v in values] if values is not None else have
    out = {}
    for name in names:
        if name not in have:
            raise ArtifactError(
                f"{root} has no vectors for {name!r}; it has: {', '.join(have) or 'none'}"
            )
        out[name] = _load_one(root, name)
        if model is not None:
            check_compatible(out[name], model)
    return out


def _load_one(root: Path, name: str) -> ValueVectors:
    meta_path, tensor_path = root / f"{name}.json", root / f"{name}.safetensors"
    raw_meta = read_json(meta_path)
    try:
        tensors = load_file(str(tensor_path))
    except FileNotFoundError:
        raise ArtifactError(f"{tensor_path} is missing") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(
            f"{tensor_path} is corrupt or truncated ({exc}); fit the value again"
        ) from None
    missing = [k for k in _TENSORS if k not in tensors]
    if missing:
        raise ArtifactError(f"{tensor_path} lacks tensors {missing}")
    if tensors["w"].ndim != 2:
        raise ArtifactError(
            f"{tensor_path}: w has shape {tuple(tensors['w'].shape)}, expected (layer, d_model)"
        )
    n_layers, d = tensors["w"].shape
    if any(tensors[k].shape != (n_layers,) for k in ("b", "accuracy", "train_accuracy")) or tensors[
        "mean_diff"
    ].shape != (n_layers, d):
        raise ArtifactError(
            f"{tensor_path}: tensor shapes disagree with w of shape {(n_layers, d)}"
        )
    nonfinite = [k for k in _TENSORS if not bool(torch.isfinite(tensors[k]).all())]
    if nonfinite:
        raise ArtifactError(
            f"{tensor_path}: tensors {nonfinite} hold NaN or inf; fit the value again"
        )
    meta = check_vectors_meta(meta_path, raw_meta, name, n_layers)
    vv = ValueVectors(
        value=name,
        w=tensors["w"],
        b=tensors["b"],
        accuracy=tensors["accuracy"],
        train_accuracy=tensors["train_accuracy"],
        control_layers=meta["control_layers"],
        mean_diff=tensors["mean_diff"],
        metadata=meta["metadata"],
    )
    try:
        vv.check_layers(vv.control_layers)
    except ArtifactError as exc:
        raise ArtifactError(f"{meta_path}: {exc}") from None
    return vv


def save_gates(folder: str | Path, gates: Iterable[ActivationGate]) -> Path:
    """Write activation gates as ``gate-<value>.safetensors`` + ``gate-<value>.json``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for gate in gates:
        save_file(
            {"w": gate.w.detach().float().contiguous().cpu()},
            str(out / f"gate-{gate.value}.safetensors"),
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "value": gate.value,
            "block": gate.block,
            "b": gate.b,
            "threshold": gate.threshold,
            "metrics": gate.metrics,
            "kind": gate.kind,
        }
        (out / f"gate-{gate.value}.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


def load_gates(
    folder: str | Path, values: Sequence[str] | None = None, *, model: HookedModel | None = None
) -> dict[str, ActivationGate]:
    """Load gates saved by :func:`save_gates` (all in the folder by default).

    Raises:
        ArtifactError: the folder is missing or holds no gates, a requested
            value has no gate, or a gate's files are corrupt, for another value
            or (with ``model``) for another model's shape.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ArtifactError(
            f"{root} is not a folder: give the artifact folder conva fit wrote its gates to"
        )
    names = (
        [canonical_value(v) for v in values]
        if values is not None
        else sorted(p.name[len("gate-") : -len(".json")] for p in root.glob("gate-*.json"))
    )
    if not names:
        raise ArtifactError(f"{root} holds no gates (gate-<value>.json); fit them with conva fit")
    n_layers = int(model.cfg.n_layers) if model is not None else None
    out = {}
    for name in names:
        meta_path, tensor_path = root / f"gate-{name}.json", root / f"gate-{name}.safetensors"
        if not meta_path.is_file():
            raise ArtifactError(f"{root} has no gate for {name!r} (fit one with conva fit)")
        meta = check_gate_meta(meta_path, read_json(meta_path), canonical_value(name), n_layers)
        try:
            w = load_file(str(tensor_path))["w"]
        except FileNotFoundError:
            raise ArtifactError(f"{tensor_path} is missing (fit the gate again)") from None
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{tensor_path} is corrupt ({exc}); fit the gate again") from None
        if w.ndim != 1 or not bool(torch.isfinite(w).all()):
            raise ArtifactError(
                f"{tensor_path}: w must be a finite vector, got shape {tuple(w.shape)}"
            )
        if model is not None and w.shape != (model.cfg.d_model,):
            raise ArtifactError(
                f"gate for {name!r} has d_model {w.shape[0]}, the model {model.cfg.d_model}"
            )
        out[canonical_value(name)] = ActivationGate(
            canonical_value(name),
            meta["block"],
            w,
            meta["b"],
            meta["threshold"],
            meta["metrics"],
            meta["kind"],
        )
    return out
