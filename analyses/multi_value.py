"""Judged evidence for multi-value control (issue 12, item 5).

Three requests (:data:`conva_tl.evaluation.multi_eval.COMBOS`): neighbours raised
together (benevolence + universalism) and the opposite pair power / universalism,
one raised and the other capped, both ways. Each is answered by the base model,
single-value ConVA, MultiConVA and summed CAA vectors on the eval questions of
its values; the answers are judged blind on every value they concern, and read
by probes that did not steer them (fitted on the straightforward sentences) on
all ten values for the side effects around the circumplex.

    python analyses/multi_value.py answer --out out/mv --vectors out/v_free
    python analyses/multi_value.py blind --out out/mv        # give items + GUIDE to 2 annotators
    python analyses/multi_value.py join --out out/mv --labels A.jsonl B.jsonl \
        --read-vectors out/v_sf --results analyses/results/multi_value.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from conva_tl.errors import ConvaError
from conva_tl.evaluation.annotation import agreement, join_labels, write_blind
from conva_tl.evaluation.answers import AnswerStore
from conva_tl.evaluation.devloop import spread_questions
from conva_tl.evaluation.multi_eval import COMBOS, combo_methods, combo_table, judged_records
from conva_tl.methods import DEFAULT_CAA_COEF, DEFAULT_P0
from conva_tl.values import VALUES, circumplex_angle


def _answer(args: argparse.Namespace) -> int:
    from conva_tl.artifacts import load_gates, load_vectors
    from conva_tl.evaluation.runner import generate_answers
    from conva_tl.generate import GenerationConfig
    from conva_tl.model import load_model

    model = load_model(args.model)
    names = sorted({v for c in COMBOS for v in c.question_values})
    vectors = load_vectors(args.vectors, names, model=model)
    gates = load_gates(args.vectors, names, model=model)
    questions = {v: spread_questions(v, args.questions) for v in names}
    jobs, seen = [], set()
    for combo in COMBOS:
        methods = combo_methods(combo, vectors, gates, p0=args.p0, pmax=args.pmax, coef=args.coef)
        for qv in combo.question_values:
            for name, method in methods.items():
                if (qv, name) not in seen:
                    seen.add((qv, name))
                    jobs.append((qv, method, questions[qv]))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records, timing = generate_answers(model, AnswerStore(out / "answers.jsonl"), jobs, config)
    run = {
        "command": " ".join(sys.argv),
        "vectors": str(args.vectors),
        "p0": args.p0,
        "pmax": args.pmax,
        "caa_coef": args.coef,
        "generation": config.__dict__,
        "questions": {v: [q.id for q in qs] for v, qs in questions.items()},
        "answers": [[r["value"], r["method"], r["qid"], r["settings_id"]] for r in records],
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    print(f"{len(records)} answers in {out / 'answers.jsonl'} ({timing['answers']:.0f} new)")
    return 0


def _answers(out: Path) -> list[dict[str, Any]]:
    run = json.loads((out / "run.json").read_text())
    wanted = {tuple(k) for k in run["answers"]}
    store = AnswerStore(out / "answers.jsonl")
    return [
        r
        for r in store.records()
        if (r["value"], r["method"], r["qid"], r["settings_id"]) in wanted
    ]


def _blind(args: argparse.Namespace) -> int:
    out = Path(args.out)
    items = judged_records(COMBOS, _answers(out))
    paths = write_blind(items, out / "blind", seed=args.seed)
    print(f"{len(items)} items blinded: give {paths['items']} and {paths['guide']} to each")
    print(f"annotator; keep {paths['key']} from them")
    return 0


def _readings(model: Any, answers: list[dict[str, Any]], folder: str) -> dict[tuple, float]:
    """Probe logit of every answer on all ten values (probes that did not steer), one pass."""
    from conva_tl.artifacts import load_vectors
    from conva_tl.evaluation.scoring import readings_on_values

    vectors = load_vectors(folder, list(VALUES), model=model)
    probes = {v: (vv, vv.best_layer) for v, vv in vectors.items()}
    got = readings_on_values(model, [a["answer"] for a in answers], probes)
    return {
        (a["method"], a["qid"], value): float(got[value][i])
        for value in VALUES
        for i, a in enumerate(answers)
    }


def _side_effects(answers: list[dict[str, Any]], readings: dict[tuple, float]) -> dict:
    """Per combo x method: mean probe-logit change vs base on every value (combo's questions)."""
    by_q = {(a["method"], a["qid"]): a for a in answers}
    result: dict[str, dict[str, dict[str, float]]] = {}
    for combo in COMBOS:
        qids = sorted({a["qid"] for a in answers if a["value"] in combo.question_values})
        for method in combo.methods[1:]:
            deltas = {}
            for value in VALUES:
                diffs = [
                    readings[(method, q, value)] - readings[("base", q, value)]
                    for q in qids
                    if (method, q) in by_q and ("base", q) in by_q
                ]
                ok = [d for d in diffs if not math.isnan(d)]
                deltas[value] = round(sum(ok) / len(ok), 4) if ok else float("nan")
            result.setdefault(combo.name, {})[method] = deltas
    return result


def _plot(side: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    angles = [circumplex_angle(v) for v in VALUES]
    every = [x for methods in side.values() for d in methods.values() for x in d.values()]
    lo, hi = min(every) - 0.25, max(every) + 0.25
    colours = {"conva": ["tab:blue", "tab:purple"], "multi": ["tab:green"], "caa-sum": ["tab:red"]}
    fig, axes = plt.subplots(
        1, len(side), figsize=(5 * len(side), 5.4), subplot_kw={"projection": "polar"}
    )
    for ax, (combo, methods) in zip(axes, side.items(), strict=True):
        used: dict[str, int] = {}
        for method, deltas in methods.items():
            kind, _, target = method.partition("[")
            colour = colours[kind][used.get(kind, 0)]
            used[kind] = used.get(kind, 0) + 1
            label = f"conva {target.rstrip(']')}" if kind == "conva" else kind
            r = [deltas[v] for v in VALUES]
            ax.plot([*angles, angles[0]], [*r, r[0]], marker="o", color=colour, label=label)
        ax.plot([*angles, angles[0]], [0.0] * (len(angles) + 1), color="black", lw=1.2, ls="--")
        ax.set_ylim(lo, hi)
        ax.set_xticks(angles)
        ax.set_xticklabels(VALUES, fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(combo, fontsize=9)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=7)
    fig.suptitle(
        "probe-logit change vs base (dashed ring) on every value; "
        "probes fitted on the straightforward sentences, which did not steer"
    )
    fig.tight_layout()
    fig.savefig(dest, dpi=110)


def _join(args: argparse.Namespace) -> int:
    from conva_tl.model import load_model

    out = Path(args.out)
    answers = _answers(out)
    by_key = {(a["method"], a["qid"], a["settings_id"]): a for a in answers}
    frame = join_labels(out / "blind", args.labels)
    texts = [by_key[(r.method, r.qid, r.settings_id)] for r in frame.itertuples()]
    frame = frame.assign(
        question_value=[t["value"] for t in texts],
        question=[t["question"] for t in texts],
        answer=[t["answer"] for t in texts],
    )
    table = combo_table(frame, COMBOS)
    agree = agreement(frame)
    print(table.round(3).to_string())
    for crit, a in agree.items():
        print(f"{crit}: raw agreement {a['raw_agreement']:.3f}, kappa {a['cohen_kappa']:.3f}")
    model = load_model(args.model)
    side = _side_effects(answers, _readings(model, answers, args.read_vectors))
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=["settings_id"]).to_csv(
        results.with_name("multi_value_labels.csv"), index=False
    )
    _plot(side, results.with_name("multi_value_circumplex.png"))
    run = json.loads((out / "run.json").read_text())
    result = {
        "answer_command": run["command"],
        "join_command": " ".join(sys.argv),
        "settings": {k: run[k] for k in ("vectors", "p0", "pmax", "caa_coef", "generation")},
        "questions": run["questions"],
        "annotators": "two independent annotators, blinded shuffled items, paper Appx. D/E criteria",
        "agreement": agree,
        "table": table.to_dict(orient="records"),
        "side_effects_probe_logit_vs_base": side,
        "side_effects_reader": f"best-layer probes of {args.read_vectors} (did not steer)",
    }
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("answer", help="generate and store the answers")
    a.add_argument("--out", required=True)
    a.add_argument("--vectors", type=Path, default=Path("out/vectors"))
    a.add_argument("--questions", type=int, default=8, help="eval questions per value, spread")
    a.add_argument("--p0", type=float, default=DEFAULT_P0)
    a.add_argument("--pmax", type=float, default=0.3, help="cap on the capped value's probe")
    a.add_argument("--coef", type=float, default=DEFAULT_CAA_COEF, help="CAA coef per part")
    a.add_argument("--max-new-tokens", type=int, default=48)
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--model", default=None)
    b = sub.add_parser("blind", help="write the blinded annotation file")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    j = sub.add_parser("join", help="join two annotators' labels; probe side effects; figure")
    j.add_argument("--out", required=True)
    j.add_argument("--labels", nargs=2, required=True)
    j.add_argument("--read-vectors", default="out/v_sf", help="probes that did not steer")
    j.add_argument("--results", default="analyses/results/multi_value.json")
    j.add_argument("--model", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return {"answer": _answer, "blind": _blind, "join": _join}[args.cmd](args)
    except ConvaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
