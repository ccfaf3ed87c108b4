"""Shared helpers of the benchmarks: environment, memory, subprocesses, tables, JSON.

Every measurement that reports memory runs in its own subprocess
(:func:`run_worker`), so ``ru_maxrss`` is that measurement's own high-water
mark; inside it, :class:`PeakRss` samples the resident set with psutil to give
the peak of one phase (a load, a generation run) rather than of the whole
process. On CUDA the torch allocator's peak is reported as well.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RESULT_TAG = "BENCH_RESULT "


def loadavg() -> list[float]:
    """1/5/15-minute load averages: other processes on the machine skew every timing."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def env_info(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "loadavg": loadavg(),
    }
    try:
        import importlib.metadata as md

        for pkg in ("transformers", "transformer-lens"):
            info[pkg] = md.version(pkg)
    except Exception:  # pragma: no cover
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def maxrss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)


def rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


class PeakRss:
    """Peak resident set (MiB) while the ``with`` block runs, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = round(max(self.peak_mb, rss_mb()), 1)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Timer:
    """Wall time of a ``with`` block, synchronising CUDA at both ends."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def emit(result: dict[str, Any]) -> None:
    """Worker side: print the result line that :func:`run_worker` parses."""
    result = {**result, "ru_maxrss_mb": maxrss_mb()}
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_worker(
    case: str,
    args: Iterable[str] = (),
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``benchmarks/worker.py CASE ARGS`` in a fresh interpreter; return its result."""
    cmd = [sys.executable, str(HERE / "worker.py"), case, *args]
    quiet = {
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    full_env = {**os.environ, **quiet, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, text=True, env=full_env, timeout=timeout, check=False
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {' '.join(cmd[1:])} failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len(RESULT_TAG) :])
    result["process_wall_s"] = round(wall, 2)
    # 1-minute load average when the measurement ended: > cpu_count means contention
    result["load"] = (result.get("env", {}).get("loadavg") or [None])[0]
    return result


def write_json(name: str, payload: dict[str, Any], folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned text table; ``cols`` = (key, header, format spec)."""
    cells = [[fmt(r.get(k), spec) for k, _, spec in cols] for r in rows]
    heads = [h for _, h, _ in cols]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)
    ]
    print(f"\n## {title}")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
