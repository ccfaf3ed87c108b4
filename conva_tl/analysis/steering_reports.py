"""The steering ablations as reports: P0, control layers, control mode, data source, gate threshold.

Each function runs a sweep of :mod:`conva_tl.analysis.steering_sweeps` (or
:func:`~conva_tl.analysis.gate_sweep.gate_sweep`) on a
:class:`~conva_tl.analysis.ablation_setup.SteeringSetup` and returns an
:class:`~conva_tl.report.Report`: the table, every answer,
figures of :mod:`conva_tl.analysis.ablation_plots` and a text summary with
CSR/FR when a judge is configured, else the judge-free measures.
``analyses/ablate_*.py`` print and write them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from conva_tl.analysis.ablation_plots import (
    plot_gate_thresholds,
    plot_layer_accuracy,
    plot_measures,
    plot_transfer,
)
from conva_tl.analysis.ablation_setup import SteeringSetup
from conva_tl.analysis.gate_sweep import gate_sweep
from conva_tl.analysis.probe_reports import DATA_VIEWS, ProbeSweep, view_transfer
from conva_tl.analysis.probe_sweeps import transfer_summary
from conva_tl.analysis.steering_sweeps import (
    LAYER_THRESHOLDS,
    sweep_control_mode,
    sweep_data,
    sweep_layers,
    sweep_p0,
)
from conva_tl.analysis.sweep_context import SweepResult, sample_unrelated
from conva_tl.datasets import load_mc, load_questions
from conva_tl.evaluation import mc_prompt
from conva_tl.gate import ActivationGate
from conva_tl.pipeline import DEFAULT_P0
from conva_tl.probes import LayerRule, ValueVectors
from conva_tl.report import Report, columns_text, judge_status

__all__ = [
    "P0_GRID",
    "G0_GRID",
    "p0_report",
    "layers_report",
    "control_mode_report",
    "data_report",
    "g0_report",
    "STEERING_COLUMNS",
    "steering_metrics",
]

#: The columns of a steering sweep's table, in print order.

STEERING_COLUMNS = (
    "value",
    "setting",
    "csr",
    "fr",
    "logit_v",
    "p_v",
    "p_v_pos",
    "kl_value",
    "kl_unrelated",
    "kl_unrelated_max",
    "ppl",
    "distinct2",
    "words",
)
#: The judge-free panels of a steering figure: (column, label).
STEERING_METRICS = (
    ("logit_v", "probe logit of answers (higher = aligned)"),
    ("kl_unrelated", "KL(base||steered), unrelated prompts"),
    ("ppl", "answer perplexity under base (lower = fluent)"),
    ("distinct2", "distinct-2 ratio (1 = no repeats)"),
)
#: The judged panels: (column, label).
JUDGE_METRICS = (("csr", "control success rate (CSR)"), ("fr", "fluency rate (FR)"))
#: How much control a setting applied, from the generation trace.
EPS_COLUMNS = ("moved", "eps_abs", "eps_abs_generated", "p_before", "saturated")
EPS_NOTE = (
    "control applied (from the generation trace): moved = share of (token, layer) cells shifted; "
    "eps_abs = mean |eps| over all cells; eps_abs_generated = over generated tokens; "
    "p_before = mean P_V before control; saturated = share of cells with P_V < 0.01 or > 0.99 before control"
)


def steering_metrics(judged: bool) -> list[tuple[str, str]]:
    """The panels of a steering figure: CSR/FR and two judge-free measures, or all four judge-free."""
    return [*JUDGE_METRICS, *STEERING_METRICS[:2]] if judged else list(STEERING_METRICS)


#: Target probabilities of the P0 ablation.
P0_GRID = (0.6, 0.75, 0.9, 0.95, 0.99)
#: Gate thresholds of the g0 ablation.
G0_GRID = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _size(s: SteeringSetup) -> str:
    return f"{s.n_questions} questions x {s.config.max_new_tokens} tokens"


def _columns(*first: str) -> list[str]:
    rest = [c for c in STEERING_COLUMNS if c not in ("value", "setting")]
    return ["value", "setting", *first, *rest, *EPS_COLUMNS]


def _steering_report(
    name: str, res: SweepResult, text: list[str], figures: dict[str, Any], **extra: pd.DataFrame
) -> Report:
    text.append(judge_status(res.judged))
    return Report(
        name, res.table, "\n".join(text), extra={**extra, "answers": res.answers}, figures=figures
    )


def p0_report(
    s: SteeringSetup, p0s: Sequence[float] = P0_GRID, *, mode: str = "per_token"
) -> Report:
    """ConVA at each target probability P0 next to the unsteered base (paper Appx. I)."""
    res = sweep_p0(
        s.model,
        s.contexts,
        s.vectors,
        p0s,
        config=s.config,
        gates=s.gates,
        mode=mode,
        judge=s.judge,
    )
    title = f"P0 sweep ({mode}, {s.describe()}; {_size(s)} per setting):"
    text = [columns_text(res.table, _columns("p0"), title=title), EPS_NOTE]
    metrics = steering_metrics(res.judged)
    figure_title = "ConVA target probability P0 (dashed: unsteered base)"
    figures = {"p0.png": lambda: plot_measures(res.table, "p0", metrics, title=figure_title)}
    return _steering_report("p0", res, text, figures)


def layers_report(
    s: SteeringSetup,
    thresholds: Sequence[float] = LAYER_THRESHOLDS,
    *,
    rule: LayerRule | None = None,
    p0: float = DEFAULT_P0,
) -> Report:
    """ConVA on each layer set of :func:`~conva_tl.analysis.steering_sweeps.layer_settings` (Sec. 3.2).

    ``rule`` gives the default threshold and the excluded last layers (default :class:`LayerRule`).
    """
    rule = rule or LayerRule()
    res = sweep_layers(
        s.model,
        s.contexts,
        s.vectors,
        config=s.config,
        thresholds=thresholds,
        threshold=rule.threshold,
        exclude_last=rule.exclude_last,
        p0=p0,
        gates=s.gates,
        judge=s.judge,
    )
    title = f"Layer sweep (P0 {p0:g}, {s.describe()}; {_size(s)} per setting):"
    text = [columns_text(res.table, _columns("n_layers", "layers"), title=title), EPS_NOTE]
    metrics = steering_metrics(res.judged)
    shown = sorted(set(thresholds) | {rule.threshold})
    figures = {
        "layers.png": lambda: plot_measures(
            res.table,
            "setting",
            metrics,
            categorical=True,
            title=f"Control layers (P0 {p0:g}; dashed: unsteered base)",
        ),
        "accuracy.png": lambda: plot_layer_accuracy(
            s.vectors, shown, rule.exclude_last, threshold=rule.threshold
        ),
    }
    return _steering_report("layers", res, text, figures)


#: The applied-control columns of the control-mode table.
CONTROL_MODE_EPS = (
    "eps_abs",
    "eps_abs_prompt",
    "eps_abs_generated",
    "moved",
    "p_before",
    "saturated",
)


def control_mode_report(s: SteeringSetup, *, p0: float = DEFAULT_P0) -> Report:
    """Per-token control (the paper) vs one eps per prompt (the authors' code), with the base."""
    res = sweep_control_mode(
        s.model,
        s.contexts,
        s.vectors,
        config=s.config,
        p0=p0,
        gates=s.gates,
        judge=s.judge,
        include_base=True,
    )
    title = f"Control mode (P0 {p0:g}, {s.describe()}; {_size(s)}):"
    text = [
        columns_text(res.table, [*STEERING_COLUMNS, *CONTROL_MODE_EPS], title=title),
        "eps_abs*: mean |eps| per traced (token, layer) cell, all / prompt tokens / generated tokens; "
        "moved: share of cells with eps != 0",
    ]
    metrics = [
        *steering_metrics(res.judged),
        ("eps_abs_generated", "mean |eps| on generated tokens"),
    ]
    figure_title = f"Per-token vs per-prompt control (P0 {p0:g}; dashed: base)"
    figures = {
        "control_mode.png": lambda: plot_measures(
            res.table, "setting", metrics, categorical=True, title=figure_title
        )
    }
    return _steering_report("control_mode", res, text, figures)


def data_report(s: SteeringSetup, sweep: ProbeSweep, *, p0: float = DEFAULT_P0) -> Report:
    """Pairs vs straightforward data (paper Sec. 4.2): probe transfer, then steering with each.

    The straightforward vectors come from ``s.source``'s ``straightforward`` folder
    (fitted there when missing); every answer is read by the pairs probe.
    """
    transfer = view_transfer(s.model, s.values, sweep, DATA_VIEWS)
    tsum = transfer_summary(transfer, int(s.model.cfg.n_layers))
    sf, _ = s.source.load(s.model, s.values, kind="straightforward")
    res = sweep_data(
        s.model, s.contexts, s.vectors, sf, config=s.config, p0=p0, gates=s.gates, judge=s.judge
    )
    text = [
        columns_text(
            tsum,
            list(tsum.columns),
            title="Probe accuracy across data (fitted on `train`, tested on "
            "`test`'s held-out split; best_layer = best layer of train->train):",
        ),
        columns_text(
            res.table,
            ["value", "setting", "n_layers", *STEERING_COLUMNS[2:]],
            title=f"Steering with vectors from each data set (P0 {p0:g}, "
            f"{s.describe()}; answers read by the pairs probe):",
        ),
    ]
    metrics = steering_metrics(res.judged)
    figures = {
        "data.png": lambda: plot_measures(
            res.table,
            "setting",
            metrics,
            categorical=True,
            title=f"Vectors from pairs vs straightforward data (P0 {p0:g}; dashed: base)",
        ),
        "transfer.png": lambda: plot_transfer(
            transfer, title="Pairs vs straightforward probes (dashed: tested on the other data)"
        ),
    }
    return _steering_report("data", res, text, figures, transfer=transfer, transfer_summary=tsum)


def g0_report(
    model: Any,
    vectors: Mapping[str, ValueVectors],
    gates: Mapping[str, ActivationGate],
    g0s: Sequence[float] = G0_GRID,
    *,
    n_questions: int = 12,
    n_unrelated: int = 16,
    n_mc: int = 16,
    p0: float = DEFAULT_P0,
    batch_size: int = 8,
) -> Report:
    """The gate threshold g0 (paper Eq. 5, Appx. I) on the value's eval questions, unrelated and MC prompts.

    The unrelated prompts are the gate's own training negatives (they flatter it); the
    multiple-choice prompts (``n_mc``, 0 = none) were never seen by the gate.
    """
    unrelated = sample_unrelated(n_unrelated)
    mc = [mc_prompt(q) for q in load_mc()[:n_mc]] if n_mc else []
    tables, scores, aurocs = [], [], []
    for v, vv in vectors.items():
        sets = {
            "value": [q.question for q in load_questions(v, split="eval")[:n_questions]],
            "unrelated": unrelated,
        }
        if mc:
            sets["mc"] = mc
        res = gate_sweep(model, vv, gates[v], g0s, prompt_sets=sets, p0=p0, batch_size=batch_size)
        tables.append(res.table)
        scores.append(res.scores)
        aurocs.append(
            res.auroc.assign(
                block=gates[v].block,
                fitted_threshold=gates[v].threshold,
                heldout_auroc=gates[v].metrics.get("heldout_auroc", float("nan")),
            )
        )
    table, score_df, auroc = pd.concat(tables), pd.concat(scores), pd.concat(aurocs)
    text = [
        columns_text(
            table,
            list(table.columns),
            title=f"Gate threshold sweep (ConVA P0 {p0:g}; open = share of "
            "prompts with score > g0; kl = mean KL(base || steered) at the answer start, nats):",
        ),
        columns_text(
            auroc,
            list(auroc.columns),
            title="Gate AUROC, value questions vs each negative set "
            "(unrelated = the gate's training negatives; mc = unseen):",
        ),
        "\nJudge-free by design: this sweep measures gating and the KL cost only (no generation).",
    ]
    fitted = {v: gates[v].threshold for v in vectors}
    return Report(
        "g0",
        table,
        "\n".join(text),
        extra={"gate_scores": score_df, "auroc": auroc},
        figures={"g0.png": lambda: plot_gate_thresholds(table, score_df, fitted)},
    )
