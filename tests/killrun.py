"""Run the real ``kfold`` CLI in a subprocess, kill it at chosen moments, compare runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from conftest import ENV


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        env={**ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def temp_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".*.tmp-*")) if run_dir.exists() else []


def kill_when(
    proc: subprocess.Popen[str],
    run_dir: Path,
    ready: Callable[[Path], bool],
    sig: int = signal.SIGKILL,
    timeout: float = 120.0,
) -> None:
    """Send ``sig`` as soon as ``ready(run_dir)`` holds; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(run_dir):
            os.kill(proc.pid, sig)
            proc.communicate(timeout=60)
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"run ended before the kill point\n{out}\n{err}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("kill point never reached")


def saved(kind: str, fold: int, count: int) -> Callable[[Path], bool]:
    """Ready once ``count`` checkpoints of this kind and fold have been saved."""

    def ready(run_dir: Path) -> bool:
        return (
            sum(
                1
                for e in events(run_dir)
                if e["event"] == "checkpoint_saved" and e["kind"] == kind and e["fold"] == fold
            )
            >= count
        )

    return ready


def writing(name_part: str, after: Callable[[Path], bool]) -> Callable[[Path], bool]:
    """Ready while a temp file of ``name_part`` exists, once ``after`` holds."""

    def ready(run_dir: Path) -> bool:
        return after(run_dir) and any(name_part in p.name for p in temp_files(run_dir))

    return ready


def assert_same_run(a: Path, b: Path, model: str, folds: int) -> None:
    """Bit-identical weights and optimizer state, and the same metrics apart from timing."""
    for fold in range(1, folds + 1):
        for kind in ("best", "last"):
            name = f"{kind}_{model}_fold_{fold}.pth"
            sa = torch.load(a / name, weights_only=True)
            sb = torch.load(b / name, weights_only=True)
            assert sa["epoch"] == sb["epoch"], name
            assert sa["val_loss"] == sb["val_loss"], name
            for key, tensor in sa["model_state"].items():
                assert torch.equal(tensor, sb["model_state"][key]), f"{name}: {key} differs"
            if kind == "last":
                assert sa["progress"]["history"] == [
                    {**h, "seconds": sa["progress"]["history"][i]["seconds"]}
                    for i, h in enumerate(sb["progress"]["history"])
                ]
    ma = pd.read_csv(a / "metrics.csv").drop(columns="seconds")
    mb = pd.read_csv(b / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    assert len(ma) == len(ma.drop_duplicates(["fold", "epoch"]))
    ja, jb = (json.loads((d / "run.json").read_text()) for d in (a, b))
    assert ja["status"] == jb["status"] == "finished"
    assert ja["folds"] == jb["folds"]
    assert ja["summary"] == jb["summary"]
