"""Thin stages a user runs end to end: fit everything, then answer with a method.

:func:`fit_all` identifies value vectors for several values in one activation
pass, fits their gates in a second shared pass, and saves both to an artifact
folder; rerun with the same settings, it loads them instead (resume). It never
replaces vectors fitted with other settings unless told to (``overwrite``).
:func:`load_or_fit` and :func:`load_or_fit_gates` are what the commands that
*use* vectors (``conva steer``, ``conva evaluate``) call: they take the folder's
vectors and gates as they are and fit only what is missing.
:func:`make_method` builds any of the compared methods by name.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from conva_tl.artifact_schema import check_manifest, read_json
from conva_tl.artifacts import load_gates, load_vectors, save_gates, save_vectors
from conva_tl.datasets import (
    KIND_FOLDERS,
    ContrastSet,
    contrast_set,
    load_pairs,
    load_straightforward,
)
from conva_tl.errors import ArtifactError, ConvaError, DataError
from conva_tl.gate import ActivationGate, fit_gates
from conva_tl.identify import custom_sets, identify, value_names
from conva_tl.methods import CAA, DEFAULT_CAA_COEF, DEFAULT_P0, ICA, Base, ConVA
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule, ValueVectors, layer_ranges
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "FitSettings",
    "check_output_folder",
    "contrast_sets_from_files",
    "fit_all",
    "load_or_fit",
    "load_or_fit_gates",
    "summary_table",
    "make_method",
    "METHODS",
    "DEFAULT_P0",
    "DEFAULT_CAA_COEF",
]

logger = logging.getLogger(__name__)

# DEFAULT_P0 and DEFAULT_CAA_COEF live beside the methods they parameterise (methods.py).


METHODS = ("base", "ica", "caa", "conva", "conva-nogate", "conva-per-prompt")


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


def check_output_folder(path: str | Path) -> Path:
    """``path`` as a folder this process can create or write into; checked, not created.

    Called before a model is loaded, so a bad output path fails in a second
    rather than after minutes of fitting.

    Raises:
        ArtifactError: ``path`` is a file, lies under a file, or is not writable.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"output folder {folder} exists and is a file: choose another path")
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArtifactError(
            f"output folder {folder} cannot be created: {parent} is a file, not a folder; "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArtifactError(
            f"output folder {folder} is not writable ({parent}): choose another path"
        )
    return folder


def contrast_sets_from_files(
    paths: Sequence[str | Path], kind: str = "pairs"
) -> dict[str, ContrastSet]:
    """Your own data files (the shipped JSONL schema), one value per file, by value.

    Raises:
        DataError: a file is missing, not UTF-8, malformed, holds several values,
            or two files hold the same value.
    """
    out: dict[str, ContrastSet] = {}
    for path in map(Path, paths):
        records = load_pairs(path=path) if kind == "pairs" else load_straightforward(path=path)
        found = sorted({r.value for r in records})
        if len(found) != 1:
            raise DataError(
                f"{path}: holds {len(found)} values ({', '.join(found)}); give one file per value"
            )
        cs = contrast_set(found[0], kind, path=path)
        if cs.value in out:
            raise DataError(f"{path}: a second file for {cs.value!r}; give one file per value")
        out[cs.value] = cs
    return out


def _mismatch(
    meta: dict[str, Any], model: HookedModel, settings: FitSettings, cs: ContrastSet
) -> str | None:
    """Why saved vectors (their ``metadata``) were not fitted as asked, or ``None`` if they were."""
    info = model_info(model).to_dict()
    if meta.get("model") != info:
        return f"fitted on {meta.get('model', {}).get('name')!r}, not {info['name']!r}"
    saved = meta.get("fit_settings")
    if not isinstance(saved, dict):
        return "no fit settings recorded (not fitted by conva fit)"
    asked = asdict(settings)
    diff = [f"{k}={saved.get(k)!r} (asked {asked[k]!r})" for k in asked if saved.get(k) != asked[k]]
    if diff:
        return "fitted with " + ", ".join(diff)
    if meta.get("dataset", {}).get("sha256") != cs.sha256:
        return "fitted on other training data"
    return None


def _saved_metadata(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The recorded metadata of the ``names`` saved in ``folder``; unreadable ones are skipped."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return {}
    have = check_manifest(manifest, read_json(manifest))
    out = {}
    for v in names:
        if v not in have:
            continue
        try:
            meta = read_json(folder / f"{v}.json").get("metadata")
        except (ArtifactError, AttributeError) as exc:
            logger.warning("ignoring unreadable vectors for %s in %s: %s", v, folder, exc)
            continue
        if isinstance(meta, dict):
            out[v] = meta
    return out


def _fitted_otherwise(
    out: Path,
    saved: dict[str, dict[str, Any]],
    model: HookedModel,
    settings: FitSettings,
    sets: dict[str, ContrastSet] | None = None,
) -> dict[str, str]:
    """``{value: why}`` for saved vectors fitted with another model, data or settings."""
    sets = sets or {}
    return {
        v: reason
        for v, meta in saved.items()
        if (
            reason := _mismatch(
                meta, model, settings, sets.get(v) or contrast_set(v, settings.kind)
            )
        )
    }


def _refuse(out: Path, why: dict[str, str]) -> None:
    raise ArtifactError(
        f"{out} already holds vectors fitted otherwise: "
        + "; ".join(f"{v}: {r}" for v, r in why.items())
        + ". They are kept: rerun conva fit with --overwrite (fit_all(..., overwrite=True)) "
        "to replace them, give the same settings to reuse them, or choose another --vectors folder"
    )


def fit_all(
    model: HookedModel,
    out_dir: str | Path,
    values: Sequence[str] = VALUES,
    *,
    settings: FitSettings | None = None,
    gates: bool = True,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool | None = True,
    data: dict[str, ContrastSet] | None = None,
    gate_kind: str = "neutral",
) -> tuple[dict[str, ValueVectors], dict[str, ActivationGate]]:
    """Identify (or reload) value vectors and gates for ``values``; save them.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        out_dir: artifact folder (created).
        values: value names.
        settings: identification settings.
        gates: also fit the default :class:`ActivationGate` per value.
        resume: reuse vectors already in ``out_dir`` fitted with the same model,
            data and settings; only the missing values are fitted.
        overwrite: replace vectors in ``out_dir`` that were fitted with another
            model, other data or other settings. Without it they are an error,
            so a user's vectors are never silently refitted.
        progress: progress bars.
        data: your own :class:`ContrastSet` per value (see :func:`identify`);
            resume compares against its hash.
        gate_kind: ``"neutral"`` or ``"specific"`` gates (see
            :func:`~conva_tl.gate.fit_gates`); saved gates of the other kind
            are refitted.

    Raises:
        ArtifactError: ``out_dir`` holds vectors for a value in ``values``
            fitted otherwise, and ``overwrite`` is not set.
    """
    settings = settings or FitSettings()
    names = value_names(values)
    sets = custom_sets(data, names)
    out = check_output_folder(out_dir)
    saved = _saved_metadata(out, names)
    why = _fitted_otherwise(out, saved, model, settings, sets)
    if why and not overwrite:
        _refuse(out, why)
    have: dict[str, ValueVectors] = {}
    reuse = [v for v in saved if v not in why] if resume else []
    if reuse:
        try:
            have = load_vectors(out, reuse)
        except ArtifactError as exc:
            logger.warning("ignoring unreadable artifacts in %s: %s", out, exc)
    todo = [v for v in names if v not in have]
    if todo:
        logger.info("identifying value vectors for %s", ", ".join(todo))
        rule = settings.rule()
        fitted = identify(
            model,
            todo,
            kind=settings.kind,
            data={v: sets[v] for v in todo if v in sets},
            pooling=settings.pooling,
            input_format=settings.input_format,
            test_size=settings.test_size,
            C=settings.C,
            standardize=settings.standardize,
            seed=settings.seed,
            rule=rule,
            progress=progress,
        )
        for v, vv in fitted.items():
            stamped = ValueVectors(
                vv.value,
                vv.w,
                vv.b,
                vv.accuracy,
                vv.train_accuracy,
                vv.control_layers,
                vv.mean_diff,
                {**vv.metadata, "fit_settings": asdict(settings)},
            )
            save_vectors(out, stamped)
            have[v] = stamped
    vectors = {v: have[v] for v in names}
    gate_map: dict[str, ActivationGate] = {}
    if gates:
        gate_map = {}
        if resume and not todo:
            try:
                gate_map = load_gates(out, names, model=model)
            except ArtifactError:
                gate_map = {}
        gate_map = {v: g for v, g in gate_map.items() if g.kind == gate_kind}
        missing = {v: vectors[v] for v in names if v not in gate_map}
        if missing:
            logger.info("fitting %s gates for %s", gate_kind, ", ".join(missing))
            new = fit_gates(model, missing, progress=progress, kind=gate_kind)
            save_gates(out, new.values())
            gate_map.update(new)
    _write_folder_summary(out, vectors, gate_map)
    return vectors, gate_map


def _write_folder_summary(
    out: Path, vectors: dict[str, ValueVectors], gates: dict[str, ActivationGate]
) -> None:
    """``summary.csv`` and ``fit_settings.json`` for every value in the folder.

    A call that fits some values must not describe the folder as if it held
    only those: values saved earlier (possibly with other settings) keep their
    rows, read back from their own files.
    """
    every = dict(vectors)
    listed = check_manifest(out / "manifest.json", read_json(out / "manifest.json"))
    for v in (v for v in listed if v not in every):
        try:
            every.update(load_vectors(out, [v]))
        except ArtifactError as exc:
            logger.warning("summary.csv leaves out unreadable vectors for %s: %s", v, exc)
    all_gates = dict(gates)
    for v in every:
        if v not in all_gates and (out / f"gate-{v}.json").is_file():
            try:
                all_gates.update(load_gates(out, [v]))
            except ArtifactError as exc:
                logger.warning("summary.csv leaves out the unreadable gate for %s: %s", v, exc)
    ordered = {v: every[v] for v in VALUES if v in every}
    summary_table(ordered, all_gates).to_csv(out / "summary.csv")
    per_value = {v: vv.metadata.get("fit_settings") for v, vv in ordered.items()}
    (out / "fit_settings.json").write_text(json.dumps(per_value, indent=2))


def load_or_fit(
    model: HookedModel,
    folder: str | Path,
    values: Sequence[str],
    *,
    settings: FitSettings | None = None,
    require: FitSettings | None = None,
    progress: bool | None = False,
) -> dict[str, ValueVectors]:
    """Vectors for ``values`` from ``folder``; fit (with ``settings``) and save only those it lacks.

    The artifact policy, in one place: vectors already in the folder are never
    refitted or overwritten here. With ``require=None`` they are used as they are,
    whatever settings fitted them (``conva steer``, ``conva evaluate``, the
    analyses with ``--trust-vectors``: a user's artifacts are read, not replaced).
    With ``require=settings`` a saved value fitted with another model, other data
    or other settings is an :class:`ArtifactError` that names ``conva fit
    --overwrite``; missing values are fitted with ``require``. Loading checks the
    vectors against ``model``.
    """
    folder = Path(folder)
    names = [canonical_value(v) for v in values]
    if require is not None:
        why = _fitted_otherwise(folder, _saved_metadata(folder, names), model, require)
        if why:
            _refuse(folder, why)
        settings = require
    manifest = folder / "manifest.json"
    have = check_manifest(manifest, read_json(manifest)) if manifest.is_file() else []
    missing = [v for v in names if v not in have]
    if missing:
        logger.warning(
            "%s has no vectors for %s: fitting them (minutes on a CPU)", folder, ", ".join(missing)
        )
        fit_all(model, folder, missing, settings=settings, gates=False, progress=progress)
    return load_vectors(folder, names, model=model)


def load_or_fit_gates(
    model: HookedModel,
    folder: str | Path,
    vectors: dict[str, ValueVectors],
    *,
    progress: bool | None = False,
) -> dict[str, ActivationGate]:
    """The gates of ``vectors``' values from ``folder``; fit and save only those it lacks.

    Like :func:`load_or_fit`, gates already in the folder are used as they are
    (a corrupt one is an error, not refitted over).
    """
    folder = Path(folder)
    have = [v for v in vectors if (folder / f"gate-{v}.json").is_file()]
    gate_map = load_gates(folder, have, model=model) if have else {}
    missing = {v: vv for v, vv in vectors.items() if v not in gate_map}
    if missing:
        logger.info("fitting gates for %s", ", ".join(missing))
        new = fit_gates(model, missing, progress=progress)
        save_gates(folder, new.values())
        gate_map.update(new)
    return {v: gate_map[v] for v in vectors}


def summary_table(
    vectors: dict[str, ValueVectors], gates: dict[str, ActivationGate] | None = None
) -> pd.DataFrame:
    """One row per value: best layer and accuracy, control layers, gate quality."""
    rows = []
    for v, vv in vectors.items():
        g = (gates or {}).get(v)
        rows.append(
            {
                "value": v,
                "best_layer": vv.best_layer,
                "best_accuracy": round(float(vv.accuracy.max()), 3),
                "n_control": len(vv.control_layers),
                "control_layers": layer_ranges(vv.control_layers),
                "gate_kind": g.kind if g else None,
                "gate_block": g.block if g else None,
                "gate_auroc": round(g.metrics.get("heldout_auroc", float("nan")), 3) if g else None,
                "gate_accuracy": round(g.metrics.get("heldout_accuracy", float("nan")), 3)
                if g
                else None,
            }
        )
    return pd.DataFrame(rows).set_index("value")


def make_method(
    name: str,
    value: str,
    vectors: ValueVectors | None = None,
    gate: ActivationGate | None = None,
    *,
    p0: float = DEFAULT_P0,
    caa_coef: float = DEFAULT_CAA_COEF,
) -> Any:
    """Build a method by name: one of :data:`METHODS`."""
    if name not in METHODS:
        raise ConvaError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if name == "base":
        return Base()
    if name == "ica":
        return ICA(value)
    if vectors is None:
        raise ConvaError(f"method {name!r} needs value vectors for {value!r} (conva fit)")
    if vectors.value != canonical_value(value):
        raise ConvaError(
            f"method {name!r} for {canonical_value(value)!r} was given the vectors of "
            f"{vectors.value!r}: pass the vectors of {canonical_value(value)!r}"
        )
    if gate is not None and canonical_value(gate.value) != vectors.value:
        raise ConvaError(
            f"method {name!r} for {vectors.value!r} was given the gate of {gate.value!r}"
        )
    if name == "caa":
        return CAA(vectors, coef=caa_coef)
    if name == "conva-nogate":
        return ConVA(vectors, p0=p0, gate=None, name="conva-nogate")
    if name == "conva-per-prompt":
        return ConVA(vectors, p0=p0, gate=gate, mode="per_prompt", name="conva-per-prompt")
    return ConVA(vectors, p0=p0, gate=gate)
