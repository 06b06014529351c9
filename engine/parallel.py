"""``--devices``: folds side by side, one worker process per device.

The parent (``kfold train``/``resume``) keeps the run lock and the run-level bookkeeping
(``run_started``, final status and CV summary). Each worker is ``python -m engine _fold
RUN_DIR --fold K --device D``: it trains that one fold exactly as the sequential loop does
(each fold seeds its own streams, so order and company do not matter), writing its own
checkpoints, its fold's entry of run.json and rows of metrics.csv (under the manifest flock)
and its events (one O_APPEND write each). A finished worker's device goes to the next
pending fold; a failed fold does not stop the others.

A worker stops at the next batch when asked (SIGINT/SIGTERM/SIGHUP) or when the parent dies:
its stdin is a pipe from the parent, which reaches EOF when the parent is gone, even by
SIGKILL. It holds ``.fold_<k>.lock`` while it runs, and ``kfold resume`` waits for those
locks, so a resumed run never has two writers for one fold.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from engine.config import TrainConfig
from engine.data import Dataset
from engine.errors import ConfigError, RunError, UserError
from engine.fit import Interrupted
from engine.run import EventLog, Listener, RunFolder

WORKER_COMMAND = "_fold"
EXIT_FOLD_FAILED = 3
_FOLD_LOCK = ".fold_{}.lock"
_POLL_SECONDS = 0.05
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_devices(spec: str) -> list[str]:
    """``auto`` = every visible GPU; otherwise the list as given, each entry checked."""
    from engine.devices import resolve_device

    if spec == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                "--devices auto: no GPU is visible here; list devices instead, e.g. cpu,cpu"
            )
        return [f"cuda:{i}" for i in range(count)]
    devices = [d.strip() for d in spec.split(",")]
    for name in devices:
        try:
            resolve_device(name)
        except ConfigError as exc:
            raise ConfigError(f"--devices {spec}: {exc}".replace("--device ", "")) from None
    return devices


def threads_per_worker(devices: list[str]) -> int:
    """The CPUs split evenly: one thread each on a 2-core box with ``cpu,cpu``, so two
    folds do not fight over the same cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // len(devices))


@dataclass
class _Worker:
    fold: int
    device: str
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    signalled: bool = False


def train_on_devices(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    entries: list[dict[str, Any]],
    device: torch.device,
    events: EventLog,
    stop: threading.Event,
) -> str:
    """The fold runner for ``--devices`` (see ``engine.kfold.train_entries``)."""
    devices = parse_devices(cfg.devices)
    threads = threads_per_worker(devices)
    pending = [e["fold"] for e in entries if e["status"] not in ("finished", "early_stopped")]
    free = list(devices)
    running: list[_Worker] = []
    events.emit(
        "log",
        message=f"up to {len(devices)} folds at once on {', '.join(devices)}, "
        f"{threads} thread(s) each",
    )
    # The workers' events reach the CLI's progress through the file, like any reader's.
    tail = _EventTail(folder.events_jsonl, events.listener)
    own = EventLog(folder.events_jsonl, folder.name)
    status, interrupted = "finished", False
    try:
        while pending or running:
            while pending and free and not stop.is_set():
                running.append(_spawn(folder, pending.pop(0), free.pop(0), threads))
            for w in running:
                if stop.is_set() and not w.signalled:
                    w.signalled = True
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.send_signal(signal.SIGTERM)
            for w in [w for w in running if w.proc.poll() is not None]:
                running.remove(w)
                free.append(w.device)
                outcome = _reap(folder, w, own, stop)
                status = "failed" if outcome == "failed" else status
                interrupted = interrupted or outcome == "interrupted"
            if stop.is_set() and not running:
                break
            tail.pump()
            time.sleep(_POLL_SECONDS)
    finally:
        # Only an error in this process gets here with workers alive: they stop too.
        for w in running:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        for w in running:
            w.proc.wait()
            _close(w)
            w.stderr.close()
        tail.pump()
        own.close()
    if interrupted or stop.is_set():
        raise Interrupted
    return status


def _spawn(folder: RunFolder, fold: int, device: str, threads: int) -> _Worker:
    # Closed in _reap once the worker's last words are read.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    cmd = [sys.executable, "-m", "engine", WORKER_COMMAND, str(folder.path)]
    cmd += ["--fold", str(fold), "--device", device, "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env
    )
    return _Worker(fold, device, proc, stderr)


def _reap(folder: RunFolder, w: _Worker, events: EventLog, stop: threading.Event) -> str:
    """What a worker's exit means for its fold: finished, failed or interrupted."""
    from engine.kfold import _set_fold

    rc = w.proc.returncode
    _close(w)
    w.stderr.seek(0)
    lines = w.stderr.read().decode(errors="replace").strip().splitlines()
    w.stderr.close()
    if rc == 0:
        return "finished"
    if rc == EXIT_FOLD_FAILED:
        return "failed"  # the worker recorded why
    stopped = rc < 0 or rc >= 128
    if stopped and (stop.is_set() or w.signalled or rc - 128 in _STOP_SIGNALS):
        return "interrupted"
    if rc < 0:
        reason = f"its process was killed by signal {-rc}"
    else:
        reason = lines[-1].removeprefix("kfold: error: ") if lines else f"exit code {rc}"
    message = f"fold {w.fold} on {w.device}: {reason}; `kfold resume` retries it"
    _set_fold(folder, w.fold, status="failed", error=message)
    events.emit("error", message=message, fold=w.fold)
    events.emit(
        "fold_finished",
        fold=w.fold,
        status="failed",
        best_val_loss=None,
        best_epoch=None,
        epochs_done=None,
    )
    return "failed"


def _close(w: _Worker) -> None:
    if w.proc.stdin is not None:
        with contextlib.suppress(OSError):
            w.proc.stdin.close()


class _EventTail:
    """Hands the fold events that other processes append to events.jsonl to a listener."""

    def __init__(self, path: Path, listener: Listener | None) -> None:
        self.path, self.listener = path, listener
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def pump(self) -> None:
        if self.listener is None:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("fold") is not None:
                    self.listener(record)


@contextlib.contextmanager
def fold_lock(run_dir: Path, fold: int, timeout: float) -> Iterator[None]:
    """Exclusive hold of one fold's files; waits up to ``timeout`` for a worker of an
    earlier, killed parent to notice and stop."""
    fd = os.open(Path(run_dir) / _FOLD_LOCK.format(fold), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunError(
                        f"{run_dir}: fold {fold} is still being trained by another process; "
                        "wait for it to stop, then retry"
                    ) from None
                time.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def wait_for_fold_workers(run_dir: Path, k_folds: int, timeout: float = 60.0) -> None:
    """Return once no worker of an earlier process still trains a fold of this run."""
    for fold in range(1, k_folds + 1):
        with fold_lock(run_dir, fold, timeout):
            pass


def worker_main(argv: list[str]) -> int:
    """``kfold _fold RUN_DIR --fold K --device D --threads N``: one fold, for the parent."""
    from engine.devices import resolve_device
    from engine.kfold import load_training_data, train_entries

    parser = argparse.ArgumentParser(prog=f"kfold {WORKER_COMMAND}")
    parser.add_argument("run_dir")
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    stop, signum = threading.Event(), [signal.SIGTERM]

    def handle(sig: int, frame: object) -> None:
        signum[0] = sig
        stop.set()

    for sig in _STOP_SIGNALS:
        signal.signal(sig, handle)
    threading.Thread(target=_stop_when_parent_dies, args=(stop,), daemon=True).start()
    folder = RunFolder(args.run_dir)
    try:
        with fold_lock(folder.path, args.fold, timeout=60.0):
            manifest = folder.read_manifest()
            cfg = TrainConfig.from_dict(manifest["config"])
            ds = load_training_data(cfg)
            entry = manifest["folds"][args.fold - 1]
            events = EventLog(folder.events_jsonl, folder.name)
            try:
                device = resolve_device(args.device)
                status = train_entries(folder, cfg, ds, [entry], device, events, stop)
            except Interrupted:
                return 128 + signum[0]
            finally:
                events.close()
    except UserError as exc:
        print(f"kfold: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return EXIT_FOLD_FAILED if status == "failed" else 0


def _stop_when_parent_dies(stop: threading.Event) -> None:
    # The parent never writes to this pipe: EOF means it is gone. The raw fd, not
    # sys.stdin: a daemon thread blocked in a buffered read aborts interpreter exit.
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    stop.set()
