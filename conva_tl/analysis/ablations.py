"""Ablation sweeps of ConVA (paper Sec. 3.2, Sec. 4.2, Appx. B, Appx. I) as plain functions.

Two kinds of sweep, both thin loops over the concept modules:

* **Steering sweeps** (P0, control layers, control mode, data source) build one
  intervention per setting (:class:`conva_tl.methods.ConVA`), answer a few of
  the value's held-out dilemma questions with :func:`conva_tl.generate.generate`
  and measure every setting the same way (:func:`measure_method`): the probe
  reading P_V of the answers (with one *reference* probe for all settings),
  KL(base || steered) of the first answer token on value-unrelated prompts
  (the cost to unrelated behaviour) and on the questions themselves (the size
  of the effect), the perplexity of the answers under the unsteered model and
  their distinct-2 ratio; CSR/FR too when a :class:`conva_tl.judge.Judge` is
  given. See :mod:`conva_tl.analysis.measures`.
* **Probe sweeps** (training-set size, pooling, input format, data source)
  reuse cached activations (:func:`conva_tl.activations.cache_resid_post`)
  and fit many probes on them: :func:`train_size_sweep`, :func:`transfer_table`.
  The held-out split is the one :func:`conva_tl.probes.fit_probes` uses, so
  these numbers line up with the accuracies stored in the artifacts.

The gate sweep (:func:`gate_sweep`) needs no generation: a gate decides per
prompt before any layer is steered, so with the gate closed the output is the
base model's and KL(g0) is the ungated KL of the prompts whose score passes
g0. One pass with the gate held open gives the scores and that KL for every g0.

The scripts in ``analyses/ablate_*.py`` run these on the embedded model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit
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
from conva_tl.datasets import load_questions, load_unrelated
from conva_tl.errors import ConvaError
from conva_tl.evaluation.answers import trim_answer
from conva_tl.evaluation.capability import answer_start_logprobs
from conva_tl.evaluation.scoring import judge_labels
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig, generate
from conva_tl.methods import Base, ConVA
from conva_tl.probes import DEFAULT_C, DEFAULT_STANDARDIZE, LayerRule, LinearProbe, ValueVectors
from conva_tl.values import canonical_value

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
    "GateSweep",
    "gate_sweep",
    "heldout_split",
    "fit_layer_probes",
    "layer_accuracy",
    "train_size_sweep",
    "transfer_table",
    "layer_ranges",
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
    """Pick the value's first ``n_questions`` eval questions and compute the base log-probs."""
    value = canonical_value(reference.value)
    if n_questions < 1 or n_unrelated < 1:
        raise ConvaError(
            f"need at least one question and one unrelated prompt, got {n_questions}, {n_unrelated}"
        )
    qs = load_questions(value, split="eval")[:n_questions]
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
    answers = [trim_answer(a) for a in raw]
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
        {
            "value": ctx.value,
            "setting": name,
            "qid": qid,
            "question": q,
            "answer": a,
            "raw_answer": r,
            "logit_v": float(lg),
            "p_v": float(p),
            "ppl": float(np.exp(float(s) / int(k))) if int(k) else float("nan"),
            "distinct2": d,
            "words": st[0],
        }
        for qid, q, a, r, lg, p, s, k, d, st in zip(
            ctx.qids, ctx.questions, answers, raw, logit_v, p_v, nll, n_tok, d2, stats, strict=True
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


def _check_vectors(
    vectors: Mapping[str, ValueVectors], contexts: Mapping[str, SweepContext]
) -> None:
    missing = [v for v in contexts if v not in vectors]
    if missing:
        raise ConvaError(f"no value vectors for {missing}")


def sweep_p0(
    model: Any,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    p0s: Sequence[float],
    *,
    config: GenerationConfig,
    gates: Mapping[str, Any] | None = None,
    mode: str = "per_token",
    judge: Any = None,
    include_base: bool = True,
    trace: bool = True,
) -> SweepResult:
    """ConVA at each target probability P0 (paper Appx. I), plus the unsteered base.

    With ``trace`` (default) every row also has the control actually applied
    (:func:`~conva_tl.analysis.measures.eps_summary`: mean |eps|, share of
    (token, layer) cells moved, mean P_V before control).
    """
    _check_vectors(vectors, contexts)
    methods: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, dict[str, Any]]] = {}
    for v in contexts:
        m: dict[str, Any] = {"base": Base()} if include_base else {}
        c: dict[str, dict[str, Any]] = {"base": {"p0": float("nan")}} if include_base else {}
        for p0 in p0s:
            key = f"p0={p0:g}"
            m[key] = ConVA(vectors[v], p0=float(p0), gate=(gates or {}).get(v), mode=mode)
            c[key] = {"p0": float(p0)}
        methods[v], cols[v] = m, c
    return run_settings(
        model, contexts, methods, config=config, judge=judge, columns=cols, trace=trace
    )


def layer_ranges(layers: Sequence[int]) -> str:
    """``(3, 4, 5, 9)`` -> ``"3-5,9"``; ``"-"`` when empty."""
    if not layers:
        return "-"
    parts, start, prev = [], layers[0], layers[0]
    for x in [*layers[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ",".join(parts)


def layer_settings(
    vv: ValueVectors,
    thresholds: Sequence[float] = (0.8, 0.85, 0.9, 0.95),
    *,
    threshold: float = 0.9,
    exclude_last: int = 5,
) -> dict[str, dict[str, Any]]:
    """The layer sets of the layer ablation (paper Sec. 3.2).

    ``best``: the single most accurate layer outside the last ``exclude_last``;
    ``acc>T``: every layer with held-out accuracy > T outside the last
    ``exclude_last`` (``T = threshold`` is the paper's rule, the default control
    layers); ``acc>T incl. last N``: the default threshold without the exclusion.

    Returns:
        ``{setting: {"layers": tuple, "threshold": float, "exclude_last": int}}``.
    """
    acc = vv.accuracy.tolist()
    allowed = max(len(acc) - exclude_last, 1)
    best = int(np.argmax(acc[:allowed]))
    out: dict[str, dict[str, Any]] = {
        "best": {"layers": (best,), "threshold": float("nan"), "exclude_last": exclude_last}
    }
    for t in sorted(set(thresholds) | {threshold}):
        out[f"acc>{t:g}"] = {
            "layers": LayerRule(t, exclude_last).select(acc),
            "threshold": float(t),
            "exclude_last": exclude_last,
        }
    if exclude_last:
        out[f"acc>{threshold:g} incl. last {exclude_last}"] = {
            "layers": LayerRule(threshold, 0).select(acc),
            "threshold": float(threshold),
            "exclude_last": 0,
        }
    return out


def sweep_layers(
    model: Any,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    *,
    config: GenerationConfig,
    thresholds: Sequence[float] = (0.8, 0.85, 0.9, 0.95),
    threshold: float = 0.9,
    exclude_last: int = 5,
    p0: float = 0.9,
    gates: Mapping[str, Any] | None = None,
    judge: Any = None,
    include_base: bool = True,
    trace: bool = True,
) -> SweepResult:
    """ConVA on each layer set of :func:`layer_settings` (identical sets are measured once).

    ``trace`` adds the applied-control columns, as in :func:`sweep_p0`.
    """
    _check_vectors(vectors, contexts)
    methods: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, dict[str, Any]]] = {}
    for v in contexts:
        vv = vectors[v]
        m: dict[str, Any] = {"base": Base()} if include_base else {}
        c: dict[str, dict[str, Any]] = (
            {"base": {"n_layers": 0, "layers": "-"}} if include_base else {}
        )
        by_layers: dict[tuple[int, ...], Any] = {}
        for name, spec in layer_settings(
            vv, thresholds, threshold=threshold, exclude_last=exclude_last
        ).items():
            layers = spec["layers"]
            if layers not in by_layers:
                gate = (gates or {}).get(v)
                if gate is not None and layers and getattr(gate, "block", 0) > min(layers):
                    gate = None  # the gate would read steered activations; measured ungated instead
                    logger.warning(
                        "%s/%s: gate block after the first control layer; ungated", v, name
                    )
                by_layers[layers] = ConVA(vv, p0=p0, gate=gate, layers=layers)
            m[name] = by_layers[layers]
            c[name] = {
                "n_layers": len(layers),
                "layers": layer_ranges(layers),
                "threshold": spec["threshold"],
                "exclude_last": spec["exclude_last"],
            }
        methods[v], cols[v] = m, c
    return run_settings(
        model, contexts, methods, config=config, judge=judge, columns=cols, trace=trace
    )


def sweep_control_mode(
    model: Any,
    contexts: Mapping[str, SweepContext],
    vectors: Mapping[str, ValueVectors],
    *,
    config: GenerationConfig,
    modes: Sequence[str] = ("per_token", "per_prompt"),
    p0: float = 0.9,
    gates: Mapping[str, Any] | None = None,
    judge: Any = None,
) -> SweepResult:
    """Per-token control (the paper) vs one eps per prompt (the authors' code), traced."""
    _check_vectors(vectors, contexts)
    methods = {
        v: {m: ConVA(vectors[v], p0=p0, gate=(gates or {}).get(v), mode=m) for m in modes}
        for v in contexts
    }
    return run_settings(model, contexts, methods, config=config, judge=judge, trace=True)


@dataclass
class GateSweep:
    """:func:`gate_sweep` output: ``table`` per value x g0, ``scores`` per prompt, ``auroc`` per value x set."""

    table: pd.DataFrame
    scores: pd.DataFrame
    auroc: pd.DataFrame


def gate_sweep(
    model: Any,
    vectors: ValueVectors,
    gate: ActivationGate,
    thresholds: Sequence[float],
    *,
    prompt_sets: Mapping[str, Sequence[str]],
    positive_set: str = "value",
    p0: float = 0.9,
    batch_size: int = 8,
) -> GateSweep:
    """Share of prompts gated open and KL(base || steered) for each gate threshold g0.

    One steered pass per prompt set with an always-open copy of the gate records
    each prompt's score and its ungated KL; at threshold g0 a prompt is steered
    iff its score > g0, and a closed prompt's output is exactly the base
    model's (the gate decides before the first control layer), so
    ``kl(g0) = mean(kl_i * [score_i > g0])``.

    Args:
        vectors / gate: the value's probes and its gate.
        thresholds: g0 values.
        prompt_sets: named lists of chat prompts, e.g. ``{"value": eval questions,
            "unrelated": ..., "mc": ...}``.
        positive_set: the set whose prompts should open the gate (for AUROC).
        p0: ConVA target probability.
    """
    if positive_set not in prompt_sets:
        raise ConvaError(f"positive_set {positive_set!r} is not one of {list(prompt_sets)}")
    method = ConVA(
        vectors, p0=p0, gate=gate.with_threshold(-1.0)
    )  # scores are in (0, 1): always open
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for name, prompts in prompt_sets.items():
        kl, scores = kl_to_base(model, list(prompts), method, batch_size=batch_size)
        if scores is None:  # pragma: no cover - an ActivationGate always records scores
            raise ConvaError("the gate recorded no scores")
        per[name] = (kl.numpy(), scores.numpy())
        rows += [
            {"value": vectors.value, "set": name, "prompt": p, "score": float(s), "kl": float(k)}
            for p, s, k in zip(prompts, scores.tolist(), kl.tolist(), strict=True)
        ]
    table = []
    for g0 in thresholds:
        row: dict[str, Any] = {"value": vectors.value, "g0": float(g0)}
        for name, (kl_np, s_np) in per.items():
            opened = s_np > g0
            row[f"open_{name}"] = float(opened.mean())
            row[f"kl_{name}"] = float((kl_np * opened).mean())
        table.append(row)
    pos = per[positive_set][1]
    auroc = [
        {
            "value": vectors.value,
            "negatives": name,
            "auroc": float(
                roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(s))], np.r_[pos, s])
            ),
        }
        for name, (_, s) in per.items()
        if name != positive_set
    ]
    return GateSweep(pd.DataFrame(table), pd.DataFrame(rows), pd.DataFrame(auroc))


# ---- probe sweeps on cached activations ----------------------------------------------------


def heldout_split(
    groups: Sequence[int] | np.ndarray, *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` indices: the grouped split of :func:`conva_tl.probes.fit_probes`."""
    if not 0.0 < test_size < 1.0:
        raise ConvaError(f"test_size must be in (0, 1), got {test_size}")
    g = np.asarray(groups)
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(g)), groups=g))
    return train, test


def fit_layer_probes(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
    idx: Sequence[int] | np.ndarray,
    *,
    C: float = DEFAULT_C,
) -> tuple[Float[Tensor, "layer d_model"], Float[Tensor, " layer"]]:
    """One :class:`LinearProbe` per layer on the rows ``idx``: ``(w, b)``."""
    y = np.asarray(labels)[np.asarray(idx)]
    X_all = acts.double().numpy()[:, np.asarray(idx)]
    w = torch.zeros(acts.shape[0], acts.shape[2])
    b = torch.zeros(acts.shape[0])
    for layer in range(acts.shape[0]):
        probe = LinearProbe(C=C, standardize=DEFAULT_STANDARDIZE).fit(X_all[layer], y)
        w[layer] = torch.from_numpy(probe.coef_).float()
        b[layer] = float(probe.intercept_)
    return w, b


def layer_accuracy(
    w: Float[Tensor, "layer d_model"],
    b: Float[Tensor, " layer"],
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
) -> Float[Tensor, " layer"]:
    """Accuracy of each layer's probe (``w.e + b > 0`` predicts 1) on ``acts``."""
    scores = torch.einsum("lbd,ld->lb", acts.double(), w.double()) + b.double()[:, None]
    y = torch.as_tensor(np.asarray(labels), dtype=torch.bool)
    return ((scores > 0) == y).float().mean(-1)


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).float()


def train_size_sweep(
    acts: Float[Tensor, "layer batch d_model"],
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    *,
    value: str,
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    repeats: int = 1,
    test_size: float = 0.2,
    seed: int = 0,
    C: float = DEFAULT_C,
    layers: Sequence[int] | None = None,
    released_w: Float[Tensor, "layer d_model"] | None = None,
) -> pd.DataFrame:
    """Held-out accuracy and direction of probes fitted on a fraction of the training pairs (paper Appx. B).

    The test split is fixed (:func:`heldout_split`); for each fraction f a
    random ``f * n_train_groups`` (rounded half up) of the training groups (pairs) is used,
    ``repeats`` times with different draws. ``cos_ref`` is the cosine of the
    resulting value vector to the one fitted on all training pairs (so f = 1
    gives accuracy equal to :func:`conva_tl.probes.fit_probes`' held-out
    accuracy and ``cos_ref`` = 1); ``cos_released`` (with ``released_w``) is
    the cosine to the shipped vector, refitted on every pair.

    Returns:
        One row per fraction x repeat x layer: ``value, fraction, repeat,
        n_pairs, layer, accuracy, cos_ref`` (and ``cos_released``).
    """
    layer_ids = list(range(acts.shape[0])) if layers is None else list(layers)
    if len(layer_ids) != acts.shape[0]:
        raise ConvaError(f"{len(layer_ids)} layer ids for activations of {acts.shape[0]} layers")
    if released_w is not None and released_w.shape != acts.shape[::2]:
        raise ConvaError(
            f"released_w of shape {tuple(released_w.shape)}, expected {tuple(acts.shape[::2])}"
        )
    if any(not 0.0 < f <= 1.0 for f in fractions) or repeats < 1:
        raise ConvaError(
            f"fractions must be in (0, 1] and repeats >= 1, got {list(fractions)}, {repeats}"
        )
    y, g = np.asarray(labels), np.asarray(groups)
    train, test = heldout_split(g, test_size=test_size, seed=seed)
    train_groups = np.unique(g[train])
    ref_w, ref_b = fit_layer_probes(acts, y, train, C=C)
    rows = []
    for f in fractions:
        k = max(1, int(f * len(train_groups) + 0.5))  # half up (round() would round 4.5 to 4)
        for r in range(repeats if k < len(train_groups) else 1):
            chosen = np.random.default_rng([seed, r]).permutation(train_groups)[:k]
            idx = train[
                np.isin(g[train], chosen)
            ]  # keeps the split's row order: f = 1 is the reference fit
            if len(np.unique(y[idx])) < 2:
                raise ConvaError(
                    f"{value}: {k} training groups hold only one label; use a larger fraction"
                )
            w, b = (ref_w, ref_b) if k == len(train_groups) else fit_layer_probes(acts, y, idx, C=C)
            acc = layer_accuracy(w, b, acts[:, test], y[test])
            cos = _cos(w, ref_w)
            rel = _cos(w, released_w) if released_w is not None else None
            for i, layer in enumerate(layer_ids):
                row = {
                    "value": value,
                    "fraction": float(f),
                    "repeat": r,
                    "n_pairs": int(k),
                    "layer": layer,
                    "accuracy": float(acc[i]),
                    "cos_ref": float(cos[i]),
                }
                if rel is not None:
                    row["cos_released"] = float(rel[i])
                rows.append(row)
    return pd.DataFrame(rows)


def transfer_table(
    data: Mapping[str, tuple[Tensor, Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
    *,
    test_size: float = 0.2,
    seed: int = 0,
    C: float = DEFAULT_C,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Train on each dataset's training split, test on every dataset's test split.

    ``data`` maps a name (``"raw"``, ``"chat"``; ``"last"``, ``"mean"``;
    ``"pairs"``, ``"straightforward"``) to ``(acts, labels, groups)``. For two
    views of the same texts (same groups) the splits coincide, so a transfer
    score never tests on a text the probe saw in the other view.

    Returns:
        One row per train x test x layer: ``train, test, layer, accuracy``.
    """
    splits = {
        name: heldout_split(g, test_size=test_size, seed=seed) for name, (_, _, g) in data.items()
    }
    n_layers = {a.shape[0] for a, _, _ in data.values()}
    if len(n_layers) != 1:
        raise ConvaError(f"activations disagree on the number of layers: {sorted(n_layers)}")
    layer_ids = list(range(n_layers.pop())) if layers is None else list(layers)
    rows = []
    for train_name, (acts, y, _) in data.items():
        w, b = fit_layer_probes(acts, y, splits[train_name][0], C=C)
        for test_name, (acts_t, y_t, _) in data.items():
            test = splits[test_name][1]
            acc = layer_accuracy(w, b, acts_t[:, test], np.asarray(y_t)[test])
            rows += [
                {"train": train_name, "test": test_name, "layer": layer, "accuracy": float(acc[i])}
                for i, layer in enumerate(layer_ids)
            ]
    return pd.DataFrame(rows)
