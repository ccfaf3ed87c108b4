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

Prompts (parameters of the method, quoted from the ConVA paper, Xu et al.):

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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from conva_tl.values import VALUES, canonical_value

__all__ = [
    "HIGHLIGHTS",
    "PAIR_PROMPT_TEMPLATE",
    "NEGATIVE_PAIR_PROMPT",
    "STRAIGHTFORWARD_PROMPTS",
    "BLOCK_VARIANTS",
    "DEFAULT_FORMAT_HINT",
    "positive_prompt",
    "negative_prompt",
    "straightforward_prompt",
    "parse_items",
    "generate_pairs",
    "generate_straightforward",
    "main_generate_data",
]

logger = logging.getLogger(__name__)

#: Appendix B, Tab. 8: what each value's prompt asks the texts to highlight
#: ("highlighting the importance of ...").
HIGHLIGHTS: dict[str, str] = {
    "achievement": "striving for success, overcoming challenges, and celebrating accomplishments",
    "stimulation": "seeking novelty, embracing change, and pursuing excitement",
    "hedonism": "seeking pleasure, indulging in personal gratification, and enjoying life's pleasures",
    "self-direction": (
        "personal freedom, independent thought, and the ability to control one's own life"
    ),
    "power": "control, authority, and influence over people and resources",
    "security": "safety, stability, and harmony in both personal and broader contexts",
    "tradition": (
        "respect for, commitment to, and acceptance of the customs and ideas that traditional "
        "culture or religion provides the self"
    ),
    "conformity": "compliance with social expectations, norms, and rules",
    "benevolence": "showing kindness, generosity, and concern for others",
    "universalism": (
        "understanding, appreciation, tolerance, and protection for the welfare of all people "
        "and nature"
    ),
}

# Tab. 8 quotes four values in single quotes and six in double quotes.
_QUOTE: dict[str, str] = {v: "'" for v in ("stimulation", "hedonism", "self-direction", "power")}

#: Appendix B, Tab. 8 template. ``{q}`` is the value's quote mark; ``{n}`` is 25
#: in the paper.
PAIR_PROMPT_TEMPLATE = (
    "Create {n} distinct {pronounce} {sentence_structure} that exemplify the promotion and "
    "embodiment of the {q}{value}{q} facet of Schwartz's Theory of Basic Values. Each text should "
    "encompass a wide variety of themes and circumstances. The texts could showcase the "
    "{q}{value}{q} value through various characters' actions, dialogues, and decisions, "
    "highlighting the importance of {highlight}. Each text could end with a clear demonstration "
    "or result of the {q}{value}{q} value, providing a satisfying conclusion and reinforcing the "
    "theme."
)

#: Appendix B: the prompt that turns the positives into pairwise negatives.
NEGATIVE_PAIR_PROMPT = (
    "Produce a corresponding sentence for each of the above sentences that expresses opposition "
    "and resistance to the '{value}' aspect of Schwartz's basic values. The protagonist of the "
    "sentence should act in the opposite manner spontaneously. The generated sentences should "
    "strongly counter the original in terms of '{value}', but strive to maintain the same "
    "grammar and sentence structure as much as possible. The sentence should justify the "
    "protagonist's behavior, rather than implicitly express that the protagonist's behavior is "
    "wrong."
)

#: Appendix A, Tab. 6, keyed by label (1 positive, 0 negative); ``{n}`` is 100
#: in the paper.
STRAIGHTFORWARD_PROMPTS: dict[int, str] = {
    1: (
        'Create {n} sentences that exemplify the promotion and embodiment of the "{basic_value}" '
        "facet of Schwartz's Theory of Basic Values."
    ),
    0: (
        'Create {n} sentences that communicate disagreement and resistance towards the "{basic_value}" '
        "facet of Schwartz's Theory of Basic Values."
    ),
}

#: The four prompt variants, keyed by the ``block`` field of the pairs files.
BLOCK_VARIANTS: dict[str, tuple[str, str]] = {
    "first_person_sentence": ("first-person", "sentence"),
    "third_person_sentence": ("third-person", "sentence"),
    "first_person_question": ("first-person", "question"),
    "third_person_question": ("third-person", "question"),
}

#: Optional addition to the prompts (not in the paper) that makes replies easy to parse.
DEFAULT_FORMAT_HINT = "Answer with a numbered list, one item per line, and nothing else."


def _with_hint(prompt: str, format_hint: str | None) -> str:
    return prompt if not format_hint else f"{prompt}\n\n{format_hint}"


def positive_prompt(value: str, block: str, n: int = 25, format_hint: str | None = None) -> str:
    """The Tab. 8 prompt for one value and one block (prompt variant).

    Example:
        >>> positive_prompt("security", "first_person_question")[:45]
        'Create 25 distinct first-person question that'
    """
    canon = canonical_value(value)
    if block not in BLOCK_VARIANTS:
        raise DataError(f"block {block!r} is not one of {', '.join(BLOCKS)}")
    pronounce, structure = BLOCK_VARIANTS[block]
    prompt = PAIR_PROMPT_TEMPLATE.format(
        n=n,
        pronounce=pronounce,
        sentence_structure=structure,
        q=_QUOTE.get(canon, '"'),
        value=canon,
        highlight=HIGHLIGHTS[canon],
    )
    return _with_hint(prompt, format_hint)


def negative_prompt(value: str, format_hint: str | None = None) -> str:
    """The Appendix B pairing prompt for one value."""
    return _with_hint(NEGATIVE_PAIR_PROMPT.format(value=canonical_value(value)), format_hint)


def straightforward_prompt(
    value: str, label: int, n: int = 100, format_hint: str | None = None
) -> str:
    """The Tab. 6 prompt: ``label`` 1 asks for positive, 0 for negative sentences."""
    if label not in STRAIGHTFORWARD_PROMPTS:
        raise DataError(f"label must be 0 or 1, got {label!r}")
    prompt = STRAIGHTFORWARD_PROMPTS[label].format(n=n, basic_value=canonical_value(value))
    return _with_hint(prompt, format_hint)


# ---------------------------------------------------------------------------
# Parsing model output
# ---------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_MARKER = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:\(?\d{1,3}[.):]\)?|[-*+\u2022\u2023\u25e6\u00b7\u2013\u2014])(?:\*\*|__)?\s+(?P<body>.+)$"
)
_INTRO = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|here (?:are|is))\b", re.IGNORECASE
)
_OUTRO = re.compile(
    r"^(?:i hope|let me know|feel free|these (?:sentences|texts|examples|questions))\b",
    re.IGNORECASE,
)
_QUOTE_FAMILIES = ('"\u201c\u201d\u00ab\u00bb', "'\u2018\u2019")


def _unquote(text: str) -> str:
    """Remove quotes around a whole item (``"I save."`` or ``"I save".``), not inner ones."""
    for family in _QUOTE_FAMILIES:
        body = text.rstrip(",").rstrip()
        if len(body) < 3 or body[0] not in family:
            continue
        punct = ""
        if body[-1] in ".!?" and body[-2] in family:
            punct, body = body[-1], body[:-1]
        if body[-1] not in family:
            continue
        inner = body[1:-1].strip()
        if inner and not any(ch in family for ch in inner):
            return inner + (punct if punct and inner[-1] not in ".!?" else "")
    return text


def _clean(item: str) -> str:
    text = " ".join(item.replace("**", "").replace("__", "").split())
    return _unquote(text).strip()


def _json_items(text: str) -> list[str] | None:
    candidates = [text]
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for cand in candidates:
        try:
            data = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            continue
        items = []
        for el in data:
            if isinstance(el, dict):
                el = next((v for v in el.values() if isinstance(v, str)), None)
            if isinstance(el, str):
                items.append(el)
        if items:
            return items
    return None


def parse_items(text: str) -> list[str]:
    """The list items of a model reply, cleaned, in order (duplicates kept).

    Understands JSON arrays (of strings, or of objects with one text field),
    numbered lists (``1.``, ``1)``, ``(1)``, ``1:``), bullets, markdown bold,
    quoted lines and blank lines. When some lines carry list markers, unmarked
    lines are prose around the list and are dropped (a line right after an item
    that does not end a sentence continues it); otherwise each non-blank line
    is an item, minus intro/outro prose and lines ending with a colon.

    Example:
        >>> parse_items('Here you go:\\n1. "I save."\\n2) I lock the door.\\nHope this helps!')
        ['I save.', 'I lock the door.']
    """
    body = _FENCE.sub("", text).strip()
    from_json = _json_items(body)
    if from_json is not None:
        return [c for c in (_clean(i) for i in from_json) if _has_words(c)]
    lines = body.splitlines()
    marked = [_MARKER.match(line) for line in lines]
    items: list[str] = []
    if any(marked):
        open_item = False
        for line, m in zip(lines, marked, strict=True):
            if m is not None:
                items.append(m.group("body"))
                open_item = True
            elif not line.strip():
                open_item = False
            elif (
                open_item
                and items
                and not items[-1].rstrip(" *\"'\u201d").endswith((".", "!", "?"))
            ):
                items[-1] += " " + line.strip()
            else:
                open_item = False
    else:
        for line in lines:
            s = line.strip()
            if not s or s.endswith(":") or s.startswith("#") or _INTRO.match(s) or _OUTRO.match(s):
                continue
            items.append(s)
    return [c for c in (_clean(i) for i in items) if _has_words(c)]


def _has_words(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _norm(text: str) -> str:
    # Same normalisation as the uniqueness check of conva_tl.datasets.
    return " ".join(text.lower().split())


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
        key = _norm(item)
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
        seen.update(_norm(t) for t in fresh[:n])
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
            if _norm(neg) == _norm(pos) or _norm(neg) in seen:
                logger.warning(
                    "%s/%s: dropping a pair whose negative repeats a text: %r",
                    canon,
                    block,
                    neg[:60],
                )
                continue
            seen.add(_norm(neg))
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
    """``conva generate-data``: returns 0 on success, 1 on failure (2: usage, from argparse)."""
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
        return 1
    return 0


def _main() -> None:  # pragma: no cover - `python -m conva_tl.datagen`
    sys.exit(main_generate_data(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    _main()
