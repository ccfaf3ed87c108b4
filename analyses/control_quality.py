"""The judged development loop for value control (Base / ICA / CAA / ConVA variants).

Four steps, each resumable and each one command:

    # 1. answers for every method x value on the shipped eval questions (resumable store)
    python analyses/control_quality.py answer --out out/cq --vectors out/vectors \
        --methods base ica caa conva [--variant NAME=DIR[,p0=X][,coef=Y]] [--questions 12]
    # 2. a blinded, shuffled file for two annotators (no method names in it)
    python analyses/control_quality.py blind --out out/cq
    # 3. after annotation: join labels, agreement (raw, Cohen's kappa), per value x method table
    python analyses/control_quality.py join --out out/cq --labels A.jsonl B.jsonl \
        [--results analyses/results/control_quality.json]

Then, over the stored results: `proxy` (an independent probe's reading of judged answers
against their labels, one round or `--labels` of all), `pooled` (a method's labels summed
over rounds) and `headroom` (each round's best variant over its own baselines, and every
method family's CSR lift over the base model).

The eval questions are never used to fit probes or gates (those use the pairs and
the `gate` split). With an OpenAI-compatible judge configured, `conva evaluate
comparison` labels the same answers instead of annotators.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from conva_tl.errors import ConvaError
from conva_tl.evaluation.annotation import agreement, join_labels, label_table, write_blind
from conva_tl.evaluation.answers import AnswerStore
from conva_tl.evaluation.devloop import Variant, answer_jobs, pairs_set, spread_questions
from conva_tl.values import VALUES


def _fit(args: argparse.Namespace) -> int:
    from conva_tl.model import load_model
    from conva_tl.pipeline import FitSettings, fit_all, summary_table

    settings = FitSettings(
        pooling=args.pooling,
        input_format=args.input_format,
        C=args.C,
        threshold=args.threshold,
        exclude_last=args.exclude_last,
        fallback_top=args.fallback_top,
    )
    data = {v: pairs_set(v, args.pairs) for v in args.values}
    model = load_model(args.model)
    vectors, gates = fit_all(
        model, args.vectors, args.values, settings=settings, data=data, overwrite=True
    )
    print(summary_table(vectors, gates).to_string())  # fit_all also wrote it to summary.csv
    return 0


def _answer(args: argparse.Namespace) -> int:
    from conva_tl.artifacts import load_gates, load_vectors
    from conva_tl.evaluation.runner import generate_answers
    from conva_tl.generate import GenerationConfig
    from conva_tl.model import load_model

    variants = [Variant.parse(s) for s in args.variant]
    model = load_model(args.model)
    folders = {args.vectors, *(v.vectors for v in variants if v.vectors)}
    arts = {
        str(f): (load_vectors(f, args.values, model=model), load_gates(f, args.values, model=model))
        for f in folders
    }
    questions = {v: spread_questions(v, args.questions, offset=args.offset) for v in args.values}
    jobs = answer_jobs(
        args.values, args.methods, variants, questions, arts, default_folder=str(args.vectors)
    )
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records, timing = generate_answers(model, AnswerStore(out / "answers.jsonl"), jobs, config)
    names = [j[1].name for j in jobs[: len(jobs) // len(args.values)]]
    run_path = out / "run.json"
    run = (
        json.loads(run_path.read_text()) if run_path.is_file() else {"commands": [], "methods": []}
    )
    qids = {v: [q.id for q in qs] for v, qs in questions.items()}
    if run.get("questions", qids) != qids:
        raise ConvaError(f"{out} holds answers to other questions: use another --out")
    run.update(
        questions=qids,
        generation=config.__dict__,
        commands=[*run.get("commands", []), " ".join(sys.argv)],
        methods=[*run["methods"], *(m for m in names if m not in run["methods"])],
    )
    run_path.write_text(json.dumps(run, indent=2))
    print(f"{len(records)} answers in {out / 'answers.jsonl'} ({timing['answers']:.0f} new)")
    return 0


def _current(out: Path, methods: list[str] | None = None) -> list[dict[str, Any]]:
    run = json.loads((out / "run.json").read_text())
    chosen = methods or run["methods"]
    wanted = {(v, q) for v, qs in run["questions"].items() for q in qs}
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in AnswerStore(out / "answers.jsonl").records():
        if (rec["value"], rec["qid"]) in wanted and rec["method"] in chosen:
            latest[(rec["value"], rec["method"], rec["qid"])] = rec
    return list(latest.values())


def _blind(args: argparse.Namespace) -> int:
    out = Path(args.out)
    records = _current(out, args.methods)
    paths = write_blind(records, out / "blind", seed=args.seed)
    print(f"{len(records)} answers blinded: give {paths['items']} and {paths['guide']} to each")
    print(f"annotator; keep {paths['key']} from them")
    return 0


def _join(args: argparse.Namespace) -> int:
    out = Path(args.out)
    frame = join_labels(out / "blind", args.labels)
    records = {
        (r["value"], r["method"], r["qid"], r["settings_id"]): r
        for r in AnswerStore(out / "answers.jsonl").records()
    }
    texts = [records[(r.value, r.method, r.qid, r.settings_id)] for r in frame.itertuples()]
    frame.assign(
        question=[t["question"] for t in texts], answer=[t["answer"] for t in texts]
    ).to_csv(out / "labels.csv", index=False)
    run = json.loads((out / "run.json").read_text())
    table = label_table(frame, methods=[m for m in run["methods"] if m in set(frame["method"])])
    agree = agreement(frame)
    print(table.round(3).to_string())
    for crit, a in agree.items():
        print(
            f"{crit}: raw agreement {a['raw_agreement']:.3f}, Cohen's kappa {a['cohen_kappa']:.3f}"
        )
    stored = {k: r["settings"] for k, r in records.items()}
    keep = ("class", "p0", "coef", "mode", "layers", "gate", "max_new_tokens", "do_sample")
    settings: dict[str, dict[str, Any]] = {}
    for r in frame.itertuples(index=False):
        st = stored[(r.value, r.method, r.qid, r.settings_id)]
        settings.setdefault(r.method, {})[r.value] = {k: st[k] for k in keep if k in st}
    result = {
        "commands": run["commands"],
        "join_command": " ".join(sys.argv),
        "generation": run["generation"],
        "questions": run["questions"],
        "annotators": "two independent annotators, blinded shuffled items, paper Appx. D/E criteria",
        "agreement": agree,
        "method_settings": settings,
        "table": [
            {"value": v, "method": m, **{k: float(x) for k, x in row.items()}}
            for (v, m), row in table.iterrows()
        ],
    }
    dest = Path(args.results) if args.results else out / "control_quality.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if args.section:
        whole = json.loads(dest.read_text()) if dest.is_file() else {"sections": {}}
        whole["sections"][args.section] = result
        result = whole
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest}")
    return 0


def _proxy(args: argparse.Namespace) -> int:
    """Rank agreement of an independent probe's reading of judged answers with their labels."""
    import pandas as pd

    from conva_tl.artifacts import load_vectors
    from conva_tl.evaluation.proxy import proxy_agreement
    from conva_tl.evaluation.scoring import probe_readings
    from conva_tl.model import load_model

    if bool(args.out) == bool(args.labels):
        raise ConvaError("give either --out (one round's labels.csv) or --labels CSV [CSV ...]")
    if args.labels:
        # one cell per round x method: the same method name may mean other settings elsewhere
        frame = pd.concat(
            [
                pd.read_csv(f).assign(method=lambda d, f=f: Path(f).stem + ":" + d["method"])
                for f in args.labels
            ],
            ignore_index=True,
        )
    else:
        frame = pd.read_csv(Path(args.out) / "labels.csv")
    frame["answer"] = frame["answer"].fillna("")
    # answers judged in several rounds (deterministic base answers) are read once
    texts = frame[["value", "answer"]].drop_duplicates()
    model = load_model(args.model)
    vectors = load_vectors(args.proxy_vectors, sorted(set(frame["value"])), model=model)
    texts["proxy"] = probe_readings(model, texts.to_dict("records"), vectors)
    proxy = frame.merge(texts, on=["value", "answer"], how="left")["proxy"].to_numpy()
    result = {
        "command": " ".join(sys.argv),
        **proxy_agreement(frame, proxy),
        "proxy": f"straightforward-data probe at its best layer ({args.proxy_vectors})",
    }
    print(json.dumps(result, indent=2))
    if args.out:
        (Path(args.out) / "proxy.json").write_text(json.dumps(result, indent=2))
    if args.results:
        dest = Path(args.results)
        whole = json.loads(dest.read_text())
        whole.setdefault("proxy", {})[args.key] = result
        dest.write_text(json.dumps(whole, indent=2) + "\n")
        print(f"wrote proxy.{args.key} in {dest}")
    return 0


def _pooled(args: argparse.Namespace) -> int:
    """Per value x method CSR/FR over every judged round a method appears in (same settings)."""
    dest = Path(args.results)
    whole = json.loads(dest.read_text())
    sums: dict[tuple[str, str], list[float]] = {}
    seen: dict[tuple[str, str], Any] = {}
    for name, sec in whole["sections"].items():
        for row in sec["table"]:
            value, method = row["value"], row["method"]
            if value == "all" or method not in args.methods:
                continue
            st = sec["method_settings"][method][value]
            if seen.setdefault((value, method), st) != st:
                raise ConvaError(f"{method!r} for {value} has other settings in section {name!r}")
            acc = sums.setdefault((value, method), [0.0, 0.0, 0.0, 0.0])
            acc[0] += row["csr"] * row["n"]
            acc[1] += row["fr"] * row["n"]
            acc[2] += row["n"]
            acc[3] += 1
    target, baselines = args.methods[-1], args.methods[:-1]
    table, above = [], []
    for value in VALUES:
        cells = {
            m: {
                "csr": sums[(value, m)][0] / sums[(value, m)][2],
                "fr": sums[(value, m)][1] / sums[(value, m)][2],
                "n_labels": sums[(value, m)][2],
                "rounds": sums[(value, m)][3],
            }
            for m in args.methods
            if (value, m) in sums
        }
        table.append(
            {
                "value": value,
                **{m: {k: round(x, 3) for k, x in c.items()} for m, c in cells.items()},
            }
        )
        best = max(cells[m]["csr"] for m in baselines if m in cells)
        if target in cells and cells[target]["csr"] > best:
            above.append(value)
        print(value, " ".join(f"{m} {c['csr']:.2f}/{c['fr']:.2f}" for m, c in cells.items()))
    whole["pooled"] = {
        "command": " ".join(sys.argv),
        "what": "labels of every round in which each method was judged with the same settings, "
        "pooled per value (dev answers re-judged by several annotator pairs count each time)",
        "table": table,
        f"{target}_above_all_baselines": above,
    }
    dest.write_text(json.dumps(whole, indent=2) + "\n")
    print(f"{target} above {', '.join(baselines)} on {len(above)}/10 values: {', '.join(above)}")
    return 0


def _bar_tables(whole: dict[str, Any]) -> list[tuple[str, tuple[dict[str, Any], str]]]:
    """The per value tables the overall bar is read on, ``(name, ({value: {method: csr}}, target))``.

    The shipped defaults over the fresh confirmation sets (``summary``), and every round pooled
    (``pooled``, the earlier data's ConVA), where the results hold them.
    """
    tables = []
    fresh = whole.get("summary", {}).get("shipped_per_value_sets_3_to_6")
    if fresh:
        tables.append(("shipped_sets_3_to_6", (fresh["table"], "conva")))
    pooled = whole.get("pooled")
    if pooled:
        cells = {
            row["value"]: {m: c["csr"] for m, c in row.items() if m != "value"}
            for row in pooled["table"]
        }
        target = next(m for m in pooled if m.endswith("_above_all_baselines")).split("_above")[0]
        tables.append(("pooled_all_rounds", (cells, target)))
    return tables


def _headroom(args: argparse.Namespace) -> int:
    """Per value: how far the best fluent variant of any round got past that round's baselines."""
    from conva_tl.evaluation.headroom import (
        bar_requirement,
        lift_over_base,
        values_with_wins,
        variant_margins,
    )

    dest = Path(args.results)
    whole = json.loads(dest.read_text())
    margins = variant_margins(whole["sections"], min_fr=args.min_fr)
    for m in margins:
        where = f" ({m['best_variant']} in {m['best_round']})" if "best_round" in m else ""
        print(
            f"{m['value']}: {m['wins']}/{m['rounds']} rounds won, best margin {m['best_margin']}{where}"
        )
    wins = values_with_wins(margins)
    lifts = lift_over_base(whole["sections"])
    for lift in lifts:
        fams = (f"{k} {c['lift']:+.3f} ({c['cells']})" for k, c in lift.items() if k != "value")
        print(f"{lift['value']}: CSR lift over base: {', '.join(fams)}")
    whole["headroom"] = {
        "command": " ".join(sys.argv),
        "what": "per value, every judged round's best variant with FR >= min_fr minus the best "
        "baseline of the same round (rounds that judged Base, ICA and CAA beside it): an "
        "optimistic ceiling (best of many noisy variants, picked after the fact)",
        "min_fr": args.min_fr,
        "table": margins,
        "values_with_a_winning_round": wins,
        "lift_over_base": {
            "what": "per value and method family (ica, caa at any coefficient, steering = every "
            "ConVA variant), the answer-weighted mean of CSR minus the same round's base CSR "
            "over every round judging both (cells = round x method cells)",
            "table": lifts,
        },
    }
    bars = {name: bar_requirement(t, target=target) for name, (t, target) in _bar_tables(whole)}
    for name, bar in bars.items():
        print(
            f"{name}: 1.5x needs CSR {bar['needed_csr']} ({bar['target']} {bar['target_csr']}); "
            f"on {', '.join(bar['movers'])} it needs {bar.get('movers_need')} "
            f"({bar.get('movers_need_if_rest_at_best_baseline')} if the rest reached their best "
            f"baseline), they have {bar['movers_csr']}"
        )
    if bars:
        whole["headroom"]["bar"] = {
            "what": "what ConVA's overall CSR >= 1.5x the best baseline asks of the values it "
            "lifts above every baseline (movers), given its CSR on the others: movers_need, "
            "and movers_need_if_rest_at_best_baseline if each other value reached its best "
            "baseline's CSR",
            **bars,
        }
    dest.write_text(json.dumps(whole, indent=2) + "\n")
    print(f"some fluent variant beat every baseline in some round on {len(wins)}/10 values")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit vectors and gates from one or more pairs folders")
    f.add_argument("--pairs", nargs="+", type=Path, required=True, help="folders of <value>.jsonl")
    f.add_argument("--vectors", type=Path, required=True, help="artifact folder to write")
    f.add_argument("--values", nargs="+", default=list(VALUES))
    f.add_argument("--threshold", type=float, default=0.9)
    f.add_argument("--exclude-last", type=int, default=5)
    f.add_argument("--fallback-top", type=int, default=3)
    f.add_argument("--C", type=float, default=0.03)
    f.add_argument("--pooling", default="last", choices=["last", "mean"])
    f.add_argument("--input-format", default="raw", choices=["raw", "chat", "answer"])
    f.add_argument("--model", default=None)
    a = sub.add_parser("answer", help="generate and store answers")
    a.add_argument("--out", required=True)
    a.add_argument("--vectors", type=Path, default=Path("out/vectors"))
    a.add_argument("--values", nargs="+", default=list(VALUES))
    a.add_argument("--methods", nargs="+", default=["base", "ica", "caa", "conva"])
    a.add_argument("--variant", action="append", default=[], metavar="NAME=DIR[,p0=X][,coef=Y]")
    a.add_argument("--questions", type=int, default=12, help="eval questions per value, spread")
    a.add_argument(
        "--offset", type=float, default=0.0, help="shift the spread (0.5: a disjoint second set)"
    )
    a.add_argument("--max-new-tokens", type=int, default=48)
    a.add_argument("--batch-size", type=int, default=12)
    a.add_argument("--model", default=None)
    b = sub.add_parser("blind", help="write the blinded annotation file")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    j = sub.add_parser("join", help="join two annotators' labels into the table")
    j.add_argument("--out", required=True)
    j.add_argument("--labels", nargs=2, required=True)
    j.add_argument("--results", default=None)
    j.add_argument("--section", default=None, help="merge into --results under this name")
    x = sub.add_parser("proxy", help="rank agreement of a non-circular probe reading with labels")
    x.add_argument("--out", default=None, help="a round's folder (reads its labels.csv)")
    x.add_argument("--labels", nargs="+", default=None, help="or labels CSVs of many rounds")
    x.add_argument("--proxy-vectors", default="out/v_sf", help="vectors that did not steer")
    x.add_argument("--results", default=None, help="merge into this results JSON under proxy")
    x.add_argument("--key", default="all_judged_answers", help="the key under proxy")
    x.add_argument("--model", default=None)
    s = sub.add_parser("pooled", help="per value x method over all judged rounds")
    s.add_argument("--results", default="analyses/results/control_quality.json")
    s.add_argument(
        "--methods",
        nargs="+",
        default=["base", "ica", "caa25", "conva97"],
        help="baselines, then the method to compare (last)",
    )
    h = sub.add_parser("headroom", help="best variant margin over each round's baselines")
    h.add_argument("--results", default="analyses/results/control_quality.json")
    h.add_argument("--min-fr", type=float, default=0.95)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    commands = {
        "fit": _fit,
        "answer": _answer,
        "blind": _blind,
        "join": _join,
        "proxy": _proxy,
        "pooled": _pooled,
        "headroom": _headroom,
    }
    try:
        return commands[args.cmd](args)
    except ConvaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
