"""Loading and validating the shipped datasets (and user files of the same schema).

The files live in ``conva_tl/data/`` (schema and provenance:
``conva_tl/data/README.md``). Every loader validates as it reads and raises
:class:`~conva_tl.errors.DataError` naming the file, the line and the problem.
:func:`contrast_set` turns pairs or straightforward sentences into the labelled,
grouped texts that :mod:`conva_tl.probes` fits on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from conva_tl.errors import DataError
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "DATA_DIR",
    "BLOCKS",
    "KIND_FOLDERS",
    "PAIR_KINDS",
    "ContrastPair",
    "LabeledSentence",
    "DilemmaQuestion",
    "UnrelatedPrompt",
    "MCQuestion",
    "ContrastSet",
    "load_pairs",
    "load_straightforward",
    "load_questions",
    "load_unrelated",
    "load_mc",
    "contrast_set",
    "read_jsonl",
]

DATA_DIR = Path(__file__).parent / "data"
BLOCKS = (
    "first_person_sentence",
    "third_person_sentence",
    "first_person_question",
    "third_person_question",
)
DataKind = Literal["pairs", "pairs-minimal", "pairs-balanced", "straightforward"]
#: Shipped folder of each kind of contrast data. ``pairs`` (the default since
#: stop 11): context-controlled pairs whose negative is re-worded freely;
#: ``pairs-minimal``: the earlier pairs whose negative is a minimal edit of its
#: positive (kept for the data ablation; see the datasheet); ``pairs-balanced``:
#: pairs whose two sides share their frame and vocabulary (judged: weaker control).
KIND_FOLDERS = {
    "pairs": "pairs",
    "pairs-minimal": "pairs_minimal",
    "pairs-balanced": "pairs_balanced",
    "straightforward": "straightforward",
}
#: The kinds that are context-controlled pairs.
PAIR_KINDS = ("pairs", "pairs-minimal", "pairs-balanced")


@dataclass(frozen=True)
class ContrastPair:
    """A context-controlled pair: same scenario, opposite stance on the value."""

    id: str
    value: str
    block: str
    scenario: str
    positive: str
    negative: str


@dataclass(frozen=True)
class LabeledSentence:
    """A straightforward sentence: label 1 promotes the value, 0 resists it."""

    id: str
    value: str
    label: int
    text: str


@dataclass(frozen=True)
class DilemmaQuestion:
    """An open dilemma question; ``split`` is ``eval`` or ``gate``."""

    id: str
    value: str
    split: str
    scenario_type: str
    question: str


@dataclass(frozen=True)
class UnrelatedPrompt:
    """A value-unrelated prompt (gate negatives, capability checks)."""

    id: str
    category: str
    prompt: str


@dataclass(frozen=True)
class MCQuestion:
    """One multiple-choice question in MMLU format."""

    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; malformed JSON names file and line."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line_no}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def _text(path: Path, lineno: int, record: dict[str, Any], key: str) -> str:
    if key not in record:
        raise DataError(f"{path}:{lineno}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}:{lineno}: field {key!r} is empty or not a string")
    return value.strip()


def _value(path: Path, lineno: int, record: dict[str, Any], expected: str | None) -> str:
    raw = _text(path, lineno, record, "value")
    try:
        value = canonical_value(raw)
    except DataError as exc:
        raise DataError(f"{path}:{lineno}: {exc}") from None
    if expected is not None and value != expected:
        raise DataError(f"{path}:{lineno}: value {value!r} in a file for {expected!r}")
    return value


class _Unique:
    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what, self.seen = path, what, dict[str, int]()

    def check(self, lineno: int, key: str) -> None:
        norm = " ".join(key.lower().split())
        if norm in self.seen:
            raise DataError(
                f"{self.path}:{lineno}: duplicate {self.what} (first seen on line {self.seen[norm]}): {key[:60]!r}"
            )
        self.seen[norm] = lineno


def _file(kind: str, value: str | None, path: str | Path | None) -> tuple[Path, str | None]:
    canon = canonical_value(value) if value is not None else None
    if path is not None:
        return Path(path), canon
    if canon is None:
        raise DataError(f"give a value name or a path to load {kind}")
    return DATA_DIR / kind / f"{canon}.jsonl", canon


def load_pairs(
    value: str | None = None, *, path: str | Path | None = None, kind: str = "pairs"
) -> list[ContrastPair]:
    """Context-controlled pairs of a value (shipped file of ``kind``, or ``path``)."""
    if kind not in PAIR_KINDS:
        raise DataError(f"pairs kind must be one of {', '.join(PAIR_KINDS)}, got {kind!r}")
    file, expected = _file(KIND_FOLDERS[kind], value, path)
    ids, texts = _Unique(file, "id"), _Unique(file, "sentence")
    pairs = []
    for lineno, rec in read_jsonl(file):
        pid = _text(file, lineno, rec, "id")
        ids.check(lineno, pid)
        if "positive" not in rec or "negative" not in rec:
            raise DataError(
                f"{file}:{lineno}: unbalanced pair: needs both 'positive' and 'negative'"
            )
        pos, neg = _text(file, lineno, rec, "positive"), _text(file, lineno, rec, "negative")
        if pos == neg:
            raise DataError(f"{file}:{lineno}: positive and negative are identical")
        texts.check(lineno, pos)
        texts.check(lineno, neg)
        block = str(rec.get("block", ""))
        if block and block not in BLOCKS:
            raise DataError(f"{file}:{lineno}: block {block!r} is not one of {', '.join(BLOCKS)}")
        pairs.append(
            ContrastPair(
                pid,
                _value(file, lineno, rec, expected),
                block,
                str(rec.get("scenario", "")),
                pos,
                neg,
            )
        )
    if not pairs:
        raise DataError(f"{file}: no pairs")
    return pairs


def load_straightforward(
    value: str | None = None, *, path: str | Path | None = None
) -> list[LabeledSentence]:
    """Independently written positive (1) and negative (0) sentences of a value."""
    file, expected = _file("straightforward", value, path)
    ids, texts = _Unique(file, "id"), _Unique(file, "sentence")
    out = []
    for lineno, rec in read_jsonl(file):
        sid = _text(file, lineno, rec, "id")
        ids.check(lineno, sid)
        text = _text(file, lineno, rec, "text")
        texts.check(lineno, text)
        label = rec.get("label")
        if label not in (0, 1) or isinstance(label, bool):
            raise DataError(f"{file}:{lineno}: label must be 0 or 1, got {label!r}")
        out.append(LabeledSentence(sid, _value(file, lineno, rec, expected), int(label), text))
    n_pos = sum(s.label for s in out)
    if n_pos == 0 or n_pos == len(out):
        raise DataError(
            f"{file}: unbalanced: {n_pos} positive and {len(out) - n_pos} negative sentences"
        )
    return out


def load_questions(
    value: str | None = None, *, split: str | None = None, path: str | Path | None = None
) -> list[DilemmaQuestion]:
    """Dilemma questions of a value; ``split`` filters to ``eval`` or ``gate``."""
    if split not in (None, "eval", "gate"):
        raise DataError(f"split must be 'eval', 'gate' or None, got {split!r}")
    file, expected = _file("questions", value, path)
    ids, texts = _Unique(file, "id"), _Unique(file, "question")
    out = []
    for lineno, rec in read_jsonl(file):
        qid = _text(file, lineno, rec, "id")
        ids.check(lineno, qid)
        question = _text(file, lineno, rec, "question")
        texts.check(lineno, question)
        rec_split = _text(file, lineno, rec, "split")
        if rec_split not in ("eval", "gate"):
            raise DataError(f"{file}:{lineno}: split must be 'eval' or 'gate', got {rec_split!r}")
        out.append(
            DilemmaQuestion(
                qid,
                _value(file, lineno, rec, expected),
                rec_split,
                str(rec.get("scenario_type", "")),
                question,
            )
        )
    return [q for q in out if split is None or q.split == split]


def load_unrelated(path: str | Path | None = None) -> list[UnrelatedPrompt]:
    """The shared value-unrelated prompts."""
    file = Path(path) if path is not None else DATA_DIR / "unrelated.jsonl"
    ids, texts = _Unique(file, "id"), _Unique(file, "prompt")
    out = []
    for lineno, rec in read_jsonl(file):
        pid = _text(file, lineno, rec, "id")
        ids.check(lineno, pid)
        prompt = _text(file, lineno, rec, "prompt")
        texts.check(lineno, prompt)
        out.append(UnrelatedPrompt(pid, str(rec.get("category", "")), prompt))
    return out


def load_mc(paths: str | Path | Sequence[str | Path] | None = None) -> list[MCQuestion]:
    """MMLU-format CSV files (``question,A,B,C,D,answer``, no header).

    With no argument, the shipped value-unrelated set in ``data/capability``. A
    folder loads every ``*.csv`` in it; the subject is the file name without
    ``_test``/``_dev``/``_val``.
    """
    if paths is None:
        files = sorted((DATA_DIR / "capability").glob("*.csv"))
    else:
        items = [paths] if isinstance(paths, (str, Path)) else list(paths)
        files = []
        for item in map(Path, items):
            files.extend(sorted(item.glob("*.csv")) if item.is_dir() else [item])
    if not files:
        raise DataError(f"no MMLU-format .csv files found in {paths}")
    out = []
    for file in files:
        subject = file.stem
        for suffix in ("_test", "_dev", "_val"):
            subject = subject.removesuffix(suffix)
        with file.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if len(row) != 6:
                    raise DataError(
                        f"{file}:{lineno}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}"
                    )
                answer = row[5].strip().upper()
                if answer not in ("A", "B", "C", "D"):
                    raise DataError(f"{file}:{lineno}: answer must be A, B, C or D, got {row[5]!r}")
                if not row[0].strip():
                    raise DataError(f"{file}:{lineno}: empty question")
                a, b, c, d = (cell.strip() for cell in row[1:5])
                out.append(MCQuestion(subject, row[0].strip(), (a, b, c, d), answer))
    return out


@dataclass(frozen=True)
class ContrastSet:
    """Labelled texts for fitting a probe.

    Attributes:
        value: the canonical value name.
        kind: ``pairs`` (context-controlled) or ``straightforward``.
        texts: the sentences.
        labels: 1 for value-promoting, 0 for the opposite stance.
        groups: texts sharing a group are kept on the same side of a split
            (both sentences of a pair; each straightforward sentence alone).
        sha256: hash of the texts and labels, recorded in artifacts.
    """

    value: str
    kind: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    groups: tuple[int, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, groups: Sequence[int]) -> ContrastSet:
        """Only the texts whose group is in ``groups``."""
        keep = set(groups)
        idx = [i for i, g in enumerate(self.groups) if g in keep]
        return _make_set(
            self.value,
            self.kind,
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.groups[i] for i in idx],
        )


def _make_set(
    value: str, kind: str, texts: list[str], labels: list[int], groups: list[int]
) -> ContrastSet:
    digest = hashlib.sha256(json.dumps([texts, labels], ensure_ascii=False).encode()).hexdigest()
    return ContrastSet(value, kind, tuple(texts), tuple(labels), tuple(groups), digest)


def contrast_set(
    value: str, kind: DataKind | str = "pairs", *, path: str | Path | None = None
) -> ContrastSet:
    """Labelled, grouped texts of a value from pairs or straightforward sentences."""
    canon = canonical_value(value)
    if kind in PAIR_KINDS:
        pairs = load_pairs(canon, path=path, kind=kind)
        texts = [t for p in pairs for t in (p.positive, p.negative)]
        labels = [1, 0] * len(pairs)
        groups = [i for i in range(len(pairs)) for _ in (0, 1)]
        return _make_set(canon, kind, texts, labels, groups)
    if kind == "straightforward":
        sents = load_straightforward(canon, path=path)
        return _make_set(
            canon, kind, [s.text for s in sents], [s.label for s in sents], list(range(len(sents)))
        )
    raise DataError(f"kind must be one of {', '.join(KIND_FOLDERS)}, got {kind!r}")


def all_values() -> tuple[str, ...]:
    """The ten canonical value names (convenience re-export)."""
    return VALUES
