"""Shared plumbing of the ``analyses/ablate_*.py`` scripts: options, loading, caching, output.

Every ablation script builds its parser with :func:`parser` (model, values,
questions, generation, output, vectors, judge options), loads the subject model
with :func:`load_subject` (cached per process), gets value vectors with
:func:`get_vectors` (``conva_tl.pipeline.fit_all`` resumes from ``--vectors``
when the settings match), caches sentence activations on disk with
:func:`cached_activations` (so several scripts share one pass), and writes its
CSV, figure and ``run.json`` with :func:`write_outputs`.

The logic lives in :mod:`conva_tl.analysis.ablations`; these helpers only wire
it to the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from conva_tl.activations import cache_resid_post  # noqa: E402
from conva_tl.artifacts import load_gates, save_gates  # noqa: E402
from conva_tl.errors import ArtifactError, ConvaError  # noqa: E402
from conva_tl.gate import fit_gates  # noqa: E402
from conva_tl.generate import GenerationConfig  # noqa: E402
from conva_tl.model import model_info  # noqa: E402
from conva_tl.pipeline import FitSettings, fit_all, load_or_fit  # noqa: E402
from conva_tl.probes import DEFAULT_C  # noqa: E402
from conva_tl.values import canonical_value  # noqa: E402

#: Two values the embedded model's default rule (held-out accuracy > 0.9, last 5 layers excluded)
#: controls at many layers on SmolLM2-135M. A value with no layer passing that rule is steered only at
#: the rule's fallback (its few most accurate layers), so a P0 sweep on it measures the fallback;
#: ablate_layers.py shows what lower thresholds give such values.
DEFAULT_VALUES = ("tradition", "stimulation")

JUDGE_FREE_NOTICE = (
    "No judge configured: CSR/FR (paper Appx. D/E) are NOT reported. Judge-free measures instead:\n"
    "  logit_v, p_v  probe reading of each answer (re-encoded as raw text, value's best layer, the same\n"
    "                reference probe for every setting): mean logit w.e+b and mean P_V = sigmoid;\n"
    "                higher = more value-aligned (P_V saturates near 1 on this model: read the logit)\n"
    "  p_v_pos       share of answers with P_V > 0.5\n"
    "  kl_unrelated  KL(base || steered) of the first answer token on value-unrelated prompts (nats):\n"
    "                the cost to unrelated behaviour (0 = untouched)\n"
    "  kl_value      the same on the value questions: how strongly control acts where it should\n"
    "  ppl           perplexity of the answers under the unsteered model (fluency proxy; lower = more fluent)\n"
    "  distinct2     distinct word-bigram ratio of the answers (repetition proxy; 1 = no repeats)\n"
    "For CSR/FR add --model-judge NAME [--base-url URL] [--api-key-env VAR]."
)


def parser(
    name: str, doc: str | None, *, generation: bool = True, judge: bool = True
) -> argparse.ArgumentParser:
    """The common options; ``name`` sets the default ``--out out/ablations/<name>``."""
    p = argparse.ArgumentParser(
        prog=f"analyses/ablate_{name}.py",
        description=(doc or "").strip().splitlines()[0] if doc else None,
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="HF model name or folder (default: the embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--backend",
        choices=("fast", "bridge"),
        default="fast",
        help="fast: plain HF model with the toolkit's hooks (same numbers, ~2x faster on CPU); "
        "bridge: TransformerBridge (default: fast)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument(
        "--values",
        nargs="+",
        default=list(DEFAULT_VALUES),
        metavar="V",
        help=f"values (default: {' '.join(DEFAULT_VALUES)})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/ablations") / name,
        help=f"output folder (default: out/ablations/{name})",
    )
    p.add_argument(
        "--vectors",
        type=Path,
        default=Path("out/vectors"),
        help="artifact folder of `conva fit`: vectors fitted with the default settings are reused, "
        "missing ones fitted and saved there (default: out/vectors)",
    )
    p.add_argument(
        "--trust-vectors",
        action="store_true",
        help="use whatever vectors --vectors holds for these values (any data or settings)",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="prompts per forward pass (default: 8)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 when the machine is busier than its cores, where more "
        "threads only contend, else torch's default)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    if generation:
        g = p.add_argument_group("generation")
        g.add_argument(
            "--questions", type=int, default=4, help="eval questions per value (default: 4)"
        )
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
    if judge:
        j = p.add_argument_group("judge (optional: CSR/FR)")
        j.add_argument(
            "--model-judge",
            default=None,
            metavar="NAME",
            help="judge model (default: $CONVA_JUDGE_MODEL; none = judge-free measures only)",
        )
        j.add_argument(
            "--base-url",
            default=None,
            help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)",
        )
        j.add_argument(
            "--api-key-env",
            default=None,
            metavar="VAR",
            help="variable holding the key (default: OPENAI_API_KEY)",
        )
    return p


_MODELS: dict[tuple[Any, ...], Any] = {}


def load_subject(args: argparse.Namespace) -> Any:
    """The subject model of ``--model/--backend/--device``, loaded once per process."""
    set_threads(getattr(args, "threads", None))
    key = (args.model, args.backend, args.device)
    if key not in _MODELS:
        if args.backend == "fast":
            from conva_tl.fast import load_fast_model

            _MODELS[key] = load_fast_model(args.model, device=args.device)
        else:
            from conva_tl.model import load_model

            _MODELS[key] = load_model(args.model, device=args.device)
    return _MODELS[key]


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads``: ``threads``, else 1 on a CPU whose load exceeds its cores.

    On a shared CPU, several processes each spinning 2+ BLAS threads slow one
    another down several-fold (measured 5x on the 2-core dev machine); one
    thread each is then faster.
    """
    if threads is None:
        try:
            busy = os.getloadavg()[0] > (os.cpu_count() or 1)
        except OSError:
            busy = False
        threads = 1 if busy else None
    if threads is not None:
        if threads < 1:
            raise ConvaError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def values_of(args: argparse.Namespace) -> list[str]:
    return [canonical_value(v) for v in args.values]


def get_vectors(
    model: Any,
    args: argparse.Namespace,
    values: Sequence[str],
    *,
    gates: bool = False,
    kind: str = "pairs",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Vectors (and gates) for ``values`` from ``--vectors``, fitting and saving what is missing.

    Pairs vectors live in ``--vectors``, straightforward ones in
    ``--vectors/straightforward`` (the layout ``conva evaluate`` uses). Without
    ``--trust-vectors`` only vectors fitted with the default settings on the
    shipped data are reused (``fit_all`` resume); vectors there fitted otherwise
    are an error (``fit_all`` never overwrites them), and missing ones are fitted.
    """
    folder = Path(args.vectors) if kind == "pairs" else Path(args.vectors) / kind
    settings = FitSettings(kind=kind)
    if not args.trust_vectors:
        return fit_all(model, folder, values, settings=settings, gates=gates, progress=args.verbose)
    vectors = load_or_fit(model, folder, values, settings=settings, progress=args.verbose)
    gate_map: dict[str, Any] = {}
    if gates:
        try:
            gate_map = load_gates(folder, values, model=model)
        except ArtifactError:
            new = fit_gates(model, vectors, progress=args.verbose)
            save_gates(folder, new.values())
            gate_map = new
    return vectors, gate_map


def gen_config(args: argparse.Namespace) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)


def make_judge(args: argparse.Namespace, out: Path) -> Any:
    """A :class:`conva_tl.judge.Judge` when a judge model is named, else ``None``."""
    if not (getattr(args, "model_judge", None) or os.environ.get("CONVA_JUDGE_MODEL")):
        return None
    from conva_tl.judge import Judge
    from conva_tl.llm_api import ApiConfig, ChatClient

    config = ApiConfig.from_env(
        model=args.model_judge, base_url=args.base_url, api_key_env=args.api_key_env
    )
    return Judge(ChatClient(config), out / "judge_cache.jsonl")


def cached_activations(
    model: Any,
    texts: Sequence[str],
    *,
    pooling: str = "last",
    input_format: str = "raw",
    cache_dir: Path | None,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`cache_resid_post` over all layers, stored as safetensors under ``cache_dir``.

    The key is a hash of the model's name and shape, the texts, the pooling and
    the input format, so every script asking for the same activations shares one pass.
    """
    info = model_info(model).to_dict()
    key = hashlib.sha256(
        json.dumps([info, list(texts), pooling, input_format]).encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return load_file(str(path))["acts"]
        except Exception as exc:  # a truncated file from a killed run: recompute
            logging.getLogger(__name__).warning(
                "ignoring unreadable activation cache %s: %s", path, exc
            )
    acts = cache_resid_post(
        model,
        texts,
        pooling=pooling,
        input_format=input_format,
        batch_size=batch_size,
        progress=progress,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"acts": acts.contiguous()}, str(tmp))
        tmp.replace(path)
        (path.with_suffix(".json")).write_text(
            json.dumps(
                {
                    "model": info,
                    "n_texts": len(texts),
                    "pooling": pooling,
                    "input_format": input_format,
                },
                indent=2,
            )
        )
    return acts


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_measures(
    table: pd.DataFrame,
    x: str,
    metrics: Sequence[tuple[str, str]],
    path: Path,
    *,
    title: str,
    categorical: bool = False,
    baseline: str | None = "base",
) -> Path:
    """One panel per metric, one line per value over ``x``; the ``baseline`` setting as a dashed line."""
    fig = new_figure(4.0 * len(metrics), 3.6)
    rows = table[table["setting"] != baseline] if baseline else table
    base = table[table["setting"] == baseline] if baseline else table.iloc[0:0]
    labels = list(dict.fromkeys(rows[x].astype(str))) if categorical else None
    for k, (col, label) in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for i, (value, g) in enumerate(rows.groupby("value", sort=False)):
            color = f"C{i}"
            xs = [labels.index(s) for s in g[x].astype(str)] if labels else g[x]
            ax.plot(xs, g[col], marker="o", color=color, label=value)
            b = base[base["value"] == value]
            if len(b) and col in b:
                ax.axhline(float(b[col].iloc[0]), color=color, ls="--", lw=1, alpha=0.7)
        if labels:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(x)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, title="dashed: base" if len(base) else None, title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def write_outputs(
    out: Path,
    name: str,
    table: pd.DataFrame,
    figure: Callable[[Path], Any] | None,
    *,
    settings: dict[str, Any],
    extra: dict[str, pd.DataFrame] | None = None,
) -> list[Path]:
    """Write ``<name>.csv``, the figure ``<name>.png``, extra CSVs and ``run.json``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv"]
    table.to_csv(paths[0], index=False)
    for extra_name, df in (extra or {}).items():
        df.to_csv(out / f"{extra_name}.csv", index=False)
        paths.append(out / f"{extra_name}.csv")
    if figure is not None:
        paths.append(Path(figure(out / f"{name}.png")))
    (out / "run.json").write_text(json.dumps(settings, indent=2, default=str))
    paths.append(out / "run.json")
    return paths


def print_table(table: pd.DataFrame, columns: Sequence[str], *, title: str) -> None:
    cols = [c for c in columns if c in table.columns]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 40, "display.float_format", "{:.3f}".format
    ):
        print(f"\n{title}")
        print(table[cols].to_string(index=False))


def run_settings(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """What ``run.json`` records about the command and the model."""
    return {
        "argv": sys.argv[1:],
        "args": vars(args),
        "model": model_info(model).to_dict(),
        "time": time.ctime(),
    }


def main_wrapper(
    fn: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser, argv: list[str] | None
) -> int:
    """Parse, set up logging, run; 2 on a :class:`ConvaError`."""
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return fn(args)
    except ConvaError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


STEERING_COLUMNS = (
    "value",
    "setting",
    "csr",
    "fr",
    "logit_v",
    "p_v",
    "p_v_pos",
    "kl_value",
    "kl_unrelated",
    "kl_unrelated_max",
    "ppl",
    "distinct2",
    "words",
)
STEERING_METRICS = (
    ("logit_v", "probe logit of answers (higher = aligned)"),
    ("kl_unrelated", "KL(base||steered), unrelated prompts"),
    ("ppl", "answer perplexity under base (lower = fluent)"),
    ("distinct2", "distinct-2 ratio (1 = no repeats)"),
)
EPS_COLUMNS = ("moved", "eps_abs", "eps_abs_generated", "p_before", "saturated")
EPS_NOTE = (
    "control applied (from the generation trace): moved = share of (token, layer) cells shifted; "
    "eps_abs = mean |eps| over all cells; eps_abs_generated = over generated tokens; "
    "p_before = mean P_V before control; saturated = share of cells with P_V < 0.01 or > 0.99 before control"
)
JUDGE_METRICS = (("csr", "control success rate (CSR)"), ("fr", "fluency rate (FR)"))


def steering_setup(
    args: argparse.Namespace, *, values: Sequence[str] | None = None
) -> dict[str, Any]:
    """Model, vectors, gates (with ``--gate``), per-value sweep contexts, judge and decoding config."""
    from conva_tl.analysis import prepare_context

    model = load_subject(args)
    names = list(values) if values is not None else values_of(args)
    vectors, gates = get_vectors(model, args, names, gates=bool(args.gate))
    contexts = {
        v: prepare_context(
            model,
            vectors[v],
            n_questions=args.questions,
            n_unrelated=args.unrelated,
            batch_size=args.batch_size,
        )
        for v in names
    }
    return {
        "model": model,
        "values": names,
        "vectors": vectors,
        "gates": gates if args.gate else None,
        "contexts": contexts,
        "judge": make_judge(args, args.out),
        "config": gen_config(args),
    }


def steering_metrics(judged: bool) -> list[tuple[str, str]]:
    return [*JUDGE_METRICS, *STEERING_METRICS[:2]] if judged else list(STEERING_METRICS)


def print_judge_status(judged: bool) -> None:
    print("\nCSR/FR from the configured judge." if judged else "\n" + JUDGE_FREE_NOTICE)


def probe_options(p: argparse.ArgumentParser, *, layer_step: int) -> None:
    """Options of the probe sweeps (training-set size, data, pooling, input format)."""
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


def fit_layers(args: argparse.Namespace, n_layers: int) -> list[int]:
    """The layers the probe sweeps fit: ``--layers``, else every ``--layer-step``-th and the last."""
    if args.layers:
        bad = [x for x in args.layers if not 0 <= x < n_layers]
        if bad:
            raise ConvaError(f"--layers must be in 0..{n_layers - 1}, got {bad}")
        return sorted(set(args.layers))
    if args.layer_step < 1:
        raise ConvaError(f"--layer-step must be >= 1, got {args.layer_step}")
    return sorted(set(range(0, n_layers, args.layer_step)) | {n_layers - 1})


def cache_dir(args: argparse.Namespace) -> Path | None:
    return None if str(args.cache).lower() == "none" else Path(args.cache)


def contrast_data(value: str, kind: str, n: int | None) -> Any:
    """The value's contrast set, limited to ``n`` pairs (or ``n`` sentences per label)."""
    from conva_tl.datasets import contrast_set

    cs = contrast_set(value, kind)
    if n is None:
        return cs
    if n < 2:
        raise ConvaError(f"--pairs must be >= 2, got {n}")
    if kind == "pairs":
        return cs.subset(sorted(set(cs.groups))[:n])
    pos = [g for g, y in zip(cs.groups, cs.labels, strict=True) if y == 1][:n]
    neg = [g for g, y in zip(cs.groups, cs.labels, strict=True) if y == 0][:n]
    return cs.subset(pos + neg)


def activations_for(
    model: Any,
    args: argparse.Namespace,
    cs: Any,
    *,
    pooling: str = "last",
    input_format: str = "raw",
) -> torch.Tensor:
    """All-layer activations of a contrast set, through the shared cache."""
    t0 = time.perf_counter()
    acts = cached_activations(
        model,
        list(cs.texts),
        pooling=pooling,
        input_format=input_format,
        cache_dir=cache_dir(args),
        batch_size=max(args.batch_size, 16),
        progress=args.verbose,
    )
    logging.getLogger(__name__).info(
        "%s/%s %s-%s activations: %.1fs",
        cs.value,
        cs.kind,
        input_format,
        pooling,
        time.perf_counter() - t0,
    )
    return acts


def transfer_summary(
    df: pd.DataFrame, n_layers: int, *, threshold: float = 0.9, exclude_last: int = 5
) -> pd.DataFrame:
    """Per value x train x test: best in-domain layer of the train view and accuracies there and overall."""
    rows = []
    for (value, train), g in df.groupby(["value", "train"], sort=False):
        own = g[g.test == train].set_index("layer")["accuracy"]
        best = int(own.idxmax())
        for test, h in g.groupby("test", sort=False):
            acc = h.set_index("layer")["accuracy"]
            allowed = acc[acc.index < n_layers - exclude_last]
            rows.append(
                {
                    "value": value,
                    "train": train,
                    "test": test,
                    "best_layer": best,
                    "acc_best_layer": float(acc[best]),
                    "acc_max": float(acc.max()),
                    "acc_mean": float(acc.mean()),
                    f"layers>{threshold:g}": int((allowed > threshold).sum()),
                }
            )
    return pd.DataFrame(rows)


def plot_transfer(df: pd.DataFrame, path: Path, *, title: str, threshold: float = 0.9) -> Path:
    """Accuracy by layer, one panel per value: solid = tested on its own view, dashed = transfer."""
    values = list(dict.fromkeys(df["value"]))
    fig = new_figure(5.0 * len(values), 3.8)
    trains = list(dict.fromkeys(df["train"]))
    for k, v in enumerate(values):
        ax = fig.add_subplot(1, len(values), k + 1)
        g = df[df.value == v]
        for i, tr in enumerate(trains):
            for te, h in g[g.train == tr].groupby("test", sort=False):
                ax.plot(
                    h.layer,
                    h.accuracy,
                    color=f"C{i}",
                    ls="-" if te == tr else "--",
                    marker=".",
                    label=f"train {tr} -> test {te}",
                )
        ax.axhline(threshold, color="k", ls=":", lw=0.8)
        ax.set(xlabel="layer", ylabel="held-out accuracy", title=v, ylim=(0.3, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
