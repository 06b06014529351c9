"""The run folder: the contract between the engine and everything that reads it.

``<model_save_dir>/<run>/`` holds:

- ``run.json``: the manifest (format version, config, data manifest, fold assignment, run and
  per-fold status, CV summary). Rewritten atomically under ``.manifest.lock`` with a
  read-modify-write, so several fold processes can share it.
- ``metrics.csv``: ``fold,epoch,train_loss,val_loss,lr,seconds,is_best``; one row per fold and
  epoch. Each fold replaces only its own rows (same lock), from the history saved in its
  ``last_`` checkpoint, so the file can always be rebuilt from the checkpoints.
- ``events.jsonl``: one JSON object per line, appended with a single ``write`` per line so a
  reader never sees two events interleaved. Schema (every event has ``event``, ``time``
  (unix seconds) and ``run``):

  ==================  ===========================================================
  run_started         pid, host, resumed, device, device_name, folds, epochs,
                      model, sequences, parameters, threads
  fold_started        fold, epochs, start_epoch, train_size, val_size
  epoch_ended         fold, epoch, epochs, train_loss, val_loss, best_val_loss,
                      best_epoch, is_best, lr, seconds, gpu_memory_bytes (cuda only)
  checkpoint_saved    fold, epoch, kind (best|last), path (file name)
  fold_finished       fold, status (finished|early_stopped|failed), best_val_loss,
                      best_epoch, epochs_done
  run_finished        status (finished|interrupted|failed), cv_mean, cv_std,
                      folds_finished, folds_failed
  error               message, fold (or null)
  log                 message
  ==================  ===========================================================

- ``best_<model>_fold_<k>.pth`` / ``last_<model>_fold_<k>.pth``: written by that fold alone.
- ``.lock``: holds the pid of the live ``kfold train``/``resume`` process under an
  exclusive ``flock``; the kernel drops it when the process dies, so a stale lock never
  blocks a resume.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.atomic import TMP_MARK, atomic_write_text
from engine.errors import RunError

RUN_FORMAT_VERSION = 1
RUN_JSON = "run.json"
METRICS_CSV = "metrics.csv"
EVENTS_JSONL = "events.jsonl"
LOCK_FILE = ".lock"
MANIFEST_LOCK_FILE = ".manifest.lock"
METRICS_COLUMNS = ("fold", "epoch", "train_loss", "val_loss", "lr", "seconds", "is_best")

Listener = Callable[[dict[str, Any]], None]


def checkpoint_name(kind: str, model: str, fold: int) -> str:
    """The seed's naming: ``best_<model>_fold_<k>.pth`` (k counts from 1)."""
    return f"{kind}_{model}_fold_{fold}.pth"


def previous_copy(path: Path) -> Path:
    """``last_<model>_fold_<k>.prev.pth``: the ``last_`` checkpoint of the epoch before."""
    return path.with_suffix(".prev.pth")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunFolder:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def metrics_csv(self) -> Path:
        return self.path / METRICS_CSV

    @property
    def events_jsonl(self) -> Path:
        return self.path / EVENTS_JSONL

    def checkpoint(self, kind: str, model: str, fold: int) -> Path:
        return self.path / checkpoint_name(kind, model, fold)

    def drop_previous_copy(self, model: str, fold: int) -> None:
        """A finished fold's ``last_`` needs no copy of the epoch before any more."""
        previous_copy(self.checkpoint("last", model, fold)).unlink(missing_ok=True)

    def read_manifest(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder; `kfold ls` lists the runs")
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(
                f"{self.path}: no run.json here; this is not a kfold run folder"
            ) from None
        except (OSError, ValueError) as exc:
            raise RunError(f"{self.run_json}: unreadable ({exc}); the run cannot be used") from None
        if not isinstance(data, dict) or data.get("format_version") != RUN_FORMAT_VERSION:
            raise RunError(f"{self.run_json}: unknown run format; upgrade kfold-tui")
        problem = _manifest_problem(data)
        if problem:
            raise RunError(f"{self.run_json}: damaged ({problem}); the run cannot be used")
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = now_iso()
        atomic_write_text(self.run_json, json.dumps(manifest, indent=1, allow_nan=False) + "\n")

    @contextlib.contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        fd = os.open(self.path / MANIFEST_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update_manifest(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write of run.json under a lock, so concurrent writers never lose updates."""
        with self._manifest_lock():
            manifest = self.read_manifest()
            change(manifest)
            self.write_manifest(manifest)
            return manifest

    def replace_fold_metrics(self, fold: int, rows: list[dict[str, Any]]) -> None:
        """Make ``fold``'s rows in metrics.csv exactly ``rows``; other folds' rows are kept."""
        with self._manifest_lock():
            kept = [r for r in read_metrics_rows(self.metrics_csv) if int(r["fold"]) != fold]
            merged = kept + [{"fold": fold, **r} for r in rows]
            merged.sort(key=lambda r: (int(r["fold"]), int(r["epoch"])))
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=METRICS_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in merged:
                writer.writerow({k: _csv_value(row[k]) for k in METRICS_COLUMNS})
            atomic_write_text(self.metrics_csv, out.getvalue())


def ensure_writable(save_dir: Path) -> None:
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{save_dir}: cannot create the save folder ({exc.strerror})") from None
    try:
        probe_write(save_dir)
    except OSError as exc:
        raise RunError(
            f"{save_dir}: save folder is not writable ({exc.strerror}); choose another "
            "--model_save_dir"
        ) from None


def only_lock_files(path: Path) -> bool:
    return all(
        p.name in (LOCK_FILE, MANIFEST_LOCK_FILE) or TMP_MARK in p.name for p in path.iterdir()
    )


def probe_write(folder: Path) -> None:
    """Create and remove a file: catches read-only mounts that os.access misses for root."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """What is missing from a run.json, so damage is one line and not a KeyError later."""
    for key, kind in (("name", str), ("config", dict), ("data", dict), ("folds", list)):
        if not isinstance(m.get(key), kind):
            return f"no valid {key!r}"
    if not isinstance(m["data"].get("stems"), list):
        return "no valid data stems"
    for entry in m["folds"]:
        if not isinstance(entry, dict) or not {"fold", "val_stems", "status"} <= entry.keys():
            return "a fold entry lacks fold, val_stems or status"
    return None


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # repr round-trips the float exactly
    return str(value)


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


class RunLock:
    """Exclusive ownership of a run folder by one live process."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # An app probing liveness (lock_holder) holds a shared lock for microseconds; only
        # a lock that persists for a second belongs to a live training process.
        deadline = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            pid = holder[0] if holder else "?"
            raise RunError(
                f"{self.path.parent}: run is in use by process {pid}; stop it first "
                f"(kill -INT {pid}) or wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def lock_holder(folder: Path | str) -> int | None:
    """Pid of the live process that holds the run, or None (free, or holder died)."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode(errors="replace").split()
        os.close(fd)
        return int(text[0]) if text and text[0].isdigit() else -1
    os.close(fd)
    return None


class EventLog:
    """Appends events to ``events.jsonl`` and hands each to an optional listener."""

    def __init__(self, path: Path, run: str, listener: Listener | None = None) -> None:
        self.path = Path(path)
        self.run = run
        self.listener = listener
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Epoch-boundary events come from the checkpoint saver's thread (engine.saver);
        # the lock keeps file order and listener calls one at a time.
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record = {"event": event, "time": round(time.time(), 3), "run": self.run, **fields}
            line = json.dumps(record, default=str) + "\n"
            # Events are a live view; a full disk must not end training on its own.
            with contextlib.suppress(OSError):
                os.write(self._fd, line.encode("utf-8"))
            if self.listener is not None:
                self.listener(record)
            return record

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Every complete event; a half-written last line (the writer was killed) is skipped."""
    out: list[dict[str, Any]] = []
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return out
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
