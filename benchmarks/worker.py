"""One benchmark measurement per process (started by ``benchmarks/run.py``).

``python benchmarks/worker.py CASE [options]`` prints one ``BENCH_RESULT {json}``
line; its ``ru_maxrss_mb`` is this measurement's own peak memory. Cases:

* ``imports``: import time of torch, transformers, transformer_lens (incremental).
* ``load``: load the embedded model as a bridge or a FastModel (cold or warm
  depends on ``CONVA_CACHE_DIR``), timed by stage.
* ``identify``: :func:`conva_tl.identify.identify` on the bridge or the fast
  path; caching and probe fitting timed separately; vectors saved.
* ``naive``: one sentence per forward pass, all layers (the authors' way).
* ``generate``: tokens/s of HF ``generate`` and of the toolkit's loop,
  unsteered and ConVA-steered, on one path and batch size.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PeakRss, Timer, emit, env_info, rss_mb  # noqa: E402


def case_imports(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for mod in ("torch", "transformers", "transformer_lens"):
        t0 = time.perf_counter()
        __import__(mod)
        out[f"import_{mod}_s"] = round(time.perf_counter() - t0, 3)
    return out


def _load(path: str, device: str) -> tuple[Any, Any, dict[str, float]]:
    """Load the embedded model; stage timings (imports, HF load, bridge boot)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from conva_tl.model import boot_bridge, load_hf_model

    times["import_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    hf, tok, name = load_hf_model()
    hf = hf.to(device)
    times["hf_load_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    if path == "bridge":
        import transformer_lens  # noqa: F401

        times["import_transformer_lens_s"] = time.perf_counter() - t2
        model = boot_bridge(hf, tok, name, device=device)
    elif path == "fast":
        from conva_tl.fast import FastModel

        model = FastModel(hf, tok, name)
    else:
        model = hf
    times["wrap_s"] = time.perf_counter() - t2
    times["total_s"] = time.perf_counter() - t0
    # the load itself, once `import torch, transformers, conva_tl` is done (lazy
    # imports that transformers and transformer_lens make on first use stay in)
    times["load_s"] = times["total_s"] - times["import_s"]
    return model, tok, {k: round(v, 3) for k, v in times.items()}


def case_load(args: argparse.Namespace) -> dict[str, Any]:
    with PeakRss() as mem:
        _, _, times = _load(args.path, args.device)
    return {**times, "path": args.path, "rss_peak_mb": mem.peak_mb, "rss_after_mb": rss_mb()}


def _texts(values: list[str], n_pairs: int | None) -> dict[str, Any]:
    from conva_tl.datasets import contrast_set

    sets = {}
    for v in values:
        cs = contrast_set(v, "pairs")
        if n_pairs:
            cs = cs.subset(sorted(set(cs.groups))[:n_pairs])
        sets[v] = cs
    return sets


def case_identify(args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    from conva_tl.artifacts import save_vectors
    from conva_tl.values import VALUES

    model, _, load_times = _load(args.path, args.device)
    # the module, not the function conva_tl re-exports under the same name
    identify_mod = importlib.import_module("conva_tl.identify")
    values = list(VALUES) if args.values == "all" else args.values.split(",")
    data = _texts(values, args.n_pairs)
    caching: list[float] = []
    real_cache = identify_mod.cache_resid_post

    def timed_cache(*a: Any, **kw: Any) -> Any:
        with Timer(args.device) as t:
            out = real_cache(*a, **kw)
        caching.append(t.seconds)
        return out

    identify_mod.cache_resid_post = timed_cache  # time the activation pass inside identify()
    rss0 = rss_mb()
    with PeakRss() as mem, Timer(args.device) as total:
        vectors = identify_mod.identify(
            model, values, data=data, batch_size=args.batch_size, progress=False
        )
    if args.save:
        save_vectors(args.save, list(vectors.values()))
    n_texts = sum(len(cs) for cs in data.values())
    return {
        "path": args.path,
        "values": len(values),
        "texts": n_texts,
        "layers": int(model.cfg.n_layers),
        "batch_size": args.batch_size,
        "total_s": round(total.seconds, 2),
        "caching_s": round(sum(caching), 2),
        "probes_s": round(total.seconds - sum(caching), 2),
        "control_layers": {v: list(vv.control_layers) for v, vv in vectors.items()},
        "load": load_times,
        "rss_before_mb": rss0,
        "rss_peak_mb": mem.peak_mb,
    }


def case_naive(args: argparse.Namespace) -> dict[str, Any]:
    """One sentence per forward pass, every layer's full stream kept, last token taken."""
    import torch

    from conva_tl.hooks import resid_post_name
    from conva_tl.values import VALUES

    model, tok, _ = _load(args.path, args.device)
    texts = [t for cs in _texts(list(VALUES), None).values() for t in cs.texts]
    step = max(1, len(texts) // args.n)
    sample = texts[::step][: args.n]
    names = [
        resid_post_name(layer)
        for layer in range(
            model.config.num_hidden_layers if args.path == "hf" else model.cfg.n_layers
        )
    ]
    rows = []
    with PeakRss() as mem, Timer(args.device) as t, torch.inference_mode():
        for text in sample:
            ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids.to(args.device)
            if args.path == "bridge":
                _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
                rows.append(torch.stack([cache[n][0, -1] for n in names]).cpu())
            else:
                out = model(ids, output_hidden_states=True)
                rows.append(torch.stack([h[0, -1] for h in out.hidden_states[1:]]).cpu())
    return {
        "path": args.path,
        "texts": len(sample),
        "of_texts": len(texts),
        "seconds": round(t.seconds, 2),
        "per_text_s": round(t.seconds / len(sample), 4),
        "extrapolated_s": round(t.seconds / len(sample) * len(texts), 1),
        "rss_peak_mb": mem.peak_mb,
    }


def case_generate(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.genbench import conva_method, hf_run, interleaved, ratio, toolkit_run
    from conva_tl.artifacts import load_vectors
    from conva_tl.datasets import load_questions
    from conva_tl.prompts import format_inputs
    from conva_tl.tokens import tokenize_batch

    model, _, load_times = _load(args.path, args.device)
    hf_plain = None
    if args.path == "fast":
        hf_plain = model.hf_model  # unbridged: plain HF generate when no hooks are attached
    elif args.with_hf:
        hf_plain, _, _ = _load("hf", args.device)  # a second, unbridged copy
    vv = load_vectors(args.vectors, values=[args.value])[args.value]
    if not vv.control_layers:  # small quick-mode fits may pass no layer: take the best ones
        ranked = sorted(range(vv.n_layers - 5), key=lambda layer: -float(vv.accuracy[layer]))
        vv = vv.with_layers(layers=ranked[:8])
    method = conva_method(vv, p0=args.p0)
    questions = [q.question for q in load_questions(args.value)]
    texts = format_inputs(model.tokenizer, questions[: args.batch], "chat")
    batch = tokenize_batch(model.tokenizer, texts)
    pad = model.tokenizer.pad_token_id
    dev = args.device

    def runs(n: int) -> dict[str, Any]:
        out = {}
        if hf_plain is not None:
            out["hf_generate"] = lambda: hf_run(hf_plain, batch, n, pad, dev)
        out[f"{args.path}_unsteered"] = lambda: toolkit_run(model, batch, n, None, dev)
        out[f"{args.path}_conva"] = lambda: toolkit_run(model, batch, n, method, dev)
        return out

    interleaved(runs(3), 1, dev)  # warm-up: first-call allocations and lazy inits
    res = interleaved(runs(args.max_new_tokens), args.repeats, dev)
    return {
        "path": args.path,
        "batch": args.batch,
        "prompt_tokens": int(batch.input_ids.shape[1]),
        "max_new_tokens": args.max_new_tokens,
        "value": args.value,
        "control_layers": list(method.control_layers),
        "p0": args.p0,
        "gate": f"always-open ActivationGate at block {method.gate.block}",
        "results": res,
        "steered_over_unsteered": ratio(res[f"{args.path}_conva"], res[f"{args.path}_unsteered"]),
        "steered_over_hf": ratio(res[f"{args.path}_conva"], res.get("hf_generate")),
        "unsteered_over_hf": ratio(res[f"{args.path}_unsteered"], res.get("hf_generate")),
        "load": load_times,
        "rss_after_load_mb": rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("case", choices=["imports", "load", "identify", "naive", "generate"])
    p.add_argument("--path", choices=["bridge", "fast", "hf"], default="bridge")
    p.add_argument("--device", default="cpu")
    p.add_argument("--values", default="all", help="comma-separated values or 'all'")
    p.add_argument("--n-pairs", type=int, default=None, help="pairs per value (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--save", default=None, help="folder to save identified vectors to")
    p.add_argument("--n", type=int, default=100, help="sentences for the naive pass")
    p.add_argument("--vectors", default=None)
    p.add_argument("--value", default="benevolence")
    p.add_argument("--p0", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--with-hf", action="store_true", help="bridge path: also time HF generate on a copy"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    fn = {
        "imports": case_imports,
        "load": case_load,
        "identify": case_identify,
        "naive": case_naive,
        "generate": case_generate,
    }[args.case]
    result = fn(args)
    emit({"case": args.case, **result, "env": env_info(args.device)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
