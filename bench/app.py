"""An epoch's time with the terminal app following the run, against the run alone.

Both variants start the run as the app does, ``python -m engine train`` in its own
process, and take the epoch times the engine records (metrics.csv ``seconds``; the first
epoch of each fold is left out as warm-up). In the "with app" variant a follower tails
the run folder meanwhile, from this process, as the app's follow worker does. The
section runs only when the app is installed (``tui.follow`` imports); otherwise it is
skipped with the reason "app not available".

The follower: the app's own ``tui.follow.RunFollower(run_dir, deliver, stop).run()``
(its polling worker, without the screen), else ``tail_like_the_app`` below (poll
events.jsonl at 10 Hz, parse new lines, re-read run.json and metrics.csv after each
epoch, as a monitor screen refreshes).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.synth import write_csv_folders

Follower = Callable[[Path, threading.Event], None]
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AppPlan:
    model: str = "lstm"
    sequences: int = 40
    features: int = 6
    epochs: int = 4
    k_folds: int = 2
    batch_size: int = 4
    rounds: int = 3
    extra_args: tuple[str, ...] = ()


def app_follower() -> Follower | None:
    """The app's way of following a run, or None when this checkout has no app. A
    ``tui`` found elsewhere on the path (another checkout) is not this tree's app."""
    spec = importlib.util.find_spec("tui")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or ROOT not in origin.parents:
        return None
    try:
        follow = importlib.import_module("tui.follow")
    except ImportError:
        return None
    follower_class = getattr(follow, "RunFollower", None)
    if follower_class is None:
        return tail_like_the_app

    def follow_with_app(run_dir: Path, stop: threading.Event) -> None:
        follower_class(run_dir, lambda update: None, stop).run()

    return follow_with_app


def tail_like_the_app(run_dir: Path, stop: threading.Event, poll_s: float = 0.1) -> None:
    events = run_dir / "events.jsonl"
    offset = 0
    partial = b""
    while not stop.is_set():
        with contextlib.suppress(FileNotFoundError):
            with open(events, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            offset += len(data)
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("event") == "epoch_ended":
                        _refresh(run_dir)
        stop.wait(poll_s)


def _refresh(run_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        json.loads((run_dir / "run.json").read_text())
        with open(run_dir / "metrics.csv", newline="") as fh:
            list(csv.DictReader(fh))


def run_app_section(
    plan: AppPlan,
    workdir: Path,
    log: Callable[[str], None],
    follower: Follower | None = None,
) -> dict[str, Any]:
    follower = follower or app_follower()
    if follower is None:
        log("  skipped: app not available (tui.follow does not import)")
        return {"skipped": "app not available"}
    inputs, labels, _ = write_csv_folders(workdir / "appdata", plan.sequences, plan.features, 5)
    variants = ["alone", "with_app"]
    epochs: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(plan.rounds):
        for variant in variants[r % 2 :] + variants[: r % 2]:
            run_dir = workdir / "apprun" / f"{variant}-{r}"
            follows = follower if variant == "with_app" else None
            seconds = _one_run(plan, inputs, labels, run_dir, follows)
            epochs[variant] += seconds
            log(f"  app {variant:<8} round {r + 1}: median epoch {statistics.median(seconds):.3f}s")
    med = {v: statistics.median(s) for v, s in epochs.items()}
    return {
        "model": plan.model,
        "alone_s": med["alone"],
        "with_app_s": med["with_app"],
        "ratio": med["with_app"] / med["alone"],
        "epochs_s": epochs,
    }


def _one_run(
    plan: AppPlan, inputs: Path, labels: Path, run_dir: Path, follower: Follower | None
) -> list[float]:
    args = [
        *("--input_dir", str(inputs), "--label_dir", str(labels)),
        *("--model_save_dir", str(run_dir.parent), "--run", run_dir.name),
        *("--model", plan.model, "--epochs", str(plan.epochs)),
        *("--k_folds", str(plan.k_folds), "--batch_size", str(plan.batch_size)),
        *("--device", "cpu", *plan.extra_args),
    ]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    thread = None
    if follower is not None:
        thread = threading.Thread(target=follower, args=(run_dir, stop), daemon=True)
        thread.start()
    try:
        _, err = proc.communicate()
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"kfold train failed ({proc.returncode}): {err.strip()[-500:]}")
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [float(r["seconds"]) for r in rows if int(r["epoch"]) > 1]
