"""Ablation of the control mode: per-token (the paper) vs per-prompt (the authors' code).

The paper computes eps for every token at every controlled layer (Eq. 6); the
authors' code computes one eps per prompt and layer from the chat prompt's
last token and adds it unchanged to every position (REFERENCE.md). Both run
here at --p0 (default: conva_tl.pipeline.DEFAULT_P0) with the trace on, and
each reports CSR/FR with a judge, else the judge-free measures (probe reading
P_V of the answers, KL on unrelated prompts and on the questions, perplexity
under the base model, distinct-2), plus the control actually applied: mean
|eps| over all traced (token, layer) cells, over prompt tokens and over
generated tokens, and the share of cells moved.

Writes control_mode.csv, answers.csv, control_mode.png and run.json to --out
(default out/ablations/control_mode).

Usage:
    python analyses/ablate_control_mode.py [--values tradition stimulation] [--p0 0.9] [--questions 4]
        [--max-new-tokens 32] [--vectors out/vectors] [--gate]
"""

from __future__ import annotations

import _common as C

from conva_tl.analysis import run_settings
from conva_tl.methods import Base, ConVA
from conva_tl.pipeline import DEFAULT_P0

NAME = "control_mode"
EPS = ("eps_abs", "eps_abs_prompt", "eps_abs_generated", "moved", "p_before", "saturated")


def run(args) -> int:
    s = C.steering_setup(args)
    gates = s["gates"] or {}
    methods = {
        v: {
            "base": Base(),
            **{
                m: ConVA(s["vectors"][v], p0=args.p0, gate=gates.get(v), mode=m)
                for m in ("per_token", "per_prompt")
            },
        }
        for v in s["values"]
    }
    res = run_settings(
        s["model"], s["contexts"], methods, config=s["config"], judge=s["judge"], trace=True
    )
    C.print_table(
        res.table,
        [*C.STEERING_COLUMNS, *EPS],
        title=f"Control mode (P0 {args.p0:g}, {'gated' if args.gate else 'ungated'}; "
        f"{args.questions} questions x {args.max_new_tokens} tokens):",
    )
    print(
        "eps_abs*: mean |eps| per traced (token, layer) cell, all / prompt tokens / generated tokens; "
        "moved: share of cells with eps != 0"
    )
    C.print_judge_status(res.judged)
    metrics = [
        *C.steering_metrics(res.judged),
        ("eps_abs_generated", "mean |eps| on generated tokens"),
    ]
    paths = C.write_outputs(
        args.out,
        NAME,
        res.table,
        lambda p: C.plot_measures(
            res.table,
            "setting",
            metrics,
            p,
            categorical=True,
            title=f"Per-token vs per-prompt control (P0 {args.p0:g}; dashed: base)",
        ),
        settings=C.run_settings(args, s["model"]),
        extra={"answers": res.answers},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__)
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
