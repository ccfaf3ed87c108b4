"""Answering the evaluation questions: the main comparison and control priority.

:func:`run_comparison` (paper Sec. 4.2, Fig. 2) and :func:`run_priority`
(Sec. 4.4, Fig. 4) build one intervention per (value, method)
(:func:`conva_tl.evaluation.conditions.build_method`), answer the value's
held-out *eval* dilemma questions in batches with
:func:`conva_tl.generate.generate`, and append every finished batch to
``out_dir/answers.jsonl`` (:class:`~conva_tl.evaluation.answers.AnswerStore`)
before starting the next one: a killed run, restarted, generates only what is
missing. Then :func:`conva_tl.evaluation.scoring.score_answers` judges (or
measures, offline) every answer, and a :class:`conva_tl.report.Report` writes
``results.csv``, ``scores.csv``, ``table.txt``, ``run.json`` and the figure
(:mod:`conva_tl.evaluation.figures`).

Methods are names or any :class:`~conva_tl.generate.Intervention` object, which
is stored under its ``name``. Each answer records the settings that produced it
(:func:`~conva_tl.evaluation.conditions.method_settings`: decoding, P0, a
fingerprint of the vectors and gate, the prompt template, the trimming rule);
stored answers made under other settings are kept but not reused or counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from conva_tl.datasets import DilemmaQuestion, load_questions
from conva_tl.errors import ConvaError
from conva_tl.evaluation.answers import (
    TRIM_RULE,
    AnswerStore,
    answer_key,
    answer_record,
    finished_answer,
    settings_hash,
)
from conva_tl.evaluation.conditions import (
    COMPARISON_METHODS,
    PRIORITY_METHODS,
    build_method,
    method_settings,
)
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig, generate
from conva_tl.model import model_info
from conva_tl.model_protocol import HookedModel
from conva_tl.pipeline import DEFAULT_CAA_COEF, DEFAULT_P0
from conva_tl.probes import ValueVectors
from conva_tl.report import Report, judge_notice, pivot_text
from conva_tl.values import canonical_value

__all__ = [
    "COMPARISON_METHODS",
    "PRIORITY_METHODS",
    "generate_answers",
    "EvaluationResult",
    "run_comparison",
    "run_priority",
]

logger = logging.getLogger(__name__)


def generate_answers(
    model: HookedModel,
    store: AnswerStore,
    jobs: Sequence[tuple[str, Any, Sequence[DilemmaQuestion]]],
    config: GenerationConfig,
    *,
    progress: bool | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Answer every ``(value, method, questions)`` job, resuming from ``store``.

    Each batch of ``config.batch_size`` questions is generated and appended to the
    store before the next starts.

    Returns:
        The records of all jobs (stored ones and new ones, job order) and timing
        of the new generations (``answers``, ``seconds``, ``answers_per_minute``).
    """
    plan = []
    for value, method, questions in jobs:
        settings = method_settings(method, model, config)
        sid = settings_hash(settings)
        todo = [q for q in questions if answer_key(value, method.name, q.id, sid) not in store]
        plan.append((value, method, questions, settings, sid, todo))
    n_batches = sum(-(-len(p[5]) // config.batch_size) for p in plan)
    n_done = sum(len(p[2]) - len(p[5]) for p in plan)
    if n_done:
        logger.info("resuming: %d answers already stored in %s", n_done, store.path)
    made, seconds = 0, 0.0
    bar = tqdm(
        total=n_batches,
        disable=not (progress if progress is not None else n_batches > 2),
        desc="answering",
        unit="batch",
    )
    try:
        for value, method, _, settings, sid, todo in plan:
            for start in range(0, len(todo), config.batch_size):
                chunk = todo[start : start + config.batch_size]
                t0 = time.perf_counter()
                raw = generate(
                    model,
                    [q.question for q in chunk],
                    intervention=method,
                    config=config,
                    progress=False,
                )
                seconds += time.perf_counter() - t0
                done = [finished_answer(model.tokenizer, a, config.max_new_tokens) for a in raw]
                store.extend(
                    answer_record(
                        value=value,
                        method=method.name,
                        qid=q.id,
                        question=q.question,
                        raw_answer=a,
                        answer=answer,
                        hit_limit=h,
                        settings=settings,
                        settings_id=sid,
                        scenario_type=q.scenario_type,
                    )
                    for q, a, (answer, h) in zip(chunk, raw, done, strict=True)
                )
                made += len(chunk)
                bar.update(1)
    finally:
        bar.close()
    records = []
    for value, method, questions, _, sid, _ in plan:
        for q in questions:
            rec = store.get(answer_key(value, method.name, q.id, sid))
            if rec is None:  # pragma: no cover - generate() returns one answer per question
                raise ConvaError(
                    f"answer for {value}/{method.name}/{q.id} missing after generation"
                )
            records.append(rec)
    stale = len(store) - len({id(r) for r in records})
    if stale > 0:
        logger.info(
            "%d stored answers were made with other settings or questions and are not used", stale
        )
    timing = {
        "answers": float(made),
        "seconds": seconds,
        "answers_per_minute": 60.0 * made / seconds if seconds > 0 else float("nan"),
    }
    return records, timing


@dataclass
class EvaluationResult:
    """What an evaluation run produced (also written to ``out_dir``).

    Attributes:
        kind: ``comparison`` or ``priority``.
        out_dir: the output folder.
        records: the answer records evaluated.
        scores: one row per answer: labels (if judged) and judge-free measures.
        table: one row per value x method (``results.csv``).
        judged: whether CSR/FR come from a judge.
        notice: what needs a judge and how to configure one (offline runs).
        timing: generation timing of this run's new answers.
        paths: the files written.
    """

    kind: str
    out_dir: Path
    records: list[dict[str, Any]]
    scores: pd.DataFrame
    table: pd.DataFrame
    judged: bool
    notice: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def _write_outputs(result: EvaluationResult, *, settings: dict[str, Any]) -> None:
    """``results.csv``, ``scores.csv``, the figure, ``table.txt`` and ``run.json``, via a Report."""
    from conva_tl.evaluation.figures import plot_comparison, plot_priority, reported_metrics

    table = result.table
    if not result.judged:
        result.notice = judge_notice(result.kind, result.out_dir)
    parts = [pivot_text(table, m) for m in reported_metrics(table)]
    if result.judged:
        unparsed = int(table["csr_unparsed"].sum()), int(table["fr_unparsed"].sum())
        parts.append(
            f"unparseable judge labels (left out of the rates): CSR {unparsed[0]}, FR {unparsed[1]}"
        )
        parts.append(pivot_text(table, "p_v"))
    parts.append(pivot_text(table, "probe_logit", digits=1))
    parts.append(pivot_text(table, "words", digits=1))
    parts.append(
        "Post-processing, the same for every method: answers that hit the token limit are cut after "
        "their last complete sentence; answers that ended on their own are kept whole."
    )
    if result.notice:
        parts.append(result.notice)
    plot = plot_comparison if result.kind == "comparison" else plot_priority
    report = Report(
        "results",
        table,
        "\n\n".join(parts),
        extra={"scores": result.scores},
        figures={f"{result.kind}.png": lambda: plot(table)},
        text_file="table.txt",
        dpi=130,
    )
    out = Path(result.out_dir)
    report.write(out, {**settings, "judged": result.judged, "timing": result.timing})
    result.paths = {
        "answers": out / "answers.jsonl",
        "results": out / "results.csv",
        "scores": out / "scores.csv",
        "table": out / "table.txt",
        "run": out / "run.json",
        "figure": out / f"{result.kind}.png",
    }


def _questions(value: str, n: int | None) -> list[DilemmaQuestion]:
    qs = load_questions(value, split="eval")
    if n is not None:
        if n < 1:
            raise ConvaError(f"questions_per_value must be >= 1, got {n}")
        qs = qs[:n]
    return qs


def _run(
    kind: str,
    model: HookedModel,
    values: Sequence[str],
    methods: Sequence[Any],
    out_dir: str | Path,
    *,
    vectors: dict[str, ValueVectors],
    gates: dict[str, ActivationGate],
    questions_per_value: int | None,
    judge: Any,
    p0: float,
    caa_coef: float,
    config: GenerationConfig | None,
    straightforward_vectors: dict[str, ValueVectors] | None,
    progress: bool | None,
) -> EvaluationResult:
    from conva_tl.evaluation.scoring import aggregate, score_answers

    cfg = config or GenerationConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [canonical_value(v) for v in values]
    if not names or not methods:
        raise ConvaError("give at least one value and one method")
    sf = straightforward_vectors or {}
    jobs = []
    for v in names:
        qs = _questions(v, questions_per_value)
        for m in methods:
            method = (
                m
                if not isinstance(m, str)
                else build_method(
                    m,
                    v,
                    model=model,
                    vectors=vectors.get(v),
                    gate=gates.get(v),
                    straightforward_vectors=sf.get(v),
                    p0=p0,
                    caa_coef=caa_coef,
                )
            )
            jobs.append((v, method, qs))
    store = AnswerStore(out / "answers.jsonl")
    records, timing = generate_answers(model, store, jobs, cfg, progress=progress)
    scores = score_answers(model, records, vectors=vectors, judge=judge)
    method_order = [m if isinstance(m, str) else m.name for m in methods]
    table = aggregate(scores, values=names, methods=method_order)
    result = EvaluationResult(
        kind, out, records, scores, table, judged=judge is not None, timing=timing
    )
    _write_outputs(
        result,
        settings={
            "values": names,
            "methods": method_order,
            "questions_per_value": questions_per_value,
            "p0": p0,
            "caa_coef": caa_coef,
            "generation": cfg.__dict__,
            "trim_rule": TRIM_RULE,
            "judge_model": getattr(judge, "model", None),
            "model": model_info(model).to_dict(),
        },
    )
    return result


def run_comparison(
    model: HookedModel,
    values: Sequence[str],
    methods: Sequence[Any],
    out_dir: str | Path,
    *,
    vectors: dict[str, ValueVectors],
    gates: dict[str, ActivationGate],
    questions_per_value: int | None = None,
    judge: Any = None,
    p0: float = DEFAULT_P0,
    caa_coef: float = DEFAULT_CAA_COEF,
    config: GenerationConfig | None = None,
    straightforward_vectors: dict[str, ValueVectors] | None = None,
    progress: bool | None = None,
) -> EvaluationResult:
    """The main comparison (paper Sec. 4.2, Fig. 2): answer, store, judge, report.

    Args:
        model: a :class:`~conva_tl.model_protocol.HookedModel` (the bridge or a ``FastModel``).
        values: values to evaluate.
        methods: names from :data:`COMPARISON_METHODS` (or any method object).
        out_dir: output folder; ``answers.jsonl`` in it makes a rerun resume.
        vectors / gates: per-value artifacts (``conva fit``).
        questions_per_value: the first N eval questions (default: all 100).
        judge: a :class:`conva_tl.judge.Judge` for CSR and FR; ``None`` = offline
            (judge-free measures only).
        p0: ConVA target probability.
        caa_coef: CAA coefficient.
        config: decoding settings (batch size included).
        straightforward_vectors: vectors from the straightforward data (``conva-sf``).
        progress: progress bar over batches.

    Example:
        >>> run_comparison(model, ["security"], ["base", "conva"], "out/eval",  # doctest: +SKIP
        ...                vectors=vectors, gates=gates, questions_per_value=4)
    """
    return _run(
        "comparison",
        model,
        values,
        methods,
        out_dir,
        vectors=vectors,
        gates=gates,
        questions_per_value=questions_per_value,
        judge=judge,
        p0=p0,
        caa_coef=caa_coef,
        config=config,
        straightforward_vectors=straightforward_vectors,
        progress=progress,
    )


def run_priority(
    model: HookedModel,
    values: Sequence[str],
    out_dir: str | Path,
    *,
    vectors: dict[str, ValueVectors],
    gates: dict[str, ActivationGate],
    methods: Sequence[Any] = PRIORITY_METHODS,
    questions_per_value: int | None = None,
    judge: Any = None,
    p0: float = DEFAULT_P0,
    config: GenerationConfig | None = None,
    progress: bool | None = None,
) -> EvaluationResult:
    """Control priority (paper Sec. 4.4, Fig. 4): ConVA under opposite and same-value prompts.

    Default methods: ``base``; ``opposite`` (the :data:`OPPOSITE_TEMPLATE` prompt
    alone); ``ica`` (the same-value prompt alone); ``conva``; ``conva-opposite``
    and ``conva-ica`` (ConVA under each prompt). CSR stays the target value's.
    """
    return _run(
        "priority",
        model,
        values,
        methods,
        out_dir,
        vectors=vectors,
        gates=gates,
        questions_per_value=questions_per_value,
        judge=judge,
        p0=p0,
        caa_coef=DEFAULT_CAA_COEF,
        config=config,
        straightforward_vectors=None,
        progress=progress,
    )
