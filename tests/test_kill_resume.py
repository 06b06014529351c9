"""Kill the real `kfold train` at chosen moments, resume, and demand bit-identical results."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
import torch
from conftest import tiny_args
from killrun import assert_same_run, kill_when, run, saved, start, temp_files, writing

from engine.cli import build_parser, main
from engine.config import config_from_args
from engine.kfold import start_run

SLOW_WRITES = {"KFOLD_TEST_WRITE_DELAY": "0.05", "KFOLD_TEST_WRITE_DELAY_MATCH": ""}


def _reference(tiny_data: tuple[Path, Path], root: Path, model: str, epochs: int) -> Path:
    res = run(["train", *tiny_args(*tiny_data, root, model=model, epochs=epochs)])
    assert res.returncode == 0, res.stderr
    return root / "r"


def _all_checkpoints_load(run_dir: Path) -> None:
    for path in run_dir.glob("*.pth"):
        state = torch.load(path, weights_only=True)
        assert {"model_state", "config", "fold", "epoch", "val_loss"} <= set(state)


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_sigkill_anywhere_then_resume_is_bit_identical(
    model: str, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _reference(tiny_data, tmp_path / "ref", model, epochs=4)
    kill_points = {
        "mid last_ write": (writing(f".last_{model}_fold_1", saved("last", 1, 2)), "last_"),
        "mid best_ write": (writing(f".best_{model}_fold_2", saved("last", 1, 4)), "best_"),
        "mid run.json write": (writing(".run.json", saved("last", 2, 1)), "run.json"),
        "between epochs": (saved("last", 2, 3), ""),
    }
    for i, (label, (ready, match)) in enumerate(kill_points.items()):
        save = tmp_path / f"kill{i}"
        env = {**SLOW_WRITES, "KFOLD_TEST_WRITE_DELAY_MATCH": match}
        proc = start(["train", *tiny_args(*tiny_data, save, model=model, epochs=4)], env)
        kill_when(proc, save / "r", ready)
        _all_checkpoints_load(save / "r")
        if label.startswith("mid"):
            assert temp_files(save / "r"), f"{label}: the kill did not land mid-write"
        assert json.loads((save / "r" / "run.json").read_text())["status"] == "running"
        res = run(["resume", str(save / "r")])
        assert res.returncode == 0, f"{label}: {res.stderr}"
        assert not temp_files(save / "r"), label
        assert_same_run(ref, save / "r", model, folds=2)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_stop_signals_end_interrupted_with_last_epoch_on_disk(
    sig: int, code: int, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "s"
    proc = start(["train", *tiny_args(*tiny_data, save, model="gru", epochs=4)], SLOW_WRITES)
    kill_when(proc, save / "r", saved("last", 1, 2), sig=sig)
    assert proc.returncode == code
    manifest = json.loads((save / "r" / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    fold1 = manifest["folds"][0]
    assert fold1["status"] == "interrupted"
    last = torch.load(save / "r" / "last_gru_fold_1.pth", weights_only=True)
    assert last["epoch"] == fold1["epochs_done"] >= 2
    assert "interrupted" in [e.get("status") for e in _events(save / "r")]
    res = run(["resume", str(save / "r")])
    assert res.returncode == 0, res.stderr
    ref = _reference(tiny_data, tmp_path / "ref", "gru", epochs=4)
    assert_same_run(ref, save / "r", "gru", folds=2)


def test_a_damaged_last_checkpoint_is_resumed_from_its_copy_of_the_epoch_before(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _reference(tiny_data, tmp_path / "ref", "gru", epochs=8)
    save = tmp_path / "s"
    stop = threading.Event()
    args = build_parser().parse_args(["train", *tiny_args(*tiny_data, save, model="gru", epochs=8)])

    def stop_after_epoch_3(e: dict) -> None:
        # Checkpoints are written while the next epoch trains: fold 1 stops after 3 or 4.
        if e["event"] == "epoch_ended" and e["epoch"] == 3:
            stop.set()

    assert start_run(config_from_args(args), stop, stop_after_epoch_3).status == "interrupted"
    run_dir = save / "r"
    last = run_dir / "last_gru_fold_1.pth"
    previous = run_dir / "last_gru_fold_1.prev.pth"
    epoch = torch.load(last, weights_only=True)["epoch"]
    assert epoch in (3, 4) and torch.load(previous, weights_only=True)["epoch"] == epoch - 1
    damaged = last.read_bytes()[:-1000]
    last.write_bytes(damaged)  # bit rot, a truncating copy

    # Without the copy, resume refuses and says what to do.
    previous.rename(tmp_path / "aside.pth")
    assert main(["resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "last_gru_fold_1.pth: truncated or corrupt PyTorch file (in " in err
    assert "no copy of the epoch before (last_gru_fold_1.prev.pth)" in err
    assert "move it aside and `kfold resume` trains fold 1 again from epoch 1" in err

    # With it, resume replays an epoch from the copy of the one before: the same run.
    (tmp_path / "aside.pth").rename(previous)
    assert main(["resume", str(run_dir)]) == 0
    assert_same_run(ref, run_dir, "gru", folds=2)
    logs = [e["message"] for e in _events(run_dir) if e["event"] == "log"]
    assert (
        "fold 1: last_gru_fold_1.pth: truncated or corrupt PyTorch file; resumed from its "
        f"copy of epoch {epoch - 1} (last_gru_fold_1.prev.pth)"
    ) in logs
    assert (run_dir / "last_gru_fold_1.pth.damaged").read_bytes() == damaged
    assert not list(run_dir.glob("*.prev.pth"))  # finished folds keep no copy


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
