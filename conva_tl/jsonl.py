"""Append-only JSONL files that survive a killed process.

Two stores keep their records this way: the API reply cache
(:class:`conva_tl.llm_api.JsonlStore`) and the evaluation answers
(:class:`conva_tl.evaluation.answers.AnswerStore`). Both append whole lines
with one ``write`` and an ``fsync`` (:func:`append_lines`) and read the file
back with :func:`read_records`, which drops a truncated last line (the mark of
a kill mid-write) and cuts the file there so the next append starts clean.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from conva_tl.errors import DataError

__all__ = ["JsonlStore", "append_lines", "read_records"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def read_records(path: Path, parse: Callable[[bytes], T | None], *, expected: str) -> Iterator[T]:
    """Parsed records of ``path``, line by line, in file order.

    Args:
        path: the JSONL file (it must exist).
        parse: turns one line into a record, or ``None`` when the line is not one.
        expected: what a line should be, for the error message.

    Raises:
        DataError: a line other than the last one is not a record (the file is corrupt).
    """
    data = path.read_bytes()
    chunks: list[tuple[int, int, bytes, bool]] = []  # (line number, offset, text, has newline)
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl == -1 else nl + 1
        chunks.append((len(chunks) + 1, pos, data[pos:end].rstrip(b"\n"), nl != -1))
        pos = end
    last = max((i for i, (_, _, line, _) in enumerate(chunks) if line.strip()), default=-1)
    for i, (lineno, start, line, has_newline) in enumerate(chunks):
        if not line.strip():
            continue
        record = parse(line) if has_newline else None
        if record is not None:
            yield record
            continue
        if i != last:
            raise DataError(
                f"{path}:{lineno}: not {expected}; the file is corrupt: move it away to start afresh"
            )
        logger.warning(
            "%s:%d: dropping a truncated last line (%d bytes); an interrupted write?",
            path,
            lineno,
            len(line),
        )
        with path.open("r+b") as fh:
            fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())
        return


def append_lines(path: Path, payload: bytes) -> None:
    """Append ``payload`` (whole lines) in one write and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlStore:
    """An append-only, crash-tolerant key -> record store in one JSONL file.

    Each line is ``{"key": str, "record": {...}}``; a later line with the same
    key wins. The file is read once on open. :meth:`put` appends one line with a
    single write, then flushes and fsyncs, so a killed process loses at most the
    line being written; a truncated (or otherwise unreadable) last line is
    skipped with a warning and cut off so later appends start on a clean line.
    Safe to share between threads of one process (not between processes).

    Args:
        path: the file; created (with its folder) on the first :meth:`put`.

    Raises:
        DataError: a line other than the last is not a valid record.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        expected = 'a store record (expected JSON {"key": str, "record": object})'
        for key, record in read_records(self.path, _parse_store_line, expected=expected):
            self._records[key] = record

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key`` (a copy), or ``None``."""
        with self._lock:
            record = self._records.get(key)
            return dict(record) if record is not None else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Store ``record`` under ``key``: one appended, fsynced line.

        Raises:
            DataError: the record is not JSON-serialisable.
        """
        try:
            line = json.dumps({"key": key, "record": dict(record)}, ensure_ascii=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"record for key {key[:16]!r} is not JSON-serialisable: {exc}"
            ) from None
        payload = line.encode("utf-8")
        with self._lock:
            append_lines(self.path, payload)
            self._records[key] = json.loads(line)["record"]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._records

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def keys(self) -> list[str]:
        """All keys, in first-stored order."""
        with self._lock:
            return list(self._records)

    def __repr__(self) -> str:
        return f"JsonlStore({str(self.path)!r}, {len(self)} records)"


def _parse_store_line(line: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("key"), str)
        or not isinstance(obj.get("record"), dict)
    ):
        return None
    return obj["key"], obj["record"]
