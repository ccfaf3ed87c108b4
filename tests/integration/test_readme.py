"""The README's Python snippets run as written and give sensible answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import conva_tl
from conva_tl.methods import DEFAULT_P0

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _sensible(text: str) -> bool:
    words = re.findall(r"[A-Za-z']+", text)
    return len(words) >= 5 and len(set(w.lower() for w in words)) >= 4


@pytest.mark.slow
def test_readme_snippets_run_and_answer_sensibly(embedded, monkeypatch) -> None:
    snippets = _snippets()
    assert len(snippets) == 2, "the README has two snippets; update this test with it"
    monkeypatch.setattr(conva_tl, "load_model", lambda *a, **k: embedded)  # loaded once per session
    ns: dict = {}
    exec(compile(snippets[0], "README.md#1", "exec"), ns)
    (answer,) = ns["answers"]
    assert _sensible(answer), answer
    exec(compile(snippets[1], "README.md#2", "exec"), ns)
    reply = ns["text"].split("assistant", 1)[-1]
    assert _sensible(reply), ns["text"]
    trace = ns["trace"]
    moved = trace[trace.eps > 0]
    assert len(moved) > 0
    assert (moved.p_after - DEFAULT_P0).abs().max() < 1e-3
