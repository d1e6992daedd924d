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

__all__ = [
    "BAD_FIELD", "BAD_HEADER", "MISSING_FILE", "Shown", "MOVIELENS_AGE_BANDS", "REPEATED_ID", "age_bands", "as_utf8_if_resaved", "layout_dir", "lines",
    "numbers", "read_bytes", "read_table", "required", "seconds_to_times", "unique_ids",
]  # fmt: skip

BAD_FIELD = "{path} line {line}, column {column}: expected {expected}, found {value!r}"
"""A field that is not what the layout says (tests assert on it)."""
MISSING_FILE = "{path}: no such file; expected {what}"
BAD_LAYOUT = "{path} line {line}: expected {expected} {sep}-separated fields ({names}), found {found}"
EMPTY = "{path}: the file is empty; expected {what}"
UNDECODABLE = "{path} line {line}: byte 0x{byte:02x} cannot be decoded as {encoding}; expected {encoding} text"
BAD_HEADER = "{path} line 1: expected the header {expected!r}, found {found!r}; {why}"
"""A header line that is not the layout's (tests assert on it): a file without it would lose its first row."""
REPEATED_ID = "{path} line {line}: {what} {value!r} appears again (first on line {first}); each {what} is given once"
"""A user or item table naming one id on two lines (tests assert on it): which line's attributes hold would be a guess."""

_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}
_PANDAS_LINE = re.compile(r"line (\d+)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SHOWN = 80


def lines(text: str) -> list[str]:
    """``text`` cut at its line breaks as the CSV parser and the error messages count them (``\\n``, ``\\r\\n``, ``\\r``).

    Not :meth:`str.splitlines`, which also breaks at form feeds, ``\\x1c``-``\\x1e`` and
    U+0085 (byte 0x85 of a latin-1 file, the ellipsis of Windows-1252 text): a title holding
    one would be cut in two, a valid line refused and every later line misnumbered.
    """
    return _LINE_BREAK.split(text)


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"


class Shown(str):
    """A cell as a message shows it: its ``repr`` is cut to its first characters and says how long it was.

    A cell may be megabytes long (a missing line break, a binary file read as text);
    the one-line error that names it must stay one short line.

    >>> "found {value!r}".format(value=Shown("x" * 100))
    "found 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (100 characters)"
    """

    length: int

    def __new__(cls, value: object) -> Shown:
        text = str(value)
        shown = super().__new__(cls, text[:_SHOWN])
        shown.length = len(text)
        return shown

    def __repr__(self) -> str:
        quoted = str.__repr__(self)
        return quoted if self.length <= _SHOWN else f"{quoted}... ({self.length:,} characters)"


def _header_names(line: str, sep: str) -> list[str]:
    """The names of a header line, compared loosely: case, quotes, spaces, a BOM and punctuation aside."""
    return [re.sub(r"[^0-9a-z]", "", name.lower()) for name in line.lstrip("\ufeff").split(sep)]


def unique_ids(path: Path, ids: pd.Series, what: str) -> pd.Series:
    """``ids`` (indexed by line number), refusing an id given on two lines with both lines."""
    again = ids.duplicated()
    if again.any():
        line = int(again.idxmax())
        value = ids.loc[line]
        first = int(ids.index[ids.eq(value).to_numpy()][0])
        raise DataError(REPEATED_ID.format(path=path, line=line, what=what, value=Shown(value), first=first))
    return ids


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


def as_utf8_if_resaved(raw: bytes, encoding: str) -> str:
    """``encoding`` as given, or ``utf-8`` for a latin-1 file re-saved as UTF-8 (as many copies of the published data
    sets are): latin-1 decodes any bytes, so such a copy would read without an error and every accented title come
    back garbled (``CafÃ©``). Bytes that decode as UTF-8 and hold a non-ASCII character are UTF-8: latin-1 text
    would need ``Ã`` followed by another accented letter, in every such place, to look so."""
    if encoding.lower().replace("_", "-") in ("latin-1", "latin1", "iso-8859-1") and not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return encoding
        return "utf-8"
    return encoding


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    encoding = as_utf8_if_resaved(raw, encoding)
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
    header: bool | str = False,
    quoted: bool = False,
    min_fields: int | None = None,
) -> pd.DataFrame:
    """Read a delimited file into string columns ``names``, indexed by line number.

    ``header`` skips the first line; given as the layout's header text, the first
    line must name the same columns in the same order (case, quotes and
    punctuation aside), so that a file without its header does not silently lose
    its first row, nor a file whose columns come in another order read one column
    as another. ``quoted`` honours double quotes (Book-Crossing, CSV titles with
    commas). A line with more fields than ``names``, or fewer than ``min_fields``
    (all of them by default), is refused with its line number.
    """
    text = _decode(path, read_bytes(path, what), encoding)
    if isinstance(header, str):
        first = lines(text)[0]
        found, wanted = _header_names(first, sep), _header_names(header, sep)
        if found != wanted:
            other = next((d for d in _SEP_NAMES if d not in (sep, "::") and _header_names(first, d) == wanted), None)
            if other is not None:
                why = f"its fields are separated by {_SEP_NAMES[other]}, the layout's by {_SEP_NAMES.get(sep, repr(sep))}"
            elif set(found) & set(wanted):
                why = "the columns differ from the layout's (another order, or a column missing or added)"
            else:
                why = "the file starts without its header line (its first row would be lost)"
            raise DataError(BAD_HEADER.format(path=path, expected=header, found=_shown(first.rstrip()), why=why))
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
    frame.index = pd.RangeIndex(1 + int(bool(header)), 1 + int(bool(header)) + len(frame), name="line")
    blank = frame.eq("").all(axis=1)
    frame = frame[~blank]
    needed = len(names) if min_fields is None else min_fields
    if not quoted and needed > 1 and len(frame):  # pandas pads a short line with empty fields: count them
        rows = pd.Series(lines(text)[int(bool(header)) :], dtype=object)
        fields = rows.str.count(re.escape(sep)) + 1
        short = fields.lt(needed) & rows.str.strip().ne("")
        if short.any():
            pos = int(short.to_numpy().argmax())
            raise DataError(BAD_LAYOUT.format(path=path, line=pos + 1 + int(bool(header)), found=int(fields.iloc[pos]), **layout))
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
        shown = (lambda x: f"{int(x):,}") if integer else (lambda x: f"{x:g}")  # a time's bound reads 9,223,372,036, not 9.22337e+09
        bounds = f" in {shown(low)}..{shown(high)}" if low is not None and high is not None else ""
        raise DataError(BAD_FIELD.format(path=path, line=line, column=column, expected=kind + bounds, value=Shown(raw.loc[line])))
    return values.to_numpy(dtype=np.float64)


def seconds_to_times(values: np.ndarray, unit: str = "s") -> pd.Series:
    """Unix times (seconds or milliseconds) as UTC timestamps."""
    return pd.Series(pd.to_datetime(values.astype(np.int64), unit=unit, utc=True))
