"""The data cache's file format: np.savez's layout, written part by part, read back whole."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from engine.npz import on_local_filesystem, read_npz, write_npz


def test_parts_are_written_as_one_member_np_load_reads(tmp_path: Path) -> None:
    parts = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((2, 2), np.float32)]
    path = tmp_path / "c.npz"
    with open(path, "wb") as fh:
        write_npz(fh, {"x": parts, "n": [np.array([3, 2], np.int64)]})
    with np.load(path) as z:
        np.testing.assert_array_equal(z["x"], np.concatenate(parts))
    got = read_npz(path, {"x": np.float32, "n": np.int64})
    np.testing.assert_array_equal(got["x"], np.concatenate(parts))
    assert got["x"].flags.c_contiguous and got["n"].tolist() == [3, 2]


def test_unexpected_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, x=np.ones(3, np.float64), o=np.array([{"a": 1}], dtype=object))
    assert read_npz(path, {"x": np.float64})["x"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        read_npz(path, {"x": np.float32})  # another dtype than the one written
    with pytest.raises(ValueError):
        read_npz(path, {"o": object})  # never raw bytes into an object array
    np.savez_compressed(path, x=np.ones(3, np.float64))
    with pytest.raises(ValueError):
        read_npz(path, {"x": np.float64})
    buf = io.BytesIO()
    write_npz(buf, {"x": [np.ones(1000, np.float32)]})
    path.write_bytes(buf.getvalue()[:2000])  # cut short
    with pytest.raises(Exception):  # noqa: B017 - zipfile or ValueError, both mean "re-parse"
        read_npz(path, {"x": np.float32})


def test_mapped_members_are_writable_private_copies(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    with open(path, "wb") as fh:
        write_npz(fh, {"x": [np.arange(4, dtype=np.float32)]})
    x = read_npz(path, {"x": np.float32}, mapped=True)["x"]
    assert type(x) is np.ndarray and x.flags.writeable
    x[0] = 9.0  # copy-on-write: the file keeps its bytes
    assert read_npz(path, {"x": np.float32})["x"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_read_member_is_checked_against_its_crc(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    with open(path, "wb") as fh:
        write_npz(fh, {"x": [np.arange(100, dtype=np.float32)]})
    data = bytearray(path.read_bytes())
    at = data.index(np.float32(50).tobytes())
    data[at] ^= 1  # one bit of one value
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        read_npz(path, {"x": np.float32})


def test_only_local_filesystems_are_mapped(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "server:/home /home nfs4 rw 0 0\n"
        "/dev/vdb /home/u/my\\040disk xfs rw 0 0\n"
    )
    assert on_local_filesystem(Path("/var/cache/x"), mounts)
    assert not on_local_filesystem(Path("/home/u/.cache/kfold-tui/c.npz"), mounts)
    assert on_local_filesystem(Path("/home/u/my disk/c.npz"), mounts)
    assert not on_local_filesystem(Path("/x"), tmp_path / "no-such-file")
