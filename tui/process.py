"""Start and signal engine processes. Training never runs in the app's process.

``kfold train``/``resume`` start in a new session (``start_new_session``), so they outlive
the app, the terminal and the SSH connection; their output goes to a log file beside the
runs, and the app follows them through the run folder alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.run import lock_holder

LOG_DIR = ".logs"


ERROR_PREFIX = "kfold: error: "
# Exit codes of a run stopped by SIGHUP, SIGINT or SIGTERM (128 + the signal): a stop, not
# a failure; the run folder says "interrupted".
STOPPED_CODES = (129, 130, 143)


@dataclass
class EngineProcess:
    popen: subprocess.Popen[bytes]
    run_dir: Path
    log_path: Path
    log_start: int = 0  # the log is shared by every process of this run: ours starts here

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def failure(self) -> str | None:
        """Why the process ended in error, from its one-line error in the log; None while
        it runs, after a clean end or a stop."""
        code = self.exit_code()
        if code in (None, 0, *STOPPED_CODES):
            return None
        lines = self._own_log().splitlines()
        errors = [ln.strip() for ln in lines if ln.startswith(ERROR_PREFIX)]
        if errors:
            return errors[-1].removeprefix(ERROR_PREFIX)
        if code is not None and code < 0:
            return f"kfold was killed by signal {-code}; `r` resumes from the last epoch"
        if any(ln.startswith("Traceback") for ln in lines):  # a bug: its last line says what
            last = next(ln.strip() for ln in reversed(lines) if ln.strip())
            return f"kfold crashed: {last}"
        return None  # a run whose folds failed: their errors are in the run's own log

    def _own_log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_start)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def spawn(args: list[str], run_dir: Path) -> EngineProcess:
    """Start ``kfold <args>`` detached from this terminal; output to .logs/<run>.log."""
    log_dir = run_dir.parent / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{run_dir.name}.log"
    # Wide enough that the log's summary table keeps each row on one line.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    with open(log_path, "ab") as log:
        start = log.tell()
        popen = subprocess.Popen(
            engine_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return EngineProcess(popen, run_dir, log_path, start)


def train_args(values: dict[str, Any]) -> list[str]:
    args = ["train"]
    for key, value in values.items():
        if value is not None and value != "":
            args += [f"--{key}", str(value)]
    return args


def resume(run_dir: Path) -> EngineProcess:
    return spawn(["resume", str(run_dir)], run_dir)


def request_stop(run_dir: Path) -> int | None:
    """SIGINT to the process that holds the run: it stops at the next batch, keeping the
    last epoch on disk, and marks the run interrupted. Returns the pid signalled."""
    pid = lock_holder(run_dir)
    if pid is None or pid <= 0:
        return None
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return None
    return pid


def run_json_eval(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """``kfold eval ... --json`` in a child process; raises RuntimeError with its one-line
    error. Out of process so a failing or slow evaluation can never stall the UI."""
    res = subprocess.run(
        engine_command("eval", *args, "--json"),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode == 1:
        # Exit 1 with JSON on stdout: scored, but folds were left out (listed under
        # "missing"); the result screen says so. Anything else with exit 1 is a failure.
        partial = _json_or_none(res.stdout)
        if partial is not None and partial.get("missing"):
            return partial
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        message = lines[-1] if lines else f"eval exited with code {res.returncode}"
        raise RuntimeError(message.removeprefix("kfold: error: "))
    return json.loads(res.stdout)


def _json_or_none(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
