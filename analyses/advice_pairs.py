"""Advice pairs: one dilemma question, two assistant replies taking opposite sides.

Judged in development round 10 (`analyses/results/control_quality.json`,
`development_round10_advice_pairs`) and not shipped: the probe fitted on them steers no better
than the shipped pairs on the six values they were written for, and with the paper's layer rule
it selects up to 24 layers and breaks fluency. The 600 records in `analyses/data/advice_pairs/`
(100 each for self-direction, stimulation, hedonism, achievement, conformity, universalism) were
written for this project by six writers from a one-page brief: a neutral question with two
concrete options, a `positive` reply recommending the option that serves the value with a reason
in its terms, and a `negative` reply recommending the competing option, equally warm and long.

This script turns them into pair folders that `control_quality.py fit --pairs` reads:

    python analyses/advice_pairs.py --format chat --out out/pairs_adv_chat
    python analyses/control_quality.py fit --pairs out/pairs_adv_chat --vectors out/v_adv_chat \
        --values self-direction stimulation hedonism achievement conformity universalism

``chat``: each text is the chat prompt for the question (exactly what generation sees, default
system prompt included) followed by the reply; ``raw``: the question, a space, the reply.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from conva_tl.datasets import read_jsonl
from conva_tl.prompts import format_chat

DATA = Path(__file__).parent / "data" / "advice_pairs"
_FIRST_PERSON = re.compile(r"\b(I|me|my)\b")


def _prefix(question: str, tokenizer: Any | None) -> str:
    """The shared start of both texts: the chat prompt (with a tokenizer) or the raw question."""
    return format_chat(tokenizer, question) if tokenizer is not None else question + " "


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--format", choices=["chat", "raw"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)
    tokenizer = None
    if args.format == "chat":
        from conva_tl.model import load_model

        tokenizer = load_model(args.model).tokenizer
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(DATA.glob("*.jsonl")):
        with open(args.out / path.name, "w") as f:
            for _, r in read_jsonl(path):
                person = "first" if _FIRST_PERSON.search(r["question"]) else "third"
                head = _prefix(r["question"], tokenizer)
                rec = {
                    "id": r["id"],
                    "value": r["value"],
                    "block": f"{person}_person_sentence",
                    "scenario": r["scenario"],
                    "positive": head + r["positive"],
                    "negative": head + r["negative"],
                }
                f.write(json.dumps(rec) + "\n")
        print(f"{path.stem}: wrote {args.out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
