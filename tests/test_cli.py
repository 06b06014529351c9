"""The `kfold` commands as a user types them: errors, resume refusals, eval, inspect, ls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import ENV, ROOT, tiny_args, write_sequences

from engine.cli import main
from engine.config import TrainConfig
from engine.kfold import start_run
from engine.run import RunLock


def _train(tiny_data: tuple[Path, Path], save: Path, **extra: object) -> Path:
    assert main(["train", *tiny_args(*tiny_data, save, **extra)]) == 0
    return save / "r"


def test_bad_data_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs, labels = write_sequences(tmp_path / "d", n=3)
    save = tmp_path / "save"
    assert main(["train", *tiny_args(inputs, labels, save, k_folds=5)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # the one line on stderr is all there is
    err = err.strip()
    assert err.count("\n") == 0
    assert "3 sequences are fewer than --k_folds 5" in err
    assert not save.exists() or not any(save.iterdir())
    (labels / "s001.csv").unlink()
    assert main(["train", *tiny_args(inputs, labels, save, k_folds=2)]) == 2
    err = capsys.readouterr().err
    assert "s001" in err and "Traceback" not in err
    assert not save.exists() or not any(save.iterdir())


def test_bad_flags_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = tiny_args(tmp_path, tmp_path, tmp_path, model="transformer", hidden_size=10, nhead=4)
    assert main(["train", *args]) == 2
    assert "hidden_size 10 must be divisible by nhead 4" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--device",
                "cuda:7",
                *tiny_args(*write_sequences(tmp_path / "d"), tmp_path / "s")[:-2],
            ]
        )
        == 2
    )
    assert "--device cuda" in capsys.readouterr().err


def test_resume_refuses_changed_settings_and_data(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s")
    before = (run_dir / "run.json").read_text()
    assert main(["resume", str(run_dir), "--lr", "0.5"]) == 2
    assert "lr: 0.01 -> 0.5" in capsys.readouterr().err
    assert main(["resume", str(run_dir), "--epochs", "1"]) == 2
    assert "may only rise" in capsys.readouterr().err
    inputs, labels = tiny_data
    shutil.copy(inputs / "s000.csv", inputs / "zz.csv")
    shutil.copy(labels / "s000.csv", labels / "zz.csv")
    # --epochs 3: the run is finished, and only a resume that trains looks at the data.
    assert main(["resume", str(run_dir), "--epochs", "3"]) == 2
    assert "1 added (zz)" in capsys.readouterr().err
    (inputs / "zz.csv").unlink()
    (labels / "zz.csv").unlink()
    lines = (inputs / "s003.csv").read_text().splitlines()
    lines[1] = "9.5,9.5,9.5"
    (inputs / "s003.csv").write_text("\n".join(lines) + "\n")
    created = datetime.strptime(json.loads(before)["created"], "%Y-%m-%dT%H:%M:%S%z")
    later = created.timestamp() + 10  # written after the start, whatever this clock says
    os.utime(inputs / "s003.csv", (later, later))
    assert main(["resume", str(run_dir), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "values in the data files changed" in err
    assert f"modified since then: {inputs / 's003.csv'}; restore them" in err
    assert (run_dir / "run.json").read_text() == before


def test_resuming_a_finished_run_says_so_and_changes_nothing(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"kfold: nothing to resume: every fold of r is finished; `kfold resume {run_dir} "
        "--epochs N` (N above 2) trains them longer\n"
    )
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_with_more_epochs_equals_a_longer_run(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    from killrun import assert_same_run

    short = _train(tiny_data, tmp_path / "a", model="lstm", epochs=2)
    assert main(["resume", str(short), "--epochs", "3"]) == 0
    full = _train(tiny_data, tmp_path / "b", model="lstm", epochs=3)
    assert_same_run(full, short, "lstm", folds=2)


def test_a_run_held_by_a_live_process_is_refused(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=1)
    with RunLock(run_dir):
        assert main(["resume", str(run_dir), "--epochs", "2"]) == 2
    assert f"in use by process {os.getpid()}" in capsys.readouterr().err
    # The lock of a process that died is no obstacle: the kernel released it.
    assert main(["resume", str(run_dir), "--epochs", "2"]) == 0


def test_a_run_name_in_use_is_refused(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _train(tiny_data, tmp_path / "s", epochs=1)
    assert main(["train", *tiny_args(*tiny_data, tmp_path / "s", epochs=1)]) == 2
    assert "a run of this name exists" in capsys.readouterr().err


def test_eval_on_own_folds_reproduces_the_cv_score(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=3)
    manifest = json.loads((run_dir / "run.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--predictions", str(tmp_path / "p")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["loss"] for r in result["folds"]] == [f["best_val_loss"] for f in manifest["folds"]]
    assert result["summary"]["loss_mean"] == pytest.approx(manifest["summary"]["cv_mean"])
    assert result["ensemble"] is None
    assert (result["k_folds"], result["missing"]) == (2, [])
    assert sorted(p.stem for p in (tmp_path / "p").iterdir()) == manifest["data"]["stems"]
    first = (tmp_path / "p" / "s000.csv").read_text().splitlines()
    assert first[0] == "t0"
    assert len(first) - 1 == len((tiny_data[0] / "s000.csv").read_text().splitlines()) - 1


def test_eval_on_other_data_scores_every_fold_and_the_ensemble(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=2)
    other = write_sequences(tmp_path / "other", n=5, seed=9)
    capsys.readouterr()
    assert (
        main(["eval", str(run_dir), "--input_dir", str(other[0]), "--label_dir", str(other[1])])
        == 0
    )
    out = capsys.readouterr().out
    assert "fold 1" in out and "fold 2" in out and "ensemble" in out and "mean ± std" in out
    assert main(["eval", str(run_dir / "best_mlp_fold_2.pth"), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    manifest = json.loads((run_dir / "run.json").read_text())
    assert one["folds"][0]["loss"] == manifest["folds"][1]["best_val_loss"]
    wrong = write_sequences(tmp_path / "wide", n=4, n_features=5)
    assert (
        main(["eval", str(run_dir), "--input_dir", str(wrong[0]), "--label_dir", str(wrong[1])])
        == 2
    )
    assert "takes 3 input columns, the data has 5" in capsys.readouterr().err


def test_eval_reports_each_fold_it_leaves_out_and_exits_1(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=2, k_folds=3)
    best = {
        f["fold"]: f["best_val_loss"]
        for f in json.loads((run_dir / "run.json").read_text())["folds"]
    }
    (run_dir / "best_mlp_fold_1.pth").unlink()
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 1
    out = capsys.readouterr().out
    rows = [ln.split("│")[1].strip() for ln in out.splitlines() if ln.startswith("│ fold")]
    assert rows == ["fold 2", "fold 3"]
    assert "mean over 2 of 3 folds" in out
    assert "fold 1: best_mlp_fold_1.pth is missing; left out of the mean" in out.splitlines()

    (run_dir / "best_mlp_fold_3.pth").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["eval", str(run_dir), "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [r["name"] for r in result["folds"]] == ["fold 2"]
    assert result["summary"]["loss_mean"] == best[2]
    assert result["k_folds"] == 3
    assert [(g["fold"], g["problem"]) for g in result["missing"]] == [
        (1, "best_mlp_fold_1.pth is missing"),
        (3, "best_mlp_fold_3.pth is unreadable (truncated or corrupt PyTorch file)"),
    ]
    # stdout stays JSON; the same notices go to stderr, one line per fold.
    assert captured.err.splitlines() == [g["message"] for g in result["missing"]]

    (run_dir / "best_mlp_fold_2.pth").unlink()
    assert main(["eval", str(run_dir)]) == 2
    assert capsys.readouterr().err == (
        f"kfold: error: {run_dir}: no fold can be scored (best_mlp_fold_1.pth is missing); "
        "restore the best_ checkpoints from a backup or train the run again\n"
    )


def test_eval_names_a_fold_not_trained_yet(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=1)
    # As a run stopped before fold 2's first epoch leaves it.
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["folds"][1].update(
        status="pending", epochs_done=0, best_val_loss=None, best_epoch=None
    )
    (run_dir / "run.json").write_text(json.dumps(manifest))
    (run_dir / "best_mlp_fold_2.pth").unlink()
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 1
    assert capsys.readouterr().err == (
        "fold 2: not trained yet (no best_mlp_fold_2.pth); left out of the mean\n"
    )


def test_inspect_our_checkpoints_and_foreign_files(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _train(tiny_data, tmp_path / "s", epochs=2, model="gru")
    capsys.readouterr()
    assert main(["inspect", str(run_dir / "best_gru_fold_1.pth"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["model"], info["fold"]) == ("best", "gru", 1)
    assert info["config"]["hidden_size"] == 8
    assert info["parameter_count"] == sum(
        t.numel()
        for t in torch.load(run_dir / "best_gru_fold_1.pth", weights_only=True)[
            "model_state"
        ].values()
    )
    assert main(["inspect", str(run_dir / "last_gru_fold_2.pth")]) == 0
    text = capsys.readouterr().out
    assert "last" in text and "rnn.weight_ih_l0" in text and "24x3" in text
    # The seed script saved plain state_dicts; Lightning-style files nest one.
    seed_style = tmp_path / "best_lstm_fold_1.pth"
    torch.save(torch.nn.LSTM(4, 16, 2).state_dict(), seed_style)
    assert main(["inspect", str(seed_style), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "plain state_dict" and info["tensor_count"] == 8
    foreign = tmp_path / "foreign.ckpt"
    torch.save(
        {"state_dict": {"w": torch.ones(2, 3)}, "optimizer_states": [{}], "epoch": 3}, foreign
    )
    assert main(["inspect", str(foreign), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "foreign training checkpoint"
    assert info["tensors"] == [{"name": "w", "shape": [2, 3], "dtype": "float32"}]
    assert "optimizer_states" in info["other_keys"]


def test_inspect_refuses_truncated_and_malicious_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"model_state": {"w": torch.ones(50, 50)}, "config": {}}, good)
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_pickle_that_creates(marker))
    for path, expect in (
        (truncated, "truncated or corrupt"),
        (evil, "refused"),
        (tmp_path / "none.pth", "no such file"),
    ):
        res = subprocess.run(
            [sys.executable, "-m", "engine", "inspect", str(path)],
            env=ENV,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert res.returncode == 2
        assert expect in res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not marker.exists()


def _pickle_that_creates(marker: Path) -> bytes:
    import pickle

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    return pickle.dumps({"model_state": Payload()}, protocol=2)


def test_ls_lists_runs_and_loose_files(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "s"
    _train(tiny_data, save, epochs=1)
    torch.save({"w": torch.zeros(1)}, save / "loose.pth")
    capsys.readouterr()
    assert main(["ls", str(save), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"], r["folds_done"]) for r in out["runs"]] == [
        ("r", "finished", 2)
    ]
    assert out["loose"] == [str(save / "loose.pth")]


def test_a_stop_before_the_first_epoch_leaves_a_resumable_run(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    stop = threading.Event()
    stop.set()
    cfg = TrainConfig(
        input_dir=str(tiny_data[0]),
        label_dir=str(tiny_data[1]),
        model_save_dir=str(tmp_path),
        run="r",
        epochs=1,
        k_folds=2,
        hidden_size=4,
        device="cpu",
    )
    outcome = start_run(cfg, stop)
    assert outcome.status == "interrupted"
    assert outcome.manifest["folds"][0]["status"] == "interrupted"
    assert main(["resume", str(tmp_path / "r")]) == 0


def test_engine_never_imports_ui_libraries() -> None:
    code = (
        "import sys, engine, engine.kfold, engine.evaluate, engine.catalog, engine.data;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('rich', 'textual', 'tui')];"
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_engine_source_never_imports_the_app_and_only_its_cli_uses_rich() -> None:
    import re

    ui = re.compile(r"^\s*(import|from)\s+(textual|tui)\b", re.M)
    rich = re.compile(r"^\s*(import|from)\s+rich\b", re.M)
    for path in sorted((ROOT / "engine").glob("*.py")):
        text = path.read_text()
        assert not ui.search(text), f"{path.name} imports the UI"
        if not path.name.startswith("cli"):
            assert not rich.search(text), f"{path.name} imports rich outside the CLI"


def test_train_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--lr LR (default: 0.001)", "(default: ./model_checkpoints)", "(default: 0)"):
        assert shown in text
