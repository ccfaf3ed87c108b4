"""One small layer over the official ``openai`` client for chat-completions endpoints.

The paper calls GPT-4o twice: to write the training sentences (Appx. A/B,
:mod:`conva_tl.datagen`) and to judge control success and fluency (Appx. D/E,
:mod:`conva_tl.judge`). Both go through :class:`ChatClient`, which talks to any
OpenAI-compatible endpoint (OpenAI, Azure-style proxies, vLLM, llama.cpp, a
local fake in the tests), and through :class:`~conva_tl.jsonl.JsonlStore` (re-exported here), an append-only cache
on disk that lets an interrupted run resume without paying for finished calls.

Retries come in two layers, both bounded by :attr:`ApiConfig.max_retries`. The
``openai`` client itself retries 429, 408/409, 5xx, timeouts and connection
errors (its own exponential backoff, 0.5 s to 8 s with jitter; it honours a
``Retry-After`` of up to two minutes and does not retry a longer one). A 200
reply that is no usable chat completion (invalid JSON, no choices, no text) is
not an error to the SDK, so :meth:`ChatClient.complete` retries it with
``tenacity``, waiting per :attr:`ApiConfig.backoff_s`. Other statuses (400, 401,
404, ...) fail at once. Every failure ends in :class:`~conva_tl.errors.ApiError`
naming the problem, endpoint, model and number of tries.

The API key is read from the environment variable named by
:attr:`ApiConfig.api_key_env` (or passed to :class:`ChatClient`) and handed to
the ``openai`` client only. It is never a config field, never logged and never
part of an error message or a stored record.

Environment variables read by :meth:`ApiConfig.from_env`:

========================== ===========================================
``OPENAI_BASE_URL``        endpoint, e.g. ``http://localhost:8000/v1``
``CONVA_JUDGE_MODEL``      model name (the variable is configurable)
``CONVA_API_KEY_ENV``      name of the variable holding the key
``CONVA_API_TEMPERATURE``  sampling temperature
``CONVA_API_MAX_TOKENS``   completion token limit
``CONVA_API_TIMEOUT_S``    per-request timeout in seconds
``CONVA_API_MAX_RETRIES``  retries after the first try
``CONVA_API_BACKOFF_S``    base of the backoff after a malformed reply
``CONVA_API_MAX_CONCURRENCY`` parallel requests in ``complete_many``
========================== ===========================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
import tenacity
from tqdm.auto import tqdm

from conva_tl.errors import ApiError, ConvaError
from conva_tl.jsonl import JsonlStore

__all__ = [
    "ApiConfig",
    "ApiConfigError",
    "ChatClient",
    "JsonlStore",
    "Messages",
    "as_messages",
    "request_key",
]

logger = logging.getLogger(__name__)

#: A chat conversation: ``[{"role": "user", "content": "..."}, ...]``.
Messages = Sequence[Mapping[str, str]]

_ROLES = ("system", "user", "assistant")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiConfigError(ConvaError, ValueError):
    """An :class:`ApiConfig` field or a chat message list is malformed."""


@dataclass(frozen=True)
class ApiConfig:
    """Where and how to call a chat-completions endpoint.

    Holds no secret: the key is read from the environment variable named by
    ``api_key_env`` when a :class:`ChatClient` is built, so the config can be
    written into result metadata as it is (:meth:`to_dict`).

    Attributes:
        model: model name sent with every request (``gpt-4o``).
        base_url: endpoint root including ``/v1``; ``None`` lets the ``openai``
            client decide (``OPENAI_BASE_URL`` or api.openai.com).
        api_key_env: name of the environment variable holding the key.
        temperature: sampling temperature (0 for reproducible judging).
        max_tokens: completion token limit; ``None`` leaves it to the server.
        timeout_s: per-request timeout in seconds (the ``openai`` client's).
        max_retries: retries after the first try (0 = one try only): by the
            ``openai`` client for 429, 5xx, timeouts and connection errors, and
            by :meth:`ChatClient.complete` for malformed 200 replies.
        backoff_s: base delay after a malformed reply; retry ``k`` (from 0)
            waits ``backoff_s * 2**k`` seconds, capped at ``backoff_max_s``.
            The SDK's own retries use its built-in backoff.
        backoff_max_s: cap of one such delay.
        max_concurrency: parallel requests in :meth:`ChatClient.complete_many`.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ApiConfigError("ApiConfig.model is empty; give the model name, e.g. 'gpt-4o'")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ApiConfigError(
                    f"ApiConfig.base_url {self.base_url!r} is not an http(s) URL; "
                    "expected e.g. 'http://localhost:8000/v1'"
                )
            if parts.username or parts.password:
                raise ApiConfigError(
                    "ApiConfig.base_url contains credentials; put the key in the "
                    f"environment variable {self.api_key_env} instead"
                )
        if not _ENV_NAME.match(self.api_key_env):
            raise ApiConfigError(
                f"ApiConfig.api_key_env must be the NAME of an environment variable "
                f"(letters, digits, '_'), got a string of length {len(self.api_key_env)}"
            )
        checks: list[tuple[str, bool, str]] = [
            ("temperature", 0.0 <= self.temperature <= 2.0, "between 0 and 2"),
            ("max_tokens", self.max_tokens is None or self.max_tokens > 0, "positive or None"),
            ("timeout_s", self.timeout_s > 0, "positive"),
            ("max_retries", self.max_retries >= 0, ">= 0"),
            ("backoff_s", self.backoff_s >= 0, ">= 0"),
            ("backoff_max_s", self.backoff_max_s >= 0, ">= 0"),
            ("max_concurrency", self.max_concurrency >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ApiConfigError(
                    f"ApiConfig.{name} must be {expected}, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (there is no secret among them)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApiConfig:
        """Inverse of :meth:`to_dict`; unknown fields are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ApiConfigError(
                f"unknown ApiConfig fields {unknown}; expected some of {sorted(names)}"
            )
        return cls(**dict(data))

    @classmethod
    def from_env(
        cls,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        model_env: str = "CONVA_JUDGE_MODEL",
        environ: Mapping[str, str] | None = None,
    ) -> ApiConfig:
        """A config from explicit options, falling back to environment variables.

        Explicit arguments win; then the variables listed in the module
        docstring; then the field defaults.

        Args:
            model: model name; default ``$model_env``.
            base_url: endpoint; default ``$OPENAI_BASE_URL``.
            api_key_env: variable holding the key; default ``$CONVA_API_KEY_ENV``
                or ``OPENAI_API_KEY``.
            model_env: variable read for the model (``CONVA_DATAGEN_MODEL`` for
                data generation, ``CONVA_JUDGE_MODEL`` for judging).
            environ: the environment (default ``os.environ``), for tests.

        Raises:
            ApiConfigError: no model given, or a variable does not parse.
        """
        env = os.environ if environ is None else environ
        model = model or env.get(model_env)
        if not model:
            raise ApiConfigError(
                f"no model: pass model=... (--model) or set the environment variable {model_env}"
            )
        kwargs: dict[str, Any] = {
            "model": model,
            "base_url": base_url or env.get("OPENAI_BASE_URL") or None,
            "api_key_env": api_key_env or env.get("CONVA_API_KEY_ENV") or "OPENAI_API_KEY",
        }
        parsers: dict[str, tuple[str, Callable[[str], Any]]] = {
            "temperature": ("CONVA_API_TEMPERATURE", float),
            "max_tokens": ("CONVA_API_MAX_TOKENS", int),
            "timeout_s": ("CONVA_API_TIMEOUT_S", float),
            "max_retries": ("CONVA_API_MAX_RETRIES", int),
            "backoff_s": ("CONVA_API_BACKOFF_S", float),
            "max_concurrency": ("CONVA_API_MAX_CONCURRENCY", int),
        }
        for field, (var, parse) in parsers.items():
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                kwargs[field] = parse(raw)
            except ValueError:
                raise ApiConfigError(
                    f"environment variable {var}={raw!r} is not a valid {parse.__name__}"
                ) from None
        return cls(**kwargs)


def as_messages(prompt: str | Messages) -> list[dict[str, str]]:
    """Validate a conversation (a bare string is one user message).

    Raises:
        ApiConfigError: empty conversation, unknown role or non-string content.
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    out = []
    for i, msg in enumerate(prompt):
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise ApiConfigError(
                f"message {i} must be {{'role': one of {_ROLES}, 'content': str}}, "
                f"got role={role!r} and content of type {type(content).__name__}"
            )
        out.append({"role": role, "content": content})
    if not out:
        raise ApiConfigError("empty message list: give at least one user message")
    return out


def request_key(config: ApiConfig, prompt: str | Messages, *, salt: str = "") -> str:
    """sha256 of everything that determines a reply: model, sampling, messages.

    Used as the :class:`JsonlStore` key of a call. ``salt`` separates calls that
    are otherwise identical (a retry attempt of a generation step).
    """
    payload = {
        "model": config.model,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "messages": as_messages(prompt),
        "salt": salt,
    }
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


class _MalformedReply(Exception):
    """A 200 reply that is not a usable chat completion (the SDK does not retry it)."""


class _Skipped(Exception):
    """A queued call not started because an earlier one failed."""


class ChatClient:
    """Chat completions with bounded retries and bounded concurrency.

    Args:
        config: endpoint, model and retry settings.
        api_key: the key; default: the environment variable ``config.api_key_env``.
            Servers that ignore keys (a local vLLM) still need a placeholder such
            as ``EMPTY``.

    Raises:
        ApiError: no key given and the environment variable is unset.

    Example:
        >>> client = ChatClient(ApiConfig(model="gpt-4o"))  # doctest: +SKIP
        >>> client.complete("Say yes.")  # doctest: +SKIP
        'Yes.'
    """

    def __init__(self, config: ApiConfig, api_key: str | None = None) -> None:
        key = api_key if api_key is not None else os.environ.get(config.api_key_env)
        if not key:
            raise ApiError(
                f"no API key: set the environment variable {config.api_key_env} (or pass api_key=...). "
                "A local server that needs no key accepts any placeholder, e.g. EMPTY."
            )
        self.config = config
        self._secret = key  # kept only to redact it from server messages
        self._client = openai.OpenAI(
            api_key=key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,  # the SDK retries 429, 5xx, timeouts, ...
        )

    @property
    def endpoint(self) -> str:
        """The endpoint URL the requests go to (never includes the key)."""
        return str(self._client.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"ChatClient(model={self.config.model!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._client.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _request(self, messages: list[dict[str, str]]) -> str:
        cfg = self.config
        optional: dict[str, Any] = {}
        if cfg.max_tokens is not None:
            optional["max_tokens"] = cfg.max_tokens
        try:
            completion = self._client.chat.completions.create(
                model=cfg.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=cfg.temperature,
                **optional,
            )
        except json.JSONDecodeError as exc:
            raise _MalformedReply(f"body is not JSON: {exc}") from None
        choices = getattr(completion, "choices", None)
        if not choices:
            raise _MalformedReply("reply has no choices")
        content = getattr(getattr(choices[0], "message", None), "content", None)
        if not isinstance(content, str):
            raise _MalformedReply("reply has no text content")
        return content

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "malformed reply (%s) from %s (model %s); retry %d/%d in %.2f s",
            self._redact(_short(str(exc))),
            self.endpoint,
            self.config.model,
            state.attempt_number,
            self.config.max_retries,
            delay,
        )

    def complete(self, prompt: str | Messages) -> str:
        """The assistant's reply to one conversation.

        The ``openai`` client retries 429, 5xx, timeouts and connection errors,
        and this method retries malformed 200 replies, each up to
        ``config.max_retries`` times; other errors (400, 401, 404, ...) fail at once.

        Args:
            prompt: a list of ``{"role", "content"}`` messages, or a string sent
                as one user message.

        Raises:
            ApiError: the last try failed, or a non-retryable status came back;
                the message names the status, endpoint and model, never the key.
        """
        messages = as_messages(prompt)
        cfg = self.config
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_MalformedReply),
            stop=tenacity.stop_after_attempt(cfg.max_retries + 1),
            wait=tenacity.wait_exponential(multiplier=cfg.backoff_s, max=cfg.backoff_max_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._request, messages)
        except _MalformedReply as exc:
            problem, request, detail = f"malformed reply ({_short(str(exc))})", None, ""
        except openai.APIStatusError as exc:
            problem, request = f"HTTP {exc.status_code}", exc.request
            detail = self._status_detail(exc)
        except openai.APITimeoutError as exc:
            problem, request, detail = f"timeout after {cfg.timeout_s:g} s", exc.request, ""
        except openai.APIConnectionError as exc:
            problem, request, detail = "connection error", exc.request, ""
        # tries: earlier malformed replies plus the SDK's tries of the last call
        tries = retrying.statistics.get("attempt_number", 1)
        if request is not None:
            tries += int(request.headers.get("x-stainless-retry-count") or 0)
        raise self._error(problem, tries, detail) from None

    def _status_detail(self, exc: openai.APIStatusError) -> str:
        if exc.status_code in (401, 403):
            return f"authentication refused: check the key in ${self.config.api_key_env}"
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return self._redact(_short(str(message if message is not None else exc.message)))

    def _error(self, problem: str, tries: int, detail: str) -> ApiError:
        msg = (
            f"{problem} from {self.endpoint} (model {self.config.model!r}) "
            f"after {tries} tr{'y' if tries == 1 else 'ies'}"
        )
        if detail:
            msg += f": {detail}"
        msg += ". Check the endpoint and model name, or raise max_retries / timeout_s."
        return ApiError(self._redact(msg))

    def complete_many(
        self,
        prompts: Sequence[str | Messages],
        *,
        on_result: Callable[[int, str], None] | None = None,
        progress: bool = False,
        desc: str = "api calls",
    ) -> list[str]:
        """Replies to many conversations, at most ``config.max_concurrency`` at a time.

        Args:
            prompts: conversations (or bare user prompts), one reply each.
            on_result: called as ``on_result(index, reply)`` in the calling
                thread as soon as each reply arrives, so callers can persist
                partial progress before a later call fails.
            progress: show a tqdm bar on stderr.
            desc: label of the bar.

        Returns:
            The replies, in the order of ``prompts``.

        Raises:
            ApiError: some call failed after its retries. Calls not started yet
                are cancelled; calls already running finish (and reach
                ``on_result``) before the first error is raised.
        """
        conversations = [as_messages(p) for p in prompts]
        if not conversations:
            return []
        results: list[str | None] = [None] * len(conversations)
        errors: list[BaseException] = []
        stop = threading.Event()

        def task(conv: list[dict[str, str]]) -> str:
            # The failing worker raises the flag itself, so no queued call starts after it.
            if stop.is_set():
                raise _Skipped()
            try:
                return self.complete(conv)
            except BaseException:
                stop.set()
                raise

        workers = min(self.config.max_concurrency, len(conversations))
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conva-api") as pool,
            tqdm(total=len(conversations), desc=desc, disable=not progress, leave=False) as bar,
        ):
            futures = {pool.submit(task, conv): i for i, conv in enumerate(conversations)}
            try:
                for fut in as_completed(futures):
                    exc = fut.exception()
                    if exc is not None:
                        if not isinstance(exc, _Skipped):
                            errors.append(exc)
                        continue
                    index, reply = futures[fut], fut.result()
                    results[index] = reply
                    bar.update(1)
                    if on_result is not None:
                        on_result(index, reply)
            except BaseException:
                stop.set()  # Ctrl-C or a failing callback: start nothing more
                raise
        if errors:
            first = errors[0]
            if not isinstance(first, ConvaError):
                raise first
            n_done = sum(r is not None for r in results)
            raise ApiError(
                f"{first} ({len(errors)} of {len(conversations)} calls failed, {n_done} finished)"
            ) from first
        return [r for r in results if r is not None]


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
