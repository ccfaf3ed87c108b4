"""The judged loop's non-judging parts: blinding, reading labels, joining, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conva_tl.errors import DataError
from conva_tl.evaluation.annotation import (
    agreement,
    cohen_kappa,
    join_labels,
    label_table,
    read_labels,
    write_blind,
)
from conva_tl.evaluation.devloop import Variant, spread_questions


def _records() -> list[dict]:
    recs = []
    for value in ("power", "security"):
        for method in ("base", "conva"):
            for q in range(3):
                recs.append(
                    {
                        "value": value,
                        "method": method,
                        "qid": f"{value}-q-{q:03d}",
                        "settings_id": f"s-{method}",
                        "question": f"Q{q} about {value}?",
                        "answer": f"answer number {len(recs)}",
                        "settings": {"secret": method},
                    }
                )
    return recs


def _label_file(path: Path, items: list[str], csr, fr) -> Path:
    lines = [
        json.dumps({"item": i, "csr": "Yes" if c else "No", "fr": "True" if f else "False"})
        for i, c, f in zip(items, csr, fr, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_blind_file_hides_the_method_and_is_shuffled(tmp_path: Path) -> None:
    recs = _records()
    paths = write_blind(recs, tmp_path / "b", seed=3)
    items = [json.loads(x) for x in paths["items"].read_text().splitlines()]
    assert len(items) == len(recs)
    text = paths["items"].read_text()
    assert "conva" not in text and "base" not in text and "settings" not in text
    assert set(items[0]) == {"item", "value", "definition", "question", "answer"}
    shown = [it["answer"] for it in items]
    assert shown != [r["answer"] for r in recs]  # shuffled
    key = [json.loads(x) for x in paths["key"].read_text().splitlines()]
    by_item = {k["item"]: k for k in key}
    truth = {(r["value"], r["method"], r["qid"]): r["answer"] for r in recs}
    for it in items:  # the key maps every item back to the answer it shows
        k = by_item[it["item"]]
        assert it["answer"] == truth[(k["value"], k["method"], k["qid"])]
    assert "Appendix D" in paths["guide"].read_text()


def test_blind_refuses_duplicates_and_incomplete_records(tmp_path: Path) -> None:
    recs = _records()
    with pytest.raises(DataError, match="repeats"):
        write_blind(recs + recs[:1], tmp_path / "b")
    bad = dict(recs[0])
    del bad["qid"]
    with pytest.raises(DataError, match="lacks qid"):
        write_blind([bad], tmp_path / "c")


def test_join_recovers_each_annotators_labels_by_method(tmp_path: Path) -> None:
    recs = _records()
    paths = write_blind(recs, tmp_path / "b", seed=1)
    key = [json.loads(x) for x in paths["key"].read_text().splitlines()]
    items = [k["item"] for k in key]
    # annotator 1 says Yes exactly for conva; annotator 2 also for base on power
    a = [k["method"] == "conva" for k in key]
    b = [k["method"] == "conva" or k["value"] == "power" for k in key]
    fr = [True] * len(key)
    la = _label_file(tmp_path / "a.jsonl", items, a, fr)
    lb = _label_file(tmp_path / "b.jsonl", items, b, fr)
    frame = join_labels(tmp_path / "b", [la, lb])
    table = label_table(frame)
    assert table.loc[("power", "conva"), "csr"] == 1.0
    assert table.loc[("power", "base"), "csr_1"] == 0.0
    assert table.loc[("power", "base"), "csr_2"] == 1.0
    assert table.loc[("power", "base"), "csr"] == 0.5
    assert table.loc[("all", "base"), "n"] == 6
    agree = agreement(frame)
    assert agree["csr"]["raw_agreement"] == pytest.approx(9 / 12)
    assert agree["fr"]["raw_agreement"] == 1.0


def test_read_labels_names_the_line_and_checks_coverage(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_text(
        '{"item": "i1", "csr": "Yes", "fr": "True"}\n{"item": "i2", "csr": "Maybe", "fr": "True"}\n'
    )
    with pytest.raises(DataError, match=r"l.jsonl:2: csr is 'Maybe'"):
        read_labels(p)
    p.write_text('{"item": "i1", "csr": "yes", "fr": "false"}\n')
    assert not read_labels(p).loc["i1", "fr"]
    with pytest.raises(DataError, match="1 items unlabelled"):
        read_labels(p, items=["i1", "i2"])
    p.write_text('{"item": "i1", "csr": "No", "fr": "True"}\n' * 2)
    with pytest.raises(DataError, match="labelled twice"):
        read_labels(p)


def test_cohen_kappa_matches_the_textbook_example() -> None:
    # 50 items: both yes 20, a-yes/b-no 5, a-no/b-yes 10, both no 15 -> po .7, pe .5, kappa .4
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([True, True], [True, True]) == 1.0
    with pytest.raises(DataError):
        cohen_kappa([True], [])


def test_spread_questions_cover_every_scenario_type() -> None:
    qs = spread_questions("power", 10)
    assert len({q.scenario_type for q in qs}) == 10
    assert len({q.id for q in qs}) == 10
    second = spread_questions("power", 10, offset=0.5)
    assert not {q.id for q in qs} & {q.id for q in second}
    assert len({q.scenario_type for q in second}) == 10


def test_variant_spec_parses_and_rejects_unknown_options() -> None:
    v = Variant.parse("strong=out/v,p0=0.95,layers=3-5+9,gate=off")
    assert (v.name, v.vectors, v.p0, v.layers, v.gate) == (
        "strong",
        "out/v",
        0.95,
        (3, 4, 5, 9),
        False,
    )
    assert Variant.parse("c=out/v,method=caa,coef=2").coef == 2.0
    with pytest.raises(Exception, match="unknown option"):
        Variant.parse("x=out/v,strength=3")
    pv = Variant.parse("pv=out/v,p0=0.97,p0@Self-Direction=0.9,p0@hedonism=0.995")
    assert dict(pv.p0_by_value) == {"self-direction": 0.9, "hedonism": 0.995} and pv.p0 == 0.97


def test_a_per_value_p0_reaches_the_built_method(tiny) -> None:
    from conva_tl.methods import ConVA

    from .test_multi import random_vectors

    pv = Variant.parse("pv=out/v,p0=0.97,p0@security=0.9,gate=off")
    built = {v: pv.build(random_vectors(tiny, v, (1,), 0), None) for v in ("security", "power")}
    assert all(isinstance(m, ConVA) for m in built.values())
    assert (built["security"].p0, built["power"].p0) == (0.9, 0.97)


def test_an_instruct_variant_asks_outright_for_the_value(tiny) -> None:
    from conva_tl.methods import ICA

    from .test_multi import random_vectors

    built = Variant.parse("ask=out/v,method=instruct").build(
        random_vectors(tiny, "power", (1,), 0), None
    )
    assert isinstance(built, ICA) and built.name == "ask"
    user, system = built.rewrite_prompt("Should I run for mayor?")
    assert system is None and user.startswith("Should I run for mayor? In your answer, recommend")
    assert "best serves power (social status and prestige" in user


def test_judged_by_text_reuses_blind_labels_of_identical_answers():
    import pandas as pd

    from conva_tl.evaluation.annotation import judged_by_text

    labels = pd.DataFrame(
        {
            "value": ["power", "power", "power"],
            "question": ["q1", "q2", "q2"],
            "answer": ["a1", "a2", "a2"],  # a2 labelled in two rounds: averaged
            "csr_1": [True, True, False],
            "csr_2": [True, False, False],
            "fr_1": [True, True, True],
            "fr_2": [True, True, False],
        }
    )
    answers = pd.DataFrame(
        {
            "value": ["power"] * 4,
            "setting": ["base", "base", "conva", "conva"],
            "question": ["q1", "q2", "q1", "q2"],
            "answer": ["a1", "a2", "other", "a2 "],  # a different text is not matched
        }
    )
    out = judged_by_text(answers, labels).set_index("setting")
    assert out.loc["base", "n_judged"] == 2 and out.loc["conva", "n_judged"] == 0
    assert out.loc["base", "csr_judged"] == pytest.approx((1.0 + 0.25) / 2)
    assert out.loc["base", "fr_judged"] == pytest.approx((1.0 + 0.75) / 2)
    assert out.loc["conva", "n_answers"] == 2
    with pytest.raises(DataError, match="control_quality.py join"):
        judged_by_text(answers, labels.drop(columns=["fr_2"]))


def test_with_judged_adds_the_judged_table_to_a_sweep_report(tmp_path):
    import pandas as pd

    from conva_tl.evaluation.annotation import with_judged
    from conva_tl.report import Report

    labels = pd.DataFrame(
        {"value": ["power"], "question": ["q1"], "answer": ["a1"]}
        | {k: [True] for k in ("csr_1", "csr_2", "fr_1", "fr_2")}
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    answers = pd.DataFrame(
        {"value": ["power"] * 2, "setting": ["base"] * 2, "question": ["q1", "q2"]}
        | {"answer": ["a1", "a2"]}
    )
    report = Report("sweep", pd.DataFrame({"x": [1]}), "table", extra={"answers": answers})
    assert with_judged(report, []) is report
    judged = with_judged(report, [tmp_path / "labels.csv"])
    row = judged.extra["judged"].iloc[0]
    assert (row["n_answers"], row["n_judged"], row["csr_judged"]) == (2, 1, 1.0)
    assert judged.text.startswith("table") and "n_judged of n_answers" in judged.text
    assert [p.name for p in judged.write(tmp_path / "out")][:3] == [
        "sweep.csv",
        "answers.csv",
        "judged.csv",
    ]
