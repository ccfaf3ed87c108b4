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

import argparse

from conva_tl.evaluation import main_evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other options go to `conva evaluate capability` (see `conva evaluate --help`).",
    )
    parser.add_argument("--values", nargs="+", default=["security", "achievement"])
    parser.add_argument(
        "--mc-limit", type=int, default=40, help="MC questions (default: 40 of 120)"
    )
    parser.add_argument(
        "--unrelated-limit", type=int, default=40, help="unrelated prompts (default: 40)"
    )
    parser.add_argument(
        "--questions", type=int, default=10, help="value questions per value (default: 10)"
    )
    parser.add_argument("--out", default="out/eval/capability")
    args, rest = parser.parse_known_args(argv)
    return main_evaluate(
        [
            "capability",
            "--values",
            *args.values,
            "--mc-limit",
            str(args.mc_limit),
            "--unrelated-limit",
            str(args.unrelated_limit),
            "--questions",
            str(args.questions),
            "--out",
            args.out,
            *rest,
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
