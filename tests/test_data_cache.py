"""Tests for engine.data's cache: hits, invalidation, damage, and where it lives."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from data_helpers import cache_files, good, load_error, write_csv, write_pair

from engine.data import cache_dir, load_dataset

# Every test here sees its own cache folder (the `cache` fixture), not the session's.
pytestmark = pytest.mark.usefixtures("cache")


# --- cache ---------------------------------------------------------------------------------


def test_cache_hit_is_equal_and_skips_parsing(
    dirs: tuple[Path, Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good(dirs, ("a", "b", "c"))
    np.save(dirs[0] / "d.npy", np.ones((2, 2)))
    write_csv(dirs[1] / "d.csv", "t\n1\n2\n")
    first = load_dataset(*dirs)
    files = cache_files(cache)
    assert len(files) == 1 and files[0].suffix == ".npz"  # one file, no temp left over

    def boom(*args, **kwargs):
        raise AssertionError("parsed a CSV despite a valid cache")

    monkeypatch.setattr(pd, "read_csv", boom)
    second = load_dataset(*dirs)
    assert second.fingerprint == first.fingerprint
    assert second.stems == first.stems
    assert (second.input_columns, second.label_columns) == (
        first.input_columns,
        first.label_columns,
    )
    for a, b in zip(first.inputs + first.labels, second.inputs + second.labels, strict=True):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float32 and b.flags.c_contiguous
    # The cached sequences are views of one block, not per-sequence copies.
    assert all(x.base is second.inputs[0].base for x in second.inputs)


def test_changed_file_invalidates_cache(dirs: tuple[Path, Path], cache: Path) -> None:
    good(dirs)
    first = load_dataset(*dirs)
    target = dirs[0] / "b.csv"
    before = target.stat()
    write_csv(target, "f1,f2\n7,1.5\n8,2.5\n")  # same size: only the mtime gives it away
    assert target.stat().st_size == before.st_size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    second = load_dataset(*dirs)
    np.testing.assert_array_equal(second.inputs[1], [[7, 1.5], [8, 2.5]])
    assert second.fingerprint != first.fingerprint
    assert len(cache_files(cache)) == 1
    assert load_dataset(*dirs).fingerprint == second.fingerprint


def test_added_and_removed_files_invalidate_cache(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    assert load_dataset(*dirs).stems == ("a", "b")
    write_pair(dirs, "c", "f1,f2\n1,2\n", "t\n3\n")
    assert load_dataset(*dirs).stems == ("a", "b", "c")
    (dirs[0] / "a.csv").unlink()
    (dirs[1] / "a.csv").unlink()
    assert load_dataset(*dirs).stems == ("b", "c")


def test_validation_runs_before_the_cache(dirs: tuple[Path, Path]) -> None:
    good(dirs)
    load_dataset(*dirs)
    write_csv(dirs[0] / "c.csv", "f1,f2\n1,2\n")
    load_error(dirs, "has no label file")


@pytest.mark.parametrize(
    "damage",
    [
        lambda npz: npz.write_bytes(b""),
        lambda npz: npz.write_bytes(b"not a zip file"),
        lambda npz: npz.write_bytes(b"PK\x03\x04" + b"\x00" * 64),
        # Valid zips (right CRCs) whose meta lacks a field or has the wrong type of one.
        lambda npz: _rewrite_meta(npz, {"key": None}),
        lambda npz: _rewrite_meta(npz, {"fingerprint": None}),
        lambda npz: _rewrite_meta(npz, {"stems": 5}),
    ],
    ids=["empty", "not-zip", "zeros", "no-key", "no-fingerprint", "bad-stems"],
)
def test_corrupt_cache_is_ignored_and_rewritten(
    dirs: tuple[Path, Path],
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[Path], object],
) -> None:
    good(dirs)
    first = load_dataset(*dirs)
    [npz] = cache_files(cache)
    damage(npz)
    assert load_dataset(*dirs).fingerprint == first.fingerprint
    monkeypatch.setattr(pd, "read_csv", None)  # the rewritten cache must now serve the load
    assert load_dataset(*dirs).fingerprint == first.fingerprint


def test_tampered_cache_values_are_rejected(dirs: tuple[Path, Path], cache: Path) -> None:
    good(dirs)
    first = load_dataset(*dirs)
    [npz] = cache_files(cache)
    with np.load(npz) as z:
        parts = {k: z[k] for k in z.files}
    parts["inputs"][0, 0] += 1  # right shapes and key, wrong values
    with open(npz, "wb") as fh:
        np.savez(fh, **parts)
    second = load_dataset(*dirs)
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.inputs[0], first.inputs[0])


def _rewrite_meta(npz: Path, change: dict[str, Any]) -> None:
    """Rewrite the cache with its meta changed, as a valid zip (right CRCs)."""
    with np.load(npz) as z:
        parts = {k: z[k] for k in z.files}
    meta = {**json.loads(parts["meta"].tobytes()), **change}
    meta = {k: v for k, v in meta.items() if v is not None}
    parts["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(npz, "wb") as fh:
        np.savez(fh, **parts)


def test_a_flipped_bit_in_the_cache_meta_is_caught(dirs: tuple[Path, Path], cache: Path) -> None:
    # Column names are not in the fingerprint: the zip's CRC is what catches this.
    write_pair(dirs, "a", "speed,load\n1,2\n", "t\n0.5\n")
    load_dataset(*dirs)
    [npz] = cache_files(cache)
    data = npz.read_bytes()
    assert data.count(b'"speed"') == 1
    npz.write_bytes(data.replace(b'"speed"', b'"qpeed"'))
    assert load_dataset(*dirs).input_columns == ("speed", "load")


def test_unwritable_cache_dir_is_skipped(
    dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good(dirs)
    blocker = tmp_path / "file_not_dir"
    blocker.write_text("x")
    monkeypatch.setenv("KFOLD_CACHE_DIR", str(blocker / "cache"))
    assert load_dataset(*dirs).stems == ("a", "b")
    assert load_dataset(*dirs).stems == ("a", "b")


def test_stale_temp_files_are_removed(dirs: tuple[Path, Path], cache: Path) -> None:
    good(dirs)
    load_dataset(*dirs)
    [npz] = cache_files(cache)
    stale, fresh = cache / f".{npz.stem}.old.tmp", cache / f".{npz.stem}.new.tmp"
    stale.write_bytes(b"half a cache")
    fresh.write_bytes(b"another writer, still busy")
    os.utime(stale, (1, 1))
    write_pair(dirs, "c", "f1,f2\n1,2\n", "t\n3\n")
    load_dataset(*dirs)
    assert cache_files(cache) == sorted([npz, fresh])


def test_use_cache_false_writes_nothing(dirs: tuple[Path, Path], cache: Path) -> None:
    good(dirs)
    load_dataset(*dirs, use_cache=False)
    assert cache_files(cache) == []


def test_each_folder_pair_has_its_own_cache(
    dirs: tuple[Path, Path], cache: Path, tmp_path: Path
) -> None:
    good(dirs)
    other = (tmp_path / "i2", tmp_path / "l2")
    for folder in other:
        folder.mkdir()
    write_pair(other, "z", "f1,f2\n9,9\n", "t\n9\n")
    one, two = load_dataset(*dirs), load_dataset(*other)
    assert len(cache_files(cache)) == 2
    assert load_dataset(*dirs).fingerprint == one.fingerprint
    assert load_dataset(*other).fingerprint == two.fingerprint


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KFOLD_CACHE_DIR", str(tmp_path / "k"))
    assert cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KFOLD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kfold-tui"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "kfold-tui"
