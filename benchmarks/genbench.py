"""Generation timing shared by the CPU worker and ``gpu.py``.

Tokens/s counts token slots: rows x decoding steps / wall time, where one step
is one forward pass of the loop (the prompt pass included). The toolkit's loop
(:func:`conva_tl.generate.generate_batch`) stops early when every row has hit
a stop token, so its step count is read from the output; plain HF ``generate``
is forced to the full length with ``min_new_tokens``. Runs of the paths being
compared are interleaved (A B C A B C ...) so that drifting load from other
processes hits them alike; the median over repeats is reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from conva_tl.gate import ActivationGate
from conva_tl.generate import GenerationConfig, GenerationContext, generate_batch
from conva_tl.methods import ConVA
from conva_tl.probes import ValueVectors
from conva_tl.tokens import Batch

try:  # imported as benchmarks.genbench or as a sibling of a script
    from benchmarks.common import PeakRss, Timer
except ImportError:  # pragma: no cover
    from common import PeakRss, Timer  # type: ignore[no-redef]


def always_open_gate(vectors: ValueVectors) -> ActivationGate:
    """An activation gate that opens for every prompt (w = 0, threshold 0).

    The gate hook still runs (and pools the prompt at its block), so its cost
    is measured, and every row is steered: the most work ConVA can do.
    """
    block = max(0, min(vectors.control_layers))
    return ActivationGate(vectors.value, block, torch.zeros(vectors.w.shape[1]), 0.0, threshold=0.0)


def conva_method(vectors: ValueVectors, p0: float = 0.9, gated: bool = True) -> ConVA:
    gate = always_open_gate(vectors) if gated else None
    return ConVA(vectors, p0=p0, gate=gate, mode="per_token")


def steps_taken(out: list[list[int]], max_new_tokens: int) -> int:
    """Forward passes generate_batch ran: all of them unless every row stopped early."""
    longest = max(len(row) for row in out)
    return max_new_tokens if longest >= max_new_tokens else min(max_new_tokens, longest + 1)


def toolkit_run(
    model: Any, batch: Batch, max_new_tokens: int, method: ConVA | None, device: str
) -> dict[str, Any]:
    """One timed :func:`generate_batch` call (greedy, KV cache) under ``method``'s hooks."""
    ctx = GenerationContext()
    hooks = method.fwd_hooks(model, ctx) if method is not None else []
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch.input_ids.shape[0])
    with PeakRss() as mem, Timer(device) as t:
        out = generate_batch(model, batch, cfg, ctx=ctx, fwd_hooks=hooks)
    steps = steps_taken(out, max_new_tokens)
    return {"seconds": t.seconds, "steps": steps, "rows": len(out), "rss_peak_mb": mem.peak_mb}


@torch.inference_mode()
def hf_run(
    hf_model: Any, batch: Batch, max_new_tokens: int, pad_id: int, device: str
) -> dict[str, Any]:
    """One timed plain HF ``generate`` (greedy, forced to ``max_new_tokens``)."""
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    with PeakRss() as mem, Timer(device) as t:
        out = hf_model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    steps = int(out.shape[1] - ids.shape[1])
    return {
        "seconds": t.seconds,
        "steps": steps,
        "rows": int(ids.shape[0]),
        "rss_peak_mb": mem.peak_mb,
    }


def interleaved(
    runs: dict[str, Callable[[], dict[str, Any]]], repeats: int, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """Run each labelled callable ``repeats`` times, interleaved; summarise per label."""
    raw: dict[str, list[dict[str, Any]]] = {k: [] for k in runs}
    cuda = str(device).startswith("cuda")
    peaks: dict[str, float] = {}
    for _ in range(repeats):
        for label, fn in runs.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            raw[label].append(fn())
            if cuda:
                peaks[label] = max(peaks.get(label, 0.0), torch.cuda.max_memory_allocated() / 2**20)
    out: dict[str, dict[str, Any]] = {}
    for label, rs in raw.items():
        tps = [r["rows"] * r["steps"] / r["seconds"] for r in rs]
        out[label] = {
            "tokens_per_s": round(statistics.median(tps), 3),
            "tokens_per_s_runs": [round(x, 3) for x in tps],
            "seconds_median": round(statistics.median(r["seconds"] for r in rs), 3),
            "steps": rs[-1]["steps"],
            "rows": rs[-1]["rows"],
            "rss_peak_mb": max(r["rss_peak_mb"] for r in rs),
        }
        if cuda:
            out[label]["cuda_peak_mb"] = round(peaks[label], 1)
    return out


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """tokens/s of ``a`` over ``b``."""
    if not a or not b:
        return None
    return round(a["tokens_per_s"] / b["tokens_per_s"], 3)
