"""The ``conva`` command: fit, steer, demo, evaluate, and the data tools.

Each subcommand parses its options and calls one pipeline function; the
functions are importable too, so scripts and notebooks use the same code.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

from conva_tl.errors import ConvaError
from conva_tl.model_protocol import HookedModel

__all__ = ["main"]


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="HF name or local folder (default: embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)"
    )
    p.add_argument(
        "--vectors", default="out/vectors", help="artifact folder (default: out/vectors)"
    )


def _add_p0_option(p: argparse.ArgumentParser, default: float) -> None:
    p.add_argument(
        "--p0",
        type=float,
        default=default,
        help=f"ConVA target probability P0, in (0, 1) (default: {default})",
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    from conva_tl.identify import value_names
    from conva_tl.model import check_device, load_model
    from conva_tl.pipeline import (
        FitSettings,
        check_output_folder,
        contrast_sets_from_files,
        fit_all,
    )

    # Every argument and path is checked before the model is loaded.
    settings = FitSettings(
        kind=args.kind,
        pooling=args.pooling,
        input_format=args.input_format,
        threshold=args.threshold,
        exclude_last=args.exclude_last,
        fallback_top=args.fallback_top,
        min_depth=args.min_depth,
        max_layers=args.max_layers or None,
        C=args.C,
        standardize=not args.raw_scale,
        seed=args.seed,
    )
    check_output_folder(args.vectors)
    data = contrast_sets_from_files(args.pairs, settings.kind) if args.pairs else None
    values = value_names(args.values or (list(data) if data else _all()))
    check_device(args.device)
    model = load_model(args.model, device=args.device)
    _, gates = fit_all(
        model,
        args.vectors,
        values,
        settings=settings,
        resume=not args.no_resume,
        overwrite=args.overwrite,
        data=data,
        gate_kind=args.gate_kind,
    )
    import pandas as pd

    from conva_tl.gate import gate_opening_matrix

    print(pd.read_csv(f"{args.vectors}/summary.csv", index_col=0).to_string())
    if gates:
        print(
            f"\n{args.gate_kind} gates: share of prompts each gate (row) opens on; columns: the "
            "held-out gate questions of each value, and the neutral prompts"
        )
        print(gate_opening_matrix(model, gates).round(2).to_string())
    print(f"\nsaved to {args.vectors}/")
    return 0


def _all() -> tuple[str, ...]:
    from conva_tl.values import VALUES

    return VALUES


def _cmd_steer(args: argparse.Namespace) -> int:
    from conva_tl.model import load_model
    from conva_tl.pipeline import make_method
    from conva_tl.store import ArtifactStore
    from conva_tl.values import canonical_value

    if len(args.value) > 1 or any(op in args.value[0] for op in "=<>"):
        return _cmd_steer_multi(args)
    value = canonical_value(args.value[0])
    _check_steer_args(args)
    model = load_model(args.model, device=args.device)
    vectors: dict[str, Any] = {}
    gates: dict[str, Any] = {}
    names = [m.strip() for m in args.method.split(",")]
    if any(m not in ("base", "ica") for m in names):
        # The folder's vectors are used as they are; only a missing value is fitted.
        store = ArtifactStore(args.vectors)
        vectors = store.vectors(model, [value], progress=True)
        if any(m in ("conva", "conva-per-prompt") for m in names):
            gates = store.gates(model, vectors, progress=True)
    for name in names:
        method = make_method(
            name, value, vectors.get(value), gates.get(value), p0=args.p0, caa_coef=args.caa_coef
        )
        _print_answer(model, args, name, method)
    return 0


def _print_answer(model: HookedModel, args: argparse.Namespace, name: str, method: Any) -> None:
    from conva_tl.generate import generate

    answer = generate(
        model, [args.question], intervention=method, max_new_tokens=args.max_new_tokens
    )[0]
    print(f"[{name}] {answer}")


def _cmd_steer_multi(args: argparse.Namespace) -> int:
    """``conva steer --value benevolence=0.9 --value "power<=0.3"``: several values at once."""
    from conva_tl.methods import Base
    from conva_tl.model import load_model
    from conva_tl.multi_conva import MultiConVA, parse_requests
    from conva_tl.store import ArtifactStore

    targets, caps = parse_requests(args.value, args.p0)
    names = [m.strip() for m in args.method.split(",")]
    if any(m not in ("base", "conva", "conva-nogate") for m in names):
        raise ConvaError("with several values, --method takes base, conva and conva-nogate")
    _check_steer_args(args)
    model = load_model(args.model, device=args.device)
    values = sorted({*targets, *caps})
    store = ArtifactStore(args.vectors)
    vectors = store.vectors(model, values, progress=True)
    gates = store.gates(model, vectors, progress=True) if "conva" in names else {}
    for name in names:
        method: Any = Base()
        if name != "base":
            per_value = {v: gates[v] for v in values if v in gates} if name == "conva" else {}
            method = MultiConVA.from_vectors(vectors, targets, caps, gates=per_value, name=name)
        _print_answer(model, args, name, method)
    return 0


def _check_steer_args(args: argparse.Namespace) -> None:
    """Validate ``conva steer``'s options before the model is loaded."""
    from conva_tl.generate import GenerationConfig
    from conva_tl.model import check_device
    from conva_tl.pipeline import METHODS, check_output_folder
    from conva_tl.steering import logit

    names = [m.strip() for m in args.method.split(",")]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConvaError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    logit(args.p0)
    if not math.isfinite(args.caa_coef):
        raise ConvaError(f"--caa-coef must be a finite number, got {args.caa_coef}")
    GenerationConfig(max_new_tokens=args.max_new_tokens)
    if any(m not in ("base", "ica") for m in names):
        check_output_folder(args.vectors)
    check_device(args.device)


def _cmd_demo(args: argparse.Namespace) -> int:
    from conva_tl.demo import run_demo

    run_demo(args.out, p0=args.p0, max_new_tokens=args.max_new_tokens)
    return 0


def _parser() -> argparse.ArgumentParser:
    from conva_tl.pipeline import DEFAULT_CAA_COEF, DEFAULT_P0, METHODS
    from conva_tl.probes import DEFAULT_C, LayerRule

    parser = argparse.ArgumentParser(prog="conva", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="identify value vectors (and gates) and save them")
    _add_fit_options(p)
    p.add_argument(
        "--values",
        nargs="+",
        help="values to fit (default: all ten, or those of the --pairs files)",
    )
    p.add_argument(
        "--pairs",
        nargs="+",
        metavar="FILE",
        help="your own data instead of the shipped files: JSONL in the shipped schema "
        "(conva_tl/data/README.md), one value per file; pairs, or sentences with "
        "--kind straightforward",
    )
    p.add_argument(
        "--kind",
        default="pairs",
        choices=["pairs", "pairs-minimal", "pairs-balanced", "straightforward"],
        help="shipped data: pairs (default), pairs-minimal (the earlier minimal-edit pairs), "
        "pairs-balanced (sides share frame and vocabulary) or straightforward",
    )
    p.add_argument("--pooling", default="last", choices=["last", "mean"])
    p.add_argument(
        "--input-format",
        default="raw",
        choices=["raw", "chat", "answer"],
        help="how texts are fed to the probe: raw sentences (the paper), the chat template as "
        "a user turn, or 'answer': inside the assistant turn after a fixed question",
    )
    p.add_argument(
        "--threshold", type=float, default=0.9, help="accuracy a control layer must exceed"
    )
    p.add_argument("--exclude-last", type=int, default=5, help="never control the last N layers")
    p.add_argument(
        "--fallback-top",
        type=int,
        default=3,
        help="if no layer passes, control the N most accurate (0 = none)",
    )
    p.add_argument(
        "--min-depth",
        type=float,
        default=LayerRule.min_depth,
        help="never control layers below this fraction of the depth "
        f"(default {LayerRule.min_depth}; the paper's rule: 0)",
    )
    p.add_argument(
        "--max-layers",
        type=int,
        default=LayerRule.max_layers or 0,
        help=f"control at most the N most accurate passing layers (default {LayerRule.max_layers}; "
        "0 = no cap, the paper's rule)",
    )
    p.add_argument(
        "--C",
        type=float,
        default=DEFAULT_C,
        help=f"inverse L2 strength of the probes (default: {DEFAULT_C}; the authors' code: 1.0 with --raw-scale)",
    )
    p.add_argument(
        "--raw-scale",
        action="store_true",
        help="fit the probes on raw activations instead of standardized ones (the authors' code)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gate-kind",
        default="neutral",
        choices=["neutral", "specific"],
        help="neutral (default): gates open on value-laden prompts vs neutral ones; "
        "specific: also trained against the other values' questions",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="refit even if matching artifacts exist"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace vectors in --vectors fitted with other settings, data or model "
        "(without it conva fit refuses to touch them)",
    )
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("steer", help="answer one question with one or more methods")
    _add_fit_options(p)
    p.add_argument("question", help="the user message to answer")
    p.add_argument(
        "--value",
        required=True,
        action="append",
        help="the value to steer towards, e.g. security; repeat with targets and caps to "
        "steer several at once: --value benevolence=0.9 --value 'power<=0.3'",
    )
    p.add_argument("--method", default="base,conva", help=f"comma-separated: {', '.join(METHODS)}")
    _add_p0_option(p, DEFAULT_P0)
    p.add_argument(
        "--caa-coef",
        type=float,
        default=DEFAULT_CAA_COEF,
        help=f"CAA multiplier of the mean paired difference (default: {DEFAULT_CAA_COEF})",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=80, help="answer length limit (default: 80)"
    )
    p.set_defaults(func=_cmd_steer)

    p = sub.add_parser("demo", help="the main job: fit all values, compare base and ConVA answers")
    p.add_argument(
        "--out",
        default="out/demo",
        help="output folder for artifacts and answers (default: out/demo)",
    )
    _add_p0_option(p, DEFAULT_P0)
    p.add_argument(
        "--max-new-tokens", type=int, default=60, help="answer length limit (default: 60)"
    )
    p.set_defaults(func=_cmd_demo)

    for name, target, help_text in (
        (
            "generate-data",
            "conva_tl.datagen:main_generate_data",
            "generate datasets through an OpenAI-compatible API",
        ),
        (
            "context-words",
            "conva_tl.analysis.context_words:main_context_words",
            "frequent context words (paper Tab. 2)",
        ),
        ("evaluate", "conva_tl.evaluation:main_evaluate", "judge-based and judge-free evaluation"),
    ):
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(delegate=target)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if getattr(args, "delegate", None):
            import importlib

            module, func = args.delegate.split(":")
            return int(getattr(importlib.import_module(module), func)(rest) or 0)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return int(args.func(args) or 0)
    except ConvaError as exc:
        print(f"conva: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conva: interrupted; finished work is saved and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
