"""Run the conva-tl benchmarks on the embedded model (``make bench``).

    python benchmarks/run.py                 # full run (CPU: ~30-60 min on 2 cores)
    python benchmarks/run.py --quick         # a few minutes: subsets, short generations
    python benchmarks/run.py --device cuda   # on a GPU (needs the embedded GGUF locally)
    python benchmarks/run.py --only load,generate

Each measurement runs in a fresh subprocess (``benchmarks/worker.py``) so its
peak memory is its own. Prints one table per benchmark and writes
``benchmarks/results/<name>.json`` (``results/quick/`` with ``--quick``).
See ``benchmarks/README.md`` for the targets and the numbers measured here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, env_info, print_table, run_worker, write_json  # noqa: E402

SECTIONS = ("load", "identify", "generate")
TARGETS = {
    "identify_all_s": 90.0,
    "conva_over_unsteered": 0.9,
    "warm_load_s": 5.0,
    "fast_conva_over_hf": 0.9,
}


def bench_load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Imports; cold load (dequantize into an empty CONVA_CACHE_DIR) and warm loads."""
    cache = work / "cache"
    env = {"CONVA_CACHE_DIR": str(cache)}
    rows = []
    imports = run_worker("imports")
    rows.append({**imports, "case": "imports (torch, transformers, transformer_lens)"})
    dev = ["--device", args.device]
    if not args.quick:
        shutil.rmtree(cache, ignore_errors=True)
        rows.append(
            {
                **run_worker("load", ["--path", "bridge", *dev], env=env),
                "case": "cold load_model() (dequantize + cache)",
            }
        )
    else:  # quick: warm up the temp cache without reporting a cold number
        run_worker("load", ["--path", "hf", *dev], env=env)
    rows.append(
        {
            **run_worker("load", ["--path", "bridge", *dev], env=env),
            "case": "warm load_model() (bridge)",
        }
    )
    rows.append(
        {
            **run_worker("load", ["--path", "fast", *dev], env=env),
            "case": "warm load_fast_model() (no bridge)",
        }
    )
    print_table(
        "Model load (each in a fresh process)",
        rows,
        [
            ("case", "case", ""),
            ("total_s", "total s", ".2f"),
            ("import_s", "imports s", ".2f"),
            ("load_s", "load s", ".2f"),
            ("hf_load_s", "HF load s", ".2f"),
            ("import_transformer_lens_s", "import TL s", ".2f"),
            ("wrap_s", "boot/wrap s", ".2f"),
            ("rss_peak_mb", "peak RSS MiB", ".0f"),
            ("ru_maxrss_mb", "ru_maxrss MiB", ".0f"),
            ("load", "load avg 1m", ".1f"),
        ],
    )
    print(
        f"   import torch {imports['import_torch_s']:.2f} s, transformers +{imports['import_transformers_s']:.2f} s, "
        f"transformer_lens +{imports['import_transformer_lens_s']:.2f} s"
    )
    return {"rows": rows}


def _compare_vectors(a_dir: Path, b_dir: Path) -> list[dict[str, Any]]:
    import torch

    from conva_tl.artifacts import load_vectors

    a, b = load_vectors(a_dir), load_vectors(b_dir)
    out = []
    for v in a:
        va, vb = a[v], b[v]
        fitted = va.w.norm(dim=-1) > 0
        cos = torch.nn.functional.cosine_similarity(va.w[fitted], vb.w[fitted], dim=-1)
        out.append(
            {
                "value": v,
                "control_layers_equal": va.control_layers == vb.control_layers,
                "n_control_layers": len(va.control_layers),
                "max_abs_accuracy_diff": round(float((va.accuracy - vb.accuracy).abs().max()), 4),
                "min_cos_w": round(float(cos.min()), 6),
            }
        )
    return out


def bench_identify(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """identify() of all values x all layers: bridge vs fast path vs one sentence per pass."""
    sel = ["--values", "security,benevolence", "--n-pairs", "20"] if args.quick else []
    dev = ["--device", args.device]
    rows, vec = [], {}
    for path in ("bridge", "fast"):
        vec[path] = work / f"vectors_{path}"
        r = run_worker("identify", ["--path", path, "--save", str(vec[path]), *sel, *dev])
        rows.append({**r, "case": f"identify() on the {path} path (batched 32, sorted)"})
    n_naive = 10 if args.quick else 100
    naive = []
    for path in ("bridge", "hf"):
        r = run_worker("naive", ["--path", path, "--n", str(n_naive), *dev])
        how = "bridge run_with_cache" if path == "bridge" else "HF output_hidden_states"
        naive.append({**r, "case": f"naive: 1 sentence/pass, {how}"})
    bridge, fast = rows
    n_all = naive[0]["of_texts"]
    scale = bridge["texts"] / n_all  # quick mode caches a subset: compare like with like
    for r in naive:
        r["extrapolated_to_run_s"] = round(r["extrapolated_s"] * scale, 1)
    ratios = {
        "naive_bridge_caching_over_batched_bridge": round(
            naive[0]["extrapolated_to_run_s"] / bridge["caching_s"], 2
        ),
        "naive_hf_caching_over_batched_fast": round(
            naive[1]["extrapolated_to_run_s"] / fast["caching_s"], 2
        ),
        "bridge_caching_over_fast_caching": round(bridge["caching_s"] / fast["caching_s"], 2),
        "bridge_total_over_fast_total": round(bridge["total_s"] / fast["total_s"], 2),
    }
    equal = _compare_vectors(vec["bridge"], vec["fast"])
    print_table(
        "Identification (values x all layers)",
        rows,
        [
            ("case", "case", ""),
            ("values", "values", ""),
            ("texts", "texts", ""),
            ("caching_s", "caching s", ".1f"),
            ("probes_s", "probes s", ".1f"),
            ("total_s", "total s", ".1f"),
            ("rss_peak_mb", "peak RSS MiB", ".0f"),
            ("ru_maxrss_mb", "ru_maxrss MiB", ".0f"),
            ("load", "load avg 1m", ".1f"),
        ],
    )
    print_table(
        f"Naive caching: measured on {n_naive} sentences, extrapolated linearly",
        naive,
        [
            ("case", "case", ""),
            ("texts", "measured on", ""),
            ("per_text_s", "s/sentence", ".3f"),
            ("extrapolated_s", f"all {n_all} s (extrapolated)", ".0f"),
            ("extrapolated_to_run_s", f"{bridge['texts']} texts s (extrapolated)", ".0f"),
            ("rss_peak_mb", "peak RSS MiB", ".0f"),
            ("load", "load avg 1m", ".1f"),
        ],
    )
    print_table(
        "Fast-path vectors vs bridge vectors",
        equal,
        [
            ("value", "value", ""),
            ("control_layers_equal", "same control layers", ""),
            ("n_control_layers", "n control", ""),
            ("max_abs_accuracy_diff", "max |d acc|", ".4f"),
            ("min_cos_w", "min cos(w)", ".6f"),
        ],
    )
    print("   " + ", ".join(f"{k} = {v}" for k, v in ratios.items()))
    return {
        "rows": rows,
        "naive": naive,
        "ratios": ratios,
        "vectors_equal": equal,
        "vectors": str(vec["bridge"]),
    }


def _most_controlled(vectors: Path) -> str | None:
    """The value with the most control layers: the most hooks, the hardest case for ConVA."""
    from conva_tl.artifacts import load_vectors

    if not (vectors / "manifest.json").is_file():
        return None
    found = load_vectors(vectors)
    return max(found, key=lambda v: len(found[v].control_layers), default=None)


def bench_generate(args: argparse.Namespace, work: Path, vectors: Path | None) -> dict[str, Any]:
    """Tokens/s: HF generate vs the toolkit's loop (bridge, fast), unsteered vs ConVA."""
    dev = ["--device", args.device]
    value = _most_controlled(vectors) if vectors is not None else None
    if value is None:
        value = "benevolence"
        vectors = work / "vectors_generate"
        run_worker(
            "identify",
            [
                "--path",
                "fast",
                "--values",
                value,
                "--n-pairs",
                "40",
                "--save",
                str(vectors),
                *dev,
            ],
        )
    n_new = "8" if args.quick else "32"
    repeats = "1" if args.quick else "3"
    rows = []
    for batch in (1, 16):
        for path in ("bridge", "fast"):
            extra = ["--with-hf"] if path == "bridge" else []
            r = run_worker(
                "generate",
                [
                    "--path",
                    path,
                    "--batch",
                    str(batch),
                    "--vectors",
                    str(vectors),
                    "--value",
                    value,
                    "--max-new-tokens",
                    n_new,
                    "--repeats",
                    repeats,
                    *extra,
                    *dev,
                ],
            )
            res = r["results"]
            rows.append(
                {
                    "path": path,
                    "batch": batch,
                    "steps": res[f"{path}_unsteered"]["steps"],
                    "hf": res.get("hf_generate", {}).get("tokens_per_s"),
                    "unsteered": res[f"{path}_unsteered"]["tokens_per_s"],
                    "conva": res[f"{path}_conva"]["tokens_per_s"],
                    "conva_over_unsteered": r["steered_over_unsteered"],
                    "conva_over_hf": r["steered_over_hf"],
                    "unsteered_over_hf": r["unsteered_over_hf"],
                    "value": value,
                    "n_control_layers": len(r["control_layers"]),
                    "rss_after_load_mb": r["rss_after_load_mb"],
                    "ru_maxrss_mb": r["ru_maxrss_mb"],
                    "raw": r,
                }
            )
    print_table(
        f"Generation tokens/s (greedy, KV cache, {n_new} new tokens, median of {repeats})",
        rows,
        [
            ("path", "path", ""),
            ("batch", "batch", ""),
            ("hf", "HF generate", ".2f"),
            ("unsteered", "unsteered", ".2f"),
            ("conva", "ConVA", ".2f"),
            ("conva_over_unsteered", "ConVA/unsteered", ".3f"),
            ("conva_over_hf", "ConVA/HF", ".3f"),
            ("unsteered_over_hf", "unsteered/HF", ".3f"),
            ("n_control_layers", "ctrl layers", ""),
            ("ru_maxrss_mb", "ru_maxrss MiB", ".0f"),
            ("load", "load avg 1m", ".1f"),
        ],
    )
    print("   bridge rows: HF generate ran on a second, unbridged copy in the same process.")
    return {"rows": rows, "max_new_tokens": int(n_new), "repeats": int(repeats)}


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "identify" in results:
        r = results["identify"]
        for row in r["rows"]:
            rows.append(
                {
                    "target": f"identify all values < {TARGETS['identify_all_s']:.0f} s",
                    "case": row["case"],
                    "measured": row["total_s"],
                    "ok": row["total_s"] < TARGETS["identify_all_s"],
                }
            )
    if "generate" in results:
        for row in results["generate"]["rows"]:
            rows.append(
                {
                    "target": "ConVA >= 0.9x unsteered",
                    "case": f"{row['path']} b{row['batch']}",
                    "measured": row["conva_over_unsteered"],
                    "ok": row["conva_over_unsteered"] >= TARGETS["conva_over_unsteered"],
                }
            )
            if row["path"] == "fast":
                rows.append(
                    {
                        "target": "fast ConVA >= 0.9x HF generate",
                        "case": f"fast b{row['batch']}",
                        "measured": row["conva_over_hf"],
                        "ok": row["conva_over_hf"] >= TARGETS["fast_conva_over_hf"],
                    }
                )
    if "load" in results:
        for row in results["load"]["rows"]:
            if row["case"].startswith("warm"):
                rows.append(
                    {
                        "target": "warm load < 5 s (after imports)",
                        "case": row["case"],
                        "measured": row["load_s"],
                        "ok": row["load_s"] < TARGETS["warm_load_s"],
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="short run: subsets, few tokens")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    p.add_argument(
        "--out", default=None, help="results folder (default: benchmarks/results[/quick])"
    )
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as each section ends
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    out = Path(args.out) if args.out else (RESULTS / "quick" if args.quick else RESULTS)
    env = env_info(args.device)
    print(
        f"conva-tl benchmarks ({'quick' if args.quick else 'full'}), device {args.device}, "
        f"{env['cpu_count']} CPUs, torch {env['torch']} ({env['torch_threads']} threads), load avg {env['loadavg']}"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="conva-bench-") as tmp:
        work = Path(tmp)
        if "load" in only:
            results["load"] = bench_load(args, work)
            write_json("load", {"env": env, **results["load"]}, out)
        vectors = None
        if "identify" in only:
            results["identify"] = bench_identify(args, work)
            write_json("identify", {"env": env, **results["identify"]}, out)
            vectors = Path(results["identify"]["vectors"])
        if "generate" in only:
            results["generate"] = bench_generate(args, work, vectors)
            write_json("generate", {"env": env, **results["generate"]}, out)
    summary = summarize(results)
    print_table(
        "Targets",
        summary,
        [
            ("target", "target", ""),
            ("case", "case", ""),
            ("measured", "measured", ".3f"),
            ("ok", "met", ""),
        ],
    )
    env_end = env_info(args.device)
    write_json(
        "summary",
        {
            "env_start": env,
            "env_end": env_end,
            "quick": args.quick,
            "targets": TARGETS,
            "rows": summary,
        },
        out,
    )
    print(f"\nJSON written to {out}/ (load avg at end {env_end['loadavg']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
