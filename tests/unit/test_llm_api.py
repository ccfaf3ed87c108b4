"""ChatClient, ApiConfig and JsonlStore against a real local HTTP fake of the API."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

import openai._base_client
import pytest
from fake_openai import (
    Delay,
    Drop,
    FakeOpenAI,
    Malformed,
    RecordedRequest,
    Reply,
    Status,
    fake_openai_fixture,  # noqa: F401 (provides the fake_openai fixture)
)

from conva_tl.errors import ApiError, ConvaError, DataError
from conva_tl.llm_api import (
    ApiConfig,
    ApiConfigError,
    ChatClient,
    JsonlStore,
    as_messages,
    request_key,
)

KEY = "sk-test-SECRET-0123456789abcdef"
KEY_ENV = "CONVA_TEST_API_KEY"


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


@pytest.fixture(autouse=True)
def fast_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the openai SDK's retry backoff (0.5 s to 8 s) so retry tests stay fast.

    Retry-After is still honoured: the SDK returns it before using these constants.
    """
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.001)
    monkeypatch.setattr(openai._base_client, "MAX_RETRY_DELAY", 0.005)


def retry_counts(server: FakeOpenAI) -> list[str | None]:
    """The SDK's ``x-stainless-retry-count`` header of each request the server saw."""
    return [r.header("x-stainless-retry-count") for r in server.requests]


def make_client(server: FakeOpenAI, **overrides: object) -> ChatClient:
    fields: dict[str, object] = {
        "model": "fake-judge",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
    }
    fields.update(overrides)
    return ChatClient(ApiConfig(**fields))  # type: ignore[arg-type]


# --- ApiConfig ---------------------------------------------------------------------


def test_config_round_trips_through_json_and_holds_no_key(key_env):
    cfg = ApiConfig(
        model="gpt-4o", base_url="http://localhost:8000/v1", api_key_env=key_env, max_tokens=64
    )
    text = json.dumps(cfg.to_dict())
    assert KEY not in text
    assert ApiConfig.from_dict(json.loads(text)) == cfg
    with pytest.raises(ApiConfigError, match="unknown ApiConfig fields"):
        ApiConfig.from_dict({"model": "m", "api_key": KEY})


@pytest.mark.parametrize(
    "bad",
    [
        {"model": " "},
        {"model": "m", "base_url": "localhost:8000"},
        {"model": "m", "base_url": "https://user:secret@host/v1"},
        {"model": "m", "api_key_env": "sk-abc-123"},
        {"model": "m", "temperature": 3.0},
        {"model": "m", "max_tokens": 0},
        {"model": "m", "timeout_s": 0.0},
        {"model": "m", "max_retries": -1},
        {"model": "m", "max_concurrency": 0},
    ],
)
def test_config_rejects_bad_fields(bad):
    with pytest.raises(ApiConfigError) as err:
        ApiConfig(**bad)
    assert isinstance(err.value, ConvaError) and isinstance(err.value, ValueError)
    assert "secret" not in str(err.value) and "sk-abc" not in str(err.value)


def test_from_env_reads_documented_variables():
    env = {
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "CONVA_JUDGE_MODEL": "judge-x",
        "CONVA_API_KEY_ENV": "MY_KEY",
        "CONVA_API_TEMPERATURE": "0.5",
        "CONVA_API_MAX_TOKENS": "16",
        "CONVA_API_TIMEOUT_S": "7",
        "CONVA_API_MAX_RETRIES": "2",
        "CONVA_API_BACKOFF_S": "0.25",
        "CONVA_API_MAX_CONCURRENCY": "8",
    }
    cfg = ApiConfig.from_env(environ=env)
    assert cfg == ApiConfig(
        model="judge-x",
        base_url="http://127.0.0.1:9/v1",
        api_key_env="MY_KEY",
        temperature=0.5,
        max_tokens=16,
        timeout_s=7.0,
        max_retries=2,
        backoff_s=0.25,
        max_concurrency=8,
    )
    # explicit options win over the environment
    assert ApiConfig.from_env(model="other", base_url="http://h/v1", environ=env).model == "other"
    assert ApiConfig.from_env(model="m", environ={}).base_url is None
    with pytest.raises(ApiConfigError, match="CONVA_DATAGEN_MODEL"):
        ApiConfig.from_env(model_env="CONVA_DATAGEN_MODEL", environ={})
    with pytest.raises(ApiConfigError, match="CONVA_API_MAX_RETRIES"):
        ApiConfig.from_env(environ={**env, "CONVA_API_MAX_RETRIES": "many"})


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ApiError, match=KEY_ENV):
        ChatClient(ApiConfig(model="m", api_key_env=KEY_ENV))


def test_messages_are_validated_and_keys_are_stable():
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    with pytest.raises(ApiConfigError):
        as_messages([])
    with pytest.raises(ApiConfigError, match="role"):
        as_messages([{"role": "robot", "content": "x"}])
    cfg = ApiConfig(model="m")
    k = request_key(cfg, "hi")
    assert k == request_key(cfg, [{"role": "user", "content": "hi"}]) and len(k) == 64
    assert k != request_key(ApiConfig(model="m2"), "hi")
    assert k != request_key(ApiConfig(model="m", temperature=1.0), "hi")
    assert k != request_key(cfg, "hi!")
    assert k != request_key(cfg, "hi", salt="attempt 1")


# --- complete ------------------------------------------------------------------------


def test_complete_sends_model_messages_temperature_and_key(fake_openai, key_env):
    fake_openai.push(Reply("Yes."))
    client = make_client(fake_openai, max_tokens=32)
    assert (
        client.complete(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ok?"}]
        )
        == "Yes."
    )
    (req,) = fake_openai.requests
    assert req.path.endswith("/v1/chat/completions")
    assert req.body["model"] == "fake-judge"
    assert req.body["temperature"] == 0.0
    assert req.body["max_tokens"] == 32
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ok?"},
    ]
    assert req.header("Authorization") == f"Bearer {KEY}"
    assert req.header("x-stainless-retry-count") == "0"  # a first try


def test_the_sdk_gets_the_retry_budget_and_timeout(fake_openai, key_env):
    client = make_client(fake_openai, max_retries=3, timeout_s=2.0)
    assert client._client.max_retries == 3
    assert client._client.timeout == 2.0


def test_the_sdk_retries_a_429_then_succeeds(fake_openai, key_env):
    fake_openai.push(Status(429), Reply("ok"))
    assert make_client(fake_openai).complete("go") == "ok"
    assert retry_counts(fake_openai) == ["0", "1"]  # one SDK call, retried by the SDK


def test_retries_429_500_timeout_and_dropped_connection_then_succeeds(fake_openai, key_env):
    fake_openai.push(Status(429), Status(500), Delay(1.0), Drop(), Status(503), Reply("done"))
    client = make_client(fake_openai, timeout_s=0.3, max_retries=5)
    t0 = time.monotonic()
    assert client.complete("go") == "done"
    assert retry_counts(fake_openai) == ["0", "1", "2", "3", "4", "5"]
    assert fake_openai.pending == 0
    assert time.monotonic() - t0 < 3.0  # the delay was cut by the timeout


def test_gives_up_after_max_retries_with_a_clear_error(fake_openai, key_env):
    fake_openai.responder = lambda req: Status(500, message=f"boom, your key {KEY} is fine")
    client = make_client(fake_openai, max_retries=2)
    with pytest.raises(ApiError) as err:
        client.complete("go")
    assert fake_openai.n_requests == 3
    msg = str(err.value)
    assert (
        "HTTP 500" in msg
        and fake_openai.base_url in msg
        and "fake-judge" in msg
        and "3 tries" in msg
    )
    assert KEY not in msg


def test_timeouts_give_up_too(fake_openai, key_env):
    fake_openai.responder = lambda req: Delay(2.0)
    client = make_client(fake_openai, timeout_s=0.2, max_retries=1)
    with pytest.raises(ApiError, match=r"timeout after 0.2 s .* after 2 tries"):
        client.complete("go")
    assert retry_counts(fake_openai) == ["0", "1"]


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried_and_never_show_the_key(fake_openai, key_env, status):
    fake_openai.responder = lambda req: Status(status, message=f"Incorrect API key provided: {KEY}")
    client = make_client(fake_openai, max_retries=4)
    with pytest.raises(ApiError) as err:
        client.complete("go")
    assert fake_openai.n_requests == 1
    assert f"HTTP {status}" in str(err.value) and "after 1 try" in str(err.value)
    assert KEY not in str(err.value)
    if status == 401:
        assert KEY_ENV in str(err.value)


def test_malformed_replies_are_retried_then_reported(fake_openai, key_env):
    fake_openai.push(Malformed("not-json"), Malformed("no-choices"), Reply("fine"))
    client = make_client(fake_openai, backoff_s=0.0)
    assert client.complete("go") == "fine"
    # three separate SDK calls, each a first try: the retries were ours, not the SDK's
    assert retry_counts(fake_openai) == ["0", "0", "0"]
    fake_openai.clear()
    fake_openai.responder = lambda req: Malformed("no-choices")
    with pytest.raises(ApiError, match=r"malformed reply \(reply has no choices\).* after 4 tries"):
        client.complete("go")
    assert fake_openai.n_requests == 4  # max_retries + 1


def test_a_malformed_reply_then_a_429_uses_both_retry_layers(fake_openai, key_env):
    fake_openai.push(Malformed("not-json"), Status(429), Reply("fine"))
    assert make_client(fake_openai, max_retries=1).complete("go") == "fine"
    assert retry_counts(fake_openai) == ["0", "0", "1"]


def test_malformed_retries_wait_per_backoff_settings(fake_openai, key_env, caplog):
    fake_openai.responder = lambda req: Malformed("not-json")
    client = make_client(fake_openai, backoff_s=0.01, backoff_max_s=0.03, max_retries=3)
    with caplog.at_level(logging.WARNING, logger="conva_tl.llm_api"), pytest.raises(ApiError):
        client.complete("go")
    delays = re.findall(r"retry \d/3 in ([0-9.]+) s", caplog.text)
    assert delays == ["0.01", "0.02", "0.03"]  # exponential, capped at backoff_max_s


def test_retry_after_header_is_honoured(fake_openai, key_env):
    fake_openai.push(Status(429, retry_after="0.3"), Reply("ok"))
    client = make_client(fake_openai)
    t0 = time.monotonic()
    assert client.complete("go") == "ok"
    assert time.monotonic() - t0 >= 0.3  # the SDK's own backoff is patched to ~1 ms
    assert retry_counts(fake_openai) == ["0", "1"]


# --- complete_many -------------------------------------------------------------------


def echo_slowly(req: RecordedRequest) -> Delay:
    return Delay(0.15, Reply(f"echo: {req.last_user}"))


def test_complete_many_keeps_order_and_bounds_concurrency(fake_openai, key_env):
    fake_openai.responder = echo_slowly
    client = make_client(fake_openai, max_concurrency=3)
    prompts = [f"p{i}" for i in range(10)]
    seen: list[int] = []
    out = client.complete_many(prompts, on_result=lambda i, reply: seen.append(i))
    assert out == [f"echo: p{i}" for i in range(10)]
    assert sorted(seen) == list(range(10))
    assert fake_openai.n_requests == 10
    assert 2 <= fake_openai.max_in_flight <= 3


def test_complete_many_reports_failure_after_keeping_finished_results(fake_openai, key_env):
    def respond(req: RecordedRequest) -> Reply | Status:
        return Status(500) if req.last_user == "p2" else Reply(f"echo: {req.last_user}")

    fake_openai.responder = respond
    client = make_client(fake_openai, max_concurrency=1, max_retries=1)
    done: dict[int, str] = {}
    with pytest.raises(ApiError, match="1 of 5 calls failed, 2 finished"):
        client.complete_many([f"p{i}" for i in range(5)], on_result=done.__setitem__)
    assert done == {0: "echo: p0", 1: "echo: p1"}
    # the calls after the failure were cancelled, never sent
    assert [r.last_user for r in fake_openai.requests] == ["p0", "p1", "p2", "p2"]


def test_empty_batch_makes_no_call(fake_openai, key_env):
    assert make_client(fake_openai).complete_many([]) == []
    assert fake_openai.n_requests == 0


# --- the key never leaks ------------------------------------------------------------


def test_key_reaches_the_server_but_no_log_file_or_error(fake_openai, key_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake_openai.push(
        Status(429), Status(500, message=f"echoing {KEY}"), Malformed("no-choices"), Reply("a")
    )
    client = make_client(fake_openai, max_retries=1)
    store = JsonlStore(tmp_path / "calls.jsonl")
    with pytest.raises(ApiError) as err:
        client.complete("first")
    store.put(
        "k1", {"error": str(err.value), "config": client.config.to_dict(), "client": repr(client)}
    )
    store.put("k2", {"reply": client.complete("second")})
    (tmp_path / "config.json").write_text(json.dumps(client.config.to_dict()))
    assert all(r.header("Authorization") == f"Bearer {KEY}" for r in fake_openai.requests)
    assert "(retry 1 of 1)" in caplog.text  # the SDK logged its retry
    assert "malformed reply" in caplog.text and "retry 1/1" in caplog.text  # and we ours
    assert KEY not in caplog.text
    assert KEY not in str(err.value) and KEY not in repr(client)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8"), path


# --- JsonlStore ----------------------------------------------------------------------


def test_store_round_trip_and_reload(tmp_path):
    path = tmp_path / "sub" / "store.jsonl"
    store = JsonlStore(path)
    assert store.get("a") is None and len(store) == 0
    store.put("a", {"reply": "x", "n": 1})
    store.put("b", {"reply": "ü\nnewline"})
    store.put("a", {"reply": "y"})  # a later line wins
    again = JsonlStore(path)
    assert again.get("a") == {"reply": "y"} and again.get("b") == {"reply": "ü\nnewline"}
    assert again.keys() == ["a", "b"] and "a" in again and len(again) == 2
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    with pytest.raises(DataError, match="JSON-serialisable"):
        store.put("c", {"bad": object()})


def test_store_skips_a_truncated_last_line_and_repairs_the_file(tmp_path, caplog):
    path = tmp_path / "store.jsonl"
    store = JsonlStore(path)
    store.put("a", {"reply": "x"})
    store.put("b", {"reply": "y"})
    full = path.read_bytes()
    path.write_bytes(full[: len(full) - 7])  # killed while writing line 2
    with caplog.at_level(logging.WARNING):
        reopened = JsonlStore(path)
    assert "truncated last line" in caplog.text
    assert reopened.get("a") == {"reply": "x"} and reopened.get("b") is None
    reopened.put("c", {"reply": "z"})
    final = JsonlStore(path)
    assert final.keys() == ["a", "c"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_store_rejects_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text('{"key": "a", "record": {}}\nnot json\n{"key": "b", "record": {}}\n')
    with pytest.raises(DataError, match=r"store.jsonl:2"):
        JsonlStore(path)


def test_store_is_thread_safe(tmp_path):
    path = tmp_path / "store.jsonl"
    store = JsonlStore(path)

    def work(t: int) -> None:
        for i in range(40):
            store.put(f"{t}-{i}", {"reply": "x" * (i * 37 % 300)})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 320 and all(json.loads(line)["key"] for line in lines)
    assert len(JsonlStore(path)) == 320
