"""Atomic file writes: temp file in the same folder, flush, fsync, ``os.replace``.

Free of torch, so that the run folder code and the app can use it without importing torch.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP_MARK = ".tmp-"

# Fault-injection hook for the kill tests: pause inside the write of files whose name
# contains KFOLD_TEST_WRITE_DELAY_MATCH, so that a SIGKILL can land mid-write.
_DELAY_ENV = "KFOLD_TEST_WRITE_DELAY"
_DELAY_MATCH_ENV = "KFOLD_TEST_WRITE_DELAY_MATCH"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temp file in the same folder, fsync, then ``os.replace``.

    A kill at any instant leaves the old file or the new one, never a torn one; a
    leftover temp file is named ``.<name>.tmp-*`` and removed by ``remove_temp_files``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            _maybe_pause(path.name)
            flush_to_disk(fh, path)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None or str(exc.filename) == str(tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def flush_to_disk(fh: IO[bytes], path: Path) -> None:
    """Where a full disk or a failing device shows up (tests inject faults here)."""
    fh.flush()
    os.fsync(fh.fileno())


def describe_os_error(exc: OSError) -> str:
    """One line naming the fault, the file and what to do next."""
    where = f" while writing {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full{where}; free some space, then `kfold resume` the run"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free some space, then `kfold resume` the run"
    if exc.errno == errno.EIO:
        return f"I/O error (EIO){where}; check the disk, then `kfold resume` the run"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where} ({exc.strerror}); choose a writable --model_save_dir"
    return f"{exc.strerror or exc}{where}; fix it, then `kfold resume` the run"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def remove_temp_files(folder: Path) -> list[Path]:
    removed = []
    for p in Path(folder).glob(f".*{TMP_MARK}*"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse a directory fsync.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _maybe_pause(name: str) -> None:
    delay = os.environ.get(_DELAY_ENV)
    if delay and os.environ.get(_DELAY_MATCH_ENV, "") in name:
        time.sleep(float(delay))


def link_replace(src: Path, dst: Path) -> None:
    """Make ``dst`` another name of ``src``'s file, atomically: a hard link, so nothing is
    copied and ``dst`` holds a whole file at every instant. Raises FileNotFoundError if
    ``src`` is missing. Where hard links are not supported, ``dst`` is an atomic copy."""
    tmp = dst.with_name(f".{dst.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.link(src, tmp)
    except FileNotFoundError:
        raise
    except OSError:
        with open(src, "rb") as source:
            atomic_write(dst, lambda fh: shutil.copyfileobj(source, fh, 1 << 20))
        return
    try:
        os.replace(tmp, dst)
    finally:
        # rename(2) between two links of one file (dst already was src, e.g. after a kill
        # between the link and the write that follows it) does nothing: tmp stays behind.
        tmp.unlink(missing_ok=True)
