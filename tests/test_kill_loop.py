"""SIGKILL `kfold train` at random instants, over and over; every run must resume exactly.

The model is big enough (about 15 MB of last_ checkpoint) that a good share of the kills
land while a checkpoint is being written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_args
from killrun import assert_same_run, run, start, temp_files

BIG = {"model": "lstm", "hidden_size": 256, "num_layers": 2, "epochs": 3}


def _kill_and_resume(tiny_data: tuple[Path, Path], root: Path, trials: int, seed: int) -> None:
    ref_root = root / "ref"
    began = time.monotonic()
    res = run(["train", *tiny_args(*tiny_data, ref_root, **BIG)])
    took = time.monotonic() - began
    assert res.returncode == 0, res.stderr
    rng = random.Random(seed)
    landed_mid_write = 0
    for trial in range(trials):
        save = root / f"t{trial}"
        args = ["train", *tiny_args(*tiny_data, save, **BIG)]
        proc = start(args)
        delay = rng.uniform(0.15 * took, 0.95 * took)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        run_dir = save / "r"
        landed_mid_write += bool(temp_files(run_dir))
        for path in run_dir.glob("*.pth") if run_dir.exists() else []:
            state = torch.load(path, weights_only=True)  # never torn
            assert "model_state" in state, f"trial {trial} (seed {seed}): {path.name}"
        if (run_dir / "run.json").exists():
            status = json.loads((run_dir / "run.json").read_text())["status"]
            res = run(["resume", str(run_dir)]) if status != "finished" else res
        else:  # killed before the run existed: starting again is the recovery
            res = run(args)
        assert res.returncode == 0, f"trial {trial} (seed {seed}, {delay:.2f}s): {res.stderr}"
        assert not temp_files(run_dir), f"trial {trial}: temp files left after resume"
        assert_same_run(ref_root / "r", run_dir, "lstm", folds=2)
    print(f"{trials} kills, {landed_mid_write} mid-write")


def test_random_sigkills_then_resume_are_bit_identical(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    _kill_and_resume(tiny_data, tmp_path, trials=3, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_twenty_random_sigkills_then_resume_are_bit_identical(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    _kill_and_resume(tiny_data, tmp_path, trials=20, seed=2)
