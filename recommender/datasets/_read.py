"""Reading the files of published data sets: whole columns at once, errors located to a line.

:func:`read_table` reads a delimited file into string columns with pandas' C
parser (tens of millions of lines in seconds), keeps each row's line number in
the index, and turns a parser complaint into one :class:`DataError` line naming
the file and the line. :func:`numbers` and :func:`required` then check a column
in one vectorised pass and, when something is wrong, name the first bad line and
column and say what was expected. Nothing here loops over rows in Python.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.errors import DataError

__all__ = ["BAD_FIELD", "MISSING_FILE", "MOVIELENS_AGE_BANDS", "age_bands", "layout_dir", "numbers", "read_bytes", "read_table", "required", "seconds_to_times"]

BAD_FIELD = "{path} line {line}, column {column}: expected {expected}, found {value!r}"
"""A field that is not what the layout says (tests assert on it)."""
MISSING_FILE = "{path}: no such file; expected {what}"
BAD_LAYOUT = "{path} line {line}: expected {expected} {sep}-separated fields ({names}), found {found}"
EMPTY = "{path}: the file is empty; expected {what}"
UNDECODABLE = "{path} line {line}: byte 0x{byte:02x} cannot be decoded as {encoding}; expected {encoding} text"

_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}
_PANDAS_LINE = re.compile(r"line (\d+)")


MOVIELENS_AGE_BANDS = ("under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
"""MovieLens-1M's age groups (its ``users.dat`` codes 1, 18, 25, 35, 45, 50, 56), used for 100K's raw ages too."""
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])


def age_bands(ages: np.ndarray) -> pd.Categorical:
    """Each age's MovieLens band (:data:`MOVIELENS_AGE_BANDS`), so fairness rules can group people by ``age_band``.

    A raw age and a MovieLens-1M age code fall in the same band (code 25 is 25-34).
    """
    codes = np.searchsorted(_AGE_EDGES, np.asarray(ages, dtype=np.float64), side="right")
    return pd.Categorical.from_codes(codes, categories=MOVIELENS_AGE_BANDS)


def layout_dir(path: Path, main: str, layout: str) -> Path:
    """The directory of a layout read as a folder: ``path`` itself, or the folder of ``path`` when it is ``main``.

    A user points at the folder or at its main file; any other file is one line
    saying which folder the layout wants, rather than a path joined onto a file.
    """
    if path.is_file():
        if path.name == main:
            return path.parent
        raise DataError(f"{path}: a file; the {layout} layout is read from the folder holding {main} (give that folder, or {main} itself)")
    return path


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``, refusing a missing or empty file with one line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(MISSING_FILE.format(path=path, what=what)) from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err
    if not raw.strip():
        raise DataError(EMPTY.format(path=path, what=what))
    return raw


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(UNDECODABLE.format(path=path, line=line, byte=raw[err.start], encoding=encoding)) from err


def read_table(
    path: Path,
    names: tuple[str, ...],
    *,
    sep: str,
    what: str,
    encoding: str = "utf-8",
    header: bool = False,
    quoted: bool = False,
    min_fields: int | None = None,
) -> pd.DataFrame:
    """Read a delimited file into string columns ``names``, indexed by line number.

    ``header`` skips the first line; ``quoted`` honours double quotes (Book-Crossing,
    CSV titles with commas). A line with more fields than ``names``, or fewer than
    ``min_fields`` (all of them by default), is refused with its line number.
    """
    text = _decode(path, read_bytes(path, what), encoding)
    if sep == "::":  # the C parser takes one character: '::' never occurs inside a MovieLens field
        text, sep = text.replace("::", "\x1f"), "\x1f"
    sep_name = _SEP_NAMES.get(sep if sep != "\x1f" else "::", repr(sep))
    layout = dict(sep=sep_name, expected=len(names), names=" ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, names=list(names), dtype=str, keep_default_na=False,
            skiprows=1 if header else 0, skip_blank_lines=False, engine="c",
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE, escapechar="\\" if quoted else None,
        )  # fmt: skip
    except pd.errors.ParserError as err:
        match = _PANDAS_LINE.search(str(err))
        line = int(match.group(1)) + (1 if header else 0) if match else 0
        found = re.search(r"saw (\d+)", str(err))
        raise DataError(
            BAD_LAYOUT.format(path=path, line=line, found=found.group(1) if found else "another count", **layout)
        ) from err
    frame.index = pd.RangeIndex(1 + int(header), 1 + int(header) + len(frame), name="line")
    blank = frame.eq("").all(axis=1)
    frame = frame[~blank]
    needed = len(names) if min_fields is None else min_fields
    if not quoted and needed > 1 and len(frame):  # pandas pads a short line with empty fields: count them
        fields = pd.Series(text.splitlines()[int(header) :], dtype=object).str.count(re.escape(sep)) + 1
        short = fields.lt(needed) & pd.Series(text.splitlines()[int(header) :], dtype=object).str.strip().ne("")
        if short.any():
            pos = int(short.to_numpy().argmax())
            raise DataError(BAD_LAYOUT.format(path=path, line=pos + 1 + int(header), found=int(fields.iloc[pos]), **layout))
    return frame


def required(path: Path, frame: pd.DataFrame, column: str, expected: str) -> pd.Series:
    """``frame[column]`` stripped, refusing the first empty value with its line."""
    values = frame[column].str.strip()
    empty = values.eq("")
    if empty.any():
        line = int(empty.idxmax())
        raise DataError(BAD_FIELD.format(path=path, line=line, column=column, expected=expected, value=""))
    return values


def numbers(
    path: Path,
    frame: pd.DataFrame,
    column: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    optional: bool = False,
    missing: tuple[str, ...] = (),
) -> np.ndarray:
    """A column as float64 (NaN where empty and ``optional``), refusing the first value that is not a number in range."""
    raw = frame[column].str.strip()
    absent = raw.eq("") | raw.isin(missing)
    values = pd.to_numeric(raw.where(~absent, None), errors="coerce")
    bad = values.isna() & ~(absent & optional)
    if integer:
        bad |= values.notna() & (values % 1 != 0)
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        line = int(bad.idxmax())
        kind = "an integer" if integer else "a number"
        bounds = f" in {low:g}..{high:g}" if low is not None and high is not None else ""
        raise DataError(BAD_FIELD.format(path=path, line=line, column=column, expected=kind + bounds, value=raw.loc[line]))
    return values.to_numpy(dtype=np.float64)


def seconds_to_times(values: np.ndarray, unit: str = "s") -> pd.Series:
    """Unix times (seconds or milliseconds) as UTC timestamps."""
    return pd.Series(pd.to_datetime(values.astype(np.int64), unit=unit, utc=True))
