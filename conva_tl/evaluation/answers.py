"""Stored answers: the fair trimming rule and the resumable ``answers.jsonl``.

Every generated answer of an evaluation run is one flat JSON line in
``out_dir/answers.jsonl`` (``pandas.read_json(path, lines=True)`` reads it),
written and fsynced as soon as its batch finishes. A run that is killed and
started again skips every ``(value, method, question id)`` already stored
under the same settings, so nothing finished is generated twice.
:mod:`conva_tl.evaluation.runner` writes the store; :mod:`.scoring` reads it.

Post-processing (:func:`trim_answer`) is one rule for every method, unlike the
authors' code (last-newline cut for ConVA, first line for CAA): strip
whitespace; if the generation ran into ``max_new_tokens`` (its re-encoded
length is within one token of the limit) and does not end a sentence, cut it
after its last sentence end (``.``, ``!``, ``?`` not preceded by a digit,
optionally followed by a closing quote or bracket, or a line break). Answers
that stopped on their own, and answers without any sentence end, are kept
whole. The raw generation is stored beside the trimmed one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conva_tl.errors import DataError
from conva_tl.jsonl import append_lines, read_records

__all__ = [
    "TRIM_RULE",
    "trim_answer",
    "hit_token_limit",
    "finished_answer",
    "answer_record",
    "AnswerStore",
    "settings_hash",
    "answer_key",
]

logger = logging.getLogger(__name__)

#: Recorded in every answer's settings, so a changed rule never mixes with old answers.
TRIM_RULE = "last-sentence-end-v1"

_CLOSED = re.compile(r"(?<![0-9])[.!?][\"'\u201d\u2019)\]*]*$")
_SENTENCE_END = re.compile(r"(?<![0-9])[.!?][\"'\u201d\u2019)\]*]*(?=\s|$)|\n")


def trim_answer(text: str, *, hit_limit: bool = True) -> str:
    """Cut an answer that ran into the token limit after its last complete sentence.

    Args:
        text: the generated answer.
        hit_limit: the generation stopped at ``max_new_tokens``; ``False``
            (it ended on its own) only strips whitespace.

    Example:
        >>> trim_answer("Keep the savings. A fund is a safety net. But if you")
        'Keep the savings. A fund is a safety net.'
        >>> trim_answer("1. Save.\\n2.")
        '1. Save.'
    """
    text = text.strip()
    if not hit_limit or not text or _CLOSED.search(text):
        return text
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text
    trimmed = text[: ends[-1].end()].rstrip()
    return trimmed if trimmed else text


def hit_token_limit(tokenizer: Any, answer: str, max_new_tokens: int) -> bool:
    """Did this generation stop at ``max_new_tokens``? (Re-encoding may differ by a token.)"""
    return len(tokenizer.encode(answer, add_special_tokens=False)) >= max_new_tokens - 1


def finished_answer(tokenizer: Any, raw: str, max_new_tokens: int) -> tuple[str, bool]:
    """``(answer, hit_limit)``: the one rule every command trims a generated answer by.

    An answer that ran into the token limit is cut after its last complete
    sentence (:func:`trim_answer`); one that ended on its own is only stripped.
    The evaluation runner and the ablation sweeps both store what this returns.
    """
    hit = hit_token_limit(tokenizer, raw, max_new_tokens)
    return trim_answer(raw, hit_limit=hit), hit


def answer_record(
    *,
    value: str,
    method: str,
    qid: str,
    question: str,
    raw_answer: str,
    answer: str,
    hit_limit: bool,
    settings: Mapping[str, Any],
    settings_id: str,
    **extra: Any,
) -> dict[str, Any]:
    """One answer, as the evaluation runner stores it and the ablation sweeps report it.

    ``answer`` and ``hit_limit`` are what :func:`finished_answer` returned for
    ``raw_answer``; ``settings_id`` is :func:`settings_hash` of ``settings``.
    ``extra`` adds fields a caller measures (a sweep's ``setting`` label and its
    readings, the question's ``scenario_type``) after the fields above.
    """
    record: dict[str, Any] = {
        "value": value,
        "method": method,
        "qid": qid,
        "question": question,
        "answer": answer,
        "raw_answer": raw_answer,
        "hit_limit": hit_limit,
        "settings": dict(settings),
        "settings_id": settings_id,
    }
    return {**record, **extra}


def settings_hash(settings: Mapping[str, Any]) -> str:
    """Short sha256 of a JSON-serialisable settings dict (key order ignored)."""
    blob = json.dumps(dict(settings), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def answer_key(value: str, method: str, qid: str, settings_id: str) -> tuple[str, str, str, str]:
    """The identity of one stored answer."""
    return (value, method, qid, settings_id)


class AnswerStore:
    """Append-only JSONL of answer records, resumable after a kill.

    Each record holds at least ``value``, ``method``, ``qid``, ``question``,
    ``answer`` (trimmed), ``raw_answer``, ``settings`` and ``settings_id``
    (:func:`settings_hash` of ``settings``). A truncated last line (a kill
    during a write) is dropped and cut from the file; any other malformed line
    is an error naming the line.

    Args:
        path: the JSONL file (created with its folder on the first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        for record in read_records(self.path, _parse, expected="an answer record"):
            key = answer_key(
                record["value"], record["method"], record["qid"], record["settings_id"]
            )
            self._records[key] = record

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, key: tuple[str, str, str, str]) -> dict[str, Any] | None:
        """The record stored under ``key``, or ``None``."""
        return self._records.get(key)

    def records(self) -> list[dict[str, Any]]:
        """All records, in stored order."""
        return list(self._records.values())

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records: one write and one fsync for the whole batch."""
        rows = [dict(r) for r in records]
        if not rows:
            return
        for r in rows:
            missing = {"value", "method", "qid", "settings_id"} - set(r)
            if missing:
                raise DataError(f"answer record lacks {sorted(missing)}: {str(r)[:80]}")
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        append_lines(self.path, payload)
        for r in rows:
            self._records[answer_key(r["value"], r["method"], r["qid"], r["settings_id"])] = r

    def __repr__(self) -> str:
        return f"AnswerStore({str(self.path)!r}, {len(self)} answers)"


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    needed = ("value", "method", "qid", "settings_id")
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in needed):
        return None
    return record
