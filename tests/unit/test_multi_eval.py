"""Summed CAA, the settings that key multi-value answers, and the judged multi-value tables."""

import pandas as pd
import pytest
import torch

from conva_tl.errors import ConvaError
from conva_tl.evaluation.conditions import method_settings
from conva_tl.evaluation.multi_eval import COMBOS, Combo, combo_methods, combo_table, judged_records
from conva_tl.generate import GenerationConfig
from conva_tl.methods import CAA, SummedCAA
from conva_tl.multi_conva import MultiConVA

from .test_multi import _run, random_vectors

COMBO = Combo("a>b", ("security",), caps=("power",), side="benevolence")


def _vv(model):
    return {
        v: random_vectors(model, v, layers, seed)
        for seed, (v, layers) in enumerate([("security", (1, 2)), ("power", (2, 3))])
    }


def test_summed_caa_adds_each_part_on_its_own_layers(tiny):
    vv = _vv(tiny)
    base, real, _, _ = _run(tiny, SummedCAA((CAA(vv["security"], coef=0.0),)))
    both, _, calls, _ = _run(
        tiny, SummedCAA((CAA(vv["security"], coef=0.5), CAA(vv["power"], coef=-0.5)))
    )
    assert dict(calls) == {
        f"blocks.{layer}.hook_resid_post": n for layer, n in ((1, 1), (2, 2), (3, 1))
    }
    # layer 1 only has security's part: exactly +0.5 x its vector on every real token
    torch.testing.assert_close(
        both[1][real] - base[1][real],
        (0.5 * vv["security"].mean_diff[1]).expand(int(real.sum()), -1),
        atol=1e-4,
        rtol=1e-4,
    )
    with pytest.raises(ConvaError, match="non-empty tuple of CAA"):
        SummedCAA(())


def test_settings_tell_multi_value_methods_apart(tiny):
    vv = _vv(tiny)
    cfg = GenerationConfig(max_new_tokens=4)
    s1 = method_settings(
        MultiConVA.from_vectors(vv, {"security": 0.9}, caps={"power": 0.3}), tiny, cfg
    )
    s2 = method_settings(
        MultiConVA.from_vectors(vv, {"security": 0.9}, caps={"power": 0.2}), tiny, cfg
    )
    assert s1["requests"] != s2["requests"] and s1["layers"] == [1, 2, 3]
    c1 = method_settings(SummedCAA((CAA(vv["security"]), CAA(vv["power"], coef=-0.25))), tiny, cfg)
    c2 = method_settings(SummedCAA((CAA(vv["security"]), CAA(vv["power"], coef=0.25))), tiny, cfg)
    assert c1["parts"][1]["coef"] == -0.25 and c1 != c2


def test_combo_methods_build_every_condition(tiny):
    vv = _vv(tiny)
    methods = combo_methods(COMBO, vv, {}, p0=0.9, pmax=0.3, coef=0.25)
    assert list(methods) == list(COMBO.methods)
    multi = methods[COMBO.multi]
    assert [r[0] for r in multi.requests] == ["security>=0.9", "power<=0.3"]
    assert [p.coef for p in methods[COMBO.caa].parts] == [0.25, -0.25]
    with pytest.raises(ConvaError, match="names a value twice"):
        Combo("x", ("power",), caps=("power",))
    assert {c.name for c in COMBOS} and all(c.side not in c.question_values for c in COMBOS)


def _answers():
    recs = []
    for qv in ("security", "power", "tradition"):
        for method in COMBO.methods:
            for q in range(2):
                recs.append(
                    {
                        "value": qv,
                        "method": method,
                        "qid": f"{qv}-{q}",
                        "settings_id": method,
                        "question": "?",
                        "answer": "!",
                    }
                )
    return recs


def test_judged_records_cover_every_concerned_value_once():
    items = judged_records([COMBO, COMBO], _answers())
    # 2 question values x 2 questions x 5 methods x 2 judged values, + side on base & multi
    assert len(items) == 2 * 2 * 4 * 2 + 2 * 2 * 2
    keys = {(i["value"], i["method"], i["qid"]) for i in items}
    assert len(keys) == len(items)
    assert not any(i["question_value"] == "tradition" for i in items)
    side = [i for i in items if i["value"] == "benevolence"]
    assert {i["method"] for i in side} == {"base", COMBO.multi}


def test_combo_table_averages_annotators_per_role():
    items = judged_records([COMBO], _answers())
    frame = pd.DataFrame(items)
    # annotator 1 says yes only for the capped value, annotator 2 never; fluency fails once
    frame["csr_1"] = frame["value"] == "power"
    frame["csr_2"] = False
    frame["fr_1"] = True
    frame["fr_2"] = ~((frame["method"] == "base") & (frame["qid"] == "security-0"))
    table = combo_table(frame, [COMBO]).set_index(["method", "value"])
    assert table.loc[("base", "power"), "csr"] == 0.5
    assert table.loc[("base", "power"), "role"] == "cap"
    assert table.loc[("base", "security"), "csr"] == 0.0
    assert table.loc[(COMBO.multi, "benevolence"), "role"] == "side"
    assert table.loc[("base", "security"), "fr"] == pytest.approx(1 - 0.5 / 4)
    assert (COMBO.caa, "benevolence") not in table.index
