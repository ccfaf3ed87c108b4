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

import argparse

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other options go to `conva evaluate priority` (see `conva evaluate --help`).",
    )
    parser.add_argument("--values", nargs="+", default=["security", "achievement"])
    parser.add_argument(
        "--questions", type=int, default=4, help="eval questions per value (default: 4)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=40, help="default: 40")
    parser.add_argument("--out", default="out/eval/priority")
    args, rest = parser.parse_known_args(argv)
    return main_evaluate(
        [
            "priority",
            "--values",
            *args.values,
            "--questions",
            str(args.questions),
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--out",
            args.out,
            *rest,
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
