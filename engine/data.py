"""Load paired input/label sequence files into memory, with a validated on-disk cache.

One file per sequence; ``inputs/abc.csv`` pairs with ``labels/abc.csv`` by stem. Every
problem with the user's files becomes a one-line :class:`DataError` naming the file, the
problem and the fix, because the CLI and the app show it verbatim instead of a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from engine.npz import on_local_filesystem, read_npz, write_npz
from engine.tables import data_error, os_reason, preview, read_table

_SUFFIXES = (".csv", ".npy")
# Bump when the cache layout or the parsing rules change, so old caches are never trusted.
_CACHE_VERSION = 1
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)  # == on arrays is ambiguous; identity is what callers need
class Dataset:
    """Sequences in stem order; every array is float32, C-contiguous, shape (steps, columns).

    ``fingerprint`` is a sha256 over the stems, shapes and array bytes (not the column
    names): it changes when any value changes and is the same however the data was loaded.
    """

    stems: tuple[str, ...]
    inputs: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    input_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    fingerprint: str

    @property
    def n_features(self) -> int:
        return len(self.input_columns)

    @property
    def n_targets(self) -> int:
        return len(self.label_columns)

    @property
    def lengths(self) -> np.ndarray:
        # A fresh array each call, so a caller that modifies it cannot corrupt the dataset.
        return np.array([len(x) for x in self.inputs], dtype=np.int64)

    def subset(self, stems: Sequence[str]) -> Dataset:
        """The named sequences in the order given; the arrays are shared, not copied."""
        if isinstance(stems, str):
            raise TypeError("subset() takes a sequence of stems, not one string")
        index = {stem: i for i, stem in enumerate(self.stems)}
        for stem in stems:
            if stem not in index:
                raise data_error(
                    f"sequence {stem!r} is not in the dataset ({len(self.stems)} sequences); "
                    "the data folders changed since the split was made, so make a new split"
                )
        if len(set(stems)) != len(stems):
            twice = next(s for s, n in Counter(stems).items() if n > 1)
            raise data_error(f"sequence {twice!r} is listed twice; list each sequence once")
        picked = [index[stem] for stem in stems]
        new = tuple(self.stems[i] for i in picked)
        xs, ys = tuple(self.inputs[i] for i in picked), tuple(self.labels[i] for i in picked)
        cols = (self.input_columns, self.label_columns)
        return Dataset(new, xs, ys, *cols, _fingerprint(new, xs, ys))

    def __repr__(self) -> str:  # the generated one would print every array
        return (
            f"Dataset({len(self.stems)} sequences, {self.n_features} features, "
            f"{self.n_targets} targets, fingerprint={self.fingerprint[:12]})"
        )


def cache_dir() -> Path:
    """$KFOLD_CACHE_DIR if set, else $XDG_CACHE_HOME/kfold-tui or ~/.cache/kfold-tui."""
    if os.environ.get("KFOLD_CACHE_DIR"):
        return Path(os.environ["KFOLD_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "kfold-tui"


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """Plain-JSON facts about the dataset, for run.json and the app."""
    lengths = ds.lengths if ds.stems else np.zeros(1, dtype=np.int64)
    return {
        "sequences": len(ds.stems),
        "input_columns": list(ds.input_columns),
        "label_columns": list(ds.label_columns),
        "n_features": ds.n_features,
        "n_targets": ds.n_targets,
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()),
    }


def load_dataset(
    input_dir: str | Path, label_dir: str | Path, *, use_cache: bool = True
) -> Dataset:
    """Read and validate every pair of files; raises DataError for the first problem."""
    in_dir, lab_dir = Path(input_dir), Path(label_dir)
    cache_path = _cache_path(in_dir, lab_dir) if use_cache else None
    # Reading and rehashing the cache is file I/O and hashing, which release the GIL, so it
    # runs alongside the listing below (a stat per file); its result is used only if the
    # listing then matches the cache's key. On 10,000 sequences this is a third of a
    # cached load.
    cached = _CacheRead(cache_path) if cache_path is not None and cache_path.exists() else None
    in_files, lab_files = _list_folder(in_dir, "input"), _list_folder(lab_dir, "label")
    if os.path.realpath(in_dir) == os.path.realpath(lab_dir):  # every file would be its own label
        raise data_error(
            f"{in_dir} is both the input and the label folder; pass two different folders"
        )
    stems = _pair(in_dir, in_files, lab_dir, lab_files)
    # Stat before reading: a file edited mid-load then has a newer mtime than the key
    # records, so the next load re-parses it instead of trusting a cache of the old bytes.
    key = {"version": _CACHE_VERSION, "inputs": _stat_key(in_files), "labels": _stat_key(lab_files)}
    if cached is not None and (ds := cached.matching(key, stems)) is not None:
        return ds
    del cached
    ds = _parse_all(stems, in_files, lab_files)
    if cache_path is not None:
        _write_cache(cache_path, key, ds)
    return ds


# --- listing and pairing -------------------------------------------------------------------


class _File(NamedTuple):
    name: str
    folder: Path
    size: int
    mtime_ns: int

    @property
    def path(self) -> Path:
        # Made on use: building a Path per file costs more than the listing of a cached load.
        return self.folder / self.name


def _list_folder(folder: Path, kind: str) -> dict[str, _File]:
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise data_error(
            f"{kind} folder {folder} {problem}; pass the folder that holds the {kind} files"
        )
    found: dict[str, _File] = {}
    ignored: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            # Dot files (.DS_Store) and Office lock files (~$a.csv) are never user data.
            if name.startswith((".", "~$")):
                continue
            # rpartition, not splitext: the same answer for names that get here, and this
            # loop runs once per file on every load, cached or not.
            stem, dot, ext = name.rpartition(".")
            if not dot or "." + ext.lower() not in _SUFFIXES or not entry.is_file():
                ignored.append(name)
                continue
            if stem in found:
                raise data_error(
                    f"{found[stem].path} and {folder / name} are both sequence "
                    f"{stem!r}; keep only one of the two files"
                )
            st = entry.stat()
            found[stem] = _File(name, folder, st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise data_error(f"{kind} folder {folder}: cannot list it ({os_reason(exc)})") from exc
    if not found:
        hint = f" (only other files, e.g. {ignored[0]!r})" if ignored else ""
        raise data_error(
            f"{kind} folder {folder} has no .csv or .npy files{hint}; add one per sequence"
        )
    return found


def _pair(
    in_dir: Path, in_files: dict[str, _File], lab_dir: Path, lab_files: dict[str, _File]
) -> list[str]:
    for stem in sorted(in_files.keys() ^ lab_files.keys()):
        if stem in in_files:
            has, want, f, other = "input", "label", in_files[stem], lab_dir
        else:
            has, want, f, other = "label", "input", lab_files[stem], in_dir
        raise data_error(
            f"{has} {f.path} has no {want} file: expected {other / (stem + '.csv')} or "
            f"{other / (stem + '.npy')}; add it or remove the {has}"
        )
    return sorted(in_files)


def _stat_key(files: dict[str, _File]) -> list[list[Any]]:
    return [[f.name, f.size, f.mtime_ns] for f in sorted(files.values())]


# --- parsing -------------------------------------------------------------------------------


class _Columns:
    """The first file of a kind sets the column count; the first CSV sets the names."""

    def __init__(self, kind: str) -> None:
        self.kind, self.count, self.count_from = kind, -1, Path()
        self.names: tuple[str, ...] | None = None
        self.names_from = Path()

    def check(self, path: Path, count: int, names: tuple[str, ...] | None) -> None:
        if self.count < 0:
            self.count_from, self.count = path, count
        elif count != self.count:
            raise data_error(
                f"{path}: has {count} columns{preview(names)} but {self.count_from} has "
                f"{self.count}{preview(self.names)}; all {self.kind} files need the same columns"
            )
        if names is None:  # .npy files carry no names, so only their count can be checked
            return
        if self.names is None:
            self.names_from, self.names = path, names
        elif names != self.names:
            i = next(i for i, (a, b) in enumerate(zip(names, self.names, strict=True)) if a != b)
            raise data_error(
                f"{path}: column {i + 1} is named {names[i]!r} but {self.names_from} names it "
                f"{self.names[i]!r}; all {self.kind} files need the same header"
            )

    def final(self, prefix: str) -> tuple[str, ...]:
        return self.names or tuple(f"{prefix}{j}" for j in range(self.count))


_Blocks = tuple[np.ndarray, np.ndarray, np.ndarray]  # all inputs, all labels, lengths


def _parse_all(
    stems: list[str], in_files: dict[str, _File], lab_files: dict[str, _File]
) -> Dataset:
    in_cols, lab_cols = _Columns("input"), _Columns("label")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for stem in stems:
        fi, fl = in_files[stem], lab_files[stem]
        x, names = read_table(fi.path)
        in_cols.check(fi.path, x.shape[1], names)
        y, names = read_table(fl.path)
        lab_cols.check(fl.path, y.shape[1], names)
        if len(x) != len(y):
            raise data_error(
                f"{fl.path}: has {len(y)} rows but its input {fi.path} has {len(x)}; "
                "every input row needs exactly one label row"
            )
        xs.append(x)
        ys.append(y)
    # The per-file arrays are kept as they are: joining them into one block would hold
    # the data twice at the peak of the load. The cache is written from them part by part.
    cols = (in_cols.final("x"), lab_cols.final("y"))
    return Dataset(tuple(stems), tuple(xs), tuple(ys), *cols, _fingerprint(stems, xs, ys))


def _assemble(stems: Sequence[str], blocks: _Blocks, *columns: tuple[str, ...]) -> Dataset:
    """Views into the two cached blocks (no per-sequence copies)."""
    x_all, y_all, lengths = blocks
    ends = np.cumsum(lengths).tolist()
    spans = list(zip([0, *ends[:-1]], ends, strict=True))
    # Plain slices: np.split costs several times more per sequence, and a cached load is
    # mostly per-sequence overhead.
    xs, ys = tuple(x_all[a:b] for a, b in spans), tuple(y_all[a:b] for a, b in spans)
    return Dataset(tuple(stems), xs, ys, *columns, _fingerprint(stems, xs, ys))


def _fingerprint(stems: Sequence[str], xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256(b"kfold-tui dataset v1\0")
    for stem, x, y in zip(stems, xs, ys, strict=True):
        h.update(stem.encode("utf-8", "surrogateescape") + b"\0")
        shape = (*x.shape, *y.shape)
        h.update(struct.pack(f"<{len(shape)}q", *shape))
        h.update(_le_f4(x))
        h.update(_le_f4(y))
    return h.hexdigest()


_LE_F4 = np.dtype("<f4")


def _le_f4(a: np.ndarray) -> np.ndarray:
    """The array as little-endian float32 bytes, so equal values hash equally on any
    machine; without a copy when it already is (the usual case)."""
    if a.dtype == _LE_F4 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=_LE_F4)


# --- cache ---------------------------------------------------------------------------------


def _cache_path(in_dir: Path, lab_dir: Path) -> Path | None:
    try:
        ident = f"{os.path.realpath(in_dir)}\0{os.path.realpath(lab_dir)}"
        ident_bytes = ident.encode("utf-8", "surrogateescape")
        return cache_dir() / f"{hashlib.sha256(ident_bytes).hexdigest()}.npz"
    except RuntimeError:  # no home folder to put the cache in: load without one
        return None


class _CacheRead:
    """Reads and verifies the cache file on a thread; ``matching`` waits for it."""

    def __init__(self, path: Path) -> None:
        self._found: tuple[dict[str, Any], Dataset] | None = None
        self._thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self._thread.start()

    def _read(self, path: Path) -> None:
        with contextlib.suppress(Exception):  # a cache that cannot be used is parsed again
            self._found = _read_cache(path)

    def matching(self, key: dict[str, Any], stems: list[str]) -> Dataset | None:
        """The cached dataset if it was made from exactly these files, else None."""
        self._thread.join()
        # Let go of a stale copy now, not after the parse that replaces it: the peak
        # memory of a load must stay one copy of the data.
        found, self._found = self._found, None
        if found is None:
            return None
        meta, ds = found
        return ds if meta["key"] == key and meta["stems"] == stems else None


def _read_cache(path: Path) -> tuple[dict[str, Any], Dataset] | None:
    """The cache's metadata and dataset if its bytes are intact, else None."""
    try:
        meta_bytes = read_npz(path, {"meta": np.uint8})["meta"]  # CRC-checked
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
        key, stems, fingerprint = meta["key"], list(meta["stems"]), meta["fingerprint"]
        members = {"inputs": np.float32, "labels": np.float32, "lengths": np.int64}
        # Mapped, not read, where that is safe (engine.npz): the data are the OS's cached
        # pages of the file, shared by every process that loads it (parallel folds, eval),
        # and nothing is copied. A cache file is only ever replaced, never rewritten.
        arrays = read_npz(path, members, mapped=on_local_filesystem(path))
        blocks: _Blocks = (arrays["inputs"], arrays["labels"], arrays["lengths"])
        x_all, y_all, lengths = blocks
        cols = (tuple(meta["input_columns"]), tuple(meta["label_columns"]))
        steps = int(lengths.sum())
        shapes = (x_all.shape, y_all.shape, lengths.shape)
        if shapes != ((steps, len(cols[0])), (steps, len(cols[1])), (len(stems),)):
            return None
        if not (lengths > 0).all():
            return None
        ds = _assemble(stems, blocks, *cols)
        # Rehashing doubles as an integrity check of the cached bytes.
        if ds.fingerprint != fingerprint:
            return None
    except Exception:  # missing, truncated or foreign: parse again, then overwrite it
        return None
    return {"key": key, "stems": stems}, ds


def _write_cache(path: Path, key: dict[str, Any], ds: Dataset) -> None:
    """Atomically replace the cache file; any failure just leaves the cache out."""
    meta = {"key": key, "stems": list(ds.stems), "fingerprint": ds.fingerprint}
    meta.update(input_columns=list(ds.input_columns), label_columns=list(ds.label_columns))
    meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp files of a writer killed mid-write would each hold a full copy of the data.
        for old in path.parent.glob(f".{path.stem}.*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > 3600:
                    old.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            # The layout of np.savez (what _read_cache loads), written without ever
            # joining the per-sequence arrays into one block in memory.
            members = {"inputs": ds.inputs, "labels": ds.labels}
            write_npz(fh, {**members, "lengths": [ds.lengths], "meta": [meta_bytes]})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except Exception:
        pass  # the cache is only a speed-up; a read-only or full disk must not stop a load
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
