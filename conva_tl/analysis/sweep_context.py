"""One steering setting measured the same way across a sweep (paper Sec. 4.2, Appx. I).

A steering sweep fixes, per value, the questions answered under every setting,
value-unrelated prompts for the KL cost, a *reference* probe that reads every
answer, and the unsteered first-token log-probs (:class:`SweepContext`,
:func:`prepare_context`). :func:`measure_method` answers the questions under
one intervention (:class:`conva_tl.methods.ConVA`, ...) with
:func:`conva_tl.generate.generate` and measures the answers with the
judge-free measures of :mod:`conva_tl.analysis.measures` (CSR/FR too when a
:class:`conva_tl.judge.Judge` is given); :func:`run_settings` does it for a
table of settings. :mod:`conva_tl.analysis.steering_sweeps` builds the
settings of each ablation on top of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import Tensor

from conva_tl.analysis.measures import (
    answer_nll,
    answer_probe_readings,
    answer_stats,
    distinct_n,
    eps_summary,
    kl_to_base,
    pooled_perplexity,
)
from conva_tl.datasets import load_unrelated
from conva_tl.errors import ConvaError
from conva_tl.evaluation.answers import answer_record, finished_answer, settings_hash
from conva_tl.evaluation.capability import answer_start_logprobs
from conva_tl.evaluation.conditions import method_settings
from conva_tl.evaluation.devloop import spread_questions
from conva_tl.evaluation.scoring import judge_labels
from conva_tl.generate import GenerationConfig, generate
from conva_tl.methods import ConVA
from conva_tl.probes import ValueVectors
from conva_tl.values import canonical_value

__all__ = [
    "sample_unrelated",
    "SweepContext",
    "prepare_context",
    "measure_method",
    "SweepResult",
    "run_settings",
]

logger = logging.getLogger(__name__)


def sample_unrelated(n: int | None) -> list[str]:
    """``n`` shipped value-unrelated prompts, round-robin over their 16 categories (all if ``None``)."""
    by_cat: dict[str, list[str]] = {}
    for p in load_unrelated():
        by_cat.setdefault(p.category, []).append(p.prompt)
    mixed = [
        lst[i]
        for i in range(max(map(len, by_cat.values())))
        for lst in by_cat.values()
        if i < len(lst)
    ]
    return mixed if n is None else mixed[:n]


@dataclass
class SweepContext:
    """What stays fixed across the settings of one value.

    Attributes:
        value: the value.
        questions: the evaluation questions answered under every setting.
        qids: their ids.
        unrelated: value-unrelated chat prompts for the KL cost.
        reference: the probe that reads every answer (logit and P_V).
        base_unrelated / base_questions: unsteered first-token log-probs.
    """

    value: str
    questions: list[str]
    qids: list[str]
    unrelated: list[str]
    reference: ValueVectors
    base_unrelated: Float[Tensor, "unrelated d_vocab"]
    base_questions: Float[Tensor, "question d_vocab"]


def prepare_context(
    model: Any,
    reference: ValueVectors,
    *,
    n_questions: int = 4,
    n_unrelated: int = 16,
    batch_size: int = 8,
) -> SweepContext:
    """Pick ``n_questions`` eval questions spread over the value's scenario types, as the
    judged loop does (:func:`~conva_tl.evaluation.devloop.spread_questions`; 4 and 6 are
    subsets of its 12), and compute the base log-probs."""
    value = canonical_value(reference.value)
    if n_questions < 1 or n_unrelated < 1:
        raise ConvaError(
            f"need at least one question and one unrelated prompt, got {n_questions}, {n_unrelated}"
        )
    qs = spread_questions(value, n_questions)
    unrelated = sample_unrelated(n_unrelated)
    base_u, _ = answer_start_logprobs(model, unrelated, None, batch_size=batch_size)
    base_q, _ = answer_start_logprobs(model, [q.question for q in qs], None, batch_size=batch_size)
    return SweepContext(
        value, [q.question for q in qs], [q.id for q in qs], unrelated, reference, base_u, base_q
    )


def _open_share(scores: Tensor | None, method: Any) -> float:
    gate = getattr(method, "gate", None)
    if scores is None or gate is None:
        return 1.0 if isinstance(method, ConVA) else 0.0
    return float((scores > gate.threshold).float().mean())


def measure_method(
    model: Any,
    ctx: SweepContext,
    method: Any,
    *,
    config: GenerationConfig,
    judge: Any = None,
    trace: bool = False,
    setting: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Answer the context's questions under ``method`` and measure the answers.

    Returns:
        ``(row, records)``: one summary row (columns: ``logit_v`` (mean probe
        logit of the answers), ``p_v`` (mean P_V), ``p_v_pos``,
        ``kl_value``, ``kl_unrelated``, ``kl_unrelated_max``, ``open_value``,
        ``open_unrelated``, ``ppl``, ``distinct2``, ``distinct``, ``words``;
        with a judge ``csr``, ``fr`` and unparsed counts; with ``trace`` the
        :func:`~conva_tl.analysis.measures.eps_summary` columns) and one record
        per answer.
    """
    name = setting or method.name
    out = generate(
        model, ctx.questions, intervention=method, config=config, progress=False, trace=trace
    )
    raw, frame = out if trace else (out, None)
    finished = [finished_answer(model.tokenizer, a, config.max_new_tokens) for a in raw]
    answers = [a for a, _ in finished]
    settings = method_settings(method, model, config)
    sid = settings_hash(settings)
    logit_v = answer_probe_readings(model, ctx.reference, answers, batch_size=config.batch_size)
    p_v = 1.0 / (1.0 + np.exp(-logit_v))
    nll, n_tok = answer_nll(model, ctx.questions, answers, batch_size=config.batch_size)
    kl_u, gate_u = kl_to_base(
        model, ctx.unrelated, method, base=ctx.base_unrelated, batch_size=config.batch_size
    )
    kl_q, gate_q = kl_to_base(
        model, ctx.questions, method, base=ctx.base_questions, batch_size=config.batch_size
    )
    stats = [answer_stats(a) for a in answers]
    d2 = [distinct_n(a, 2) for a in answers]
    records = [
        answer_record(
            value=ctx.value,
            method=method.name,
            qid=qid,
            question=q,
            raw_answer=r,
            answer=a,
            hit_limit=h,
            settings=settings,
            settings_id=sid,
            setting=name,
            logit_v=float(lg),
            p_v=float(p),
            ppl=float(np.exp(float(s) / int(k))) if int(k) else float("nan"),
            distinct2=d,
            words=st[0],
        )
        for qid, q, (a, h), r, lg, p, s, k, d, st in zip(
            ctx.qids, ctx.questions, finished, raw, logit_v, p_v, nll, n_tok, d2, stats, strict=True
        )
    ]
    pv, lv = p_v[~np.isnan(p_v)], logit_v[~np.isnan(logit_v)]
    row: dict[str, Any] = {
        "value": ctx.value,
        "setting": name,
        "n": len(answers),
        "logit_v": float(lv.mean()) if len(lv) else float("nan"),
        "p_v": float(pv.mean()) if len(pv) else float("nan"),
        "p_v_pos": float((pv > 0.5).mean()) if len(pv) else float("nan"),
        "kl_value": float(kl_q.mean()),
        "kl_unrelated": float(kl_u.mean()),
        "kl_unrelated_max": float(kl_u.max()),
        "open_value": _open_share(gate_q, method),
        "open_unrelated": _open_share(gate_u, method),
        "ppl": pooled_perplexity(nll, n_tok),
        "distinct2": float(np.nanmean(d2)) if not np.isnan(d2).all() else float("nan"),
        "distinct": float(np.nanmean([s[1] for s in stats]))
        if any(s[0] for s in stats)
        else float("nan"),
        "words": float(np.mean([s[0] for s in stats])),
    }
    if judge is not None:
        csr, fr = judge_labels(judge, records)
        for key, labels in (("csr", csr), ("fr", fr)):
            got = [float(x) for x in labels if x is not None]
            row[key] = float(np.mean(got)) if got else float("nan")
            row[f"{key}_unparsed"] = sum(x is None for x in labels)
            for rec, lab in zip(records, labels, strict=True):
                rec[key] = float("nan") if lab is None else float(lab)
    if frame is not None:
        row.update(eps_summary(frame))
    return row, records


@dataclass
class SweepResult:
    """A steering sweep: one row per value x setting, and every answer."""

    table: pd.DataFrame
    answers: pd.DataFrame
    judged: bool = False


def run_settings(
    model: Any,
    contexts: Mapping[str, SweepContext],
    methods: Mapping[str, Mapping[str, Any]],
    *,
    config: GenerationConfig,
    judge: Any = None,
    trace: bool = False,
    columns: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> SweepResult:
    """Measure ``methods[value][setting]`` for every value; ``columns`` adds per-setting columns.

    Settings whose method is the same object are measured once and copied.
    """
    rows, answers = [], []
    for value, ctx in contexts.items():
        done: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for setting, method in methods[value].items():
            if id(method) in done:
                row0, recs0 = done[id(method)]
                row, recs = {**row0, "setting": setting}, [{**r, "setting": setting} for r in recs0]
            else:
                logger.info("%s: measuring %s", value, setting)
                row, recs = measure_method(
                    model, ctx, method, config=config, judge=judge, trace=trace, setting=setting
                )
                done[id(method)] = (row, recs)
            extra = dict((columns or {}).get(value, {}).get(setting, {}))
            rows.append(
                {
                    "value": value,
                    "setting": setting,
                    **extra,
                    **{k: v for k, v in row.items() if k not in ("value", "setting")},
                }
            )
            answers += recs
    return SweepResult(pd.DataFrame(rows), pd.DataFrame(answers), judged=judge is not None)
