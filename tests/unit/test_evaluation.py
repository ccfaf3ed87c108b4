"""The evaluation harness on the tiny model: storage and resume, judging, capability, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from fake_openai import FakeOpenAI, RecordedRequest, Reply, fake_openai_fixture  # noqa: F401

import conva_tl.evaluation.conditions as conditions
import conva_tl.evaluation.runner as runner
from conva_tl.datasets import MCQuestion, load_mc, load_questions
from conva_tl.errors import ConvaError, DataError
from conva_tl.evaluation import (
    AnswerStore,
    answer_start_logprobs,
    build_method,
    letter_token_ids,
    main_evaluate,
    mc_accuracy,
    mc_prompt,
    next_token_kl,
    opposite_prompt,
    run_capability,
    run_comparison,
    run_priority,
    trim_answer,
)
from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig
from conva_tl.judge import Judge
from conva_tl.llm_api import ApiConfig, ChatClient
from conva_tl.methods import ConVA
from conva_tl.probes import ValueVectors

VALUE = "security"
KEY_ENV = "CONVA_TEST_EVAL_KEY"
CFG = GenerationConfig(max_new_tokens=2, batch_size=2)


@pytest.fixture(scope="module")
def vectors(tiny) -> dict[str, ValueVectors]:
    g = torch.Generator().manual_seed(0)
    n, d = tiny.cfg.n_layers, tiny.cfg.d_model
    vv = ValueVectors(
        VALUE,
        torch.randn(n, d, generator=g),
        torch.zeros(n),
        torch.linspace(0.6, 0.9, n),
        torch.ones(n),
        (1, 2),
        torch.randn(n, d, generator=g),
        {},
    )
    return {VALUE: vv}


@pytest.fixture(scope="module")
def gates(tiny) -> dict[str, ActivationGate]:
    g = torch.Generator().manual_seed(1)
    return {VALUE: ActivationGate(VALUE, 1, torch.randn(tiny.cfg.d_model, generator=g), 0.0, 0.5)}


class CountingGenerate:
    """Wraps the real generate(); optionally raises on one call to simulate a kill mid-run."""

    def __init__(self, raise_on: int | None = None, script: bool = False) -> None:
        self.calls, self.raise_on, self.script = 0, raise_on, script
        self.real = runner.generate

    def __call__(self, model, questions, **kwargs):
        self.calls += 1
        if self.calls == self.raise_on:
            raise KeyboardInterrupt("simulated kill")
        if self.script:
            return [f"{kwargs['intervention'].name}: reply {q[:12]} and more" for q in questions]
        return self.real(model, questions, **kwargs)


# --- post-processing and storage ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "trimmed"),
    [
        (
            "Keep the savings. A fund is a safety net. But if you",
            "Keep the savings. A fund is a safety net.",
        ),
        ("1. Save.\n2.", "1. Save."),
        ("Save it!", "Save it!"),
        ('He said "stay."', 'He said "stay."'),
        ("no sentence end at all", "no sentence end at all"),
        ("  ", ""),
        ("Option one\nOption two is", "Option one"),
    ],
)
def test_trim_answer_is_one_rule(raw, trimmed):
    assert trim_answer(raw) == trimmed
    assert trim_answer(raw, hit_limit=False) == raw.strip()  # ended on its own: kept whole


def _rec(qid: str, **extra) -> dict:
    return {
        "value": VALUE,
        "method": "base",
        "qid": qid,
        "settings_id": "s",
        "answer": "a",
        **extra,
    }


def test_store_drops_a_truncated_last_line_and_rejects_corruption(tmp_path):
    path = tmp_path / "answers.jsonl"
    AnswerStore(path).extend([_rec("q1"), _rec("q2")])
    with path.open("a") as fh:
        fh.write('{"value": "security", "method": "ba')  # a kill during a write
    store = AnswerStore(path)
    assert len(store) == 2 and path.read_text().endswith("}\n")
    store.extend([_rec("q3")])
    assert len(AnswerStore(path)) == 3
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(DataError, match=":1: not an answer record"):
        AnswerStore(path)


def test_killed_run_resumes_without_recomputing(tiny, vectors, gates, tmp_path, monkeypatch):
    kw = dict(vectors=vectors, gates=gates, questions_per_value=3, config=CFG)
    methods = ["base", "conva"]  # 2 batches each (3 questions, batch 2): 4 batches
    first = CountingGenerate(raise_on=3)
    monkeypatch.setattr(runner, "generate", first)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(tiny, [VALUE], methods, tmp_path, **kw)
    stored = AnswerStore(tmp_path / "answers.jsonl").records()
    assert [(r["method"], r["qid"]) for r in stored] == [
        ("base", "security-q-001"),
        ("base", "security-q-002"),
        ("base", "security-q-003"),
    ]

    second = CountingGenerate()
    monkeypatch.setattr(runner, "generate", second)
    result = run_comparison(tiny, [VALUE], methods, tmp_path, **kw)
    assert second.calls == 2  # only conva's two batches
    assert len(result.records) == 6 and result.timing["answers"] == 3.0
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(x)["settings"]["trim"] for x in lines)

    third = CountingGenerate()
    monkeypatch.setattr(runner, "generate", third)
    again = run_comparison(tiny, [VALUE], methods, tmp_path, **kw)
    assert third.calls == 0
    assert [r["answer"] for r in again.records] == [r["answer"] for r in result.records]
    # other settings (P0) are not reused: only conva is regenerated, the old answers stay on disk
    fourth = CountingGenerate()
    monkeypatch.setattr(runner, "generate", fourth)
    run_comparison(tiny, [VALUE], methods, tmp_path, **{**kw, "config": CFG}, p0=0.8)
    assert fourth.calls == 2 and len(AnswerStore(tmp_path / "answers.jsonl")) == 9


def test_stored_answers_match_a_direct_generation(tiny, vectors, gates, tmp_path):
    result = run_comparison(
        tiny,
        [VALUE],
        ["conva-nogate"],
        tmp_path,
        vectors=vectors,
        gates=gates,
        questions_per_value=2,
        config=GenerationConfig(max_new_tokens=4, batch_size=2),
    )
    from conva_tl.generate import generate

    qs = [q.question for q in load_questions(VALUE, split="eval")[:2]]
    direct = generate(
        tiny, qs, intervention=ConVA(vectors[VALUE], p0=0.9, name="conva-nogate"), max_new_tokens=4
    )
    assert [r["raw_answer"] for r in result.records] == direct
    assert [r["answer"] for r in result.records] == [
        trim_answer(a, hit_limit=r["hit_limit"])
        for a, r in zip(direct, result.records, strict=True)
    ]


# --- judging -----------------------------------------------------------------------------

QS = [q.question for q in load_questions(VALUE, split="eval")[:3]]
CSR_REPLY = {QS[0]: "Yes", QS[1]: "No, Bob stays neutral.", QS[2]: "Hard to say, honestly."}


def scripted_judge(req: RecordedRequest) -> Reply:
    prompt = req.last_user
    if "Assign one of 2 different labels" in prompt:
        return Reply(next(r for q, r in CSR_REPLY.items() if q in prompt))
    if 'Bob: "base:' in prompt:
        return Reply("True")
    if 'Bob: "conva:' in prompt:
        return Reply("False. The verb is missing.")
    return Reply("I cannot decide.")


def make_judge(server: FakeOpenAI, path: Path, monkeypatch: pytest.MonkeyPatch) -> Judge:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    config = ApiConfig(
        model="judge", base_url=server.base_url, api_key_env=KEY_ENV, max_retries=0, timeout_s=5.0
    )
    return Judge(ChatClient(config), path)


def test_csr_and_fr_aggregate_scripted_replies(
    tiny, vectors, gates, tmp_path, fake_openai, monkeypatch
):
    fake_openai.responder = scripted_judge
    monkeypatch.setattr(runner, "generate", CountingGenerate(script=True))
    judge = make_judge(fake_openai, tmp_path / "judge.jsonl", monkeypatch)
    kw = dict(vectors=vectors, gates=gates, questions_per_value=3, config=CFG, judge=judge)
    result = run_comparison(tiny, [VALUE], ["base", "conva", "ica"], tmp_path, **kw)
    t = result.table.set_index("method")
    assert t.loc["base", "n"] == 3
    assert (t["csr"] == 0.5).all() and (t["csr_unparsed"] == 1).all()  # Yes, No, unparseable
    assert t.loc["base", "fr"] == 1.0 and t.loc["conva", "fr"] == 0.0
    assert (
        pd.isna(t.loc["ica", "fr"])
        and t.loc["ica", "fr_unparsed"] == 3
        and t.loc["base", "fr_unparsed"] == 0
    )
    assert t["p_v"].between(0, 1).all() and t["words"].gt(0).all()
    n_requests = fake_openai.n_requests
    assert n_requests == 2 * 9  # CSR and FR for 9 answers
    # rerun: nothing generated, nothing requested, same table
    counter = CountingGenerate(script=True)
    monkeypatch.setattr(runner, "generate", counter)
    again = run_comparison(
        tiny,
        [VALUE],
        ["base", "conva", "ica"],
        tmp_path,
        **{**kw, "judge": make_judge(fake_openai, tmp_path / "judge.jsonl", monkeypatch)},
    )
    assert counter.calls == 0 and fake_openai.n_requests == n_requests
    pd.testing.assert_frame_equal(again.table, result.table)
    written = pd.read_csv(tmp_path / "results.csv")
    assert list(written.columns[:7]) == [
        "value",
        "method",
        "n",
        "csr",
        "csr_unparsed",
        "fr",
        "fr_unparsed",
    ]
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert "unparseable judge labels" in (tmp_path / "table.txt").read_text()


def test_offline_run_reports_judge_free_measures(tiny, vectors, gates, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "generate", CountingGenerate(script=True))
    result = run_priority(
        tiny, [VALUE], tmp_path, vectors=vectors, gates=gates, questions_per_value=2, config=CFG
    )
    assert not result.judged and "csr" not in result.table.columns
    assert (
        "--base-url URL --judge-model NAME" in result.notice and "OPENAI_API_KEY" in result.notice
    )
    assert {"p_v", "words", "distinct"} <= set(result.table.columns)
    assert list(result.table.method) == list(conditions.PRIORITY_METHODS)
    assert (tmp_path / "priority.png").is_file() and "No judge configured" in (
        tmp_path / "table.txt"
    ).read_text()
    prompts = {r["method"]: r["settings"]["prompt"]["user"] for r in result.records}
    assert prompts["conva-opposite"] == opposite_prompt(VALUE, "{question}")
    assert "high level of security" in prompts["conva-ica"]


def test_priority_and_straightforward_methods(tiny, vectors, gates):
    text = opposite_prompt(VALUE, "Q?")
    assert (
        "low level of security" in text
        and "high level of self-direction" in text
        and text.endswith("Q?")
    )
    assert build_method("opposite", VALUE).fwd_hooks(tiny, None) == []
    with pytest.raises(ConvaError, match="straightforward"):
        build_method("conva-sf", VALUE, vectors=vectors[VALUE], gate=gates[VALUE])
    # straightforward vectors controlling layer 0 sit before the gate's block: the gate is scored from text
    sf = build_method(
        "conva-sf",
        VALUE,
        model=tiny,
        gate=gates[VALUE],
        straightforward_vectors=vectors[VALUE].with_layers([0, 1]),
    )
    assert isinstance(sf.gate, conditions.PromptScoredGate)
    with pytest.raises(ConvaError, match="unknown method"):
        build_method("sft", VALUE)


# --- capability ----------------------------------------------------------------------------


def test_mc_scoring_matches_a_plain_forward(tiny, tmp_path):
    csv = tmp_path / "tiny_test.csv"
    csv.write_text(
        "Capital of France?,Rome,Paris,Oslo,Bern,B\n2+2?,3,5,4,22,C\nRed planet?,Mars,Venus,Earth,Moon,A\n"
    )
    qs = load_mc(csv)
    assert qs[0] == MCQuestion("tiny", "Capital of France?", ("Rome", "Paris", "Oslo", "Bern"), "B")
    letters = letter_token_ids(tiny.tokenizer)
    assert len(letters) == 4 and all(letters)
    res = mc_accuracy(tiny, qs, batch_size=2)
    from conva_tl.prompts import format_chat

    expected = []
    for q in qs:  # one prompt at a time, no padding, no hooks
        ids = tiny.tokenizer(
            format_chat(tiny.tokenizer, mc_prompt(q)), return_tensors="pt", add_special_tokens=False
        ).input_ids
        with torch.inference_mode():
            lp = torch.log_softmax(tiny(ids, return_type="logits")[0, -1].float(), -1)
        expected.append("ABCD"[int(torch.stack([lp[i].max() for i in letters]).argmax())])
    assert res["accuracy"] == pytest.approx(
        sum(e == q.answer for e, q in zip(expected, qs, strict=True)) / 3
    )
    assert 0.0 < res["p_correct"] < 1.0 and res["gate_scores"] is None


def test_kl_is_zero_for_base_and_positive_for_always_on_steering(tiny, vectors, gates):
    prompts = ["What is the capital of France?", "Hi", "The quick brown fox?"]
    base, _ = answer_start_logprobs(tiny, prompts, batch_size=2)
    base2, _ = answer_start_logprobs(tiny, prompts, batch_size=3)
    assert next_token_kl(base, base2).max() < 1e-5
    steered, _ = answer_start_logprobs(tiny, prompts, ConVA(vectors[VALUE], p0=0.999), batch_size=2)
    assert (next_token_kl(base, steered) > 1e-4).all()
    closed = gates[VALUE].with_threshold(1.0)  # sigmoid never exceeds 1: never opens
    gated, scores = answer_start_logprobs(
        tiny, prompts, ConVA(vectors[VALUE], p0=0.999, gate=closed)
    )
    assert next_token_kl(base, gated).max() < 1e-5
    assert (
        scores is not None and scores.shape == (3,) and bool(((scores >= 0) & (scores <= 1)).all())
    )


def test_run_capability_writes_tables_and_histogram(tiny, vectors, gates, tmp_path):
    res = run_capability(
        tiny,
        [VALUE],
        tmp_path,
        vectors=vectors,
        gates=gates,
        mc_limit=4,
        unrelated_limit=4,
        value_questions=3,
        batch_size=4,
    )
    assert list(res.mc.method) == ["base", "conva", "conva-nogate"]
    kl = res.kl.set_index(["method", "set"])
    assert (kl.xs("conva-nogate")["gate_open"] == 1.0).all()
    assert (kl.xs("conva-nogate")["kl_mean"] > 0).all()
    assert set(res.gate["set"]) == {"value", "mc", "unrelated"}
    for key in ("mc", "kl", "gate", "table", "figure"):
        assert res.paths[key].is_file(), key


# --- command line -------------------------------------------------------------------------


def test_cli_comparison_offline_then_judged(
    tiny, vectors, gates, tmp_path, fake_openai, monkeypatch, capsys
):
    import conva_tl.model
    import conva_tl.store
    from conva_tl.artifacts import save_gates, save_vectors

    monkeypatch.setattr(conva_tl.model, "load_model", lambda name=None, device=None: tiny)
    # vectors with no recorded fit settings: evaluate must use them as they are, never refit
    folder = save_gates(save_vectors(tmp_path / "vecs", vectors.values()), gates.values())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(
        conva_tl.store.ArtifactStore, "fit", lambda *a, **k: pytest.fail("refitted")
    )
    monkeypatch.delenv("CONVA_JUDGE_MODEL", raising=False)
    monkeypatch.setattr(runner, "generate", CountingGenerate(script=True))
    argv = [
        "comparison",
        "--values",
        VALUE,
        "--methods",
        "base",
        "conva",
        "--questions",
        "3",
        "--max-new-tokens",
        "2",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path),
        "--vectors",
        str(folder),
    ]
    assert main_evaluate(argv) == 0
    out = capsys.readouterr().out
    assert (
        "No judge configured" in out and "csr" not in pd.read_csv(tmp_path / "results.csv").columns
    )
    fake_openai.responder = scripted_judge
    monkeypatch.setenv(KEY_ENV, "sk-test")
    assert (
        main_evaluate(
            [
                *argv,
                "--base-url",
                fake_openai.base_url,
                "--model",
                "judge",
                "--api-key-env",
                KEY_ENV,
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "results.csv").set_index("method")
    assert table.loc["base", "fr"] == 1.0 and table.loc["conva", "csr"] == 0.5
    assert (tmp_path / "judge_cache.jsonl").is_file()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main_evaluate(["comparison", "--values", "nonsense", "--out", str(tmp_path)]) == 2
    cap = [
        "capability",
        "--values",
        VALUE,
        "--mc-limit",
        "2",
        "--unrelated-limit",
        "2",
        "--questions",
        "2",
        "--out",
        str(tmp_path / "cap"),
        "--vectors",
        str(folder),
    ]
    assert main_evaluate(cap) == 0
    assert "Multiple-choice accuracy" in capsys.readouterr().out
    assert (tmp_path / "cap" / "gate_scores.png").is_file()


def test_one_judge_builder_for_evaluate_and_the_ablations(tmp_path, fake_openai, monkeypatch):
    from conva_tl.analysis.ablation_setup import make_judge as ablation_judge
    from conva_tl.judge import judge_from_options

    monkeypatch.delenv("CONVA_JUDGE_MODEL", raising=False)
    assert judge_from_options(None) is None and ablation_judge(None) is None
    monkeypatch.setenv(KEY_ENV, "sk-test")
    judge = ablation_judge(
        "judge-x", base_url=fake_openai.base_url, api_key_env=KEY_ENV, cache=tmp_path / "j.jsonl"
    )
    assert isinstance(judge, Judge) and judge.model == "judge-x"
    monkeypatch.setenv("CONVA_JUDGE_MODEL", "judge-env")
    assert (
        judge_from_options(None, base_url=fake_openai.base_url, api_key_env=KEY_ENV).model
        == "judge-env"
    )
