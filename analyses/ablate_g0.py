"""Ablation of the gate threshold g0 (ConVA paper Eq. 5, Appx. I: g0 in 0.007-0.6 per value).

The gate g(x) decides per prompt whether to steer. For each value this scores
three prompt sets with the value's fitted activation gate (conva_tl.gate,
fitted with `conva fit`, reused from --vectors): the value's held-out eval
dilemma questions (should open), the shipped value-unrelated prompts (should
stay closed; NOTE: they are the gate's own training negatives, so they flatter
it) and multiple-choice prompts (conva_tl.datasets.load_mc; never seen by the
gate). For every g0 it reports the share of each set gated open and the mean
KL(base || steered) of the first answer token under gated ConVA at --p0.

No generation is needed: the gate decides before the first controlled layer,
so a closed prompt's output is exactly the base model's and KL(g0) is the
ungated KL of the prompts whose score exceeds g0 (one steered pass per set).

Writes g0.csv (value x g0), gate_scores.csv (per prompt: score, ungated KL),
auroc.csv, g0.png and run.json to --out (default out/ablations/g0).

Usage:
    python analyses/ablate_g0.py [--values tradition stimulation] [--g0 0.05 0.1 ... 0.95]
        [--questions 12] [--unrelated 16] [--mc 16] [--p0 0.9] [--vectors out/vectors]
"""

from __future__ import annotations

import _common as C
import numpy as np
import pandas as pd

from conva_tl.analysis import gate_sweep, sample_unrelated
from conva_tl.datasets import load_mc, load_questions
from conva_tl.evaluation import mc_prompt
from conva_tl.pipeline import DEFAULT_P0

NAME = "g0"
DEFAULT_G0 = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


def plot(table, scores, fitted, path):
    values = list(dict.fromkeys(table["value"]))
    fig = C.new_figure(12.0, 3.4 * len(values))
    sets = [c.removeprefix("open_") for c in table.columns if c.startswith("open_")]
    for r, v in enumerate(values):
        t = table[table.value == v]
        ax = fig.add_subplot(len(values), 3, 3 * r + 1)
        for s in sets:
            ax.plot(t["g0"], t[f"open_{s}"], marker=".", label=s)
        ax.axvline(fitted.get(v, 0.5), color="k", ls="--", lw=0.8)
        ax.set(
            xlabel="g0", ylabel="share gated open", title=f"{v}: gate open rate", ylim=(-0.02, 1.02)
        )
        ax.legend(fontsize=7)
        ax = fig.add_subplot(len(values), 3, 3 * r + 2)
        for s in sets:
            ax.plot(t["g0"], t[f"kl_{s}"], marker=".", label=s)
        ax.axvline(fitted.get(v, 0.5), color="k", ls="--", lw=0.8)
        ax.set(
            xlabel="g0", ylabel="mean KL(base||steered), nats", title=f"{v}: cost of gated control"
        )
        ax = fig.add_subplot(len(values), 3, 3 * r + 3)
        g = scores[scores.value == v]
        for s in sets:
            ax.hist(g[g.set == s]["score"], bins=np.linspace(0, 1, 21), alpha=0.5, label=s)
        ax.set(xlabel="gate score", title=f"{v}: gate scores")
    fig.suptitle("Gate threshold g0 (dashed: the gate's fitted threshold)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def run(args) -> int:
    model = C.load_subject(args)
    values = C.values_of(args)
    vectors, gates = C.get_vectors(model, args, values, gates=True)
    unrelated = sample_unrelated(args.unrelated)
    mc = [mc_prompt(q) for q in load_mc()[: args.mc]] if args.mc else []
    tables, scores, aurocs = [], [], []
    for v in values:
        sets = {
            "value": [q.question for q in load_questions(v, split="eval")[: args.questions]],
            "unrelated": unrelated,
        }
        if mc:
            sets["mc"] = mc
        res = gate_sweep(
            model,
            vectors[v],
            gates[v],
            args.g0,
            prompt_sets=sets,
            p0=args.p0,
            batch_size=args.batch_size,
        )
        tables.append(res.table)
        scores.append(res.scores)
        aurocs.append(
            res.auroc.assign(
                block=gates[v].block,
                fitted_threshold=gates[v].threshold,
                heldout_auroc=gates[v].metrics.get("heldout_auroc", float("nan")),
            )
        )
    table, score_df, auroc = pd.concat(tables), pd.concat(scores), pd.concat(aurocs)
    C.print_table(
        table,
        list(table.columns),
        title=f"Gate threshold sweep (ConVA P0 {args.p0:g}; open = share of "
        "prompts with score > g0; kl = mean KL(base || steered) at the answer start, nats):",
    )
    C.print_table(
        auroc,
        list(auroc.columns),
        title="Gate AUROC, value questions vs each negative set "
        "(unrelated = the gate's training negatives; mc = unseen):",
    )
    print(
        "\nJudge-free by design: this sweep measures gating and the KL cost only (no generation)."
    )
    fitted = {v: gates[v].threshold for v in values}
    paths = C.write_outputs(
        args.out,
        NAME,
        table,
        lambda p: plot(table, score_df, fitted, p),
        settings=C.run_settings(args, model),
        extra={"gate_scores": score_df, "auroc": auroc},
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__, generation=False, judge=False)
    p.add_argument("--g0", type=float, nargs="+", default=DEFAULT_G0, help="gate thresholds")
    p.add_argument(
        "--questions", type=int, default=12, help="value eval questions per value (default: 12)"
    )
    p.add_argument("--unrelated", type=int, default=16, help="unrelated prompts (default: 16)")
    p.add_argument(
        "--mc", type=int, default=16, help="multiple-choice prompts (default: 16; 0 = none)"
    )
    p.add_argument("--p0", type=float, default=DEFAULT_P0, help=f"default: {DEFAULT_P0}")
    return C.main_wrapper(run, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
