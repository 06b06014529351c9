"""First (parse) and cached loads of CSV folders, and the peak memory of a load.

Every load runs in a fresh process (``python -m bench.dataload PROBE``), so its peak
resident memory (``VmHWM``) is its own and nothing is warm in it. The process's resident
memory after its imports, before the load, is the fixed base. First and cached loads
alternate: each repeat gets an empty cache folder (first load, which writes the cache),
then loads again from it. Before each load, the files it will read are read once (the
CSV folders, or the cache file), so that both find them in the OS page cache: this
measures parsing against reading the cache, not the disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.synth import raw_float32_bytes, write_csv_folders


def run_dataload(
    sizes: tuple[int, ...],
    features: int,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        started = time.perf_counter()
        inputs, labels, lengths = write_csv_folders(workdir / f"csv{n}", n, features, seed=n)
        log(f"  wrote {n} CSV pairs in {time.perf_counter() - started:.1f}s")
        raw = raw_float32_bytes(lengths, features)
        first: list[dict[str, Any]] = []
        cached: list[dict[str, Any]] = []
        for i in range(repeats):
            cache = workdir / f"cache{n}-{i}"
            _read_through(inputs, labels)
            first.append(probe(inputs, labels, cache))
            _read_through(cache)
            cached.append(probe(inputs, labels, cache))
            log(
                f"  {n} sequences: first {first[-1]['seconds']:.2f}s, "
                f"cached {cached[-1]['seconds']:.3f}s"
            )
        first_s = statistics.median(r["seconds"] for r in first)
        cached_s = statistics.median(r["seconds"] for r in cached)
        peak = max(r["peak_rss"] - r["base_rss"] for r in first + cached)
        rows.append(
            {
                "sequences": n,
                "features": features,
                "steps": int(lengths.sum()),
                "raw_float32_bytes": raw,
                "csv_bytes": _folder_bytes(inputs) + _folder_bytes(labels),
                "first_s": first_s,
                "cached_s": cached_s,
                "cached_speedup": first_s / cached_s,
                "base_rss": statistics.median(r["base_rss"] for r in first + cached),
                "peak_over_base_first": max(r["peak_rss"] - r["base_rss"] for r in first),
                "peak_over_base_cached": max(r["peak_rss"] - r["base_rss"] for r in cached),
                "peak_over_base_vs_raw": peak / raw,
                "first_runs": first,
                "cached_runs": cached,
            }
        )
    return rows


def probe(inputs: Path, labels: Path, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "KFOLD_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.dataload", str(inputs), str(labels)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_through(*folders: Path) -> None:
    for folder in folders:
        for entry in os.scandir(folder):
            with open(entry.path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def _folder_bytes(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder))


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _probe_main(inputs: str, labels: str) -> None:
    from engine.data import load_dataset

    with contextlib.suppress(OSError):  # reset the peak: count from here, not the imports
        Path("/proc/self/clear_refs").write_text("5")
    base = _status_bytes("VmRSS")
    started = time.perf_counter()
    ds = load_dataset(inputs, labels)
    seconds = time.perf_counter() - started
    record = {
        "seconds": seconds,
        "sequences": len(ds.stems),
        "base_rss": base,
        "peak_rss": _status_bytes("VmHWM"),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    _probe_main(sys.argv[1], sys.argv[2])
