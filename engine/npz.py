"""The data cache's file format: an uncompressed ``.npz`` (what ``np.savez`` writes), written
from many arrays without joining them and read back without extra passes.

``np.load`` reads a member in 256 KiB chunks through ``zipfile``, which copies each chunk
into the array; on 10,000 cached sequences that was half of a cached load. A stored
member is a plain array at a known offset, so it is read with one ``readinto`` (and its
CRC checked in the same pass), or mapped. A mapped member's bytes are not checksummed
here: the loader rehashes the data (the dataset fingerprint) anyway.

Mapping is only for files on a local filesystem. On NFS and the like, another machine
replacing the file deletes it on the server, and a process whose mapped pages are then
read again dies of SIGBUS; there the members are read instead.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np

_LOCAL_HEADER = 30  # bytes before the name and extra field of a zip member's local header


def write_npz(fh: IO[bytes], members: Mapping[str, Sequence[np.ndarray]]) -> None:
    """One ``<name>.npy`` per entry, holding its arrays joined along their first axis."""
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, parts in members.items():
            dtype = parts[0].dtype
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (sum(len(p) for p in parts), *parts[0].shape[1:]),
            }
            with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                for part in parts:
                    out.write(np.ascontiguousarray(part, dtype=dtype).data)


def read_npz(
    path: Path, dtypes: Mapping[str, np.dtype | type], *, mapped: bool = False
) -> dict[str, np.ndarray]:
    """The named members, each of the dtype given. Raises ValueError (or OSError,
    KeyError, zipfile errors) for anything unexpected; the caller then re-parses.

    ``mapped``: map the members copy-on-write instead of reading them, so the arrays are
    the OS's cached pages of the file (writable; writes stay private to the process)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for name, dtype in dtypes.items():
            info = zf.getinfo(f"{name}.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{name}: compressed")
            fh.seek(info.header_offset)
            local = fh.read(_LOCAL_HEADER)
            if len(local) != _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{name}: bad local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
            start = fh.tell()
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, found = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, found = np.lib.format.read_array_header_2_0(fh)
            # Only the plain dtypes we write: raw bytes must never land in an object array.
            if fortran or found != np.dtype(dtype) or found.hasobject:
                raise ValueError(f"{name}: unexpected layout {found}, fortran={fortran}")
            size = int(np.prod(shape, dtype=np.int64)) * found.itemsize
            if size > info.file_size - (fh.tell() - start):
                raise ValueError(f"{name}: shape {shape} larger than the member")
            if size > path.stat().st_size - fh.tell():
                raise ValueError(f"{name}: truncated")
            if mapped and size:
                # A plain ndarray view: slicing a np.memmap runs Python code per slice.
                mm = np.memmap(path, found, "c", offset=fh.tell(), shape=shape)
                out[name] = mm.view(np.ndarray)
                continue
            array = np.empty(shape, found)
            data_at = fh.tell()
            fh.seek(start)
            crc = zlib.crc32(fh.read(data_at - start))  # the zip CRC covers the .npy header too
            if size and fh.readinto(memoryview(array).cast("B")) != size:
                raise ValueError(f"{name}: truncated")
            if zlib.crc32(memoryview(array).cast("B"), crc) != info.CRC:
                raise ValueError(f"{name}: checksum mismatch")
            out[name] = array
    return out


# Filesystems whose files live on this machine's own disks (or in its memory).
_LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "zfs", "bcachefs", "tmpfs"}
    | {"overlay", "apfs", "hfs"}
)
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")


def on_local_filesystem(path: Path, mounts: Path = Path("/proc/self/mounts")) -> bool:
    """Whether ``path`` is on a local filesystem, by the deepest mount that holds it;
    False when unsure (no /proc, an unknown type), so the caller reads instead of maps."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, fields[2]
    return fstype in _LOCAL_FILESYSTEMS
