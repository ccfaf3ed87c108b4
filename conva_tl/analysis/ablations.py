"""Ablation sweeps of ConVA (paper Sec. 3.2, Sec. 4.2, Appx. B, Appx. I): the public names in one place.

The sweeps live in one module per concept; this module re-exports them so
``from conva_tl.analysis.ablations import sweep_p0`` keeps working:

* :mod:`~conva_tl.analysis.sweep_context`: what a steering sweep holds fixed per
  value and how one setting is measured (probe reading P_V of the answers with
  one *reference* probe, KL(base || steered) on unrelated prompts and on the
  questions, perplexity under the base model, distinct-2; CSR/FR with a judge).
* :mod:`~conva_tl.analysis.steering_sweeps`: P0, control layers, control mode,
  data source.
* :mod:`~conva_tl.analysis.gate_sweep`: the gate threshold g0, without generation.
* :mod:`~conva_tl.analysis.probe_sweeps`: training-set size and transfer between
  views (pooling, input format, data) on cached activations, on the held-out
  split of :func:`conva_tl.probes.fit_probes`.

:mod:`~conva_tl.analysis.steering_reports` and :mod:`~conva_tl.analysis.probe_reports`
turn them into the tables, figures and summaries that ``analyses/ablate_*.py`` write.
"""

from __future__ import annotations

from conva_tl.analysis.gate_sweep import GateSweep, gate_sweep
from conva_tl.analysis.probe_sweeps import (
    fit_layer_probes,
    heldout_split,
    layer_accuracy,
    probe_layers,
    train_size_summary,
    train_size_sweep,
    transfer_summary,
    transfer_table,
)
from conva_tl.analysis.steering_sweeps import (
    layer_ranges,
    layer_settings,
    sweep_control_mode,
    sweep_data,
    sweep_layers,
    sweep_p0,
)
from conva_tl.analysis.sweep_context import (
    SweepContext,
    SweepResult,
    measure_method,
    prepare_context,
    run_settings,
    sample_unrelated,
)

__all__ = [
    "sample_unrelated",
    "SweepContext",
    "prepare_context",
    "measure_method",
    "SweepResult",
    "run_settings",
    "sweep_p0",
    "layer_settings",
    "sweep_layers",
    "sweep_control_mode",
    "sweep_data",
    "GateSweep",
    "gate_sweep",
    "heldout_split",
    "fit_layer_probes",
    "layer_accuracy",
    "probe_layers",
    "train_size_sweep",
    "train_size_summary",
    "transfer_table",
    "transfer_summary",
    "layer_ranges",
]
