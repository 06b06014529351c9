"""Disk, numerical and device faults: the previous state survives and the message says why."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_args
from killrun import assert_same_run, events

from engine import atomic, fit
from engine.cli import main
from engine.config import TrainConfig
from engine.errors import RunError
from engine.kfold import start_run


def _cfg(tiny_data: tuple[Path, Path], save: Path, **extra: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        input_dir=str(tiny_data[0]),
        label_dir=str(tiny_data[1]),
        model_save_dir=str(save),
        run="r",
        epochs=3,
        k_folds=2,
        batch_size=3,
        hidden_size=8,
        num_layers=1,
        lr=0.01,
        device="cpu",
        model="lstm",
    )
    values.update(extra)
    return TrainConfig(**values)


def _fail_writes(monkeypatch: pytest.MonkeyPatch, name_part: str, after: int, code: int) -> None:
    """The (after+1)-th write of a file whose name holds ``name_part`` hits ``code``."""
    real = atomic.flush_to_disk
    seen = {"n": 0}

    def flaky(fh: Any, path: Path) -> None:
        if name_part in path.name:
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(code, errno.errorcode[code], None)
        real(fh, path)

    monkeypatch.setattr(atomic, "flush_to_disk", flaky)


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "disk full"), (errno.EIO, "I/O error")])
def test_a_failing_checkpoint_write_keeps_the_previous_file_and_resume_recovers(
    code: int,
    words: str,
    tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fail_writes(monkeypatch, "last_lstm_fold_1", after=2, code=code)
    args = tiny_args(*tiny_data, tmp_path / "s", model="lstm", epochs=4)
    assert main(["train", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and "last_lstm_fold_1.pth" in err
    assert "kfold resume" in err
    run = tmp_path / "s" / "r"
    last = torch.load(run / "last_lstm_fold_1.pth", weights_only=True)
    assert last["epoch"] == 2  # the epoch before the failed write, intact
    assert not list(run.glob(".*.tmp-*"))
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "failed" and words in manifest["error"]
    assert any(e["event"] == "error" and words in e["message"] for e in events(run))
    monkeypatch.undo()
    monkeypatch.setenv("KFOLD_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["resume", str(run)]) == 0
    assert main(["train", *tiny_args(*tiny_data, tmp_path / "ref", model="lstm", epochs=4)]) == 0
    assert_same_run(tmp_path / "ref" / "r", run, "lstm", folds=2)


def test_a_read_only_save_folder_is_refused_before_training(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import run

    def refuse(folder: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(run, "probe_write", refuse)
    with pytest.raises(RunError, match="save folder is not writable"):
        start_run(_cfg(tiny_data, tmp_path / "ro"), threading.Event())
    assert not (tmp_path / "ro" / "r").exists()


def test_a_nan_loss_fails_its_fold_keeps_its_best_and_the_run_goes_on(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fit.FoldTrainer._train_epoch

    def poisoned(self: fit.FoldTrainer) -> Any:
        sums = real(self)
        if self.progress.fold == 1 and self.progress.epoch == 1:  # fold 1's second epoch
            sums.squared = sums.squared * float("nan")
        return sums

    monkeypatch.setattr(fit.FoldTrainer, "_train_epoch", poisoned)
    out = start_run(_cfg(tiny_data, tmp_path), threading.Event())
    run = tmp_path / "r"
    best = torch.load(run / "best_lstm_fold_1.pth", weights_only=True)
    assert best["epoch"] == 1
    folds = out.manifest["folds"]
    assert folds[0]["status"] == "failed"
    assert "train loss became non-finite at epoch 2" in folds[0]["error"]
    assert folds[1]["status"] == "finished" and folds[1]["epochs_done"] == 3
    assert out.status == "failed"
    assert out.manifest["summary"]["folds_failed"] == [1]
    assert out.manifest["summary"]["cv_mean"] == folds[1]["best_val_loss"]


def test_out_of_memory_fails_the_fold_with_the_fix(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(self: fit.FoldTrainer) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(fit.FoldTrainer, "_train_epoch", oom)
    out = start_run(_cfg(tiny_data, tmp_path, k_folds=2), threading.Event())
    for entry in out.manifest["folds"]:
        assert entry["status"] == "failed"
        assert "out of memory on cpu in epoch 1" in entry["error"]
        assert "--batch_size or --max_seq_len" in entry["error"]


def test_cuda_on_a_machine_without_one_is_refused(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", *tiny_args(*tiny_data, tmp_path, device="cuda")]) == 2
    assert "no CUDA device is available here; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_train_killed_before_run_json_leaves_a_name_that_can_be_reused(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".lock").write_text("")
    out = start_run(_cfg(tiny_data, tmp_path, epochs=1), threading.Event())
    assert out.status == "finished"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="exists and is not a run folder"):
        start_run(_cfg(tiny_data, tmp_path, run="other"), threading.Event())
