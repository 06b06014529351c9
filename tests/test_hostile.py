"""Hostile inputs: damaged CSVs and checkpoints give a load or a one-line error, never a
traceback, never a partial run folder, and nothing inside a file ever runs."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import tiny_args, write_sequences
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.data import load_dataset
from engine.errors import DataError

DAMAGE = st.sampled_from(
    [
        "drop_cell",
        "text_cell",
        "extra_column",
        "bom",
        "crlf",
        "huge",
        "empty_file",
        "duplicate_stem",
        "header_only",
        "nan",
        "missing_label",
        "short_label",
        "binary",
    ]
)


def _damage(inputs: Path, labels: Path, kind: str, row: int) -> None:
    target = inputs / "s001.csv"
    lines = target.read_text().splitlines()
    r = 1 + row % (len(lines) - 1)
    cells = lines[r].split(",")
    if kind == "drop_cell":
        cells[0] = ""
    elif kind == "text_cell":
        cells[-1] = "abc"
    elif kind == "extra_column":
        cells.append("1.0")
    elif kind == "huge":
        cells[0] = "1e39"
    elif kind == "nan":
        cells[0] = "nan"
    lines[r] = ",".join(cells)
    text = "\n".join(lines) + "\n"
    if kind == "bom":
        target.write_bytes(b"\xef\xbb\xbf" + text.encode())
    elif kind == "crlf":
        target.write_bytes(text.replace("\n", "\r\n").encode())
    elif kind == "empty_file":
        target.write_bytes(b"")
    elif kind == "header_only":
        target.write_text(lines[0] + "\n")
    elif kind == "duplicate_stem":
        import numpy as np

        np.save(inputs / "s001.npy", np.zeros((3, 3), np.float32))
    elif kind == "missing_label":
        (labels / "s002.csv").unlink()
    elif kind == "short_label":
        lab = (labels / "s001.csv").read_text().splitlines()
        (labels / "s001.csv").write_text("\n".join(lab[:-1]) + "\n")
    elif kind == "binary":
        target.write_bytes(bytes(range(256)) * 3)
    else:
        target.write_text(text)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=DAMAGE, row=st.integers(0, 50))
def test_damaged_csvs_load_correctly_or_fail_in_one_line_with_nothing_written(
    kind: str,
    row: int,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path_factory.mktemp("hostile")
    inputs, labels = write_sequences(root / "d", n=6)
    _damage(inputs, labels, kind, row)
    save = root / "save"
    code = main(["train", *tiny_args(inputs, labels, save, epochs=1)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if kind in ("bom", "crlf"):  # not damage at all: the data must load and train
        assert code == 0, err
        return
    assert code == 2, f"{kind}: {err}"
    line = err.strip()
    assert line.count("\n") == 0 and line.startswith("kfold: error: ")
    named = "s002" if kind == "missing_label" else "s001"
    assert named in line, line
    assert not save.exists() or not any(save.iterdir()), "a partial run folder was left"
    with pytest.raises(DataError):
        load_dataset(inputs, labels)


# --- hostile checkpoints -------------------------------------------------------------


def _pickle_bomb(marker: Path) -> bytes:
    class Bomb:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"model_state": {}, "x": Bomb()}, buf)
    return buf.getvalue()


def _hostile_files(good: bytes, marker: Path) -> dict[str, bytes]:
    files = {"random bytes": bytes((i * 37 + 11) % 256 for i in range(4096)), "empty": b""}
    for size in (1, 10, 100, 1000, len(good) // 2, len(good) - 1):
        files[f"truncated to {size}"] = good[:size]
    renamed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(renamed, "w") as dst:
        for item in src.infolist():
            dst.writestr(item.filename.replace("data.pkl", "other.pkl"), src.read(item))
    files["zip with a wrong inner name"] = renamed.getvalue()
    files["pickle that would create a file"] = _pickle_bomb(marker)
    files["plain pickle"] = pickle.dumps({"model_state": 1})
    return files


def test_hostile_checkpoints_are_refused_by_inspect_eval_and_resume(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "s"
    assert main(["train", *tiny_args(*tiny_data, save, model="gru", epochs=2)]) == 0
    run = save / "r"
    good_path = run / "last_gru_fold_1.pth"
    good = good_path.read_bytes()
    marker = tmp_path / "created-by-unpickling"
    capsys.readouterr()
    for name, data in _hostile_files(good, marker).items():
        bad = tmp_path / "bad.pth"
        bad.write_bytes(data)
        for argv in (
            ["inspect", str(bad)],
            ["eval", str(bad), "--input_dir", str(tiny_data[0]), "--label_dir", str(tiny_data[1])],
        ):
            assert main(argv) == 2, f"{name}: {argv[0]}"
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and str(bad) in err, f"{name}: {err}"
        good_path.write_bytes(data)  # now the run's own last_ checkpoint is damaged
        assert main(["resume", str(run), "--epochs", "3"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "last_gru_fold_1.pth" in err, f"{name}: {err}"
        good_path.write_bytes(good)
    assert not marker.exists(), "unpickling ran code"


def test_a_checkpoint_of_another_model_or_width_is_refused_with_the_reason(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *tiny_args(*tiny_data, tmp_path / "a", model="gru", epochs=1)]) == 0
    assert (
        main(
            ["train", *tiny_args(*tiny_data, tmp_path / "b", model="gru", epochs=1, hidden_size=4)]
        )
        == 0
    )
    run_a, run_b = tmp_path / "a" / "r", tmp_path / "b" / "r"
    shutil.copy(run_b / "last_gru_fold_2.pth", run_a / "last_gru_fold_1.pth")
    capsys.readouterr()
    assert main(["resume", str(run_a), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "not this run's last_ checkpoint of fold 1" in err
    shutil.copy(run_b / "last_gru_fold_1.pth", run_a / "last_gru_fold_1.pth")
    assert main(["resume", str(run_a), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "does not fit this gru model" in err and "size mismatch" in err
    wide = write_sequences(tmp_path / "wide", n=4, n_features=5)
    assert (
        main(
            [
                "eval",
                str(run_b / "best_gru_fold_1.pth"),
                "--input_dir",
                str(wide[0]),
                "--label_dir",
                str(wide[1]),
            ]
        )
        == 2
    )
    assert "takes 3 input columns, the data has 5" in capsys.readouterr().err


def test_a_damaged_run_json_is_one_line_everywhere(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.catalog import list_runs

    assert main(["train", *tiny_args(*tiny_data, tmp_path, epochs=1)]) == 0
    (tmp_path / "r" / "run.json").write_text('{"format_version": 1}')
    capsys.readouterr()
    for argv in (["resume", str(tmp_path / "r")], ["eval", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "damaged (no valid 'name')" in err, err
    [entry] = list_runs(tmp_path)
    assert entry.status == "unreadable" and "damaged" in (entry.error or "")
    assert main(["ls", str(tmp_path)]) == 0


def test_ctrl_c_during_eval_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.evaluate

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.evaluate, "evaluate", interrupted)
    assert main(["eval", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "kfold: error: interrupted\n"
