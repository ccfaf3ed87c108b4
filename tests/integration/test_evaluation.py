"""The evaluation harness end to end on the embedded model, judged by a local fake server."""

from __future__ import annotations

import pandas as pd
from fake_openai import RecordedRequest, Reply, fake_openai_fixture  # noqa: F401

from conva_tl.datasets import contrast_set, load_questions, load_unrelated
from conva_tl.evaluation import run_comparison
from conva_tl.gate import fit_gate
from conva_tl.generate import GenerationConfig
from conva_tl.identify import identify
from conva_tl.judge import Judge
from conva_tl.llm_api import ApiConfig, ChatClient

VALUE = "security"
KEY_ENV = "CONVA_TEST_EVAL_KEY"


def judge_reply(req: RecordedRequest) -> Reply:
    return (
        Reply("Yes")
        if "Assign one of 2 different labels" in req.last_user
        else Reply("True. It is fluent.")
    )


def test_comparison_writes_table_and_figure(embedded, tmp_path, fake_openai, monkeypatch):
    # Small but real artifacts: probes from 16 pairs (layers 0-24: the last 5 are never
    # controlled), a gate from 10 + 20 prompts.
    vv = identify(
        embedded,
        [VALUE],
        data={VALUE: contrast_set(VALUE).subset(range(16))},
        layers=list(range(25)),
        batch_size=16,
    )[VALUE]
    gate = fit_gate(
        embedded,
        VALUE,
        vectors=vv,
        positives=[q.question for q in load_questions(VALUE, split="gate")[:10]],
        negatives=[p.prompt for p in load_unrelated()[:20]],
    )
    fake_openai.responder = judge_reply
    monkeypatch.setenv(KEY_ENV, "sk-test")
    config = ApiConfig(
        model="judge", base_url=fake_openai.base_url, api_key_env=KEY_ENV, max_retries=0
    )
    judge = Judge(ChatClient(config), tmp_path / "judge.jsonl")

    result = run_comparison(
        embedded,
        [VALUE],
        ["base", "conva"],
        tmp_path,
        vectors={VALUE: vv},
        gates={VALUE: gate},
        questions_per_value=2,
        judge=judge,
        config=GenerationConfig(max_new_tokens=16, batch_size=2),
    )

    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.method) == ["base", "conva"] and (table.n == 2).all()
    assert (table.csr == 1.0).all() and (table.fr == 1.0).all() and (table.csr_unparsed == 0).all()
    assert table.p_v.between(0, 1).all() and (table.words > 3).all()
    assert all(len(r["raw_answer"].split()) >= 5 for r in result.records)
    text = (tmp_path / "table.txt").read_text()
    assert "control success rate (CSR)" in text and "fluency rate (FR)" in text
    assert (tmp_path / "comparison.png").stat().st_size > 5000
    # one request per distinct prompt: CSR shows question and answer, FR only the answer
    csr = {(r["question"], r["answer"]) for r in result.records}
    fr = {r["answer"] for r in result.records}
    assert fake_openai.n_requests == len(csr) + len(fr)
