"""Turning an LLM's list-shaped reply into clean items.

Replies to the data-generation prompts come as numbered lists, bullets, JSON
arrays or quoted lines, often with a friendly sentence before or after.
:func:`parse_items` accepts all of these; :func:`norm_item` is the key used to
spot duplicates.
"""

from __future__ import annotations

import json
import re

__all__ = ["parse_items", "norm_item", "has_words"]

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
        return [c for c in (_clean(i) for i in from_json) if has_words(c)]
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
    return [c for c in (_clean(i) for i in items) if has_words(c)]


def has_words(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def norm_item(text: str) -> str:
    # Same normalisation as the uniqueness check of conva_tl.datasets.
    return " ".join(text.lower().split())
