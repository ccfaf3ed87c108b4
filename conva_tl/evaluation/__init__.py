"""The evaluation stage: answer, store, judge and report (paper Sec. 4.2-4.4).

* :mod:`.answers` - the fair trimming rule and the resumable ``answers.jsonl``.
* :mod:`.conditions` - the compared methods and prompts by name, and their settings.
* :mod:`.runner` - :func:`run_comparison` (Fig. 2) and :func:`run_priority` (Fig. 4).
* :mod:`.scoring` - CSR/FR from a :class:`conva_tl.judge.Judge`, judge-free measures.
* :mod:`.capability` - MC accuracy, gate scores and next-token KL (Tab. 5, Fig. 3).
* :mod:`.figures` - the evaluation's figures (tables, JSON and notices: :mod:`conva_tl.report`).
* :mod:`.cli` - ``conva evaluate`` (:func:`main_evaluate`).
* :mod:`.annotation` - blinded files for two human annotators, label join,
  raw agreement and Cohen's kappa (the judged loop without a judge API).
* :mod:`.devloop` - questions spread over scenario types, method variants.
* :mod:`.proxy` - does a judge-free reading track the judged labels?
"""

from conva_tl.evaluation.answers import TRIM_RULE, AnswerStore, trim_answer
from conva_tl.evaluation.capability import (
    MC_TEMPLATE,
    CapabilityResult,
    answer_start_logprobs,
    format_capability,
    letter_token_ids,
    mc_accuracy,
    mc_prompt,
    next_token_kl,
    run_capability,
)
from conva_tl.evaluation.cli import main_evaluate
from conva_tl.evaluation.conditions import (
    COMPARISON_METHODS,
    OPPOSITE_TEMPLATE,
    PRIORITY_METHODS,
    OppositePrompt,
    build_method,
    method_settings,
    opposite_prompt,
)
from conva_tl.evaluation.figures import plot_comparison, plot_gate_histograms, plot_priority
from conva_tl.evaluation.runner import (
    EvaluationResult,
    generate_answers,
    run_comparison,
    run_priority,
)
from conva_tl.evaluation.scoring import aggregate, answer_stats, probe_readings, score_answers

__all__ = [
    "TRIM_RULE",
    "AnswerStore",
    "trim_answer",
    "MC_TEMPLATE",
    "CapabilityResult",
    "answer_start_logprobs",
    "format_capability",
    "letter_token_ids",
    "mc_accuracy",
    "mc_prompt",
    "next_token_kl",
    "run_capability",
    "main_evaluate",
    "plot_comparison",
    "plot_gate_histograms",
    "plot_priority",
    "COMPARISON_METHODS",
    "OPPOSITE_TEMPLATE",
    "PRIORITY_METHODS",
    "EvaluationResult",
    "OppositePrompt",
    "build_method",
    "method_settings",
    "generate_answers",
    "opposite_prompt",
    "run_comparison",
    "run_priority",
    "aggregate",
    "answer_stats",
    "probe_readings",
    "score_answers",
]
