"""Generating the training sentences with an LLM, as the paper did with GPT-4o.

This is the stage before :mod:`conva_tl.datasets`: it writes files in exactly
the schema of the shipped ``conva_tl/data/pairs/*.jsonl`` and
``conva_tl/data/straightforward/*.jsonl`` and checks the result with
:func:`~conva_tl.datasets.load_pairs` / :func:`~conva_tl.datasets.load_straightforward`
before returning, so what it writes can be fitted on directly. Calls go
through :class:`conva_tl.llm_api.ChatClient`; each raw reply is appended to a
:class:`conva_tl.llm_api.JsonlStore` beside the output
(``<name>.calls.jsonl``) before it is used, keyed by the hash of the call's
model, sampling settings, messages and attempt number, so an interrupted run
resumes without repeating finished calls and a finished run re-creates its
file with no call at all.

Prompts (parameters of the method, quoted from the ConVA paper, Xu et al.; they
live in :mod:`conva_tl.datagen_prompts`, reply parsing in :mod:`conva_tl.reply_parsing`):

* context-controlled positives: Appendix B, Tab. 8, one template per value
  differing in the "highlighting the importance of ..." phrase (and, as in the
  table, in single or double quotes around the value), with ``{pronounce}`` in
  first-person/third-person and ``{sentence_structure}`` in sentence/question:
  4 variants x 25 = 100 positives. The substitution is literal, as the paper
  states it ("25 distinct first-person sentence").
* negatives: the pairing prompt of Appendix B, sent as a follow-up turn after
  the positives, so that each negative rewrites its positive.
* straightforward ablation data: Appendix A, Tab. 6, 100 positive and 100
  negative sentences asked for independently.

Differences from the paper, on purpose: the assistant turn before the pairing
prompt is our cleaned, numbered list of the positives kept (not the raw
reply), so negatives align 1:1 with them; a reply with too few items, or
negatives that do not match the positives one for one, is asked again (a new
attempt, cached separately) up to ``max_attempts`` times. An optional format
hint (``--format-hint``) may be appended to the prompts; by default they are
sent verbatim.

CLI (wired into ``conva`` as ``conva generate-data``)::

    conva generate-data --value security --kind both --out data/ \\
        --base-url http://localhost:8000/v1 --model gpt-4o [--api-key-env VAR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conva_tl.datagen_prompts import (
    DEFAULT_FORMAT_HINT,
    negative_prompt,
    positive_prompt,
    straightforward_prompt,
)
from conva_tl.datasets import (
    BLOCKS,
    ContrastPair,
    LabeledSentence,
    load_pairs,
    load_straightforward,
)
from conva_tl.errors import ConvaError, DataError
from conva_tl.jsonl import JsonlStore
from conva_tl.llm_api import ApiConfig, ChatClient, request_key
from conva_tl.reply_parsing import norm_item, parse_items
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "generate_pairs",
    "generate_straightforward",
    "main_generate_data",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Cached calls, asked again until the reply is usable
# ---------------------------------------------------------------------------

Conversation = list[dict[str, str]]


def _call_round(
    client: ChatClient,
    store: JsonlStore,
    calls: list[tuple[str, Conversation]],
    *,
    value: str,
    attempt: int,
    progress: bool,
) -> list[str]:
    """Replies to ``(step, messages)`` calls: from the store, else from the API (stored on arrival)."""
    keys = [request_key(client.config, msgs, salt=f"attempt {attempt}") for _, msgs in calls]
    replies: list[str | None] = []
    for key in keys:
        record = store.get(key)
        replies.append(
            record["reply"] if record is not None and isinstance(record.get("reply"), str) else None
        )
    todo = [i for i, r in enumerate(replies) if r is None]
    logger.info(
        "%s attempt %d: %d calls, %d stored", value, attempt + 1, len(todo), len(calls) - len(todo)
    )
    if todo:

        def keep(j: int, reply: str) -> None:
            i = todo[j]
            store.put(
                keys[i],
                {
                    "value": value,
                    "step": calls[i][0],
                    "attempt": attempt,
                    "model": client.config.model,
                    "reply": reply,
                },
            )
            replies[i] = reply

        client.complete_many(
            [calls[i][1] for i in todo], on_result=keep, progress=progress, desc=value
        )
    return [r if r is not None else "" for r in replies]


def _collect(
    client: ChatClient,
    store: JsonlStore,
    steps: list[str],
    build: Callable[[str], Conversation],
    accept: Callable[[str, str], list[str] | str],
    *,
    value: str,
    max_attempts: int,
    progress: bool,
) -> dict[str, list[str]]:
    """Items per step; ``accept(step, reply)`` returns them, or why the reply is unusable.

    Steps are judged in the order given, so that cross-step de-duplication is
    the same on a resumed run. Unusable steps are asked again (attempt k is a
    separate cache entry) up to ``max_attempts`` times.
    """
    if max_attempts < 1:
        raise DataError(f"max_attempts must be >= 1, got {max_attempts}")
    got: dict[str, list[str]] = {}
    why: dict[str, str] = {}
    remaining = list(steps)
    for attempt in range(max_attempts):
        if not remaining:
            break
        calls = [(step, build(step)) for step in remaining]
        replies = _call_round(client, store, calls, value=value, attempt=attempt, progress=progress)
        retry = []
        for step, reply in zip(remaining, replies, strict=True):
            result = accept(step, reply)
            if isinstance(result, str):
                logger.warning("%s/%s attempt %d: %s", value, step, attempt + 1, result)
                why[step] = result
                retry.append(step)
            else:
                got[step] = result
        remaining = retry
    if remaining:
        problems = "; ".join(f"{step}: {why[step]}" for step in remaining)
        raise DataError(
            f"{value}: no usable reply in {max_attempts} attempts ({problems}). The replies are in "
            f"{store.path}; try --format-hint, a higher --max-attempts or another model"
        )
    return got


def _fresh(items: list[str], seen: set[str]) -> list[str]:
    """Items whose normalised text is new (to ``seen`` and within ``items``)."""
    out, local = [], set()
    for item in items:
        key = norm_item(item)
        if key not in seen and key not in local:
            local.add(key)
            out.append(item)
    return out


def _take_new(n: int, seen: set[str]) -> Callable[[str, str], list[str] | str]:
    """An ``accept`` that keeps the first ``n`` new items and marks them seen."""

    def accept(step: str, reply: str) -> list[str] | str:
        fresh = _fresh(parse_items(reply), seen)
        if len(fresh) < n:
            return f"{len(fresh)} new items, need {n}"
        seen.update(norm_item(t) for t in fresh[:n])
        return fresh[:n]

    return accept


def _store_for(out_path: Path, store_path: str | Path | None) -> JsonlStore:
    path = (
        Path(store_path)
        if store_path is not None
        else out_path.with_name(out_path.stem + ".calls.jsonl")
    )
    return JsonlStore(path)


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def generate_pairs(
    value: str,
    client: ChatClient,
    out_path: str | Path,
    *,
    n_per_block: int = 25,
    max_attempts: int = 3,
    store_path: str | Path | None = None,
    format_hint: str | None = None,
    progress: bool = False,
) -> list[ContrastPair]:
    """Generate the context-controlled pairs of one value (Appendix B).

    For each of the four blocks: ask for ``n_per_block`` positives (Tab. 8),
    then, in the same conversation, for one negative per positive (pairing
    prompt). Texts that repeat an earlier one are dropped; a positive reply
    with fewer than ``n_per_block`` new items, or a negative reply whose count
    differs from its positives, is asked again up to ``max_attempts`` times.

    Args:
        value: the value (any accepted spelling).
        client: the generating model.
        out_path: the pairs file to write (e.g. ``data/pairs/security.jsonl``).
        n_per_block: positives per prompt variant (25 in the paper).
        max_attempts: tries per call whose reply is unusable.
        store_path: the call cache; default ``<out stem>.calls.jsonl`` beside it.
        format_hint: text appended to each prompt (default none: verbatim).
        progress: show a progress bar.

    Returns:
        The pairs as :func:`~conva_tl.datasets.load_pairs` reads them back.

    Raises:
        DataError: a reply stayed unusable after ``max_attempts`` tries.
        ApiError: the endpoint failed; finished calls are kept for the rerun.
    """
    canon = canonical_value(value)
    if n_per_block < 1:
        raise DataError(f"n_per_block must be >= 1, got {n_per_block}")
    out = Path(out_path)
    store = _store_for(out, store_path)
    seen: set[str] = set()

    def ask_positives(step: str) -> Conversation:
        block = step.removeprefix("positives/")
        return [
            {"role": "user", "content": positive_prompt(canon, block, n_per_block, format_hint)}
        ]

    found = _collect(
        client,
        store,
        [f"positives/{b}" for b in BLOCKS],
        ask_positives,
        _take_new(n_per_block, seen),
        value=canon,
        max_attempts=max_attempts,
        progress=progress,
    )
    positives = {b: found[f"positives/{b}"] for b in BLOCKS}

    def ask_negatives(step: str) -> Conversation:
        block = step.removeprefix("negatives/")
        # Our cleaned list, not the raw reply: the model pairs exactly the positives kept.
        listing = "\n".join(f"{i}. {t}" for i, t in enumerate(positives[block], 1))
        return [
            {"role": "user", "content": positive_prompt(canon, block, n_per_block, format_hint)},
            {"role": "assistant", "content": listing},
            {"role": "user", "content": negative_prompt(canon, format_hint)},
        ]

    def one_per_positive(step: str, reply: str) -> list[str] | str:
        items, n = parse_items(reply), len(positives[step.removeprefix("negatives/")])
        return items if len(items) == n else f"{len(items)} negatives for {n} positives"

    found = _collect(
        client,
        store,
        [f"negatives/{b}" for b in BLOCKS],
        ask_negatives,
        one_per_positive,
        value=canon,
        max_attempts=max_attempts,
        progress=progress,
    )

    records: list[dict[str, Any]] = []
    for block in BLOCKS:
        for pos, neg in zip(positives[block], found[f"negatives/{block}"], strict=True):
            if norm_item(neg) == norm_item(pos) or norm_item(neg) in seen:
                logger.warning(
                    "%s/%s: dropping a pair whose negative repeats a text: %r",
                    canon,
                    block,
                    neg[:60],
                )
                continue
            seen.add(norm_item(neg))
            records.append(
                {
                    "id": f"{canon}-pair-{len(records) + 1:03d}",
                    "value": canon,
                    "block": block,
                    "scenario": "",
                    "positive": pos,
                    "negative": neg,
                }
            )
    _write_jsonl(out, records)
    logger.info("%s: wrote %d pairs to %s", canon, len(records), out)
    return load_pairs(path=out)


def generate_straightforward(
    value: str,
    client: ChatClient,
    out_path: str | Path,
    *,
    n_per_label: int = 100,
    max_attempts: int = 3,
    store_path: str | Path | None = None,
    format_hint: str | None = None,
    progress: bool = False,
) -> list[LabeledSentence]:
    """Generate the straightforward (ablation) sentences of one value (Appendix A).

    Two independent prompts (Tab. 6) ask for ``n_per_label`` positive and
    ``n_per_label`` negative sentences; repeats are dropped and a reply with
    too few new sentences is asked again up to ``max_attempts`` times.

    Args:
        value: the value (any accepted spelling).
        client: the generating model.
        out_path: the file to write (e.g. ``data/straightforward/security.jsonl``).
        n_per_label: sentences per label (100 in the paper).
        max_attempts: tries per call whose reply is unusable.
        store_path: the call cache; default ``<out stem>.calls.jsonl`` beside it.
        format_hint: text appended to each prompt (default none: verbatim).
        progress: show a progress bar.

    Returns:
        The sentences as :func:`~conva_tl.datasets.load_straightforward` reads them.

    Raises:
        DataError: a reply stayed unusable after ``max_attempts`` tries.
        ApiError: the endpoint failed; finished calls are kept for the rerun.
    """
    canon = canonical_value(value)
    if n_per_label < 1:
        raise DataError(f"n_per_label must be >= 1, got {n_per_label}")
    out = Path(out_path)
    steps = {"straightforward/positive": 1, "straightforward/negative": 0}

    def ask(step: str) -> Conversation:
        return [
            {
                "role": "user",
                "content": straightforward_prompt(canon, steps[step], n_per_label, format_hint),
            }
        ]

    found = _collect(
        client,
        _store_for(out, store_path),
        list(steps),
        ask,
        _take_new(n_per_label, set()),
        value=canon,
        max_attempts=max_attempts,
        progress=progress,
    )
    records = [
        {"id": f"{canon}-sf-{i:03d}", "value": canon, "label": steps[step], "text": text}
        for i, (step, text) in enumerate(((step, t) for step in steps for t in found[step]), 1)
    ]
    _write_jsonl(out, records)
    logger.info("%s: wrote %d straightforward sentences to %s", canon, len(records), out)
    return load_straightforward(path=out)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="conva generate-data",
        description="Generate ConVA training data with an OpenAI-compatible model "
        "(prompts of the paper's Appendix A and B).",
    )
    p.add_argument(
        "--value",
        action="append",
        required=True,
        help="a value name, repeatable, or 'all' for the ten values",
    )
    p.add_argument("--kind", choices=("pairs", "straightforward", "both"), default="pairs")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder; files go to OUT/pairs/<value>.jsonl and OUT/straightforward/<value>.jsonl",
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="endpoint, e.g. http://localhost:8000/v1 (default $OPENAI_BASE_URL)",
    )
    p.add_argument("--model", default=None, help="model name (default $CONVA_DATAGEN_MODEL)")
    p.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the key (default OPENAI_API_KEY)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature (default 1.0, the chat API's default; retries need variety)",
    )
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=None, help="HTTP retries per request")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument(
        "--max-attempts", type=int, default=3, help="tries per call whose reply is unusable"
    )
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="items per prompt (default 25 for pairs, 100 for straightforward)",
    )
    p.add_argument(
        "--format-hint",
        action="store_true",
        help=f"append {DEFAULT_FORMAT_HINT!r} to the prompts (not in the paper)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main_generate_data(argv: list[str] | None = None) -> int:
    """``conva generate-data``: returns 0 on success, 2 on an error (as every ``conva`` subcommand)."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        values = (
            list(VALUES)
            if "all" in args.value
            else list(dict.fromkeys(canonical_value(v) for v in args.value))
        )
        config = ApiConfig.from_env(
            model=args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            model_env="CONVA_DATAGEN_MODEL",
        )
        overrides: dict[str, Any] = {"temperature": args.temperature}
        for field, given in (
            ("max_tokens", args.max_tokens),
            ("timeout_s", args.timeout),
            ("max_retries", args.max_retries),
            ("max_concurrency", args.max_concurrency),
        ):
            if given is not None:
                overrides[field] = given
        config = dataclasses.replace(config, **overrides)
        hint = DEFAULT_FORMAT_HINT if args.format_hint else None
        with ChatClient(config) as client:
            logger.info("generating %s data for %s with %r", args.kind, ", ".join(values), client)
            for value in values:
                if args.kind in ("pairs", "both"):
                    generate_pairs(
                        value,
                        client,
                        args.out / "pairs" / f"{value}.jsonl",
                        n_per_block=args.n or 25,
                        max_attempts=args.max_attempts,
                        format_hint=hint,
                        progress=True,
                    )
                if args.kind in ("straightforward", "both"):
                    generate_straightforward(
                        value,
                        client,
                        args.out / "straightforward" / f"{value}.jsonl",
                        n_per_label=args.n or 100,
                        max_attempts=args.max_attempts,
                        format_hint=hint,
                        progress=True,
                    )
    except ConvaError as exc:
        logger.error("%s", exc)
        return 2
    return 0


def _main() -> None:  # pragma: no cover - `python -m conva_tl.datagen`
    sys.exit(main_generate_data(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    _main()
