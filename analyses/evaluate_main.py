"""Main comparison of value control methods (ConVA paper Sec. 4.2, Fig. 2), fast defaults.

A thin wrapper over ``conva evaluate comparison`` with defaults that finish in
minutes on the embedded SmolLM2-135M-Instruct on a CPU: 2 values, 4 questions
per value, 40 new tokens, all methods (base, ica, caa, conva, conva-nogate,
conva-sf). Every other ``conva evaluate`` option passes through (``--methods``,
``--subject-model`` for any model, ``--base-url/--model/--api-key-env`` for a
judge, ``--p0``, ``--batch-size`` ...). Without a judge the answers are still
generated and stored, and the judge-free measures are reported. Rerun to resume.

Usage:
    python analyses/evaluate_main.py [--values security achievement] [--questions 4]
        [--max-new-tokens 40] [--out out/eval/comparison] [conva evaluate options]
"""

from __future__ import annotations

import argparse

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other options go to `conva evaluate comparison` (see `conva evaluate --help`).",
    )
    parser.add_argument("--values", nargs="+", default=["security", "achievement"])
    parser.add_argument(
        "--questions", type=int, default=4, help="eval questions per value (default: 4)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=40, help="default: 40")
    parser.add_argument("--out", default="out/eval/comparison")
    args, rest = parser.parse_known_args(argv)
    return main_evaluate(
        [
            "comparison",
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
