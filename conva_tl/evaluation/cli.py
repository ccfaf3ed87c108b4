"""``conva evaluate comparison|priority|capability``: the evaluation stage as a command.

Loads the subject model, loads the value vectors and gates from ``--vectors`` as
they are (:meth:`conva_tl.store.ArtifactStore.vectors`: only missing values are
fitted, vectors already there are never refitted over), builds the judge from
``--base-url/--judge-model/--api-key-env`` (or ``OPENAI_BASE_URL`` /
``CONVA_JUDGE_MODEL`` / ``OPENAI_API_KEY``), and runs one of
:func:`~conva_tl.evaluation.runner.run_comparison`,
:func:`~conva_tl.evaluation.runner.run_priority` or
:func:`~conva_tl.evaluation.capability.run_capability`. Without a judge it still
generates and stores every answer and reports the judge-free measures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from conva_tl.errors import ConvaError

__all__ = ["main_evaluate", "build_parser", "make_judge"]

KINDS = ("comparison", "priority", "capability")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``conva evaluate``."""
    from conva_tl.evaluation.conditions import COMPARISON_METHODS, PRIORITY_METHODS
    from conva_tl.pipeline import DEFAULT_CAA_COEF, DEFAULT_P0

    p = argparse.ArgumentParser(
        prog="conva evaluate",
        description="Evaluate value control: the main comparison (paper Fig. 2), control priority "
        "(Fig. 4) or general capability (Tab. 5, Fig. 3). Answers are stored as they are made; "
        "rerun the same command to resume.",
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--values", nargs="+", metavar="V", help="values (default: all ten)")
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="M",
        help=f"comparison: {' '.join(COMPARISON_METHODS)} (default: all); "
        f"priority: {' '.join(PRIORITY_METHODS)} (default: all)",
    )
    p.add_argument(
        "--questions",
        type=int,
        default=None,
        metavar="N",
        help="first N eval questions per value (default: all 100; capability: 20)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out/eval/KIND)")
    p.add_argument(
        "--vectors",
        type=Path,
        default=Path("out/vectors"),
        help="artifact folder of `conva fit`, used as it is; missing values are fitted "
        "(default: out/vectors)",
    )
    p.add_argument(
        "--subject-model",
        default=None,
        metavar="NAME",
        help="model to steer: HF name or folder (default: embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument("--device", default=None)
    judge = p.add_argument_group("judge (CSR/FR; optional)")
    judge.add_argument(
        "--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)"
    )
    judge.add_argument(
        "--judge-model",
        "--model",
        dest="judge_model",
        default=None,
        metavar="NAME",
        help="judge model name (default: $CONVA_JUDGE_MODEL; none = no judge)",
    )
    judge.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the key (default: OPENAI_API_KEY)",
    )
    judge.add_argument(
        "--no-judge", action="store_true", help="never judge, even if the environment names a model"
    )
    gen = p.add_argument_group("generation and control")
    gen.add_argument("--max-new-tokens", type=int, default=100, help="default: 100 (as the paper)")
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--p0", type=float, default=DEFAULT_P0)
    gen.add_argument("--caa-coef", type=float, default=DEFAULT_CAA_COEF)
    cap = p.add_argument_group("capability")
    cap.add_argument(
        "--mc",
        nargs="+",
        default=None,
        metavar="PATH",
        help="MMLU-format csv files or folders (default: the shipped set)",
    )
    cap.add_argument("--mc-limit", type=int, default=None, help="use the first N MC questions")
    cap.add_argument(
        "--unrelated-limit", type=int, default=60, help="unrelated prompts for the KL measure"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return p


def make_judge(args: argparse.Namespace, out_dir: Path) -> Any:
    """A :class:`conva_tl.judge.Judge` from the options, or ``None`` when no judge model is named."""
    from conva_tl.judge import judge_from_options

    if args.no_judge:
        return None
    return judge_from_options(
        args.judge_model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        cache=out_dir / "judge_cache.jsonl",
        progress=True,
    )


def _run(args: argparse.Namespace) -> int:
    from conva_tl.evaluation.capability import format_capability, run_capability
    from conva_tl.evaluation.runner import (
        COMPARISON_METHODS,
        PRIORITY_METHODS,
        run_comparison,
        run_priority,
    )
    from conva_tl.fit_settings import FitSettings
    from conva_tl.generate import GenerationConfig
    from conva_tl.model import load_model
    from conva_tl.store import ArtifactStore
    from conva_tl.values import VALUES, canonical_value

    values = [canonical_value(v) for v in (args.values or VALUES)]
    out = args.out or Path("out/eval") / args.kind
    out.mkdir(parents=True, exist_ok=True)
    judge = make_judge(args, out) if args.kind != "capability" else None
    model = load_model(args.subject_model, device=args.device)
    store = ArtifactStore(args.vectors)
    vectors = store.vectors(model, values, progress=True)
    gates = store.gates(model, vectors, progress=True)
    result: Any
    if args.kind == "capability":
        from conva_tl.datasets import load_mc

        result = run_capability(
            model,
            values,
            out,
            vectors=vectors,
            gates=gates,
            mc=load_mc(args.mc) if args.mc else None,
            mc_limit=args.mc_limit,
            unrelated_limit=args.unrelated_limit,
            value_questions=args.questions if args.questions is not None else 20,
            p0=args.p0,
            batch_size=args.batch_size,
        )
        print(format_capability(result))
        print("\nwrote " + ", ".join(str(p) for p in result.paths.values()))
        return 0
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    if args.kind == "comparison":
        methods = args.methods or list(COMPARISON_METHODS)
        sf = None
        if "conva-sf" in methods:
            sf = ArtifactStore(args.vectors / "straightforward").vectors(
                model,
                values,
                settings=FitSettings(kind="straightforward"),
                progress=True,
            )
        result = run_comparison(
            model,
            values,
            methods,
            out,
            vectors=vectors,
            gates=gates,
            questions_per_value=args.questions,
            judge=judge,
            p0=args.p0,
            caa_coef=args.caa_coef,
            config=config,
            straightforward_vectors=sf,
            progress=True,
        )
    else:
        result = run_priority(
            model,
            values,
            out,
            vectors=vectors,
            gates=gates,
            methods=args.methods or list(PRIORITY_METHODS),
            questions_per_value=args.questions,
            judge=judge,
            p0=args.p0,
            config=config,
            progress=True,
        )
    print(result.paths["table"].read_text().rstrip())
    t = result.timing
    if t.get("answers"):
        print(
            f"\ngenerated {int(t['answers'])} new answers in {t['seconds']:.0f}s "
            f"({t['answers_per_minute']:.1f} answers/min)"
        )
    print("wrote " + ", ".join(str(p) for p in result.paths.values()))
    return 0


def main_evaluate(argv: list[str] | None = None) -> int:
    """``conva evaluate``: 0 on success, 2 on bad input or a failed judge call, 130 if interrupted."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except ConvaError as exc:
        print(f"conva evaluate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "conva evaluate: interrupted; every finished batch is stored and a rerun resumes",
            file=sys.stderr,
        )
        return 130
