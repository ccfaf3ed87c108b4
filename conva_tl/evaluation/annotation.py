"""Blind human (or helper) annotation: the judged loop when no judge API is reachable.

The paper judges control success (CSR, Appx. D) and fluency (FR, Appx. E) with
an LLM. Where none is configured, two independent annotators label the answers
instead. This module keeps that honest:

* :func:`write_blind` turns stored answer records (``answers.jsonl`` of
  :mod:`conva_tl.evaluation.runner`) into a *blinded* file: each answer gets a
  random item id, the order is shuffled, and only ``value``, its
  ``definition``, the ``question`` and the ``answer`` are shown, never the
  method or its settings. The key (item id -> value, method, question id,
  settings id) is written to a separate file that annotators never see,
  together with :data:`ANNOTATION_GUIDE` (the paper's criteria).
* :func:`read_labels` reads one annotator's labels (JSON Lines
  ``{"item": ..., "csr": "Yes"|"No", "fr": "True"|"False"}``), checking that
  every item is labelled exactly once.
* :func:`join_labels` joins the labels of two annotators back to the key and
  returns one row per answer; :func:`agreement` gives raw agreement and
  Cohen's kappa per criterion; :func:`label_table` the per value x method
  table with each annotator's CSR/FR and their mean.

The same labels then feed the non-circular proxy check
(:mod:`conva_tl.evaluation.proxy`).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from conva_tl.datasets import read_jsonl
from conva_tl.errors import DataError
from conva_tl.judge import CSR_PROMPT, FR_PROMPT
from conva_tl.report import Report
from conva_tl.values import get_value

__all__ = [
    "ANNOTATION_GUIDE",
    "write_blind",
    "read_labels",
    "join_labels",
    "cohen_kappa",
    "agreement",
    "label_table",
    "judged_by_text",
    "with_judged",
]

#: What an annotator reads: the paper's two judge prompts (Appx. D, Tab. 11 and
#: Appx. E, Tab. 13, quoted in :mod:`conva_tl.judge`) and the label format.
ANNOTATION_GUIDE = f"""\
# Annotation guide

Each line of `items.jsonl` is one answer ("Bob") to a dilemma question ("Human"),
with the value item it is to be judged against. Label every item on two criteria,
independently of every other item. Output one JSON object per line, in any order:
{{"item": "<item id>", "csr": "Yes" or "No", "fr": "True" or "False"}}

## csr: control success (the paper's Appendix D, Tab. 11)
{CSR_PROMPT}

Judge only the inclination of Bob's answer toward the high-value choice in this dilemma;
a refusal, a neutral list of both sides, or an answer that favours the other side is "No".

## fr: fluency (the paper's Appendix E, Tab. 13)
{FR_PROMPT}
"""

_CSR = {"yes": True, "no": False}
_FR = {"true": True, "false": False}
_KEY_FIELDS = ("value", "method", "qid", "settings_id")


def write_blind(
    records: Sequence[Mapping[str, Any]], out_dir: str | Path, *, seed: int = 0
) -> dict[str, Path]:
    """Write ``items.jsonl`` (blinded, shuffled), ``key.jsonl`` and ``GUIDE.md``.

    Args:
        records: answer records with ``value``, ``method``, ``qid``,
            ``settings_id``, ``question`` and ``answer``.
        out_dir: folder for the three files (created).
        seed: shuffling and item-id seed (a local generator; global RNG untouched).

    Returns:
        ``{"items": ..., "key": ..., "guide": ...}`` paths.

    Raises:
        DataError: a record lacks a field, or two records share a key.
    """
    rng = random.Random(seed)
    rows = []
    seen: set[tuple[str, ...]] = set()
    for i, rec in enumerate(records):
        missing = [f for f in (*_KEY_FIELDS, "question", "answer") if f not in rec]
        if missing:
            raise DataError(f"answer record {i} lacks {', '.join(missing)}: pass runner records")
        key = tuple(str(rec[f]) for f in _KEY_FIELDS)
        if key in seen:
            raise DataError(f"answer record {i} repeats {key}: one record per answer")
        seen.add(key)
        rows.append(rec)
    order = list(range(len(rows)))
    rng.shuffle(order)
    ids = rng.sample(range(10**5, 10**6), len(rows))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"items": out / "items.jsonl", "key": out / "key.jsonl", "guide": out / "GUIDE.md"}
    with paths["items"].open("w") as items, paths["key"].open("w") as keyf:
        for item_id, j in zip(ids, order, strict=True):
            rec = rows[j]
            item = f"i{item_id}"
            value = get_value(str(rec["value"]))
            shown = {
                "item": item,
                "value": value.name,
                "definition": value.definition,
                "question": rec["question"],
                "answer": rec["answer"],
            }
            items.write(json.dumps(shown, ensure_ascii=False) + "\n")
            keyf.write(json.dumps({"item": item, **{f: rec[f] for f in _KEY_FIELDS}}) + "\n")
    paths["guide"].write_text(ANNOTATION_GUIDE)
    return paths


def _label(raw: Any, vocab: Mapping[str, bool], path: Path, lineno: int, field: str) -> bool:
    word = str(raw).strip().strip('".').lower()
    if word not in vocab:
        raise DataError(
            f"{path}:{lineno}: {field} is {raw!r}; expected one of {', '.join(sorted(vocab))}"
        )
    return vocab[word]


def read_labels(path: str | Path, items: Sequence[str] | None = None) -> pd.DataFrame:
    """One annotator's labels as a frame indexed by item (``csr``, ``fr`` booleans).

    Args:
        path: JSON Lines with ``item``, ``csr`` (Yes/No) and ``fr`` (True/False).
        items: the item ids that must all be labelled (from the key).

    Raises:
        DataError: unparsable line, unknown label, duplicate item, or (with
            ``items``) a missing or unknown item; the message names file:line.
    """
    p = Path(path)
    rows: dict[str, dict[str, bool]] = {}
    for lineno, rec in read_jsonl(p):
        item = str(rec.get("item", ""))
        if not item:
            raise DataError(f"{p}:{lineno}: no 'item' field")
        if item in rows:
            raise DataError(f"{p}:{lineno}: item {item} labelled twice")
        rows[item] = {
            "csr": _label(rec.get("csr"), _CSR, p, lineno, "csr"),
            "fr": _label(rec.get("fr"), _FR, p, lineno, "fr"),
        }
    if items is not None:
        missing = sorted(set(items) - set(rows))
        extra = sorted(set(rows) - set(items))
        if missing or extra:
            raise DataError(
                f"{p}: {len(missing)} items unlabelled (e.g. {missing[:3]}) and "
                f"{len(extra)} unknown (e.g. {extra[:3]}); label every item of items.jsonl once"
            )
    return pd.DataFrame.from_dict(rows, orient="index")


def join_labels(blind_dir: str | Path, label_paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per answer: its key fields and ``csr_<k>``/``fr_<k>`` per annotator k (1-based)."""
    keyp = Path(blind_dir) / "key.jsonl"
    key = pd.read_json(keyp, lines=True, dtype=False).set_index("item")
    frame = key.copy()
    for k, lp in enumerate(label_paths, 1):
        lab = read_labels(lp, items=list(key.index))
        frame[f"csr_{k}"] = lab["csr"].reindex(frame.index).astype(bool)
        frame[f"fr_{k}"] = lab["fr"].reindex(frame.index).astype(bool)
    return frame.reset_index()


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa of two binary label sequences (1.0 when both are constant and equal)."""
    if len(a) != len(b) or not a:
        raise DataError(f"kappa needs two equal, non-empty label lists, got {len(a)} and {len(b)}")
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1.0 else (po - pe) / (1 - pe)


def agreement(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Raw agreement and Cohen's kappa of annotators 1 and 2, per criterion."""
    out = {}
    for crit in ("csr", "fr"):
        a, b = frame[f"{crit}_1"].tolist(), frame[f"{crit}_2"].tolist()
        out[crit] = {
            "n": float(len(a)),
            "raw_agreement": sum(x == y for x, y in zip(a, b, strict=True)) / len(a),
            "cohen_kappa": cohen_kappa(a, b),
        }
    return out


def label_table(frame: pd.DataFrame, *, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Per value x method: ``n``, CSR and FR per annotator and their mean (plus an ``all`` row)."""
    judged = frame.assign(
        csr=(frame["csr_1"].astype(float) + frame["csr_2"].astype(float)) / 2,
        fr=(frame["fr_1"].astype(float) + frame["fr_2"].astype(float)) / 2,
    )
    cols = ["csr_1", "csr_2", "csr", "fr_1", "fr_2", "fr"]
    per = judged.groupby(["value", "method"])[cols].mean()
    per.insert(0, "n", judged.groupby(["value", "method"]).size())
    overall = judged.groupby("method")[cols].mean()
    overall.insert(0, "n", judged.groupby("method").size())
    overall.index = pd.MultiIndex.from_product([["all"], overall.index], names=["value", "method"])
    table = pd.concat([per, overall])
    if methods is not None:
        order = {m: i for i, m in enumerate(methods)}
        table = table.sort_index(key=lambda ix: ix.map(order) if ix.name == "method" else ix)
    return table


def judged_by_text(
    answers: pd.DataFrame, labels: pd.DataFrame, *, by: Sequence[str] = ("value", "setting")
) -> pd.DataFrame:
    """Judged CSR/FR of any answers that were labelled before, matched by their exact text.

    Greedy answers are reproducible, so a sweep that regenerates an answer already
    labelled blind (``labels.csv`` of ``analyses/control_quality.py join``) can report
    its judged rate without a new round. Matching is on ``(value, question, answer)``.

    Args:
        answers: one row per answer with ``value``, ``question``, ``answer`` and ``by``.
        labels: rows with ``value``, ``question``, ``answer``, ``csr_1``, ``csr_2``,
            ``fr_1``, ``fr_2`` (several rounds may be concatenated; repeated
            labellings of one text are averaged).

    Returns:
        One row per ``by`` group: ``n_answers``, ``n_judged`` and the mean judged
        ``csr_judged`` / ``fr_judged`` over the matched answers (NaN if none).
    """
    need = {"value", "question", "answer", "csr_1", "csr_2", "fr_1", "fr_2"}
    missing = need - set(labels.columns)
    if missing:
        raise DataError(
            f"labels lack {', '.join(sorted(missing))}: give a labels.csv written by "
            "analyses/control_quality.py join"
        )
    lab = labels.assign(
        csr_judged=(labels["csr_1"].astype(float) + labels["csr_2"].astype(float)) / 2,
        fr_judged=(labels["fr_1"].astype(float) + labels["fr_2"].astype(float)) / 2,
    )
    keys = ["value", "question", "answer"]
    lab = lab.groupby(keys, as_index=False)[["csr_judged", "fr_judged"]].mean()
    merged = answers.merge(lab, on=keys, how="left")
    grouped = merged.groupby(list(by), sort=False)
    out = grouped.size().rename("n_answers").to_frame()
    out["n_judged"] = grouped["csr_judged"].count()
    out["csr_judged"] = grouped["csr_judged"].mean()
    out["fr_judged"] = grouped["fr_judged"].mean()
    return out.reset_index()


def with_judged(report: Report, label_files: Sequence[str | Path]) -> Report:
    """``report`` plus ``judged.csv``: judged CSR/FR of its answers already labelled blind.

    A sweep's report keeps every answer in ``extra["answers"]``; those whose exact
    text appears in the ``labels.csv`` files (:func:`judged_by_text`) get their
    judged rates, added to the text and as the extra table ``judged``. Without
    label files or answers the report is returned as it is.
    """
    answers = report.extra.get("answers")
    if not label_files or answers is None or answers.empty:
        return report
    labels = pd.concat([pd.read_csv(f) for f in label_files], ignore_index=True)
    judged = judged_by_text(answers, labels)
    text = (
        f"{report.text}\n\nJudged (blind labels of identical answers in "
        f"{len(label_files)} file(s); n_judged of n_answers matched):\n"
        + judged.round(3).to_string(index=False)
    )
    return dataclasses.replace(report, text=text, extra={**report.extra, "judged": judged})
