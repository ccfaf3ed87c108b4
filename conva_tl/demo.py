"""The main job (``conva demo`` / ``make demo``) on the embedded model.

Fits all ten values from the shipped context-controlled pairs (or reloads
them from the output folder), prints the per-value table of best layer,
accuracy, control layers and gate quality, then answers one held-out
evaluation question per value with the base model and with ConVA and prints
the two side by side. Everything is written to the output folder:
artifacts, ``summary.csv``, ``answers.jsonl`` and ``report.md``.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from conva_tl.datasets import load_questions
from conva_tl.errors import ConvaError
from conva_tl.generate import GenerationConfig, generate
from conva_tl.identify import value_names
from conva_tl.methods import ConVA
from conva_tl.model import load_model
from conva_tl.model_protocol import HookedModel
from conva_tl.pipeline import (
    DEFAULT_P0,
    FitSettings,
    check_output_folder,
    fit_all,
    summary_table,
)
from conva_tl.steering import logit
from conva_tl.values import VALUES

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


@runtime_checkable
class TextSink(Protocol):
    """Where the demo prints: ``sys.stdout``, an open text file, ``io.StringIO``."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def run_demo(
    out_dir: str | Path = "out/demo",
    *,
    model: HookedModel | None = None,
    values: tuple[str, ...] = VALUES,
    p0: float = DEFAULT_P0,
    max_new_tokens: int = 60,
    question_index: int = 0,
    stream: TextSink | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the summary table and the answers (prints to ``stream``, default stdout)."""
    stream = stream if stream is not None else sys.stdout
    # Every argument is checked before the model is loaded and ten values fitted.
    logit(p0)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=max(len(values), 1))
    values = tuple(value_names(values))
    if isinstance(question_index, bool) or not isinstance(question_index, int):
        raise ConvaError(f"question_index must be an integer, got {question_index!r}")
    out = check_output_folder(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = lambda s="": print(s, file=stream, flush=True)  # noqa: E731 - the demo's own output
    t0 = time.perf_counter()
    say("conva-tl demo: ConVA on the embedded SmolLM2-135M-Instruct")
    model = model if model is not None else load_model()
    say(
        f"model loaded ({time.perf_counter() - t0:.0f}s). Identifying value vectors for {len(values)} values..."
    )
    vectors, gates = fit_all(model, out, values, settings=FitSettings())
    table = summary_table(vectors, gates)
    say(
        "\nValue vectors (held-out probe accuracy; control = accuracy > 0.9, last 5 layers excluded):"
    )
    say(table.to_string())
    questions = [load_questions(v, split="eval")[question_index].question for v in values]
    say(f"\nAnswering {len(values)} evaluation questions (base, batched)...")
    base = generate(model, questions, config=cfg, progress=False)
    steered = []
    for v, q in zip(values, questions, strict=True):
        method = ConVA(vectors[v], p0=p0, gate=gates.get(v))
        steered.append(generate(model, [q], intervention=method, config=cfg, progress=False)[0])
    records = []
    for v, q, a_base, a_conva in zip(values, questions, base, steered, strict=True):
        say("\n" + "=" * 100)
        say(f"[{v}] {q}")
        say("-" * 100)
        for label, ans in (("base", a_base), (f"ConVA p0={p0}", a_conva)):
            say(
                textwrap.fill(
                    ans or "(empty)",
                    96,
                    initial_indent=f"{label:>14}: ",
                    subsequent_indent=" " * 16,
                )
            )
        records.append({"value": v, "question": q, "base": a_base, "conva": a_conva, "p0": p0})
    with (out / "answers.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    report = [
        "# conva-tl demo report",
        "",
        f"Model: {model.cfg.model_name}",
        "",
        table.to_markdown() if _has_tabulate() else table.to_string(),
        "",
    ]
    for r in records:
        report += [
            f"## {r['value']}",
            "",
            f"**Q:** {r['question']}",
            "",
            f"**Base:** {r['base']}",
            "",
            f"**ConVA (P0={p0}):** {r['conva']}",
            "",
        ]
    (out / "report.md").write_text("\n".join(report))
    say(
        f"\nDone in {time.perf_counter() - t0:.0f}s. Artifacts, answers.jsonl and report.md are in {out}/"
    )
    return {"table": table, "answers": records}


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
