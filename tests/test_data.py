"""Tests for engine.data: loading, validation messages, the fingerprint and the sample data."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import good, load_error, write_csv, write_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import tables
from engine.data import Dataset, dataset_summary, load_dataset
from engine.errors import DataError, UserError

REPO = Path(__file__).resolve().parents[1]
# Every test here sees its own cache folder (the `cache` fixture), not the session's.
pytestmark = pytest.mark.usefixtures("cache")


# --- loading -------------------------------------------------------------------------------


def test_loads_pairs_in_stem_order(dirs: tuple[Path, Path]) -> None:
    write_pair(dirs, "b", "f1,f2\n1,2\n3,4\n5,6\n", "t\n7\n8\n9\n")
    write_pair(dirs, "a", "f1,f2\n-1.5,1e-3\n", "t\n0.125\n")
    ds = load_dataset(*dirs)
    assert ds.stems == ("a", "b")
    assert ds.input_columns == ("f1", "f2") and ds.label_columns == ("t",)
    assert (ds.n_features, ds.n_targets) == (2, 1)
    assert ds.lengths.tolist() == [1, 3] and ds.lengths.dtype == np.int64
    for arr in ds.inputs + ds.labels:
        assert arr.dtype == np.float32 and arr.flags.c_contiguous and arr.ndim == 2
    np.testing.assert_array_equal(ds.inputs[0], np.array([[-1.5, 1e-3]], dtype=np.float32))
    np.testing.assert_array_equal(ds.inputs[1], [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(ds.labels[1], [[7], [8], [9]])
    assert len(ds.fingerprint) == 64 and "2 sequences" in repr(ds)


def test_bom_and_crlf_are_read_normally(dirs: tuple[Path, Path]) -> None:
    write_csv(dirs[0] / "a.csv", "f1,f2\n1,2\n3,4\n", bom=True, crlf=True)
    write_csv(dirs[1] / "a.csv", "t\n5\n6\n", bom=True)
    write_csv(dirs[0] / "b.csv", "f1,f2\n1,2\n", crlf=True)
    write_csv(dirs[1] / "b.csv", "t\n5\n", crlf=True)
    ds = load_dataset(*dirs)
    assert ds.input_columns == ("f1", "f2") and ds.label_columns == ("t",)
    np.testing.assert_array_equal(ds.inputs[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.labels[0], [[5], [6]])


def test_other_and_hidden_files_are_ignored(dirs: tuple[Path, Path]) -> None:
    good(dirs, ("a",))
    for folder in dirs:
        (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
        (folder / "README.md").write_text("notes")
        (folder / ".hidden.csv").write_text("not,data\nx,y\n")
        (folder / "~$a.csv").write_bytes(b"\x00office lock file")
        (folder / "sub.csv").mkdir()
    assert load_dataset(*dirs).stems == ("a",)


def test_blank_lines_and_quoted_numbers(dirs: tuple[Path, Path]) -> None:
    write_pair(dirs, "a", 'f1,f2\n1,"2.5"\n\n3, 4\n\n', "t\n1\n2\n")
    np.testing.assert_array_equal(load_dataset(*dirs).inputs[0], [[1, 2.5], [3, 4]])


def test_npy_files_load_and_take_generic_names(dirs: tuple[Path, Path]) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3) / 8
    np.save(dirs[0] / "a.npy", x)
    np.save(dirs[1] / "a.npy", np.arange(8, dtype=np.int32).reshape(4, 2))
    ds = load_dataset(*dirs)
    assert ds.input_columns == ("x0", "x1", "x2") and ds.label_columns == ("y0", "y1")
    np.testing.assert_array_equal(ds.inputs[0], x.astype(np.float32))
    assert ds.labels[0].dtype == np.float32 and ds.labels[0][3, 1] == 7


def test_npy_and_csv_mix_and_give_the_same_fingerprint(dirs: tuple[Path, Path], tmp_path) -> None:
    write_pair(dirs, "a", "f1,f2\n1,2\n3,4\n", "t\n5\n6\n")
    np.save(dirs[0] / "b.npy", np.array([[0.5, 0.25]]))
    write_csv(dirs[1] / "b.csv", "t\n1\n")
    mixed = load_dataset(*dirs, use_cache=False)
    assert mixed.input_columns == ("f1", "f2")  # names come from the CSV files
    (dirs[0] / "b.npy").unlink()
    write_csv(dirs[0] / "b.csv", "f1,f2\n0.5,0.25\n")
    assert load_dataset(*dirs, use_cache=False).fingerprint == mixed.fingerprint


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3), min_size=1, max_size=20
    )
)
def test_csv_values_round_trip_exactly(rows: list[list[float]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inputs, labels = Path(tmp, "i"), Path(tmp, "l")
        inputs.mkdir()
        labels.mkdir()
        body = "".join(",".join(repr(v) for v in row) + "\n" for row in rows)
        write_csv(inputs / "s.csv", "a,b,c\n" + body)
        write_csv(labels / "s.csv", "t\n" + "1\n" * len(rows))
        ds = load_dataset(inputs, labels, use_cache=False)
    np.testing.assert_array_equal(ds.inputs[0], np.array(rows, dtype=np.float32))


# --- validation messages -------------------------------------------------------------------


def test_missing_folder(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    good(dirs)
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset(missing, dirs[1])
    assert str(missing) in str(info.value) and "input folder" in str(info.value)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2


def test_folder_that_is_a_file(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    good(dirs)
    not_dir = write_csv(tmp_path / "labels.csv", "t\n1\n")
    with pytest.raises(DataError, match="is not a folder") as info:
        load_dataset(dirs[0], not_dir)
    assert str(not_dir) in str(info.value) and "label folder" in str(info.value)


def test_empty_folder(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    for f in dirs[1].iterdir():
        f.unlink()
    (dirs[1] / "notes.txt").write_text("x")
    load_error(dirs, str(dirs[1]), "has no .csv or .npy files", "notes.txt")


def test_input_without_label(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "c.csv", "f1,f2\n1,2\n")
    load_error(dirs, str(dirs[0] / "c.csv"), "has no label file", str(dirs[1] / "c.csv"))


def test_label_without_input(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    np.save(dirs[1] / "c.npy", np.ones((2, 1)))
    load_error(dirs, str(dirs[1] / "c.npy"), "has no input file", str(dirs[0] / "c.npy"))


def test_same_stem_twice(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    np.save(dirs[0] / "a.npy", np.ones((2, 2)))
    load_error(dirs, str(dirs[0] / "a.csv"), str(dirs[0] / "a.npy"), "'a'", "keep only one")


def test_row_count_mismatch(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[1] / "b.csv", "t\n1\n2\n3\n")
    load_error(dirs, str(dirs[1] / "b.csv"), "has 3 rows", str(dirs[0] / "b.csv"), "has 2")


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("abc", "non-numeric value 'abc'"),
        ("True", "non-numeric value 'True'"),
        ("1_000", "non-numeric value '1_000'"),
        ("NA", "non-numeric value 'NA'"),
        ("", "empty cell"),
        ("  ", "empty cell"),
        ("nan", "NaN value"),
        ("NaN", "NaN value"),
        ("inf", "infinite value"),
        ("-Infinity", "infinite value"),
        ("1e39", "too large for float32"),
    ],
)
def test_bad_cell(dirs: tuple[Path, Path], cell: str, problem: str) -> None:
    good(dirs)
    write_csv(dirs[0] / "b.csv", f"f1,f2\n1,2\n3,4\n5,{cell}\n", crlf=True)
    write_csv(dirs[1] / "b.csv", "t\n1\n2\n3\n")
    load_error(dirs, str(dirs[0] / "b.csv"), "column 'f2'", "data row 3", "line 4", problem)


def test_bad_cell_in_label_file(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[1] / "a.csv", "t\n0.5\n?\n", bom=True)
    load_error(dirs, str(dirs[1] / "a.csv"), "data row 2", "column 't'", "non-numeric value '?'")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("1,2\n3,4,5\n", "data row 2 (line 3) has 3 fields but the header has 2"),
        ("1,2,9\n3,4\n", "data row 1 (line 2) has 3 fields but the header has 2"),
        ("1,2,9\n3,4,9\n", "data row 1 (line 2) has 3 fields but the header has 2"),
        ("1,2\n3\n", "data row 2 (line 3) has 1 fields but the header has 2"),
    ],
)
def test_wrong_number_of_fields_in_a_row(dirs: tuple[Path, Path], body: str, fragment: str) -> None:
    good(dirs)
    write_csv(dirs[0] / "a.csv", "f1,f2\n" + body)
    load_error(dirs, str(dirs[0] / "a.csv"), fragment)


def test_column_count_differs(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "b.csv", "f1,f2,f3\n1,2,3\n4,5,6\n")
    message = load_error(dirs, str(dirs[0] / "b.csv"), "has 3 columns", str(dirs[0] / "a.csv"))
    assert "has 2 (f1, f2)" in message and "(f1, f2, f3)" in message


def test_label_column_count_differs_for_npy(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    (dirs[1] / "b.csv").unlink()
    np.save(dirs[1] / "b.npy", np.ones((2, 2)))
    load_error(dirs, str(dirs[1] / "b.npy"), "has 2 columns", str(dirs[1] / "a.csv"), "has 1")


def test_column_names_differ(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "b.csv", "f1,speed\n1,2\n4,5\n")
    load_error(
        dirs, str(dirs[0] / "b.csv"), "column 2 is named 'speed'", str(dirs[0] / "a.csv"), "'f2'"
    )


def test_header_only_file(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[1] / "a.csv", "t\n")
    load_error(dirs, str(dirs[1] / "a.csv"), "no data rows")


def test_zero_byte_file(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "b.csv", "")
    load_error(dirs, str(dirs[0] / "b.csv"), "the file is empty")


def test_missing_header_row(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "a.csv", "0.5,-1.25\n1,2\n3,4\n")
    load_error(dirs, str(dirs[0] / "a.csv"), "looks like data", "add a header row")


def test_semicolon_separated_file(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "b.csv", "f1;f2\n1,5;2\n3;4\n")
    load_error(dirs, str(dirs[0] / "b.csv"), "separate values with commas, not ';'")


def test_same_folder_for_inputs_and_labels(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    with pytest.raises(DataError, match="is both the input and the label folder"):
        load_dataset(dirs[0], dirs[0] / ".." / dirs[0].name)


def test_bad_encoding(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    (dirs[0] / "b.csv").write_bytes("f1,f\xe92\n1,2\n3,4\n".encode("latin-1"))
    load_error(dirs, str(dirs[0] / "b.csv"), "not UTF-8 text", "0xe9")


def test_unreadable_file_reported(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    good(dirs)
    target = dirs[0] / "b.csv"

    def deny(path, *args, **kwargs):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    # Root can read anything, so the OS refusal is simulated where the module opens files.
    monkeypatch.setattr(tables, "open", deny, raising=False)
    load_error(dirs, str(target), "cannot read the file (permission denied)")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_unreadable_file_for_real(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    target = dirs[1] / "a.csv"
    target.chmod(0)
    try:
        load_error(dirs, str(target), "permission denied")
    finally:
        target.chmod(0o644)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.ones(3), "is a 1-D array of shape (3,), expected 2-D"),
        (np.ones((2, 2, 2)), "is a 3-D array"),
        (np.array([["a", "b"], ["c", "d"]]), "holds <U1 values, not numbers"),
        (np.ones((2, 2), dtype=bool), "holds bool values"),
        (np.array([[1, "x"], [2, 3]], dtype=object), "cannot load the array"),
        (np.ones((0, 2)), "is empty (shape (0, 2))"),
        (np.array([[1.0, 2.0], [np.nan, 4.0]]), "row 2, column 1: NaN value"),
        (np.array([[1.0, 2.0], [3.0, -np.inf]]), "row 2, column 2: infinite value"),
        (np.array([[1.0, 2.0], [3.0, 1e300]]), "too large for float32"),
    ],
)
def test_bad_npy(dirs: tuple[Path, Path], array: np.ndarray, fragment: str) -> None:
    good(dirs)
    (dirs[0] / "b.csv").unlink()
    np.save(dirs[0] / "b.npy", array, allow_pickle=True)
    load_error(dirs, str(dirs[0] / "b.npy"), fragment)


def test_npy_that_is_not_npy(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    (dirs[1] / "b.csv").unlink()
    (dirs[1] / "b.npy").write_bytes(b"PK\x03\x04 not numpy at all")
    load_error(dirs, str(dirs[1] / "b.npy"), "not a .npy file")


def test_file_name_with_newline_stays_one_line(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    write_csv(dirs[0] / "odd\nname.csv", "f1,f2\n1,2\n")
    load_error(dirs, "odd\\nname.csv", "has no label file")


# --- fingerprint, subset, summary ----------------------------------------------------------


def test_fingerprint_changes_with_any_value(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    base = load_dataset(*dirs, use_cache=False).fingerprint
    write_csv(dirs[1] / "b.csv", "t\n0.25\n0.5000001\n")
    assert load_dataset(*dirs, use_cache=False).fingerprint != base


def test_subset_keeps_the_given_order(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    good(dirs, ("a", "b", "c"))
    ds = load_dataset(*dirs)
    sub = ds.subset(["c", "a"])
    assert isinstance(sub, Dataset)
    assert sub.stems == ("c", "a")
    assert sub.inputs[0] is ds.inputs[2] and sub.labels[1] is ds.labels[0]
    assert sub.input_columns == ds.input_columns and sub.fingerprint != ds.fingerprint
    assert ds.subset(["a", "b", "c"]).fingerprint == ds.fingerprint
    assert ds.subset([]).stems == ()
    with pytest.raises(DataError, match="sequence 'zz' is not in the dataset"):
        ds.subset(["a", "zz"])
    with pytest.raises(DataError, match="'a' is listed twice"):
        ds.subset(["b", "a", "a"])
    with pytest.raises(TypeError):
        ds.subset("abc")


def test_subset_fingerprint_matches_a_folder_with_only_those_files(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    good(dirs, ("a", "b", "c"))
    sub = load_dataset(*dirs).subset(["a", "c"])
    (dirs[0] / "b.csv").unlink()
    (dirs[1] / "b.csv").unlink()
    assert load_dataset(*dirs).fingerprint == sub.fingerprint


def test_summary(dirs: tuple[Path, Path]) -> None:
    write_pair(dirs, "a", "f1,f2\n" + "1,2\n" * 3, "t\n" + "1\n" * 3)
    write_pair(dirs, "b", "f1,f2\n" + "1,2\n" * 10, "t\n" + "1\n" * 10)
    write_pair(dirs, "c", "f1,f2\n" + "1,2\n" * 4, "t\n" + "1\n" * 4)
    write_pair(dirs, "d", "f1,f2\n" + "1,2\n" * 8, "t\n" + "1\n" * 8)
    summary = dataset_summary(load_dataset(*dirs))
    assert summary == {
        "sequences": 4,
        "input_columns": ["f1", "f2"],
        "label_columns": ["t"],
        "n_features": 2,
        "n_targets": 1,
        "length_min": 3,
        "length_median": 6.0,
        "length_max": 10,
    }
    assert json.loads(json.dumps(summary)) == summary


def test_shipped_sample_data_loads(cache: Path) -> None:
    ds = load_dataset(REPO / "data_train" / "inputs", REPO / "data_train" / "labels")
    assert len(ds.stems) == 48 and ds.stems[0] == "seq_000"
    assert ds.input_columns == ("x0", "x1", "x2", "x3") and ds.label_columns == ("y",)
    assert (ds.n_features, ds.n_targets) == (4, 1)
    assert ds.lengths.min() >= 100 and ds.lengths.max() <= 1200
    assert np.abs(np.concatenate(ds.inputs)).max() < 10
