"""An artifact folder of value vectors and gates, with one policy for reading and writing it.

:class:`ArtifactStore` is the only code that decides whether saved vectors are
used, fitted or replaced. Its policy:

- :meth:`~ArtifactStore.fit` (``conva fit``) fits what the folder lacks and reuses
  what it holds when that was fitted with the same model, data and
  :class:`~conva_tl.fit_settings.FitSettings`. Vectors fitted otherwise are an
  :class:`~conva_tl.errors.ArtifactError` naming ``--overwrite``; they are
  replaced only with ``overwrite=True``.
- :meth:`~ArtifactStore.vectors` (``conva steer``, ``conva evaluate``, the
  analyses) never replaces anything. ``require=None`` takes the saved vectors as
  they are, whatever fitted them; ``require=settings`` refuses vectors fitted
  otherwise with the same message. Missing values are fitted and added.
- Every vector keeps its own settings (``metadata["fit_settings"]``), so a folder
  may hold values fitted differently; ``summary.csv`` and ``fit_settings.json``
  describe every value in the folder, not only the last ones fitted.

:func:`conva_tl.pipeline.fit_all` is ``ArtifactStore(folder).fit(...)`` for a
one-line start.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from conva_tl.artifact_schema import check_manifest, read_json
from conva_tl.artifacts import load_gates, load_vectors, save_gates, save_vectors
from conva_tl.datasets import ContrastSet, contrast_set
from conva_tl.errors import ArtifactError
from conva_tl.fit_settings import FitSettings
from conva_tl.gate import ActivationGate, fit_gates
from conva_tl.identify import custom_sets, identify, value_names
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import ValueVectors, layer_ranges
from conva_tl.values import VALUES, canonical_value

__all__ = ["ArtifactStore", "check_output_folder", "summary_table"]

logger = logging.getLogger(__name__)


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


def _fitted_otherwise(
    saved: dict[str, dict[str, Any]],
    model: HookedModel,
    settings: FitSettings,
    data: dict[str, ContrastSet],
) -> dict[str, str]:
    """``{value: why}`` for the ``saved`` metadata not fitted with ``model``, ``settings`` and data."""
    return {
        v: reason
        for v, meta in saved.items()
        if (
            reason := _mismatch(
                meta, model, settings, data.get(v) or contrast_set(v, settings.kind)
            )
        )
    }


def _stamped(vv: ValueVectors, settings: FitSettings) -> ValueVectors:
    """``vv`` with ``settings`` recorded in its metadata (what a later run compares)."""
    return replace(vv, metadata={**vv.metadata, "fit_settings": asdict(settings)})


@dataclass(frozen=True)
class ArtifactStore:
    """The vectors and gates saved in ``folder`` (see the module docstring for the policy).

    Example:
        >>> store = ArtifactStore("out/vectors")  # doctest: +SKIP
        >>> vectors, gates = store.fit(model, ["security"])  # doctest: +SKIP
        >>> store.vectors(model, ["security"], require=FitSettings())  # doctest: +SKIP
    """

    folder: Path

    def __init__(self, folder: str | Path) -> None:
        object.__setattr__(self, "folder", Path(folder))

    def saved_values(self) -> list[str]:
        """The values the folder's manifest lists (none for a new folder)."""
        manifest = self.folder / "manifest.json"
        return check_manifest(manifest, read_json(manifest)) if manifest.is_file() else []

    def metadata(self, values: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The recorded metadata of those ``values`` that are saved; unreadable ones are skipped."""
        have = set(self.saved_values())
        out = {}
        for v in (v for v in values if v in have):
            try:
                meta = read_json(self.folder / f"{v}.json").get("metadata")
            except (ArtifactError, AttributeError) as exc:
                logger.warning("ignoring unreadable vectors for %s in %s: %s", v, self.folder, exc)
                continue
            if isinstance(meta, dict):
                out[v] = meta
        return out

    def fitted_otherwise(
        self,
        model: HookedModel,
        values: Sequence[str],
        settings: FitSettings,
        data: dict[str, ContrastSet] | None = None,
    ) -> dict[str, str]:
        """``{value: why}`` for saved ``values`` fitted with another model, data or settings."""
        return _fitted_otherwise(self.metadata(values), model, settings, data or {})

    def _refuse(self, why: dict[str, str]) -> None:
        raise ArtifactError(
            f"{self.folder} already holds vectors fitted otherwise: "
            + "; ".join(f"{v}: {r}" for v, r in why.items())
            + ". They are kept: rerun conva fit with --overwrite (fit_all(..., overwrite=True)) "
            "to replace them, give the same settings to reuse them, or choose another --vectors folder"
        )

    def fit(
        self,
        model: HookedModel,
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
            values: value names.
            settings: identification settings.
            gates: also fit the default :class:`ActivationGate` per value.
            resume: reuse vectors already saved with the same model, data and
                settings; only the missing values are fitted.
            overwrite: replace vectors fitted with another model, other data or
                other settings. Without it they are an error, so a user's vectors
                are never silently refitted.
            progress: progress bars.
            data: your own :class:`ContrastSet` per value (see :func:`identify`);
                resume compares against its hash.
            gate_kind: ``"neutral"`` or ``"specific"`` gates (see
                :func:`~conva_tl.gate.fit_gates`); saved gates of the other kind
                are refitted.

        Raises:
            ArtifactError: the folder holds vectors for a value in ``values``
                fitted otherwise, and ``overwrite`` is not set.
        """
        settings = settings or FitSettings()
        names = value_names(values)
        sets = custom_sets(data, names)
        check_output_folder(self.folder)
        saved = self.metadata(names)
        why = _fitted_otherwise(saved, model, settings, sets)
        if why and not overwrite:
            self._refuse(why)
        have: dict[str, ValueVectors] = {}
        reuse = [v for v in saved if v not in why] if resume else []
        if reuse:
            try:
                have = load_vectors(self.folder, reuse)
            except ArtifactError as exc:
                logger.warning("ignoring unreadable artifacts in %s: %s", self.folder, exc)
        todo = [v for v in names if v not in have]
        if todo:
            logger.info("identifying value vectors for %s", ", ".join(todo))
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
                rule=settings.rule(),
                progress=progress,
            )
            for v, vv in fitted.items():
                have[v] = _stamped(vv, settings)
                save_vectors(self.folder, have[v])
        vectors = {v: have[v] for v in names}
        gate_map: dict[str, ActivationGate] = {}
        if gates:
            if resume and not todo:
                try:
                    gate_map = load_gates(self.folder, names, model=model)
                except ArtifactError:
                    gate_map = {}
            gate_map = {v: g for v, g in gate_map.items() if g.kind == gate_kind}
            missing = {v: vectors[v] for v in names if v not in gate_map}
            if missing:
                logger.info("fitting %s gates for %s", gate_kind, ", ".join(missing))
                new = fit_gates(model, missing, progress=progress, kind=gate_kind)
                save_gates(self.folder, new.values())
                gate_map.update(new)
        self._write_summary(vectors, gate_map)
        return vectors, gate_map

    def vectors(
        self,
        model: HookedModel,
        values: Sequence[str],
        *,
        require: FitSettings | None = None,
        settings: FitSettings | None = None,
        progress: bool | None = False,
    ) -> dict[str, ValueVectors]:
        """Vectors for ``values``; saved ones are never refitted or overwritten.

        With ``require=None`` saved vectors are used as they are, whatever settings
        fitted them (``conva steer``, ``conva evaluate``, the analyses with
        ``--trust-vectors``: a user's artifacts are read, not replaced). With
        ``require=settings`` a saved value fitted with another model, other data or
        other settings is an :class:`ArtifactError` that names ``conva fit
        --overwrite``. Missing values are fitted (with ``require``, else
        ``settings``) and saved. Loading checks the vectors against ``model``.
        """
        names = [canonical_value(v) for v in values]
        if require is not None:
            why = self.fitted_otherwise(model, names, require)
            if why:
                self._refuse(why)
            settings = require
        have = set(self.saved_values())
        missing = [v for v in names if v not in have]
        if missing:
            logger.warning(
                "%s has no vectors for %s: fitting them (minutes on a CPU)",
                self.folder,
                ", ".join(missing),
            )
            self.fit(model, missing, settings=settings, gates=False, progress=progress)
        return load_vectors(self.folder, names, model=model)

    def gates(
        self,
        model: HookedModel,
        vectors: dict[str, ValueVectors],
        *,
        progress: bool | None = False,
    ) -> dict[str, ActivationGate]:
        """The gates of ``vectors``' values; saved ones are used as they are, missing ones fitted.

        A corrupt saved gate is an error, not refitted over.
        """
        have = [v for v in vectors if (self.folder / f"gate-{v}.json").is_file()]
        gate_map = load_gates(self.folder, have, model=model) if have else {}
        missing = {v: vv for v, vv in vectors.items() if v not in gate_map}
        if missing:
            logger.info("fitting gates for %s", ", ".join(missing))
            new = fit_gates(model, missing, progress=progress)
            save_gates(self.folder, new.values())
            gate_map.update(new)
        return {v: gate_map[v] for v in vectors}

    def _write_summary(
        self, vectors: dict[str, ValueVectors], gates: dict[str, ActivationGate]
    ) -> None:
        """``summary.csv`` and ``fit_settings.json`` for every value in the folder.

        A call that fits some values must not describe the folder as if it held
        only those: values saved earlier (possibly with other settings) keep their
        rows, read back from their own files.
        """
        every = dict(vectors)
        for v in (v for v in self.saved_values() if v not in every):
            try:
                every.update(load_vectors(self.folder, [v]))
            except ArtifactError as exc:
                logger.warning("summary.csv leaves out unreadable vectors for %s: %s", v, exc)
        all_gates = dict(gates)
        for v in every:
            if v not in all_gates and (self.folder / f"gate-{v}.json").is_file():
                try:
                    all_gates.update(load_gates(self.folder, [v]))
                except ArtifactError as exc:
                    logger.warning("summary.csv leaves out the unreadable gate for %s: %s", v, exc)
        ordered = {v: every[v] for v in VALUES if v in every}
        summary_table(ordered, all_gates).to_csv(self.folder / "summary.csv")
        per_value = {v: vv.metadata.get("fit_settings") for v, vv in ordered.items()}
        (self.folder / "fit_settings.json").write_text(json.dumps(per_value, indent=2))


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
