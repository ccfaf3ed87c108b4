"""The ablation sweeps and judge-free measures on the tiny model and on synthetic activations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conva_tl.analysis import (
    answer_nll,
    answer_probe_readings,
    distinct_n,
    eps_summary,
    fit_layer_probes,
    gate_sweep,
    heldout_split,
    kl_to_base,
    layer_accuracy,
    layer_ranges,
    layer_settings,
    measure_method,
    pooled_perplexity,
    prepare_context,
    sample_unrelated,
    sweep_control_mode,
    sweep_data,
    sweep_layers,
    sweep_p0,
    train_size_sweep,
    transfer_table,
)
from conva_tl.datasets import load_unrelated
from conva_tl.errors import ConvaError
from conva_tl.gate import ActivationGate, PromptScoredGate, resolve_gate
from conva_tl.generate import GenerationConfig
from conva_tl.judge import Verdict
from conva_tl.methods import Base, ConVA
from conva_tl.probes import ValueVectors, fit_probes

VALUE = "security"
CFG = GenerationConfig(max_new_tokens=3, batch_size=4)
PROMPTS = [
    "What is the capital of France?",
    "Should I save my bonus or spend it on a holiday?",
    "Hi",
]


def make_vectors(
    model, *, scale: float = 1.0, bias: float = 0.0, layers=(1, 2), accuracy=None, seed=0
):
    g = torch.Generator().manual_seed(seed)
    n, d = model.cfg.n_layers, model.cfg.d_model
    acc = torch.linspace(0.6, 0.95, n) if accuracy is None else torch.tensor(accuracy)
    return ValueVectors(
        VALUE,
        torch.randn(n, d, generator=g) * scale,
        torch.full((n,), bias),
        acc,
        torch.ones(n),
        tuple(layers),
        torch.randn(n, d, generator=g),
        {},
    )


@pytest.fixture(scope="module")
def vectors(tiny):
    return make_vectors(tiny)


@pytest.fixture(scope="module")
def context(tiny, vectors):
    return prepare_context(tiny, vectors, n_questions=2, n_unrelated=3, batch_size=4)


# ---- measures ------------------------------------------------------------------------------


def test_distinct_n():
    assert distinct_n("the cat saw the cat saw the dog") == pytest.approx(4 / 7)
    assert distinct_n("a b c d") == 1.0
    assert distinct_n("loop loop loop loop", 2) == pytest.approx(1 / 3)
    assert math.isnan(distinct_n("one", 2))
    with pytest.raises(ConvaError):
        distinct_n("a b", 0)


def test_answer_nll_matches_a_manual_forward_and_is_batch_invariant(tiny):
    questions = ["Should I save?", "Hi", "What is the capital of France?"]
    answers = ["Paris is the capital.", "", "I locked the door"]
    nll, n = answer_nll(tiny, questions, answers, batch_size=2)
    assert n[1] == 0 and nll[1] == 0
    one, n_one = answer_nll(tiny, questions[2:], answers[2:], batch_size=1)
    torch.testing.assert_close(nll[2:], one, atol=1e-4, rtol=1e-5)
    assert torch.equal(n[2:], n_one)
    # manual: chat prompt + answer tokens, NLL of the answer tokens only
    from conva_tl.prompts import format_chat

    tok = tiny.tokenizer
    p = tok(format_chat(tok, questions[0]), add_special_tokens=False)["input_ids"]
    a = tok(answers[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = tiny(torch.tensor([p + a]), return_type="logits")
    logp = torch.log_softmax(logits[0, :-1].float(), -1)
    manual = -logp[torch.arange(len(p) - 1, len(p) + len(a) - 1), torch.tensor(a)].sum()
    assert int(n[0]) == len(a)
    torch.testing.assert_close(nll[0], manual, atol=1e-4, rtol=1e-5)
    assert pooled_perplexity(nll, n) == pytest.approx(math.exp(float(nll.sum()) / int(n.sum())))
    assert math.isnan(pooled_perplexity(torch.zeros(1), torch.zeros(1, dtype=torch.long)))
    with pytest.raises(ConvaError):
        answer_nll(tiny, questions, answers[:2])


def test_eps_summary():
    trace = pd.DataFrame(
        {"step": [0, 0, 1, 1], "eps": [2.0, 0.0, -1.0, 0.0], "p_before": [0.1, 0.9, 0.5, 0.7]}
    )
    s = eps_summary(trace)
    assert s["eps_abs"] == pytest.approx(0.75) and s["eps_abs_prompt"] == pytest.approx(1.0)
    assert s["eps_abs_generated"] == pytest.approx(0.5) and s["moved"] == pytest.approx(0.5)
    assert s["p_before"] == pytest.approx(0.55) and s["saturated"] == 0.0
    assert eps_summary(trace.assign(p_before=[0.001, 0.5, 0.999, 0.5]))["saturated"] == 0.5
    assert all(math.isnan(x) for x in eps_summary(trace.iloc[0:0]).values())


def test_kl_is_zero_when_nothing_is_steered(tiny, vectors):
    kl, gate = kl_to_base(tiny, PROMPTS, Base())
    assert gate is None and torch.equal(kl, torch.zeros(3))
    kl, _ = kl_to_base(tiny, PROMPTS, ConVA(vectors, p0=0.9, layers=()))
    assert torch.equal(kl, torch.zeros(3))
    closed = ActivationGate(
        VALUE, 1, torch.randn(tiny.cfg.d_model), 0.0, threshold=1.0
    )  # scores < 1: never opens
    kl, scores = kl_to_base(tiny, PROMPTS, ConVA(vectors, p0=0.99, gate=closed))
    assert scores is not None and scores.shape == (3,)
    assert torch.equal(kl, torch.zeros(3))
    kl, _ = kl_to_base(tiny, PROMPTS, ConVA(vectors, p0=0.99))
    assert (kl > 0).all()


def test_sample_unrelated_cycles_through_categories():
    cats = {p.prompt: p.category for p in load_unrelated()}
    first = sample_unrelated(16)
    assert len({cats[p] for p in first}) == 16
    assert len(sample_unrelated(None)) == len(cats) and sample_unrelated(3) == first[:3]


# ---- steering sweeps -----------------------------------------------------------------------


def test_measure_method_base_has_zero_kl_and_sane_measures(tiny, context, monkeypatch):
    import conva_tl.analysis.sweep_context as ab

    # the random tiny model stops at once; give it answers to measure
    scripted = ["I locked the door so my family could sleep safely. And then", "Hi hi hi hi hi hi"]
    monkeypatch.setattr(ab, "generate", lambda model, questions, **kw: scripted[: len(questions)])
    row, records = measure_method(tiny, context, Base(), config=CFG)
    assert row["setting"] == "base" and row["n"] == 2 and len(records) == 2
    assert row["kl_unrelated"] == 0.0 and row["kl_value"] == 0.0 and row["open_value"] == 0.0
    assert 0.0 <= row["p_v"] <= 1.0 and row["ppl"] > 1.0
    lg = answer_probe_readings(tiny, context.reference, [r["answer"] for r in records] + [" "])
    assert math.isnan(lg[2]) and records[0]["logit_v"] == pytest.approx(lg[0], abs=1e-5)
    assert records[0]["p_v"] == pytest.approx(1 / (1 + math.exp(-lg[0])))
    assert row["logit_v"] == pytest.approx(float(np.mean(lg[:2])), abs=1e-5)
    assert records[0]["answer"] == scripted[0].removesuffix(
        " And then"
    )  # trimmed as the evaluation does
    assert records[1]["distinct2"] == pytest.approx(1 / 5) and records[0]["distinct2"] == 1.0
    assert row["distinct2"] == pytest.approx(0.6) and row["words"] == pytest.approx((10 + 6) / 2)
    assert {"answer", "raw_answer", "p_v", "ppl", "distinct2", "qid"} <= set(records[0])
    assert "csr" not in row and "eps_abs" not in row
    # the evaluation runner's record keys: the same answer gets the same settings_id there
    from conva_tl.evaluation.answers import settings_hash
    from conva_tl.evaluation.conditions import method_settings

    assert records[0]["method"] == "base" and records[0]["hit_limit"] is True
    settings = method_settings(Base(), tiny, CFG)
    assert records[0]["settings_id"] == settings_hash(settings)
    assert records[0]["settings"] == settings  # the runner's record, plus the sweep's readings


def test_answer_record_keeps_its_fields_first_and_adds_the_callers():
    from conva_tl.evaluation.answers import answer_record

    own = dict(value="power", method="m", qid="q1", question="Q?", raw_answer="A. b")
    own |= dict(answer="A.", hit_limit=True, settings={"p0": 0.9}, settings_id="abc")
    rec = answer_record(**own, setting="p0=0.9", p_v=0.5)
    first = ["value", "method", "qid", "question", "answer", "raw_answer", "hit_limit"]
    assert list(rec) == [*first, "settings", "settings_id", "setting", "p_v"]
    assert rec["setting"] == "p0=0.9" and rec["p_v"] == 0.5 and rec["settings"] == {"p0": 0.9}
    own["settings"]["p0"] = 0.5  # the record holds its own copy of the settings
    assert rec["settings"] == {"p0": 0.9}


def test_sweep_p0_table_and_the_effect_of_p0(tiny):
    # P_V ~ sigmoid(5) = 0.993 everywhere: P0 0.9 moves nothing, P0 0.9999 moves every token
    vv = make_vectors(tiny, scale=1e-4, bias=5.0)
    ctx = prepare_context(tiny, vv, n_questions=2, n_unrelated=3)
    res = sweep_p0(tiny, {VALUE: ctx}, {VALUE: vv}, [0.9, 0.9999], config=CFG)
    t = res.table.set_index("setting")
    assert list(t.index) == ["base", "p0=0.9", "p0=0.9999"] and not res.judged
    assert math.isnan(t.loc["base", "p0"]) and t.loc["p0=0.9999", "p0"] == 0.9999
    assert t.loc["p0=0.9", "kl_unrelated"] == 0.0 and t.loc["p0=0.9", "kl_value"] == 0.0
    assert t.loc["p0=0.9999", "kl_unrelated"] > 0 and t.loc["p0=0.9999", "open_unrelated"] == 1.0
    assert len(res.answers) == 3 * 2
    assert res.answers.groupby("setting").size().eq(2).all()


def test_layer_settings_nest_and_respect_the_exclusion(tiny):
    acc = [0.5, 0.82, 0.87, 0.92, 0.96, 0.99, 0.97, 0.91, 0.93, 0.98]
    vv = ValueVectors(
        VALUE,
        torch.randn(10, 4),
        torch.zeros(10),
        torch.tensor(acc),
        torch.ones(10),
        (3,),
        torch.zeros(10, 4),
        {},
    )
    s = layer_settings(vv, (0.8, 0.85, 0.9, 0.95), threshold=0.9, exclude_last=5)
    assert s["best"]["layers"] == (4,)  # 0.99 at layer 5 is among the last 5
    assert s["acc>0.9"]["layers"] == (3, 4)
    assert s["acc>0.95"]["layers"] == (4,)
    assert (
        set(s["acc>0.95"]["layers"])
        <= set(s["acc>0.9"]["layers"])
        <= set(s["acc>0.85"]["layers"])
        <= set(s["acc>0.8"]["layers"])
    )
    assert s["acc>0.9 incl. last 5"]["layers"] == (3, 4, 5, 6, 7, 8, 9)
    assert layer_ranges((3, 4, 5, 9)) == "3-5,9" and layer_ranges(()) == "-"


def test_sweep_layers_measures_identical_layer_sets_once(tiny, monkeypatch):
    import conva_tl.analysis.sweep_context as sc

    vv = make_vectors(tiny, accuracy=[0.97, 0.97, 0.5, 0.95])
    ctx = prepare_context(tiny, vv, n_questions=2, n_unrelated=3)
    calls = []
    real = sc.measure_method
    monkeypatch.setattr(
        sc, "measure_method", lambda *a, **k: calls.append(k["setting"]) or real(*a, **k)
    )
    res = sweep_layers(
        tiny, {VALUE: ctx}, {VALUE: vv}, config=CFG, thresholds=(0.8, 0.95), exclude_last=2
    )
    t = res.table.set_index("setting")
    # best, acc>0.8, acc>0.9, acc>0.95 all select (0, 1) here: measured once
    assert t.loc["acc>0.8", "layers"] == "0-1" and t.loc["best", "layers"] == "0"
    assert t.loc["acc>0.9 incl. last 2", "layers"] == "0-1,3" and t.loc["base", "n_layers"] == 0
    assert calls == ["base", "best", "acc>0.8", "acc>0.9 incl. last 2"]
    cols = ["p_v", "kl_unrelated", "ppl"]
    assert t.loc[["acc>0.8", "acc>0.9", "acc>0.95"], cols].nunique(dropna=False).eq(1).all()


def test_sweep_control_mode_reports_eps(tiny, vectors, context):
    res = sweep_control_mode(tiny, {VALUE: context}, {VALUE: vectors}, config=CFG, p0=0.99)
    t = res.table.set_index("setting")
    assert list(t.index) == ["per_token", "per_prompt"]
    for col in ("eps_abs", "eps_abs_prompt", "eps_abs_generated", "moved"):
        assert (t[col] >= 0).all()
    assert (t["moved"] > 0).all()


def test_sweep_data_settings_and_where_the_gate_may_read(tiny, vectors, context, monkeypatch):
    import conva_tl.analysis.steering_sweeps as ss

    captured = {}

    def fake_run_settings(model, contexts, methods, **kw):
        captured.update(methods=methods, columns=kw["columns"])
        return ss.SweepResult(pd.DataFrame(), pd.DataFrame())

    monkeypatch.setattr(ss, "run_settings", fake_run_settings)
    sf = make_vectors(tiny, seed=1, layers=(0, 1, 2))
    gate = ActivationGate(VALUE, 1, torch.randn(tiny.cfg.d_model), 0.0)
    sweep_data(
        tiny, {VALUE: context}, {VALUE: vectors}, {VALUE: sf}, config=CFG, gates={VALUE: gate}
    )
    methods, cols = captured["methods"][VALUE], captured["columns"][VALUE]
    assert list(methods) == ["base", "pairs", "straightforward"]
    assert methods["pairs"].gate is gate  # block 1 reads before the first control layer (1)
    # block 1 would read layer 0's steered output: the gate is scored from the prompt text
    sf_gate = methods["straightforward"].gate
    assert isinstance(sf_gate, PromptScoredGate) and sf_gate.gate is gate
    assert methods["pairs"].name == "conva-pairs" and methods["straightforward"].name == "conva-sf"
    assert [cols[k]["n_layers"] for k in ("base", "pairs", "straightforward")] == [0, 2, 3]
    with pytest.raises(ConvaError, match="no value vectors"):
        sweep_data(tiny, {VALUE: context}, {VALUE: vectors}, {}, config=CFG)


def test_judge_labels_fill_csr_and_fr(tiny, vectors, context):
    class StubJudge:
        def judge_many(self, kind, items):
            labels = [True, None] if kind == "csr" else [False, True]
            return [Verdict(lab, "x", False) for lab in labels[: len(items)]]

    row, records = measure_method(
        tiny, context, ConVA(vectors, p0=0.9), config=CFG, judge=StubJudge()
    )
    assert row["csr"] == 1.0 and row["csr_unparsed"] == 1
    assert row["fr"] == 0.5 and row["fr_unparsed"] == 0
    assert records[0]["csr"] == 1.0 and math.isnan(records[1]["csr"])


def test_sweeps_need_vectors_for_every_value(tiny, vectors, context):
    with pytest.raises(ConvaError, match="no value vectors"):
        sweep_p0(tiny, {VALUE: context}, {}, [0.9], config=CFG)


# ---- gate sweep ----------------------------------------------------------------------------


def test_gate_sweep_is_monotone_and_matches_a_real_gated_run(tiny, vectors):
    gate = ActivationGate(
        VALUE, 1, torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(3)), 0.0
    )
    sets = {
        "value": PROMPTS[1:],
        "unrelated": [PROMPTS[0], "Translate 'cat' to French.", "List three fruits."],
    }
    res = gate_sweep(tiny, vectors, gate, [0.0, 0.3, 0.5, 0.7, 1.0], prompt_sets=sets, p0=0.99)
    t = res.table
    assert len(t) == 5 and {"open_value", "open_unrelated", "kl_value", "kl_unrelated"} <= set(
        t.columns
    )
    for col in ("open_value", "open_unrelated", "kl_value", "kl_unrelated"):
        assert t[col].is_monotonic_decreasing
    assert (
        t.iloc[-1][["open_value", "kl_value", "open_unrelated", "kl_unrelated"]] == 0
    ).all()  # g0 = 1: closed
    assert len(res.scores) == 5 and res.scores["score"].between(0, 1).all()
    # the AUROC is the share of (value, unrelated) prompt pairs the gate ranks correctly
    pos = res.scores[res.scores.set == "value"]["score"].to_numpy()
    neg = res.scores[res.scores.set == "unrelated"]["score"].to_numpy()
    diff = pos[:, None] - neg[None, :]
    ranked = float((diff > 0).mean() + 0.5 * (diff == 0).mean())
    assert len(res.auroc) == 1 and res.auroc["negatives"].iloc[0] == "unrelated"
    assert res.auroc["auroc"].iloc[0] == pytest.approx(ranked, abs=1e-12), ranked
    assert len(pos) == 2 and len(neg) == 3
    # kl(g0) from one open pass equals a real run with the gate at g0
    g0 = float(res.scores[res.scores.set == "unrelated"]["score"].median())
    kl, _ = kl_to_base(
        tiny, sets["unrelated"], ConVA(vectors, p0=0.99, gate=gate.with_threshold(g0))
    )
    analytic = (
        gate_sweep(tiny, vectors, gate, [g0], prompt_sets=sets, p0=0.99)
        .table["kl_unrelated"]
        .iloc[0]
    )
    assert analytic == pytest.approx(float(kl.mean()), abs=1e-6)
    with pytest.raises(ConvaError):
        gate_sweep(
            tiny, vectors, gate, [0.5], prompt_sets={"unrelated": PROMPTS}, positive_set="value"
        )


# ---- probe sweeps on synthetic activations -------------------------------------------------


def synthetic(n_pairs=30, n_layers=3, d=8, signal=(0.2, 1.0, 3.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    base = torch.randn(n_layers, n_pairs, d, generator=g)
    acts = torch.empty(n_layers, 2 * n_pairs, d)
    for layer, s in enumerate(signal):
        noise = torch.randn(2, n_pairs, d, generator=g) * 0.5
        acts[layer, 0::2] = base[layer] + noise[0] + s * direction / 2
        acts[layer, 1::2] = base[layer] + noise[1] - s * direction / 2
    labels = [1, 0] * n_pairs
    groups = [i for i in range(n_pairs) for _ in (0, 1)]
    return acts, labels, groups


def test_train_size_full_fraction_reproduces_fit_probes():
    acts, labels, groups = synthetic()
    full = fit_probes(acts, labels, groups, value=VALUE, test_size=0.2, seed=0, refit=False)
    released, _ = fit_layer_probes(acts, labels, np.arange(len(labels)))
    refit = fit_probes(acts, labels, groups, value=VALUE, test_size=0.2, seed=0)
    torch.testing.assert_close(
        released, refit.w, atol=1e-5, rtol=1e-4
    )  # the released vector refits on all
    df = train_size_sweep(
        acts,
        labels,
        groups,
        value=VALUE,
        fractions=(0.3, 0.6, 1.0),
        repeats=2,
        released_w=released,
        layers=[4, 7, 9],
    )
    assert len(df) == (2 + 2 + 1) * 3  # one draw at 100%
    assert set(df.layer) == {4, 7, 9} and df.accuracy.between(0, 1).all()
    at_full = df[df.fraction == 1.0].sort_values("layer")
    np.testing.assert_allclose(at_full.accuracy, full.accuracy.numpy(), atol=1e-6)
    np.testing.assert_allclose(at_full.cos_ref, 1.0, atol=1e-6)
    cos_full = torch.nn.functional.cosine_similarity(full.w.double(), released.double()).numpy()
    np.testing.assert_allclose(at_full.cos_released, cos_full, atol=1e-5)
    assert (df[df.fraction == 0.3].n_pairs == round(0.3 * 24)).all()
    # more data: the strong layer's vector is close to the full one
    strong = df[df.layer == 9].groupby("fraction").cos_ref.mean()
    assert strong.loc[0.6] > 0.5 and strong.is_monotonic_increasing
    with pytest.raises(ConvaError):
        train_size_sweep(acts, labels, groups, value=VALUE, fractions=(0.0,))


def test_heldout_split_keeps_pairs_together():
    groups = [i for i in range(20) for _ in (0, 1)]
    train, test = heldout_split(groups, test_size=0.2, seed=0)
    g = np.asarray(groups)
    assert not set(g[train]) & set(g[test]) and len(set(g[test])) == 4
    assert sorted(np.r_[train, test].tolist()) == list(range(40))


def test_transfer_table_identical_views_transfer_perfectly():
    acts, labels, groups = synthetic()
    other = acts.flip(-1)  # a different view of the same texts
    df = transfer_table(
        {
            "a": (acts, labels, groups),
            "b": (other, labels, groups),
            "a2": (acts.clone(), labels, groups),
        },
        layers=[0, 1, 2],
    )
    assert len(df) == 9 * 3 and set(df.train) == {"a", "b", "a2"}
    acc = df.set_index(["train", "test", "layer"])["accuracy"]
    for layer in range(3):
        assert acc[("a", "a2", layer)] == acc[("a", "a", layer)]
    assert acc[("a", "a", 2)] > 0.9
    w, b = fit_layer_probes(acts, labels, np.arange(len(labels)))
    assert w.shape == (3, 8) and layer_accuracy(w, b, acts, labels)[2] == 1.0


def test_resolve_gate_is_the_one_rule(tiny):
    gate = ActivationGate(VALUE, 2, torch.randn(tiny.cfg.d_model), 0.0)
    assert resolve_gate(gate, (2, 3)) is gate and resolve_gate(None, (0,)) is None
    assert resolve_gate(gate, ()) is gate
    scored = resolve_gate(gate, (1, 3), model=tiny)
    assert isinstance(scored, PromptScoredGate) and scored.threshold == gate.threshold
    with pytest.raises(ConvaError, match="pass model="):
        resolve_gate(gate, (1, 3))


def test_readings_on_values_is_one_pass_with_the_per_value_numbers(tiny, monkeypatch):
    import conva_tl.evaluation.scoring as scoring

    answers = ["I locked the door.", " ", "Should I save my bonus?"]
    probes = {"a": (make_vectors(tiny, seed=1), 1), "b": (make_vectors(tiny, seed=2), 2)}
    calls = []
    real = scoring.cache_resid_post

    def counting(*args, **kw):
        calls.append(kw["layers"])
        return real(*args, **kw)

    monkeypatch.setattr(scoring, "cache_resid_post", counting)
    got = scoring.readings_on_values(tiny, answers, probes)
    assert calls == [[1, 2]]  # one forward pass for both probes
    monkeypatch.setattr(scoring, "cache_resid_post", real)
    for name, (x, layer) in probes.items():
        want = answer_probe_readings(tiny, x, answers, layer=layer)
        np.testing.assert_allclose(got[name], want, atol=1e-5)
        assert np.isnan(got[name][1])
