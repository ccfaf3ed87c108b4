"""The shared command line of the ``analyses/`` scripts: one parser, the same defaults everywhere.

:func:`parser` builds every script's options (model, device, values, output,
vectors, and on request the steering, generation, judge and probe groups) with
one set of defaults; :func:`run` parses, sets up logging and torch threads and
turns a :class:`conva_tl.errors.ConvaError` into exit status 2. The rest maps
parsed options onto the package (:mod:`conva_tl.analysis`), where the logic
lives: :func:`steering_setup`, :func:`probe_sweep`, :func:`fitted_vectors`,
and :func:`finish` / :func:`show` print and write a report.
:func:`forward` is the parser of the thin ``conva evaluate`` wrappers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conva_tl.analysis import (
    ProbeData,
    ProbeSweep,
    Report,
    SteeringSetup,
    VectorSource,
    ablation_setup,
    load_subject,
    make_judge,
    probe_layers,
    set_threads,
)
from conva_tl.errors import ConvaError
from conva_tl.evaluation.annotation import with_judged
from conva_tl.generate import GenerationConfig
from conva_tl.probes import DEFAULT_C, ValueVectors
from conva_tl.report import run_record
from conva_tl.store import ArtifactStore
from conva_tl.values import VALUES

#: Two values the embedded model's default rule (conva_tl.probes.LayerRule) controls at many layers
#: on SmolLM2-135M. A value with no layer passing that rule is steered only at the rule's fallback
#: (its few most accurate layers), so a P0 sweep on it measures the fallback; ablate_layers.py shows
#: what lower thresholds give such values.
DEFAULT_VALUES = ("tradition", "stimulation")


def parser(
    name: str,
    doc: str | None,
    *,
    out: Path | None = None,
    values: Sequence[str] | None = DEFAULT_VALUES,
    model: bool = True,
    steering: bool | None = None,
    generation: bool | None = None,
    judge: bool | None = None,
    layer_step: int | None = None,
    use: bool = False,
) -> argparse.ArgumentParser:
    """The options every ``analyses/<name>.py`` shares, with the same defaults.

    Args:
        name: the script (``ablate_p0``); an ``ablate_`` script writes to ``out/ablations/<rest>``.
        doc: the script's docstring (description and epilog).
        out: default output folder (default: ``out/ablations/<rest>`` or ``out/<name>``).
        values: default values (``None``: all ten).
        model: the model options (model, device, vectors, threads); off for data-only scripts.
        steering: the subject-model options of the ablations (backend, trusted vectors, batch
            size); default: on for the ``ablate_`` scripts.
        generation / judge: the answer-generation and judge option groups (default: as
            ``steering``).
        layer_step: add the probe-sweep options, fitting every ``layer_step``-th layer by default.
        use: ``--use v|mean_diff``, the direction an analysis of value vectors reads.
    """
    ablation = name.startswith("ablate_")
    steering = ablation if steering is None else steering
    generation = steering if generation is None else generation
    judge = generation if judge is None else judge
    short = name.removeprefix("ablate_")
    out = out or (Path("out/ablations") / short if ablation else Path("out") / name)
    p = argparse.ArgumentParser(
        prog=f"analyses/{name}.py",
        description=(doc or "").strip().splitlines()[0] if doc else None,
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if model:
        p.add_argument(
            "--model",
            default=None,
            metavar="NAME",
            help="HF model name or folder (default: the embedded SmolLM2-135M-Instruct)",
        )
        p.add_argument(
            "--device", default=None, help="cpu, cuda, ... (default: cuda when available)"
        )
    p.add_argument(
        "--values",
        nargs="+",
        default=list(values) if values else None,
        metavar="V",
        help=f"values (default: {' '.join(values) if values else 'all ten'})",
    )
    p.add_argument("--out", type=Path, default=out, help=f"output folder (default: {out})")
    if model:
        p.add_argument(
            "--vectors",
            type=Path,
            default=Path("out/vectors"),
            help="artifact folder of `conva fit`; values missing there are fitted and saved there "
            "(default: out/vectors)",
        )
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch CPU threads (default: 1 when the machine is busier than its cores, where more "
            "threads only contend, else torch's default)",
        )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    if steering:
        p.add_argument(
            "--backend",
            choices=("fast", "bridge"),
            default="fast",
            help="fast: plain HF model with the toolkit's hooks (same numbers, ~2x faster on CPU); "
            "bridge: TransformerBridge (default: fast)",
        )
        p.add_argument(
            "--trust-vectors",
            action="store_true",
            help="use whatever vectors --vectors holds for these values (any data or settings); "
            "default: reuse only vectors fitted with the default settings",
        )
        p.add_argument(
            "--batch-size", type=int, default=8, help="prompts per forward pass (default: 8)"
        )
    if generation:
        _generation_options(p)
    if judge:
        _judge_options(p)
    if layer_step is not None:
        _probe_options(p, layer_step)
    if use:
        p.add_argument(
            "--use",
            choices=("v", "mean_diff"),
            default="v",
            help="probe normal v (default, the paper) or the CAA mean difference",
        )
    return p


def _generation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--questions", type=int, default=4, help="eval questions per value (default: 4)")
    g.add_argument("--max-new-tokens", type=int, default=32, help="default: 32")
    g.add_argument(
        "--unrelated",
        type=int,
        default=16,
        help="value-unrelated prompts for the KL cost (default: 16, one per category)",
    )
    g.add_argument(
        "--gate",
        action="store_true",
        help="steer with the value's fitted activation gate (default: ungated, so the gate does not "
        "mask the setting's effect; the gate is ablated in ablate_g0.py)",
    )


def _judge_options(p: argparse.ArgumentParser) -> None:
    j = p.add_argument_group("judge (optional: CSR/FR)")
    j.add_argument(
        "--judge-model",
        "--model-judge",
        default=None,
        metavar="NAME",
        help="judge model (default: $CONVA_JUDGE_MODEL; none = judge-free measures only)",
    )
    j.add_argument(
        "--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)"
    )
    j.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="variable holding the key (default: OPENAI_API_KEY)",
    )
    j.add_argument(
        "--labels",
        nargs="+",
        type=Path,
        default=[],
        metavar="CSV",
        help="labels.csv files of judged rounds (analyses/control_quality.py join): answers "
        "whose exact text was judged get judged CSR/FR in judged.csv",
    )


def _probe_options(p: argparse.ArgumentParser, layer_step: int) -> None:
    g = p.add_argument_group("probes")
    g.add_argument(
        "--pairs",
        type=int,
        default=None,
        metavar="N",
        help="use the first N pairs per value (straightforward data: N positive + N negative "
        "sentences; default: all 100)",
    )
    g.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        metavar="L",
        help=f"layers to fit probes at (default: every {layer_step}th layer, plus the last)",
    )
    g.add_argument("--layer-step", type=int, default=layer_step, help=f"default: {layer_step}")
    g.add_argument(
        "--test-size",
        type=float,
        default=0.2,
        help="held-out share of pairs (default: 0.2, as conva fit)",
    )
    g.add_argument("--seed", type=int, default=0, help="split seed (default: 0, as conva fit)")
    g.add_argument(
        "--C",
        type=float,
        default=DEFAULT_C,
        help=f"inverse L2 strength of the probes (default: {DEFAULT_C}, as conva fit)",
    )
    g.add_argument(
        "--cache",
        type=Path,
        default=Path("out/ablations/_activations"),
        help="activation cache shared by the ablation scripts (default: out/ablations/_activations; "
        "'none' to disable)",
    )


def run(
    fn: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser, argv: list[str] | None
) -> int:
    """Parse, set up logging and torch threads, run ``fn``; 2 on a :class:`ConvaError`."""
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        set_threads(getattr(args, "threads", None))
        return fn(args)
    except ConvaError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


def subject(args: argparse.Namespace) -> Any:
    """The subject model of ``--model/--backend/--device``."""
    return load_subject(args.model, backend=getattr(args, "backend", "bridge"), device=args.device)


def vector_source(args: argparse.Namespace) -> VectorSource:
    return VectorSource(args.vectors, trust=args.trust_vectors, progress=args.verbose)


def steering_setup(args: argparse.Namespace) -> SteeringSetup:
    """Model, vectors, gates (with ``--gate``), sweep contexts and judge of the options."""
    judge = make_judge(
        args.judge_model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        cache=args.out / "judge_cache.jsonl",
    )
    return ablation_setup.steering_setup(
        subject(args),
        args.values,
        vector_source(args),
        gate=args.gate,
        n_questions=args.questions,
        n_unrelated=args.unrelated,
        config=GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
        judge=judge,
    )


def probe_sweep(args: argparse.Namespace, model: Any) -> ProbeSweep:
    """The probe-sweep options (``--pairs``, ``--layers``, ``--cache``, ...) for ``model``."""
    cache = None if str(args.cache).lower() == "none" else Path(args.cache)
    data = ProbeData(args.pairs, cache, batch_size=max(args.batch_size, 16), progress=args.verbose)
    layers = probe_layers(int(model.cfg.n_layers), args.layers, step=args.layer_step)
    return ProbeSweep(
        data,
        tuple(layers),
        test_size=args.test_size,
        seed=args.seed,
        C=args.C,
        layer_step=None if args.layers else args.layer_step,
    )


def finish(args: argparse.Namespace, model: Any, report: Report) -> int:
    """Print the report, write it to ``--out`` with ``run.json``, print the paths."""
    report = with_judged(report, list(getattr(args, "labels", [])))
    print(report.text)
    paths = report.write(args.out, run_record(vars(args), model))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def probe_report(
    args: argparse.Namespace,
    make: Callable[..., Report],
    **options: Any,
) -> int:
    """Run a report of :mod:`conva_tl.analysis.probe_reports` on the options; print and write it.

    ``make(model, --values, probe sweep, **options)``: the probe sweep of :func:`probe_sweep`.
    """
    model = subject(args)
    return finish(args, model, make(model, args.values, probe_sweep(args, model), **options))


def fitted_vectors(args: argparse.Namespace) -> tuple[Any, dict[str, ValueVectors]]:
    """The subject model and the vectors of ``--values`` (default: all ten) from ``--vectors``.

    Vectors there are used as they are; missing ones are fitted and saved there (no gates).
    """
    model = subject(args)
    return model, ArtifactStore(args.vectors).vectors(model, args.values or VALUES)


def show(out: Path, report: Report) -> int:
    """Print the report, write it to ``out`` (no ``run.json``) and print one line per path."""
    print(report.text)
    print("\n" + "\n".join(f"wrote {p}" for p in report.write(out)))
    return 0


def forward(
    command: Callable[[list[str]], int],
    subcommand: str,
    doc: str,
    argv: list[str] | None,
    *,
    values: Sequence[str] = ("security", "achievement"),
    out: str,
    counts: Sequence[tuple[str, int, str]] = (),
) -> int:
    """A ``conva evaluate <subcommand>`` wrapper with fast defaults; other options pass through.

    ``counts``: ``(option, default, help)`` integer options forwarded with their defaults.
    """
    p = argparse.ArgumentParser(
        description=doc.splitlines()[0],
        epilog=f"Other options go to `conva evaluate {subcommand}` (see `conva evaluate --help`).",
    )
    p.add_argument("--values", nargs="+", default=list(values))
    for option, default, help_text in counts:
        p.add_argument(option, type=int, default=default, help=help_text)
    p.add_argument("--out", default=out)
    args, rest = p.parse_known_args(argv)
    forwarded = [subcommand, "--values", *args.values]
    for option, _, _ in counts:
        forwarded += [option, str(getattr(args, option.lstrip("-").replace("-", "_")))]
    return command([*forwarded, "--out", args.out, *rest])
