import json

import pytest

from conva_tl.datasets import (
    BLOCKS,
    contrast_set,
    load_mc,
    load_pairs,
    load_questions,
    load_straightforward,
    load_unrelated,
)
from conva_tl.errors import DataError
from conva_tl.values import VALUES

#: The datasheet's two writings of the default pairs (conva_tl/data/README.md): the values
#: ConVA failed on got 100 new pairs each in stop 17; the other four keep the 120 of stop 11.
EXT_VALUES = (
    "self-direction",
    "stimulation",
    "hedonism",
    "achievement",
    "conformity",
    "universalism",
)


@pytest.mark.parametrize("value", VALUES)
def test_shipped_files_have_the_documented_counts(value):
    pairs = load_pairs(value)
    n, tag = (100, "ext") if value in EXT_VALUES else (120, "free")
    assert len(pairs) == n and pairs[0].id == f"{value}-{tag}-001"
    assert [p.block for p in pairs] == [b for b in BLOCKS for _ in range(n // 4)]
    minimal = load_pairs(value, kind="pairs-minimal")
    assert len(minimal) == 100
    assert [p.block for p in minimal] == [b for b in BLOCKS for _ in range(25)]
    balanced = load_pairs(value, kind="pairs-balanced")
    assert len(balanced) == 120 and balanced[0].id == f"{value}-bal-001"
    assert [p.block for p in balanced] == [b for b in BLOCKS for _ in range(30)]
    sf = load_straightforward(value)
    assert len(sf) == 200 and sum(s.label for s in sf) == 100
    assert len(load_questions(value, split="eval")) == 100
    assert len(load_questions(value, split="gate")) == 30
    eval_types = {q.scenario_type for q in load_questions(value, split="eval")}
    assert len(eval_types) == 10


def test_no_text_is_shared_across_values_or_kinds():
    seen = {}
    for value in VALUES:
        texts = [t for p in load_pairs(value) for t in (p.positive, p.negative)]
        for kind in ("pairs-minimal", "pairs-balanced"):
            texts += [t for p in load_pairs(value, kind=kind) for t in (p.positive, p.negative)]
        texts += [s.text for s in load_straightforward(value)]
        texts += [q.question for q in load_questions(value)]
        for t in texts:
            key = t.lower()
            assert key not in seen, f"{t!r} in {value} and {seen[key]}"
            seen[key] = value


def test_unrelated_and_mc_sets():
    assert len(load_unrelated()) >= 300
    mc = load_mc()
    assert len(mc) >= 100 and {q.answer for q in mc} == {"A", "B", "C", "D"}


def test_contrast_set_groups_pairs():
    cs = contrast_set("security")
    assert len(cs) == 240 and cs.labels[:2] == (1, 0) and cs.groups[:4] == (0, 0, 1, 1)
    sub = cs.subset([0, 3])
    assert len(sub) == 4 and sub.sha256 != cs.sha256


def test_kinds_are_distinct_data_and_unknown_kinds_are_named():
    free, minimal = contrast_set("power"), contrast_set("power", "pairs-minimal")
    assert free.sha256 != minimal.sha256 and minimal.kind == "pairs-minimal"
    balanced = contrast_set("power", "pairs-balanced")
    assert len({free.sha256, minimal.sha256, balanced.sha256}) == 3
    with pytest.raises(DataError, match="pairs-minimal"):
        contrast_set("power", "pair")


def test_non_utf8_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not UTF-8"):
        load_pairs(path=path)


def _write(tmp_path, lines):
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = {
    "id": "x-1",
    "value": "security",
    "block": "first_person_sentence",
    "scenario": "home",
    "positive": "I lock the door.",
    "negative": "I leave the door open.",
}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("negative"), "unbalanced pair"),
        (lambda r: r.update(positive="  "), "'positive' is empty"),
        (lambda r: r.update(value="kindness"), "unknown value"),
        (lambda r: r.update(block="poem"), "block 'poem'"),
    ],
)
def test_pair_loader_names_file_line_and_problem(tmp_path, mutate, message):
    bad = dict(GOOD, id="x-2", positive="We bolt the gate.", negative="We open the gate.")
    mutate(bad)
    path = _write(tmp_path, [json.dumps(GOOD), json.dumps(bad)])
    with pytest.raises(DataError, match=message) as err:
        load_pairs(path=path)
    assert f"{path}:2" in str(err.value)


def test_duplicates_and_bad_json_are_rejected(tmp_path):
    dup = dict(GOOD, id="x-2")
    with pytest.raises(DataError, match=r":2: duplicate sentence"):
        load_pairs(path=_write(tmp_path, [json.dumps(GOOD), json.dumps(dup)]))
    with pytest.raises(DataError, match=r":1: invalid JSON"):
        load_pairs(path=_write(tmp_path, ["{not json"]))


def test_straightforward_needs_both_labels(tmp_path):
    rows = [
        json.dumps({"id": f"s{i}", "value": "power", "label": 1, "text": f"text {i}"})
        for i in range(3)
    ]
    with pytest.raises(DataError, match="unbalanced"):
        load_straightforward(path=_write(tmp_path, rows))


def test_mc_rejects_bad_answer(tmp_path):
    path = tmp_path / "x_test.csv"
    path.write_text("What is 1+1?,1,2,3,4,E\n")
    with pytest.raises(DataError, match="answer must be"):
        load_mc(path)


def test_balanced_pairs_share_frame_and_give_no_word_away():
    """The documented construction of `pairs_balanced/`: what makes it a control for wording."""
    import collections
    import re

    for value in VALUES:
        pairs = load_pairs(value, kind="pairs-balanced")
        pos, neg = collections.Counter(), collections.Counter()
        for p in pairs:
            a, b = p.positive.split(), p.negative.split()
            assert [w.lower() for w in a[:3]] == [w.lower() for w in b[:3]], p.id
            assert max(len(a), len(b)) <= 1.3 * min(len(a), len(b)), p.id
            pos.update(set(re.findall(r"[a-z']+", p.positive.lower())))
            neg.update(set(re.findall(r"[a-z']+", p.negative.lower())))
        worst = max(abs(pos[w] - neg[w]) for w in set(pos) | set(neg))
        assert worst < 8, value
    # the free-worded default does give words away (e.g. "family" and "team" in self-direction
    # negatives, "own" in its positives), at least 20 texts apart for every value
    for value in VALUES:
        free = load_pairs(value)
        pos = collections.Counter(
            w for p in free for w in set(re.findall(r"[a-z']+", p.positive.lower()))
        )
        neg = collections.Counter(
            w for p in free for w in set(re.findall(r"[a-z']+", p.negative.lower()))
        )
        assert max(abs(pos[w] - neg[w]) for w in set(pos) | set(neg)) >= 20, value
