"""Dataset generation: the paper's prompts, reply parsing, and resumable runs against a fake."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from fake_openai import (
    Drop,
    FakeOpenAI,
    Malformed,
    RecordedRequest,
    Reply,
    Status,
    fake_openai_fixture,  # noqa: F401 (provides the fake_openai fixture)
    numbered,
)

from conva_tl.datagen import generate_pairs, generate_straightforward, main_generate_data
from conva_tl.datagen_prompts import (
    BLOCK_VARIANTS,
    HIGHLIGHTS,
    negative_prompt,
    positive_prompt,
    straightforward_prompt,
)
from conva_tl.datasets import BLOCKS, DATA_DIR, load_pairs, load_straightforward
from conva_tl.errors import ApiError, DataError
from conva_tl.llm_api import ApiConfig, ChatClient
from conva_tl.reply_parsing import parse_items
from conva_tl.values import VALUES

KEY = "sk-datagen-SECRET-5555aaaa"
KEY_ENV = "CONVA_TEST_DATAGEN_KEY"

# Verbatim from the paper, Appendix B, Tab. 8 (security; placeholders filled).
SECURITY_FIRST_PERSON_SENTENCE = (
    'Create 25 distinct first-person sentence that exemplify the promotion and embodiment of the "security" '
    "facet of Schwartz's Theory of Basic Values. Each text should encompass a wide variety of themes and "
    'circumstances. The texts could showcase the "security" value through various characters\' actions, '
    "dialogues, and decisions, highlighting the importance of safety, stability, and harmony in both personal "
    'and broader contexts. Each text could end with a clear demonstration or result of the "security" value, '
    "providing a satisfying conclusion and reinforcing the theme."
)
# Tab. 8, stimulation: single quotes in the paper.
STIMULATION_THIRD_PERSON_QUESTION = (
    "Create 25 distinct third-person question that exemplify the promotion and embodiment of the 'stimulation' "
    "facet of Schwartz's Theory of Basic Values. Each text should encompass a wide variety of themes and "
    "circumstances. The texts could showcase the 'stimulation' value through various characters' actions, "
    "dialogues, and decisions, highlighting the importance of seeking novelty, embracing change, and pursuing "
    "excitement. Each text could end with a clear demonstration or result of the 'stimulation' value, providing "
    "a satisfying conclusion and reinforcing the theme."
)
PAIRING_POWER = (
    "Produce a corresponding sentence for each of the above sentences that expresses opposition and resistance "
    "to the 'power' aspect of Schwartz's basic values. The protagonist of the sentence should act in the "
    "opposite manner spontaneously. The generated sentences should strongly counter the original in terms of "
    "'power', but strive to maintain the same grammar and sentence structure as much as possible. The sentence "
    "should justify the protagonist's behavior, rather than implicitly express that the protagonist's behavior "
    "is wrong."
)


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


def make_client(server: FakeOpenAI, **overrides: object) -> ChatClient:
    fields: dict[str, object] = {
        "model": "gen-model",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "temperature": 1.0,
        "timeout_s": 2.0,
        "max_retries": 1,
        "backoff_s": 0.01,
        "backoff_max_s": 0.02,
    }
    fields.update(overrides)
    return ChatClient(ApiConfig(**fields))  # type: ignore[arg-type]


# --- prompts -------------------------------------------------------------------------


def test_pair_prompts_are_the_papers():
    assert positive_prompt("security", "first_person_sentence") == SECURITY_FIRST_PERSON_SENTENCE
    assert (
        positive_prompt("Stimulation", "third_person_question") == STIMULATION_THIRD_PERSON_QUESTION
    )
    assert negative_prompt("power") == PAIRING_POWER
    assert set(HIGHLIGHTS) == set(VALUES)
    for value in VALUES:
        for block, (pronounce, structure) in BLOCK_VARIANTS.items():
            p = positive_prompt(value, block)
            assert p.startswith(f"Create 25 distinct {pronounce} {structure} that exemplify")
            assert f"highlighting the importance of {HIGHLIGHTS[value]}. Each text" in p
            assert p.count(f'"{value}"') + p.count(f"'{value}'") == 3
    assert list(BLOCK_VARIANTS) == list(BLOCKS)
    assert positive_prompt("power", "first_person_sentence", 5, "One per line.").endswith(
        "theme.\n\nOne per line."
    )


def test_straightforward_prompts_are_the_papers():
    assert straightforward_prompt("security", 1) == (
        'Create 100 sentences that exemplify the promotion and embodiment of the "security" facet of '
        "Schwartz's Theory of Basic Values."
    )
    assert straightforward_prompt("self_direction", 0) == (
        'Create 100 sentences that communicate disagreement and resistance towards the "self-direction" facet '
        "of Schwartz's Theory of Basic Values."
    )
    with pytest.raises(DataError):
        straightforward_prompt("security", 2)


# --- parsing -------------------------------------------------------------------------

PARSE_CASES = [
    ("1. A.\n2. B.", ["A.", "B."]),
    ("1) First one.\n2) Second one.", ["First one.", "Second one."]),
    ("(1) First\n(2) Second", ["First", "Second"]),
    ("- dash item\n* star item\n\u2022 bullet item", ["dash item", "star item", "bullet item"]),
    (
        "Sure! Here are 2 sentences:\n\n1. One here.\n\n2. Two here.\n\nI hope these help!",
        ["One here.", "Two here."],
    ),
    (
        '1. "Quoted one."\n2. \u201cCurly two.\u201d\n3. "Period outside".',
        ["Quoted one.", "Curly two.", "Period outside."],
    ),
    ('1. "Stay safe," she said, "and call me."', ['"Stay safe," she said, "and call me."']),
    ("**1.** Bold number.\n2. **Bold text.**", ["Bold number.", "Bold text."]),
    (
        "1. A long item that\nwraps onto the next line.\n2. Short.",
        ["A long item that wraps onto the next line.", "Short."],
    ),
    ('```json\n["a b", "c d"]\n```', ["a b", "c d"]),
    ('Here is the JSON: ["x y", "z w"] as requested.', ["x y", "z w"]),
    ('{"sentences": ["x y", "z w"]}', ["x y", "z w"]),
    ('[{"text": "hello there"}, {"text": "bye now"}]', ["hello there", "bye now"]),
    ("Line one.\nLine two.\n\nLine three.", ["Line one.", "Line two.", "Line three."]),
    ("Here are the sentences:\nLine one.\n### Heading\nLine two.", ["Line one.", "Line two."]),
    ("1.   spaced   out   item  ", ["spaced out item"]),
    ("1. ok item\n2. ---\n3. ...", ["ok item"]),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_items(text, expected):
    assert parse_items(text) == expected


# --- a fake generator ----------------------------------------------------------------


def fake_generator(req: RecordedRequest, *, short_negatives: set[str] | None = None) -> Reply:
    """Plausible replies: numbered positives with prose around, negatives per positive."""
    prompt = req.last_user
    if prompt.startswith("Produce a corresponding sentence"):
        positives = parse_items(req.messages[1]["content"])
        negatives = [f"Instead, {p[0].lower()}{p[1:]} was declined." for p in positives]
        if short_negatives is not None and positives[0] in short_negatives:
            short_negatives.discard(positives[0])
            negatives = negatives[:-1]
        return Reply("Here are the opposites:\n\n" + numbered(negatives))
    m = re.match(r"Create (\d+) distinct (\S+) (\S+) that .*? of the [\"'](.+?)[\"'] facet", prompt)
    if m:
        n, pronounce, structure, value = int(m[1]), m[2], m[3], m[4]
        items = [f'"{value} {pronounce} {structure} number {i}."' for i in range(n)]
        return Reply(
            f"Sure! Here are {n} texts:\n\n" + numbered(items) + "\n\nLet me know if you need more."
        )
    m = re.match(r"Create (\d+) sentences that (exemplify|communicate)", prompt)
    if m:
        n, stance = int(m[1]), ("pro" if m[2] == "exemplify" else "contra")
        return Reply(json.dumps([f"{stance} sentence {i}" for i in range(n)]))
    return Reply("I do not understand.")


def test_generate_pairs_writes_the_shipped_schema_and_reruns_for_free(
    fake_openai, key_env, tmp_path
):
    fake_openai.responder = fake_generator
    out = tmp_path / "pairs" / "security.jsonl"
    pairs = generate_pairs("Security", make_client(fake_openai), out, n_per_block=3)
    assert len(pairs) == 12 and fake_openai.n_requests == 8
    assert [p.block for p in pairs] == [b for b in BLOCKS for _ in range(3)]
    assert pairs[0].positive == "security first-person sentence number 0."
    assert pairs[0].negative == "Instead, security first-person sentence number 0. was declined."
    assert [p.id for p in pairs[:2]] == ["security-pair-001", "security-pair-002"]

    shipped = json.loads((DATA_DIR / "pairs" / "security.jsonl").read_text().splitlines()[0])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(list(rec) == list(shipped) for rec in written)
    assert load_pairs(path=out) == pairs

    # the pairing call continues the conversation of its positives
    neg_req = next(r for r in fake_openai.requests if r.last_user.startswith("Produce"))
    roles = [m["role"] for m in neg_req.messages]
    assert roles == ["user", "assistant", "user"]
    assert neg_req.messages[1]["content"].startswith("1. security")

    calls = out.with_name("security.calls.jsonl")
    assert len(calls.read_text().splitlines()) == 8
    before = out.read_text()
    fake_openai.clear()
    assert generate_pairs("security", make_client(fake_openai), out, n_per_block=3) == pairs
    assert fake_openai.n_requests == 0 and out.read_text() == before


def test_a_negative_count_mismatch_is_asked_again(fake_openai, key_env, tmp_path, caplog):
    short = {"security third-person question number 0."}
    fake_openai.responder = lambda req: fake_generator(req, short_negatives=short)
    with caplog.at_level(logging.WARNING, logger="conva_tl.datagen"):
        pairs = generate_pairs(
            "security", make_client(fake_openai), tmp_path / "s.jsonl", n_per_block=3
        )
    assert len(pairs) == 12
    assert fake_openai.n_requests == 9
    assert (
        "security/negatives/third_person_question attempt 1: 2 negatives for 3 positives"
        in caplog.text
    )


def test_a_persistent_mismatch_fails_clearly(fake_openai, key_env, tmp_path):
    def always_short(req: RecordedRequest) -> Reply:
        reply = fake_generator(req)
        if (
            req.last_user.startswith("Produce")
            and "first-person question" in req.messages[1]["content"]
        ):
            return Reply("\n".join(reply.text.splitlines()[:-1]))
        return reply

    fake_openai.responder = always_short
    expected = r"security: no usable reply in 2 attempts \(negatives/first_person_question: 2 negatives for 3"
    with pytest.raises(DataError, match=expected):
        generate_pairs(
            "security",
            make_client(fake_openai),
            tmp_path / "s.jsonl",
            n_per_block=3,
            max_attempts=2,
        )
    assert not (tmp_path / "s.jsonl").exists()


def test_short_or_duplicate_positives_are_asked_again(fake_openai, key_env, tmp_path):
    state = {"first": True}

    def repetitive(req: RecordedRequest) -> Reply:
        if "third-person sentence" in req.last_user and state["first"]:
            state["first"] = False  # repeats a first-person text and a text of its own
            return Reply(
                numbered(["security first-person sentence number 1.", "Same one.", "same  one."])
            )
        return fake_generator(req)

    fake_openai.responder = repetitive
    pairs = generate_pairs(
        "security", make_client(fake_openai), tmp_path / "s.jsonl", n_per_block=3
    )
    assert len(pairs) == 12 and fake_openai.n_requests == 9
    texts = [t for p in pairs for t in (p.positive, p.negative)]
    assert len({t.lower() for t in texts}) == 24


def test_malformed_http_replies_are_retried_by_the_client(fake_openai, key_env, tmp_path):
    fake_openai.responder = fake_generator
    fake_openai.push(Malformed("not-json"), Status(429))
    pairs = generate_pairs(
        "security",
        make_client(fake_openai, max_retries=2, max_concurrency=1),
        tmp_path / "s.jsonl",
        n_per_block=2,
    )
    assert len(pairs) == 8 and fake_openai.n_requests == 10


def test_an_interrupted_run_resumes_without_repeating_finished_calls(key_env, tmp_path):
    out = tmp_path / "pairs" / "power.jsonl"
    dying = FakeOpenAI().start()
    seen = {"n": 0}

    def dies_after_two(req: RecordedRequest) -> Reply | Drop:
        seen["n"] += 1
        return fake_generator(req) if seen["n"] <= 2 else Drop()

    dying.responder = dies_after_two
    try:
        with pytest.raises(ApiError, match="connection error"):
            generate_pairs("power", make_client(dying, max_concurrency=1), out, n_per_block=3)
    finally:
        dying.stop()
    assert not out.exists()
    done_prompts = {r.last_user for r in dying.requests[:2]}
    assert len(out.with_name("power.calls.jsonl").read_text().splitlines()) == 2

    fresh = FakeOpenAI(responder=fake_generator).start()  # a new server, another port
    try:
        pairs = generate_pairs("power", make_client(fresh), out, n_per_block=3)
    finally:
        fresh.stop()
    assert len(pairs) == 12
    assert fresh.n_requests == 8 - 2
    assert not done_prompts & {
        r.last_user for r in fresh.requests if not r.last_user.startswith("Produce")
    }

    # same result as a run that was never interrupted
    reference = FakeOpenAI(responder=fake_generator).start()
    try:
        uninterrupted = generate_pairs(
            "power", make_client(reference), tmp_path / "ref" / "power.jsonl", n_per_block=3
        )
    finally:
        reference.stop()
    assert uninterrupted == pairs


def test_a_store_line_cut_by_a_kill_is_redone(fake_openai, key_env, tmp_path, caplog):
    fake_openai.responder = fake_generator
    out = tmp_path / "s.jsonl"
    generate_pairs("security", make_client(fake_openai, max_concurrency=1), out, n_per_block=2)
    calls = out.with_name("s.calls.jsonl")
    data = calls.read_bytes()
    calls.write_bytes(data[: len(data) - 20])  # the last stored reply was being written
    fake_openai.clear()
    with caplog.at_level(logging.WARNING):
        generate_pairs("security", make_client(fake_openai), out, n_per_block=2)
    assert "truncated last line" in caplog.text
    assert fake_openai.n_requests == 1


def test_generate_straightforward(fake_openai, key_env, tmp_path):
    fake_openai.responder = fake_generator
    out = tmp_path / "straightforward" / "hedonism.jsonl"
    sents = generate_straightforward("hedonism", make_client(fake_openai), out, n_per_label=4)
    assert fake_openai.n_requests == 2
    assert [s.label for s in sents] == [1] * 4 + [0] * 4
    assert sents[0].text == "pro sentence 0" and sents[4].text == "contra sentence 0"
    assert [s.id for s in sents[:2]] == ["hedonism-sf-001", "hedonism-sf-002"]
    shipped = json.loads(
        (DATA_DIR / "straightforward" / "hedonism.jsonl").read_text().splitlines()[0]
    )
    assert all(list(json.loads(line)) == list(shipped) for line in out.read_text().splitlines())
    assert load_straightforward(path=out) == sents
    prompts = sorted(r.last_user for r in fake_openai.requests)
    assert prompts == sorted(
        [straightforward_prompt("hedonism", 1, 4), straightforward_prompt("hedonism", 0, 4)]
    )


def test_too_few_sentences_fail_after_the_attempts(fake_openai, key_env, tmp_path):
    fake_openai.responder = lambda req: Reply("1. only one sentence here.")
    with pytest.raises(
        DataError, match=r"in 2 attempts \(straightforward/positive: 1 new items, need 4; straight"
    ):
        generate_straightforward(
            "hedonism",
            make_client(fake_openai),
            tmp_path / "h.jsonl",
            n_per_label=4,
            max_attempts=2,
        )
    assert fake_openai.n_requests == 4


# --- CLI -----------------------------------------------------------------------------


def test_cli_generates_both_kinds_and_leaks_no_key(fake_openai, key_env, tmp_path, caplog, capsys):
    fake_openai.responder = fake_generator
    caplog.set_level(logging.DEBUG)
    argv = [
        "--value",
        "tradition",
        "--kind",
        "both",
        "--out",
        str(tmp_path / "data"),
        "--n",
        "2",
        "--base-url",
        fake_openai.base_url,
        "--model",
        "gen-model",
        "--api-key-env",
        KEY_ENV,
        "--format-hint",
    ]
    assert main_generate_data(argv) == 0
    assert len(load_pairs(path=tmp_path / "data" / "pairs" / "tradition.jsonl")) == 8
    assert (
        len(load_straightforward(path=tmp_path / "data" / "straightforward" / "tradition.jsonl"))
        == 4
    )
    assert fake_openai.n_requests == 10
    assert all(r.header("Authorization") == f"Bearer {KEY}" for r in fake_openai.requests)
    assert all(r.body["temperature"] == 1.0 for r in fake_openai.requests)
    assert all(
        r.last_user.endswith("one item per line, and nothing else.") for r in fake_openai.requests
    )
    captured = capsys.readouterr()
    assert KEY not in caplog.text + captured.out + captured.err
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(files) == 4  # two data files, two call stores
    assert all(KEY not in p.read_text(encoding="utf-8") for p in files)


def test_cli_reports_failures_with_exit_code_1(fake_openai, key_env, tmp_path, caplog):
    fake_openai.responder = lambda req: Status(500)
    argv = [
        "--value",
        "power",
        "--kind",
        "pairs",
        "--out",
        str(tmp_path),
        "--n",
        "2",
        "--max-retries",
        "0",
        "--base-url",
        fake_openai.base_url,
        "--model",
        "m",
        "--api-key-env",
        KEY_ENV,
    ]
    assert main_generate_data(argv) == 2  # the exit code of every conva subcommand's errors
    assert "HTTP 500" in caplog.text
    assert (
        main_generate_data(
            ["--value", "wealth", "--out", str(tmp_path), "--model", "m", "--api-key-env", KEY_ENV]
        )
        == 2
    )
    assert "unknown value" in caplog.text
    with pytest.raises(SystemExit):
        main_generate_data(["--kind", "pairs"])
