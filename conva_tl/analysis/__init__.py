"""Analyses of the shipped data and of fitted value vectors.

:mod:`~conva_tl.analysis.context_words` reproduces the paper's frequent context
word analysis (Sec. 3.1, Tab. 2) and scores how much a contrast pair shares.
:mod:`~conva_tl.analysis.logit_lens` decodes value vectors through the
unembedding (Sec. 3.1, Tab. 3). :mod:`~conva_tl.analysis.structure` compares
the value vectors with each other and with Schwartz's circumplex (Sec. 4.5,
Fig. 5, Appx. F). :mod:`~conva_tl.analysis.steering_sweeps`,
:mod:`~conva_tl.analysis.gate_sweep` and :mod:`~conva_tl.analysis.probe_sweeps` hold
the ablation sweeps (P0, control layers, control mode, data; gate threshold;
training-set size, pooling, input format), measured per setting by
:mod:`~conva_tl.analysis.sweep_context` with the judge-free measures of
:mod:`~conva_tl.analysis.measures`; this package re-exports their public names;
:mod:`~conva_tl.analysis.steering_reports` and
:mod:`~conva_tl.analysis.probe_reports` run them from a
:class:`~conva_tl.analysis.ablation_setup.SteeringSetup` or a
:class:`~conva_tl.analysis.probe_reports.ProbeSweep` into an
:class:`~conva_tl.report.Report` that ``analyses/ablate_*.py``
prints and writes. The reports on value vectors and context words
(:mod:`~conva_tl.analysis.vector_reports`, :mod:`~conva_tl.analysis.context_word_report`)
draw with :mod:`conva_tl.plotting`, which imports this package; import them from
their modules.
"""

from conva_tl.analysis.ablation_setup import (
    SteeringSetup,
    VectorSource,
    load_subject,
    make_judge,
    set_threads,
    steering_setup,
)
from conva_tl.analysis.activation_cache import ProbeData, cached_activations, limit_contrast_set
from conva_tl.analysis.context_words import (
    KINDS,
    STOPWORDS,
    ContextWordReport,
    context_word_report,
    context_word_table,
    context_word_text,
    context_words,
    index_matched_overlap,
    load_sides,
    main_context_words,
    pair_overlap,
    pair_scores,
    text_overlap,
    tokenize,
    value_word_forms,
)
from conva_tl.analysis.gate_sweep import (
    GateSweep,
    gate_sweep,
)
from conva_tl.analysis.logit_lens import (
    decode_vectors,
    direction_of,
    final_norm_gain,
    format_logit_lens,
    render_token,
    unembed_directions,
)
from conva_tl.analysis.measures import (
    answer_nll,
    answer_probe_readings,
    distinct_n,
    eps_summary,
    kl_to_base,
    pooled_perplexity,
)
from conva_tl.analysis.probe_reports import (
    ProbeSweep,
    View,
    calibration_report,
    input_format_report,
    pooling_report,
    train_size_report,
)
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
from conva_tl.analysis.steering_reports import (
    control_mode_report,
    data_report,
    g0_report,
    layers_report,
    p0_report,
)
from conva_tl.analysis.steering_sweeps import (
    layer_settings,
    sweep_control_mode,
    sweep_data,
    sweep_layers,
    sweep_p0,
)
from conva_tl.analysis.structure import (
    GROWTH_VALUES,
    circumplex_order,
    circumplex_test,
    cosine_matrices,
    mds_embedding,
    procrustes_to_circle,
    structure_by_layer,
)
from conva_tl.analysis.sweep_context import (
    SweepContext,
    SweepResult,
    measure_method,
    prepare_context,
    run_settings,
    sample_unrelated,
)
from conva_tl.probes import (
    layer_ranges,
)
from conva_tl.report import Report

__all__ = [
    "KINDS",
    "STOPWORDS",
    "ContextWordReport",
    "context_word_report",
    "context_word_table",
    "context_words",
    "context_word_text",
    "index_matched_overlap",
    "load_sides",
    "main_context_words",
    "pair_overlap",
    "pair_scores",
    "text_overlap",
    "tokenize",
    "value_word_forms",
    "decode_vectors",
    "direction_of",
    "final_norm_gain",
    "format_logit_lens",
    "render_token",
    "unembed_directions",
    "GROWTH_VALUES",
    "circumplex_order",
    "circumplex_test",
    "cosine_matrices",
    "mds_embedding",
    "procrustes_to_circle",
    "structure_by_layer",
    "GateSweep",
    "SweepContext",
    "SweepResult",
    "fit_layer_probes",
    "gate_sweep",
    "heldout_split",
    "layer_accuracy",
    "layer_ranges",
    "layer_settings",
    "measure_method",
    "prepare_context",
    "run_settings",
    "sample_unrelated",
    "sweep_control_mode",
    "sweep_layers",
    "sweep_p0",
    "train_size_sweep",
    "transfer_table",
    "probe_layers",
    "sweep_data",
    "train_size_summary",
    "transfer_summary",
    "SteeringSetup",
    "VectorSource",
    "load_subject",
    "make_judge",
    "set_threads",
    "steering_setup",
    "ProbeData",
    "cached_activations",
    "limit_contrast_set",
    "ProbeSweep",
    "View",
    "Report",
    "calibration_report",
    "input_format_report",
    "pooling_report",
    "train_size_report",
    "control_mode_report",
    "data_report",
    "g0_report",
    "layers_report",
    "p0_report",
    "answer_nll",
    "answer_probe_readings",
    "distinct_n",
    "eps_summary",
    "kl_to_base",
    "pooled_perplexity",
]
