"""The probe ablations as reports: pooling, input format, data transfer, training-set size, calibration.

Each function encodes the values' contrast sets once per view through the
activation cache (:class:`~conva_tl.analysis.activation_cache.ProbeData`),
runs a probe sweep of :mod:`conva_tl.analysis.probe_sweeps` or
:mod:`conva_tl.analysis.calibration` on the layers of a :class:`ProbeSweep`,
and returns an :class:`~conva_tl.report.Report` (tables,
figure, text) for ``analyses/ablate_*.py`` to print and write. None needs
generation or a judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from conva_tl.analysis.ablation_plots import plot_calibration, plot_train_size, plot_transfer
from conva_tl.analysis.activation_cache import ProbeData
from conva_tl.analysis.calibration import best_C, calibration_table
from conva_tl.analysis.probe_sweeps import (
    fit_layer_probes,
    train_size_summary,
    train_size_sweep,
    transfer_summary,
    transfer_table,
)
from conva_tl.errors import ConvaError
from conva_tl.model_protocol import HookedModel
from conva_tl.probes import DEFAULT_C, LayerRule
from conva_tl.report import Report, columns_text
from conva_tl.values import canonical_value

__all__ = [
    "View",
    "POOLING_VIEWS",
    "INPUT_FORMAT_VIEWS",
    "DATA_VIEWS",
    "ProbeSweep",
    "view_transfer",
    "TRANSFER_ABLATIONS",
    "transfer_report",
    "pooling_report",
    "input_format_report",
    "train_size_report",
    "calibration_report",
]


@dataclass(frozen=True)
class View:
    """One way of turning a value's data into activations: data kind, pooling, input format."""

    kind: str = "pairs"
    pooling: str = "last"
    input_format: str = "raw"


POOLING_VIEWS = {"last": View(), "mean": View(pooling="mean")}
INPUT_FORMAT_VIEWS = {"raw": View(), "chat": View(input_format="chat")}
DATA_VIEWS = {"pairs": View(), "straightforward": View(kind="straightforward")}


@dataclass(frozen=True)
class ProbeSweep:
    """The probes a sweep fits: where the data come from, at which layers, on which split.

    Attributes:
        data: texts and cached activations.
        layers: model layers to fit probes at.
        test_size / seed: the held-out split (as ``conva fit``).
        C: inverse L2 strength of the probes.
        layer_step: the step ``layers`` were picked with (``None``: given explicitly); for titles.
    """

    data: ProbeData
    layers: tuple[int, ...]
    test_size: float = 0.2
    seed: int = 0
    C: float = DEFAULT_C
    layer_step: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConvaError("a probe sweep needs at least one layer")
        if not 0.0 < self.test_size < 1.0:
            raise ConvaError(f"test_size must be in (0, 1), got {self.test_size}")
        if not self.C > 0:
            raise ConvaError(f"C must be positive, got {self.C}")


def view_transfer(
    model: HookedModel, values: Sequence[str], sweep: ProbeSweep, views: Mapping[str, View]
) -> pd.DataFrame:
    """:func:`~conva_tl.analysis.probe_sweeps.transfer_table` per value over ``views``.

    Returns:
        One row per value x train view x test view x layer: ``value, train, test, layer, accuracy``.
    """
    layers = list(sweep.layers)
    frames = []
    for v in map(canonical_value, values):
        data = {}
        for name, view in views.items():
            cs = sweep.data.contrast_set(v, view.kind)
            acts = sweep.data.activations(
                model, cs, pooling=view.pooling, input_format=view.input_format
            )
            data[name] = (acts[layers], cs.labels, cs.groups)
        frames.append(
            transfer_table(
                data, test_size=sweep.test_size, seed=sweep.seed, C=sweep.C, layers=layers
            ).assign(value=v)
        )
    return pd.concat(frames)[["value", "train", "test", "layer", "accuracy"]]


#: The transfer ablations: views, the table's title words (label, unit) and the figure's title.
TRANSFER_ABLATIONS: dict[str, tuple[Mapping[str, View], str, str, str]] = {
    "pooling": (
        POOLING_VIEWS,
        "Pooling",
        "pooling",
        "Pooling: last token vs mean over tokens (dashed: tested on the other pooling)",
    ),
    "input_format": (
        INPUT_FORMAT_VIEWS,
        "Input format",
        "format",
        "Input format: raw vs chat template (dashed: tested on the other format)",
    ),
}


def transfer_report(
    name: str, model: HookedModel, values: Sequence[str], sweep: ProbeSweep
) -> Report:
    """A transfer ablation of :data:`TRANSFER_ABLATIONS`: probes fitted on each view, tested on all."""
    views, label, unit, figure_title = TRANSFER_ABLATIONS[name]
    df = view_transfer(model, values, sweep, views)
    summary = transfer_summary(df, int(model.cfg.n_layers))
    text = columns_text(
        summary,
        list(summary.columns),
        title=f"{label}: held-out accuracy (probe fitted on `train` {unit}, tested on `test` "
        f"{unit}; best_layer = best layer of train->train):",
    )
    return Report(
        name,
        df,
        text + "\n\nJudge-free by design: probe accuracy only.",
        extra={"summary": summary},
        figures={f"{name}.png": lambda: plot_transfer(df, title=figure_title)},
    )


def pooling_report(model: HookedModel, values: Sequence[str], sweep: ProbeSweep) -> Report:
    """Last-token vs mean-pooled probes, each tested on both poolings."""
    return transfer_report("pooling", model, values, sweep)


def input_format_report(model: HookedModel, values: Sequence[str], sweep: ProbeSweep) -> Report:
    """Probes on raw vs chat-formatted sentences, each tested on both formats."""
    return transfer_report("input_format", model, values, sweep)


def train_size_report(
    model: HookedModel,
    values: Sequence[str],
    sweep: ProbeSweep,
    *,
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    repeats: int = 2,
    rule: LayerRule | None = None,
) -> Report:
    """Probes on a share of the training pairs (paper Appx. B), compared with the full and released fits."""
    rule = rule or LayerRule()
    layers = list(sweep.layers)
    frames = []
    for v in map(canonical_value, values):
        cs = sweep.data.contrast_set(v)
        acts = sweep.data.activations(model, cs)[layers]
        released, _ = fit_layer_probes(acts, cs.labels, np.arange(len(cs)), C=sweep.C)
        frames.append(
            train_size_sweep(
                acts,
                cs.labels,
                cs.groups,
                value=v,
                fractions=fractions,
                repeats=repeats,
                test_size=sweep.test_size,
                seed=sweep.seed,
                C=sweep.C,
                layers=layers,
                released_w=released,
            )
        )
    df = pd.concat(frames)
    summary = train_size_summary(df, int(model.cfg.n_layers), rule=rule)
    step = "-" if sweep.layer_step is None else sweep.layer_step
    text = columns_text(
        summary,
        list(summary.columns),
        title=f"Training-set size (layers {layers[0]}..{layers[-1]} "
        f"step {step}; {repeats} draws per fraction):",
    )
    return Report(
        "train_size",
        df,
        text + "\n\nJudge-free by design: probe accuracy and vector direction only.",
        extra={"summary": summary},
        figures={"train_size.png": lambda: plot_train_size(summary, rule)},
    )


def calibration_report(
    model: HookedModel,
    values: Sequence[str],
    sweep: ProbeSweep,
    Cs: Sequence[float],
    *,
    folds: int = 5,
    p0: float = 0.9,
    standardize: bool = True,
) -> Report:
    """Grouped k-fold calibration of the probes over C (:mod:`conva_tl.analysis.calibration`)."""
    layers = list(sweep.layers)
    frames = []
    for v in map(canonical_value, values):
        cs = sweep.data.contrast_set(v)
        acts = sweep.data.activations(model, cs)
        frames.append(
            calibration_table(
                acts,
                cs.labels,
                cs.groups,
                Cs,
                layers=layers,
                folds=folds,
                p0=p0,
                standardize=standardize,
            ).assign(value=v)
        )
    columns = ["value", "C", "layer", "logloss", "accuracy", "w_norm", "margin", "resid_norm"]
    df = pd.concat(frames)[[*columns, "margin_rel"]]
    summary = (
        df.groupby("C", sort=False)[["logloss", "accuracy", "w_norm", "margin", "margin_rel"]]
        .mean()
        .reset_index()
    )
    text = columns_text(
        summary,
        list(summary.columns),
        title=f"Probe calibration ({folds}-fold grouped CV, mean over "
        f"values and layers {layers[0]}..{layers[-1]}; margin = logit({p0})/|w|):",
    )
    scale = " on standardized activations" if standardize else " on raw activations"
    text += f"\n\nbest-calibrated C (lowest mean log-loss): {best_C(df):g}{scale}"
    text += "\nJudge-free by design: probe calibration only."
    return Report(
        "calibration",
        df,
        text,
        extra={"summary": summary},
        figures={"calibration.png": lambda: plot_calibration(df)},
    )
