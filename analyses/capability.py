"""General capability under control (ConVA paper Sec. 4.3, Tab. 5, Fig. 3), fast defaults.

A thin wrapper over ``conva evaluate capability``: multiple-choice accuracy of
the base model, ConVA with its gate and ConVA without it; the gate's score
distribution on value-related vs unrelated prompts (``gate_scores.png``); and the
judge-free next-token KL(base || steered) at the answer start. Defaults finish
in minutes on the embedded model: 2 values, 40 MC questions, 40 unrelated
prompts, 10 value questions. ``--mc PATH`` takes real MMLU csv files or folders;
``--subject-model`` any model.

Usage:
    python analyses/capability.py [--values security achievement] [--mc-limit 40]
        [--unrelated-limit 40] [--questions 10] [--out out/eval/capability] [conva evaluate options]
"""

from __future__ import annotations

import _common as C

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    return C.forward(
        main_evaluate,
        "capability",
        __doc__,
        argv,
        out="out/eval/capability",
        counts=[
            ("--mc-limit", 40, "MC questions (default: 40 of 120)"),
            ("--unrelated-limit", 40, "unrelated prompts (default: 40)"),
            ("--questions", 10, "value questions per value (default: 10)"),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
