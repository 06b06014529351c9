"""Helpers for the data tests: CSV pairs written in folders, and load errors checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import load_dataset
from engine.errors import DataError


def write_csv(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_pair(dirs: tuple[Path, Path], stem: str, x: str, y: str) -> None:
    write_csv(dirs[0] / f"{stem}.csv", x)
    write_csv(dirs[1] / f"{stem}.csv", y)


def good(dirs: tuple[Path, Path], stems: tuple[str, ...] = ("a", "b")) -> None:
    for i, stem in enumerate(stems):
        write_pair(dirs, stem, f"f1,f2\n{i},1.5\n{i + 1},2.5\n", "t\n0.25\n0.5\n")


def load_error(dirs: tuple[Path, Path], *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(*dirs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []
