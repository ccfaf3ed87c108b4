"""Ablation of the target probability P0 (ConVA paper Eq. 6, Appx. I, Tab. 16).

ConVA moves every token's activation onto the probe's P_V = P0 contour, so P0
sets the control strength. For each value this answers the first --questions
held-out dilemma questions under the unsteered model and under ConVA at each
--p0 (ungated by default: --gate steers with the fitted gate), and reports, per
setting, CSR/FR when a judge is configured and always the judge-free measures:
the probe reading P_V of the answers, KL(base || steered) of the first answer
token on value-unrelated prompts and on the questions, the answers' perplexity
under the unsteered model and their distinct-2 ratio. The paper tuned P0 per
value in 0.88-0.975 for Llama-2-7b-chat; this is the basis for the embedded
model's default (conva_tl.pipeline.DEFAULT_P0).

Writes p0.csv (one row per value x setting), answers.csv, p0.png and run.json
to --out (default out/ablations/p0).

Usage:
    python analyses/ablate_p0.py [--values tradition stimulation] [--p0 0.6 0.75 0.9 0.95 0.99]
        [--questions 4] [--max-new-tokens 32] [--model NAME] [--vectors out/vectors] [--gate]
        [--model-judge NAME --base-url URL --api-key-env VAR]
"""

from __future__ import annotations

import _common as C

from conva_tl.analysis import sweep_p0

NAME = "p0"


def run(args) -> int:
    s = C.steering_setup(args)
    res = sweep_p0(
        s["model"],
        s["contexts"],
        s["vectors"],
        args.p0,
        config=s["config"],
        gates=s["gates"],
        mode=args.mode,
        judge=s["judge"],
    )
    cols = (
        ["value", "setting", "p0"]
        + [c for c in C.STEERING_COLUMNS if c not in ("value", "setting")]
        + list(C.EPS_COLUMNS)
    )
    C.print_table(
        res.table,
        cols,
        title=f"P0 sweep ({args.mode}, {'gated' if args.gate else 'ungated'}; "
        f"{args.questions} questions x {args.max_new_tokens} tokens per setting):",
    )
    print(C.EPS_NOTE)
    C.print_judge_status(res.judged)
    paths = C.write_outputs(
        args.out,
        NAME,
        res.table,
        lambda p: C.plot_measures(
            res.table,
            "p0",
            C.steering_metrics(res.judged),
            p,
            title="ConVA target probability P0 (dashed: unsteered base)",
        ),
        settings=C.run_settings(args, s["model"]),
        extra={"answers": res.answers},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__)
    p.add_argument(
        "--p0",
        type=float,
        nargs="+",
        default=[0.6, 0.75, 0.9, 0.95, 0.99],
        help="target probabilities (default: 0.6 0.75 0.9 0.95 0.99)",
    )
    p.add_argument("--mode", choices=("per_token", "per_prompt"), default="per_token")
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
