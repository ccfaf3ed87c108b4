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

import _common as C

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    return C.forward(
        main_evaluate,
        "comparison",
        __doc__,
        argv,
        out="out/eval/comparison",
        counts=[
            ("--questions", 4, "eval questions per value (default: 4)"),
            ("--max-new-tokens", 40, "default: 40"),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
