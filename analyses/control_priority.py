"""Value control priority (ConVA paper Sec. 4.4, Fig. 4), fast defaults.

A thin wrapper over ``conva evaluate priority``: ConVA under an opposite-value
role-play prompt (``conva_tl.evaluation.OPPOSITE_TEMPLATE``) and under the
same-value ICA prompt, next to the prompts alone, the base model and plain
ConVA. Defaults finish in minutes on the embedded model: 2 values, 4 questions,
40 new tokens. Every other ``conva evaluate`` option passes through (judge,
``--subject-model``, ``--p0`` ...). Rerun to resume.

Usage:
    python analyses/control_priority.py [--values security achievement] [--questions 4]
        [--max-new-tokens 40] [--out out/eval/priority] [conva evaluate options]
"""

from __future__ import annotations

import _common as C

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    return C.forward(
        main_evaluate,
        "priority",
        __doc__,
        argv,
        out="out/eval/priority",
        counts=[
            ("--questions", 4, "eval questions per value (default: 4)"),
            ("--max-new-tokens", 40, "default: 40"),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
