"""A scriptable fake of an OpenAI-compatible chat-completions endpoint.

A real HTTP server on ``127.0.0.1`` (random free port, one thread per request)
that the official ``openai`` client talks to exactly as it would to a remote
endpoint, so tests of :mod:`conva_tl.llm_api`, :mod:`conva_tl.datagen` and
:mod:`conva_tl.judge` exercise the real HTTP stack, retries and timeouts.

Each request takes the next behaviour from a FIFO queue (:meth:`FakeOpenAI.push`);
when the queue is empty the ``responder`` decides (default: reply ``"OK"``).
Every request is recorded (headers, JSON body, time), and the server tracks the
largest number of requests it was handling at once.

Example:
    >>> server = FakeOpenAI().start()
    >>> server.push(Status(429), Reply("Yes"))
    >>> # ChatClient(ApiConfig(base_url=server.base_url, model="m")) ...
    >>> server.stop()
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = [
    "Reply",
    "Status",
    "Delay",
    "Malformed",
    "Drop",
    "Behaviour",
    "RecordedRequest",
    "FakeOpenAI",
    "fake_openai_fixture",
    "numbered",
]


@dataclass(frozen=True)
class Reply:
    """Answer 200 with a valid ``chat.completion`` whose content is ``text``."""

    text: str


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status (429, 500, 401, ...) and an OpenAI-style error body."""

    code: int
    message: str = "scripted error"
    retry_after: str | None = None


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (longer than the client timeout), then answer ``then``."""

    seconds: float
    then: Reply | Status | None = None


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not a chat completion.

    ``kind``: ``"not-json"`` (invalid JSON under a JSON content type) or
    ``"no-choices"`` (valid JSON without ``choices``).
    """

    kind: str = "not-json"


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (a connection error)."""


Behaviour = Reply | Status | Delay | Malformed | Drop


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    started: float
    behaviour: str = ""

    def header(self, name: str) -> str | None:
        """A request header, looked up case-insensitively."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the request."""
        return list(self.body.get("messages", []))

    @property
    def last_user(self) -> str:
        """Content of the last user message ('' if none)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else ""


def numbered(items: list[str]) -> str:
    """Render items as a numbered list, the way chat models usually answer."""
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


@dataclass
class FakeOpenAI:
    """The fake server. Start with :meth:`start`, stop with :meth:`stop`.

    Attributes:
        responder: decides the behaviour of a request when the queue is empty.
        requests: every request received, in arrival order.
        max_in_flight: the largest number of requests handled concurrently.
    """

    responder: Callable[[RecordedRequest], Behaviour] = field(default=lambda req: Reply("OK"))
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0
    _queue: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest output clean

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; pending delays are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "call start() first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the client (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def clear(self) -> None:
        """Forget recorded requests and the in-flight maximum (not the queue)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        with self._lock:
            return len(self._queue)

    # --- serving -----------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        req = RecordedRequest(h.path, {k: v for k, v in h.headers.items()}, body, time.monotonic())
        with self._lock:
            self.requests.append(req)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            behaviour = self._queue.popleft() if self._queue else None
        try:
            if behaviour is None:
                behaviour = self.responder(req)
            req.behaviour = type(behaviour).__name__
            if not h.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(
                    h, 404, {"error": {"message": f"no route {h.path}", "type": "not_found"}}
                )
                return
            self._act(h, req, behaviour)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _act(self, h: BaseHTTPRequestHandler, req: RecordedRequest, b: Behaviour) -> None:
        if isinstance(b, Delay):
            if self._stopping.wait(b.seconds):
                return
            b = b.then if b.then is not None else Reply("late reply")
        if isinstance(b, Reply):
            self._send_json(h, 200, _completion(req, b.text))
        elif isinstance(b, Status):
            headers = {"retry-after": b.retry_after} if b.retry_after is not None else {}
            err = {"error": {"message": b.message, "type": "scripted", "code": str(b.code)}}
            self._send_json(h, b.code, err, headers)
        elif isinstance(b, Malformed):
            payload = (
                b"{this is not json"
                if b.kind == "not-json"
                else json.dumps(
                    {"id": "x", "object": "chat.completion", "created": 0, "model": "m"}
                ).encode()
            )
            self._send_raw(h, 200, payload, {"Content-Type": "application/json"})
        elif isinstance(b, Drop):
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
        else:  # pragma: no cover - a test bug
            raise TypeError(f"unknown behaviour {b!r}")

    def _send_json(
        self,
        h: BaseHTTPRequestHandler,
        code: int,
        obj: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = {"Content-Type": "application/json", **(headers or {})}
        self._send_raw(h, code, json.dumps(obj).encode(), extra)

    @staticmethod
    def _send_raw(
        h: BaseHTTPRequestHandler, code: int, payload: bytes, headers: dict[str, str]
    ) -> None:
        try:
            h.send_response(code)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            pass  # the client gave up (timeout): nothing to answer
        h.close_connection = True


def _completion(req: RecordedRequest, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{len(text)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(req.body.get("model", "fake-model")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture(name="fake_openai")
def fake_openai_fixture() -> Iterator[FakeOpenAI]:
    """Fixture ``fake_openai``: a started :class:`FakeOpenAI`, stopped after the test.

    Import ``fake_openai_fixture`` into a test module to make it available.
    """
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
