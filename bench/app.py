"""An epoch's time with the terminal app following the run, against the run alone.

Both variants start the run as the app does, ``python -m engine train`` in its own
process, and take the epoch times the engine records (metrics.csv ``seconds``; the first
epoch of each fold is left out as warm-up). In the "with app" variant the real app runs
meanwhile, in its own process on a pseudo-terminal of 120x40 whose output this process
reads and discards (as sshd does for a user over SSH), opened on the run's monitor
screen (``bench.app_probe``): its follow worker, its redraws, its timers, all of it. The
app's CPU seconds are reported too. The section runs only when this checkout's app is
installed (``tui`` imports); otherwise it is skipped with the reason "app not available".
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib
import importlib.util
import json
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import termios
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
    """The real app following a run on a terminal, or None when this checkout has no
    app. A ``tui`` found elsewhere on the path (another checkout) is not this tree's app."""
    spec = importlib.util.find_spec("tui")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or ROOT not in origin.parents:
        return None
    try:
        importlib.import_module("tui.app")
    except ImportError:
        return None
    return AppInTerminal()


class AppInTerminal:
    """Runs ``bench.app_probe`` on a pseudo-terminal for as long as a run lasts."""

    columns, rows = 120, 40

    def __init__(self) -> None:
        self.cpu_s: list[float] = []  # the app's user + system CPU seconds, per run
        self.output_bytes: list[int] = []  # what it drew, per run: proof that it ran

    def __call__(self, run_dir: Path, stop: threading.Event) -> None:
        # The app opens a run that exists: wait for the engine to create it.
        while not (run_dir / "run.json").exists():
            if stop.wait(0.02):
                return
        primary, secondary = pty.openpty()
        drawn = _Drawn()
        proc: subprocess.Popen[bytes] | None = None
        reader: threading.Thread | None = None
        try:
            size = struct.pack("HHHH", self.rows, self.columns, 0, 0)
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, size)
            env = {**os.environ, "PYTHONPATH": _pythonpath(), "TERM": "xterm-256color"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.app_probe", str(run_dir)],
                stdin=secondary,
                stdout=secondary,
                stderr=secondary,
                env=env,
                start_new_session=True,
            )
            os.close(secondary)
            secondary = -1
            reader = threading.Thread(target=_drain, args=(primary, drawn), daemon=True)
            reader.start()
            stop.wait()
            exited_early = proc.poll()
            cpu = _cpu_seconds(proc.pid)
        finally:
            if proc is not None:
                _end(proc)
            if secondary >= 0:
                os.close(secondary)
            if reader is not None:
                reader.join(timeout=5)  # ends at EIO, once the app's side is closed
            os.close(primary)
        if exited_early is not None:
            # The app's last words (a traceback) went to its terminal: show their end.
            tail = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.tail.decode("utf-8", "replace"))
            raise RuntimeError(
                f"the app exited during the run (exit code {exited_early}): {tail.strip()[-800:]}"
            )
        self.cpu_s.append(cpu)
        self.output_bytes.append(drawn.count)


class _Drawn:
    """How much the app wrote to its terminal, and the end of it."""

    def __init__(self) -> None:
        self.count = 0
        self.tail = b""

    def add(self, chunk: bytes) -> None:
        self.count += len(chunk)
        self.tail = (self.tail + chunk)[-8192:]


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _drain(fd: int, drawn: _Drawn) -> None:
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # EIO: the app's side of the terminal is closed
            return
        if not chunk:
            return
        drawn.add(chunk)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (0.0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


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
        **_app_usage(follower),
    }


def _app_usage(follower: Follower) -> dict[str, Any]:
    if not isinstance(follower, AppInTerminal) or not follower.cpu_s:
        return {}
    return {
        "app_cpu_s": follower.cpu_s,
        "app_output_bytes": follower.output_bytes,
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
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    thread = None
    failures: list[BaseException] = []
    if follower is not None:

        def follow() -> None:
            try:
                follower(run_dir, stop)
            except BaseException as exc:  # reported below, in the bench's own thread
                failures.append(exc)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
    try:
        _, err = proc.communicate()
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    if failures:
        raise failures[0]
    if proc.returncode != 0:
        raise RuntimeError(f"kfold train failed ({proc.returncode}): {err.strip()[-500:]}")
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [float(r["seconds"]) for r in rows if int(r["epoch"]) > 1]
