"""`kfold resume|eval|inspect|ls` take a run by the name `kfold ls` prints, looked up in
--model_save_dir, as well as by its path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENV, tiny_args

from engine.cli import main
from engine.config import TrainConfig


def _train(tiny_data: tuple[Path, Path], save: Path, **extra: object) -> Path:
    assert main(["train", *tiny_args(*tiny_data, save, **extra)]) == 0
    return save / str(extra.get("run", "r"))


def test_run_names_are_looked_up_in_the_save_folder(
    tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    # The default --model_save_dir, as a user who gives none trains into it.
    default = TrainConfig().model_save_dir
    _train(tiny_data, Path(default), epochs=1)
    assert main(["resume", "r", "--epochs", "2"]) == 0
    manifest = json.loads((tmp_path / "model_checkpoints" / "r" / "run.json").read_text())
    assert [f["epochs_done"] for f in manifest["folds"]] == [2, 2]
    capsys.readouterr()
    assert main(["eval", "r", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == str(Path(default) / "r")
    assert [r["loss"] for r in result["folds"]] == [f["best_val_loss"] for f in manifest["folds"]]
    assert main(["inspect", "r/best_mlp_fold_2.pth", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fold"] == 2
    assert main(["ls", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["r"]

    # Another save folder: its --model_save_dir is where to look, not a changed setting.
    _train(tiny_data, tmp_path / "elsewhere", epochs=1, run="q")
    assert main(["resume", "q", "--model_save_dir", "elsewhere", "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["eval", "q", "--model_save_dir", "elsewhere", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == str(Path("elsewhere") / "q")
    assert main(["ls", "--model_save_dir", "elsewhere", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["q"]

    # A path that exists wins over a name, even when it is not a run.
    (tmp_path / "r").mkdir()
    assert main(["eval", "r"]) == 2
    assert capsys.readouterr().err == (
        "kfold: error: r: no run.json here; this is not a kfold run folder\n"
    )
    # The path form is unchanged.
    assert main(["eval", str(tmp_path / "model_checkpoints" / "r"), "--json"]) == 0


def test_a_run_found_nowhere_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "engine", "resume", "tiny"],
        env=ENV,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr == (
        "kfold: error: tiny: no such run folder (looked for tiny and "
        "model_checkpoints/tiny); `kfold ls` lists the runs\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "tiny", "--model_save_dir", "s"]) == 2
    assert capsys.readouterr().err == (
        "kfold: error: tiny: no such run folder or checkpoint (looked for tiny and s/tiny); "
        "`kfold ls s` lists the runs and loose checkpoints\n"
    )
    assert main(["ls", "a", "--model_save_dir", "b"]) == 2
    assert "two save folders given" in capsys.readouterr().err
