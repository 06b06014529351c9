"""Parse one sequence file (CSV with a header, or 2-D .npy) into float32, or explain why not.

Split from ``engine.data`` (folders, pairing, cache): this is the per-file part, where
every rejection names the file, the row, the column and the fix in one line.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from engine.errors import DataError

_F32_MAX = float(np.finfo(np.float32).max)


def read_table(path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """The file as float32 (steps, columns), plus its header names (None for .npy)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise data_error(
            f"{path}: cannot read the file ({os_reason(exc)}); check its permissions"
        ) from exc
    if path.suffix.lower() == ".npy":
        return _parse_npy(path, data), None
    return _parse_csv(path, data)


def _parse_csv(path: Path, data: bytes) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        # Floats only and no NA words: anything unusual fails here and is explained below.
        df = pd.read_csv(io.BytesIO(data), engine="c", dtype=np.float64, na_filter=False)
    except pd.errors.EmptyDataError:
        raise data_error(
            f"{path}: the file is empty; it needs a header row and data rows"
        ) from None
    except Exception as exc:
        _explain_csv(path, data, exc)
    # When every row has more fields than the header, pandas silently turns the leading
    # columns into an index; that data would be lost.
    if not isinstance(df.index, pd.RangeIndex):
        _explain_csv(path, data, None)
    names = tuple(str(c).strip() for c in df.columns)
    if len(df) == 0:
        raise data_error(f"{path}: has a header but no data rows; add data or remove the file")
    # Numeric names like 0.52,-1.3 mean the header is missing and a data row was eaten.
    if all(cell_problem(n) is None for n in names) and not all(n.isdigit() for n in names):
        raise data_error(f"{path}: the first row{preview(names)} looks like data; add a header row")
    with np.errstate(over="ignore"):  # float32 overflow becomes inf, reported below
        arr = np.asarray(df.to_numpy(), dtype=np.float32, order="C")
    if not np.isfinite(arr).all():
        _explain_csv(path, data, None)
    return arr, names


def _explain_csv(path: Path, data: bytes, exc: Exception | None) -> NoReturn:
    """Re-read a file pandas rejected with the csv module, to name the exact bad cell."""
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        header: list[str] | None = None
        row_no = 0
        for row in reader:
            if len(row) <= 1 and not "".join(row).strip():
                continue  # pandas skips blank lines too, so the row numbers agree
            if header is None:
                header = [c.strip() for c in row]
                if len(header) == 1 and (sep := next((c for c in ";\t|" if c in row[0]), None)):
                    raise data_error(
                        f"{path}: separate values with commas, not {sep!r}; re-save as CSV"
                    )
                continue
            row_no += 1
            where = f"data row {row_no} (line {reader.line_num})"
            if len(row) != len(header):
                raise data_error(
                    f"{path}: {where} has {len(row)} fields but the header has {len(header)}; "
                    "every row needs one value per column"
                )
            for name, cell in zip(header, row, strict=True):
                if problem := cell_problem(cell):
                    raise data_error(
                        f"{path}: {where}, column {name!r}: {problem}; use numbers only"
                    )
    except UnicodeDecodeError as err:
        byte = f"byte 0x{data[err.start]:02x} at offset {err.start}"
        raise data_error(f"{path}: not UTF-8 text ({byte}); save it as UTF-8 CSV") from exc
    except csv.Error as err:
        raise data_error(f"{path}: not a valid CSV file ({err}); check the file") from exc
    reason = one_line(str(exc)) if exc is not None else "unknown problem"
    raise data_error(f"{path}: cannot read it as a numeric CSV ({reason}); check the file") from exc


def cell_problem(cell: str) -> str | None:
    s = cell.strip()
    if not s:
        return "empty cell"
    try:
        if "_" in s:  # Python accepts 1_000, pandas does not
            raise ValueError
        value = float(s)
    except ValueError:
        return f"non-numeric value {clip(s)!r}"
    if math.isnan(value):
        return "NaN value"
    if math.isinf(value):
        return f"infinite value {s!r}"
    return f"value {s} is too large for float32" if abs(value) > _F32_MAX else None


def _parse_npy(path: Path, data: bytes) -> np.ndarray:
    if not data.startswith(b"\x93NUMPY"):
        raise data_error(f"{path}: not a .npy file (no NumPy header); save it with numpy.save")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        reason = one_line(str(exc))
        raise data_error(f"{path}: cannot load the array ({reason}); save plain numbers") from exc
    if arr.ndim != 2:
        raise data_error(
            f"{path}: is a {arr.ndim}-D array of shape {arr.shape}, expected 2-D "
            "(steps x columns); for one column use arr.reshape(-1, 1)"
        )
    if arr.dtype.kind not in "iuf":
        raise data_error(
            f"{path}: holds {arr.dtype} values, not numbers; save a float or int array"
        )
    if 0 in arr.shape:
        raise data_error(f"{path}: is empty (shape {arr.shape}); add data or remove the file")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        problem = cell_problem(str(float(arr[r, c])))
        raise data_error(f"{path}: row {r + 1}, column {c + 1}: {problem}; use finite numbers only")
    return out


def data_error(message: str) -> DataError:
    # Shown as exactly one line, even when a file name contains a line break.
    return DataError(message.replace("\r", "\\r").replace("\n", "\\n"))


def os_reason(exc: OSError) -> str:
    return (exc.strerror or one_line(str(exc)) or type(exc).__name__).lower()


def one_line(text: str) -> str:
    return clip(" ".join(text.split()), 160)


def clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview(names: Sequence[str] | None, limit: int = 6) -> str:
    if not names:
        return ""
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return " (" + ", ".join(clip(n, 20) for n in names[:limit]) + more + ")"
