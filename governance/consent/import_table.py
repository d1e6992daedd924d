"""A consent export as a table: read from CSV, JSON Lines or Parquet, its columns mapped to consent fields.

:func:`read_consent_table` turns a file (or the bytes of one) into a
:class:`ConsentTable`: one string column per consent field, each row's place in
the file (the CSV or JSONL line, the Parquet row), and the file's sha256, which
anchors the import on the trail. Only the structure is checked here; a file
that cannot be read as a table, or lacks a mapped column, raises one
:class:`~recommender.errors.DataError` that says where, and nothing is
imported. Whether each row makes a valid record is :mod:`governance.consent.import_rows`'
question.

The mapping (:class:`ConsentImportMapping`) names the file's column for each
field; a field not mapped is read from the column of its own name (required
for subject, purpose, status and time; where the file has one for the
others), so a file whose header is ``subject,purpose,status,time`` needs no
mapping. It comes as
``field=column,...`` text (the CLI's ``--map``, as ``--items-map`` does for
item tables) or as a YAML file of ``field: column`` pairs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from decimal import Decimal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from governance.column_map import ColumnMap
from recommender.errors import DataError

__all__ = [
    "FORMATS",
    "ConsentImportMapping",
    "ConsentTable",
    "format_of",
    "nested_values",
    "read_consent_table",
]

FORMATS = ("csv", "jsonl", "parquet")
"""The file formats a consent export can come in."""
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

UNKNOWN_FORMAT = "{name}: cannot tell the format from the suffix {suffix!r}; name the file .csv, .jsonl or .parquet, or give --format"
MISSING_COLUMN = (
    "{name}: no column {column!r} for the field {field}; the file's columns: {columns}; "
    "map the field to one of them with --map {field}=COLUMN"
)
NOT_A_TABLE = "{name}: not a readable {kind} file ({detail})"
EMPTY_FILE = "{name}: the file is empty; expected a consent export with a header row (CSV) or one JSON object a line"
NOT_AN_OBJECT = "{name} line {line}: not a JSON object ({detail})"
NO_SUCH_FILE = "{name}: no such file; expected a consent export (.csv, .jsonl or .parquet)"
DUPLICATE_COLUMN = "{name} line {line}: the column {column!r} appears {count} times in the header; name each column once"
FLOAT_ID = (
    "the column {column!r} holds a floating-point number; write ids as text or integers "
    "(a float is not the id: 777 would read as 777.0, and digits past 2**53 are lost)"
)
NESTED_VALUE = "the column {column!r} holds a JSON {kind}; expected a string or a number"


class ConsentImportMapping(ColumnMap):
    """The file's column for each consent field (default: the column named like the field)."""

    subject: str = Field("subject", min_length=1, description="The subject's id as your systems know it (stored only as its pseudonym).")
    purpose: str = Field("purpose", min_length=1, description="The processing purpose; with a pack, one of its consent purposes.")
    status: str = Field("status", min_length=1, description="granted, denied, withdrawn, opted_out or objected.")
    time: str = Field("time", min_length=1, description="When the choice was made: ISO 8601 (UTC when no zone is given) or Unix seconds.")
    basis: str | None = Field(None, description="The lawful basis (default with a pack: the purpose's basis).")
    source: str | None = Field(None, description="api, banner, tcf, gpc or import (default: import).")
    jurisdiction: str | None = Field(None, description="Where the subject is, e.g. EU or US-CA.")
    banner_version: str | None = Field(None, description="Evidence of a banner record: the consent dialogue's version.")
    origin: str | None = Field(None, description="Evidence of an import record (default: the file's name and sha256).")
    tc_string: str | None = Field(None, description="Evidence of a tcf record: the IAB TCF v2.2 TC string.")
    vendor_id: str | None = Field(None, description="With tc_string: the IAB vendor id, where the pack sets none.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="The CSV field separator (a file named .tsv: a tab, unless given).")


@dataclass(frozen=True)
class ConsentTable:
    """A consent export read as strings: one column per mapped field, and where each row is in the file."""

    name: str
    """The file's name (or what the caller called the bytes)."""
    sha256: str
    format: Literal["csv", "jsonl", "parquet"]
    rows: pd.DataFrame
    """One string column per mapped field (empty cells are ``""``), in file order."""
    positions: np.ndarray
    """Each row's CSV/JSONL line (the header is line 1) or Parquet row (from 1)."""
    broken: tuple[tuple[int, str, str], ...] = ()
    """Lines that are no row (a CSV line with more values than the header names columns, a JSONL line that is no
    JSON object), as ``(line, field, reason)``: each refused in its turn, the rest of the file read."""

    @property
    def located_by(self) -> Literal["line", "row"]:
        """How :attr:`positions` count: file lines, or Parquet rows."""
        return "row" if self.format == "parquet" else "line"


def format_of(name: str, given: str | None = None) -> str:
    """The format ``given`` (``--format``), else the one the file's suffix names."""
    if given is not None:
        if given not in FORMATS:
            raise DataError(f"--format must be one of {', '.join(FORMATS)}; got {given!r}")
        return given
    suffix = Path(name).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(UNKNOWN_FORMAT.format(name=name, suffix=suffix or "(none)"))
    return _SUFFIXES[suffix]


def _strings(column: pd.Series) -> pd.Series:
    """A column as stripped strings, missing values as ``""``."""
    plain = column.astype(object)
    return plain.where(plain.notna(), "").astype(str).str.strip()


_LINE_END = re.compile(rb"\r\n|\n|\r")
_SEP_LINE = re.compile(rb'\s*"?sep=(.)"?[,;\t|]*\s*', re.IGNORECASE)
"""Excel's first line naming the separator (``sep=;``), as spreadsheets write it for their locale; some tools quote
it, or pad it to the width of the table with the separator itself."""


def _preamble(data: bytes) -> tuple[bytes, int, str | None]:
    """The file from its header on: the blank lines before the header, and an Excel ``sep=`` line, skipped; with
    how many lines were skipped (to count every line as it is in the file) and the separator the ``sep=`` line names."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    at, skipped, sep = start, 0, None
    while at < len(data):
        end = _LINE_END.search(data, at)
        line, after = (data[at:], len(data)) if end is None else (data[at : end.start()], end.end())
        if line.strip():
            named = _SEP_LINE.fullmatch(line) if sep is None else None
            if named is None:
                break
            sep = named.group(1).decode("utf-8", errors="replace")
        at, skipped = after, skipped + 1
    if not skipped:
        return data, 0, None
    return data[at:], skipped, sep


def _csv(name: str, data: bytes, mapping: ConsentImportMapping) -> tuple[pd.DataFrame, np.ndarray, tuple[tuple[int, str, str], ...]]:
    """The table, its rows' lines and its broken lines; blank lines and an Excel ``sep=`` line before the header are
    skipped (the separator it names is used unless the mapping gives one), every line still counted."""
    rest, skipped, sep = _preamble(data)
    if not skipped:
        return _csv_table(name, data, mapping.delimiter)
    if not rest.strip():
        raise DataError(EMPTY_FILE.format(name=name))
    delimiter = sep if sep is not None and "delimiter" not in mapping.model_fields_set else mapping.delimiter
    raw, positions, broken = _csv_table(name, rest, delimiter, first_line=1 + skipped)
    return raw, positions + skipped, tuple((line + skipped, fld, reason) for line, fld, reason in broken)


def _csv_table(
    name: str, data: bytes, delimiter: str, *, first_line: int = 1
) -> tuple[pd.DataFrame, np.ndarray, tuple[tuple[int, str, str], ...]]:
    header = _header(name, data, delimiter, line=first_line)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)  # more fields than the header: each line refused
            raw = pd.read_csv(
                io.BytesIO(data), sep=delimiter, dtype=str, keep_default_na=False, skip_blank_lines=False,
                encoding="utf-8", index_col=False, on_bad_lines="warn",
            )  # fmt: skip
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=str(err).strip())) from err
    skipped: dict[int, tuple[int, int]] = {}
    for warning in caught:
        message = str(warning.message)
        if _WIDER_FIRST_ROW in message and header:
            return _csv_by_records(name, data, delimiter, header)
        found = _SKIPPED.findall(message)
        if not found or not issubclass(warning.category, pd.errors.ParserWarning):
            raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=message.strip()))
        skipped.update((int(record), (int(expected), int(saw))) for record, expected, saw in found)
    if skipped:
        return _csv_with_skipped(name, data, delimiter, raw, skipped)
    # A quoted cell may span lines: each row starts after the newlines of the rows before it. A line ends at
    # "\r\n", "\n" or a lone "\r" (an export from an old Mac tool), as for the parser and the csv module.
    newline = r"\r\n?|\n" if b"\r" in data else "\n"
    newlines = np.zeros(len(raw), dtype=np.int64)
    for column in raw.columns:
        newlines += raw[column].str.count(newline).to_numpy(dtype=np.int64, na_value=0)
    first = 2 + sum(len(re.findall(newline, str(column))) for column in raw.columns)  # a header cell may span lines too
    positions = first + np.arange(len(raw), dtype=np.int64) + np.concatenate(([0], np.cumsum(newlines)[:-1])) if len(raw) else newlines
    return raw, positions, ()


_WIDER_FIRST_ROW = "Length of header or names does not match length of data"
"""pandas' warning when the first row holds more values than the header names: it then cuts every row as wide as
that one to the header's width, the values past it lost, rather than refusing the rows."""


def _csv_by_records(
    name: str, data: bytes, delimiter: str, header: list[str]
) -> tuple[pd.DataFrame, np.ndarray, tuple[tuple[int, str, str], ...]]:
    """The table read record by record by the csv module (the rare file whose first row is wider than its header):
    a record with more values than the header names is refused at its first line, as the parser's path refuses
    one further down; a shorter one is read with its missing values empty."""
    width = len(header)
    records: list[list[str]] = []
    positions: list[int] = []
    broken: list[tuple[int, str, str]] = []
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter)
        line = 0
        for number, record in enumerate(reader):
            start, line = line + 1, reader.line_num
            if number == 0:
                continue
            if len(record) > width:
                broken.append((start, "fields", f"{len(record)} values where the header names {width} columns; the line is not read"))
                continue
            records.append(record + [""] * (width - len(record)))
            positions.append(start)
    except (csv.Error, UnicodeDecodeError) as err:
        raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=str(err))) from err
    raw = pd.DataFrame(records, columns=pd.Index(header, dtype=object), dtype=object) if records else pd.DataFrame(columns=header, dtype=object)
    return raw, np.asarray(positions, dtype=np.int64), tuple(broken)


_SKIPPED = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
"""pandas' warning for a CSV record with more fields than the header (its records counted from 1, the header's)."""


def _csv_with_skipped(
    name: str, data: bytes, delimiter: str, raw: pd.DataFrame, skipped: dict[int, tuple[int, int]]
) -> tuple[pd.DataFrame, np.ndarray, tuple[tuple[int, str, str], ...]]:
    """The rows' lines, and the records pandas skipped as broken lines, where records and lines differ (a quoted cell
    spans lines): each record's first line, read by the csv module. A file the two read differently is no table."""
    starts: list[int] = []
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter)
        line = 0
        for _record in reader:
            starts.append(line + 1)
            line = reader.line_num
    except (csv.Error, UnicodeDecodeError) as err:
        raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=str(err))) from err
    if len(starts) != 1 + len(raw) + len(skipped) or max(skipped) > len(starts):
        detail = "; ".join(f"line {record}: expected {expected} fields, saw {saw}" for record, (expected, saw) in sorted(skipped.items()))
        raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=detail))
    kept = [start for record, start in enumerate(starts[1:], start=2) if record not in skipped]
    broken = tuple(
        (starts[record - 1], "fields", f"{saw} values where the header names {expected} columns; the line is not read")
        for record, (expected, saw) in sorted(skipped.items())
    )
    return raw, np.asarray(kept, dtype=np.int64), broken


def _header(name: str, data: bytes, delimiter: str, *, line: int = 1) -> list[str]:
    """The header's column names (an unnamed one as pandas names it, ``Unnamed: 4``); a header naming a column twice
    is refused: pandas would rename the second (``subject.1``) and read only the first."""
    text = io.StringIO(data.decode("utf-8-sig", errors="replace"), newline="")  # lines end as the parser ends them
    try:
        first = next(csv.reader(text, delimiter=delimiter), [])
    except csv.Error as err:
        raise DataError(NOT_A_TABLE.format(name=name, kind="CSV", detail=f"line {line}: {err}")) from err
    counts: dict[str, int] = {}
    for column in first:
        counts[column.strip()] = counts.get(column.strip(), 0) + 1
    for column, count in counts.items():
        if count > 1 and column:
            raise DataError(DUPLICATE_COLUMN.format(name=name, line=line, column=column, count=count))
    return [column if column else f"Unnamed: {number}" for number, column in enumerate(first)]


def nested_values(raw: pd.DataFrame, wanted: dict[str, str], positions: np.ndarray) -> tuple[np.ndarray, tuple[tuple[int, str, str], ...]]:
    """The rows whose mapped cell is no value, each refused at its own line or row, the rest of the file read: a JSON
    object or array (JSON Lines; a Parquet list, map or struct), which read as text would become its Python repr;
    and a subject given as a floating-point number (a Parquet double column, a JSON ``777.0``), a boolean or a
    decimal with a scale: its text is not the id. Returns which rows are refused, and ``(position, field, reason)``
    for each (one fault a row, the first field found), never the value."""
    refused = np.zeros(len(raw), dtype=bool)
    found: list[tuple[int, str, str]] = []
    for fld, column in wanted.items():
        if column not in raw.columns or raw[column].dtype != object:
            continue
        # A Parquet list column reads as numpy arrays, a map column as lists of pairs, a struct as dicts.
        nested = raw[column].map(lambda v: isinstance(v, dict | list | tuple | np.ndarray)).to_numpy(dtype=bool) & ~refused
        for at in np.flatnonzero(nested):
            kind = "object" if isinstance(raw[column].iloc[at], dict) else "array"
            found.append((int(positions[at]), fld, NESTED_VALUE.format(column=column, kind=kind)))
        refused |= nested
    column = wanted.get("subject")
    if column is not None and column in raw.columns:
        values = raw[column]
        kinds: pd.Series | None = None
        if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            kinds = pd.Series(np.where(values.notna(), "float" if pd.api.types.is_float_dtype(values.dtype) else "boolean", ""))
        elif values.dtype == object:  # text columns (CSV) hold text only
            kinds = values.map(lambda v: "" if isinstance(v, dict | list | tuple | np.ndarray) else _not_an_id(v))
        if kinds is not None:
            wrong = (kinds != "").to_numpy(dtype=bool) & ~refused
            for at in np.flatnonzero(wrong):
                kind = kinds.iloc[at]
                reason = FLOAT_ID.format(column=column) if kind == "float" else NOT_AN_ID.format(column=column, what=_NOT_AN_ID[kind])
                found.append((int(positions[at]), "subject", reason))
            refused |= wrong
    return refused, tuple(sorted(found))


NOT_AN_ID = "the column {column!r} holds {what}; write ids as text or integers"
_NOT_AN_ID = {
    "boolean": "a boolean (true would read as the id 'True', one person for every such row)",
    "decimal": "a decimal with a scale or an exponent (777.00 would read as the id '777.00', not 777)",
}


def _not_an_id(value: object) -> str:
    """Why a subject value is no id as its text ("" when it is one): a float (NaN is a missing value, a null in a
    Parquet string column: that row has no subject), a boolean, a decimal whose text is not the integer's."""
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, float | np.floating):
        return "float" if value == value else ""
    if isinstance(value, Decimal) and value.as_tuple().exponent != 0:
        return "decimal"
    return ""


_BOM = b"\xef\xbb\xbf"

DUPLICATE_KEY = "the key {key!r} appears more than once in the object: which value is meant is unclear; the line is not read"


def _strings_in(value: object) -> int:
    """How many strings a parsed JSON value holds, keys included: each is written between two quotes."""
    if isinstance(value, dict):
        return len(value) + sum(_strings_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(_strings_in(v) for v in value)
    return 1 if isinstance(value, str) else 0


def _duplicated_key(line: bytes, value: dict[str, Any]) -> str | None:
    """A key written twice in one object of ``line`` (at any depth), which the parser resolves silently to the last
    value. Without escapes a line holds two quotes per string of its value; fewer strings parsed than that means a
    key was dropped. Only such a line, or one with escapes, is parsed again, keeping every pair."""
    if b"\\" not in line and line.count(b'"') == 2 * _strings_in(value):
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(line, object_pairs_hook=pairs)
    return found[0] if found else None


def _jsonl(name: str, data: bytes) -> tuple[pd.DataFrame, np.ndarray, tuple[tuple[int, str, str], ...]]:
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    broken: list[tuple[int, str, str]] = []
    first: tuple[int, str] | None = None
    if data.startswith(_BOM):  # a byte order mark, as some Windows tools write one: the file's, not line 1's
        data = data[len(_BOM) :]
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            detail = str(err)
        else:
            key = _duplicated_key(line, value) if isinstance(value, dict) else None
            if key is not None:
                broken.append((number, "json", DUPLICATE_KEY.format(key=key)))
                continue
            if isinstance(value, dict):
                records.append(value)
                positions.append(number)
                continue
            detail = f"got a {type(value).__name__}"
        first = first or (number, detail)
        broken.append((number, "json", f"not a JSON object ({detail}); the line is not read"))
    if not records and first is not None:  # no line is an object: not JSON Lines at all
        raise DataError(NOT_AN_OBJECT.format(name=name, line=first[0], detail=first[1]))
    if not records and broken:  # every object names a key twice: no row to read the columns from
        raise DataError(f"{name} line {broken[0][0]}: {broken[0][2]}")
    # As objects: a column of integers with a null would become floats (777 -> "777.0"), another id.
    return pd.DataFrame(records, dtype=object), np.asarray(positions, dtype=np.int64), tuple(broken)


NOT_UTF8_COLUMN = (
    "{name} row {position}: the column {column!r} is binary and its value is not UTF-8 text; "
    "write the export's text columns as UTF-8 strings"
)


def _binary_as_text(name: str, table: pa.Table) -> pa.Table:
    """Binary columns as UTF-8 text (some writers store strings without the UTF-8 annotation): read as they are,
    an id ``u7`` would become the text ``b'u7'``, another subject. A value that is not UTF-8 refuses the file at its row."""
    for number, column in enumerate(table.schema):
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            continue
        values = table.column(number)
        try:
            table = table.set_column(number, column.name, values.cast(pa.large_string()))
        except pa.ArrowInvalid as err:
            for position, value in enumerate(values.to_pylist(), start=1):
                try:
                    value is None or value.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(NOT_UTF8_COLUMN.format(name=name, position=position, column=column.name)) from err
            raise DataError(NOT_A_TABLE.format(name=name, kind="Parquet", detail=f"column {column.name!r}: {err}")) from err
    return table


def _parquet(name: str, data: bytes) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        # Integers with nulls stay integers (not floats: 777 must not read back as "777.0").
        table = pq.read_table(io.BytesIO(data))
    except Exception as err:  # pyarrow raises many types for a corrupt file
        raise DataError(NOT_A_TABLE.format(name=name, kind="Parquet", detail=f"{type(err).__name__}: {err}")) from err
    table = _binary_as_text(name, table)
    raw = table.to_pandas(integer_object_nulls=True)
    for column in raw.columns:
        if isinstance(raw[column].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw[column]):
            raw[column] = raw[column].map(lambda t: "" if pd.isna(t) else t.isoformat())
    return raw, np.arange(1, len(raw) + 1, dtype=np.int64), ()


def read_consent_table(
    source: str | Path | bytes, mapping: ConsentImportMapping | None = None, *, fmt: str | None = None, name: str | None = None
) -> ConsentTable:
    """Read a consent export (a path, or the bytes of a file called ``name``) into a :class:`ConsentTable`.

    ``fmt`` is ``csv``, ``jsonl`` or ``parquet`` (default: from the suffix).
    Raises :class:`~recommender.errors.DataError` naming the file, and the line
    where there is one, when the file is not a table of that format or lacks a
    mapped column.
    """
    mapping = mapping or ConsentImportMapping()
    if isinstance(source, bytes):
        label, data = name or "upload", source
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise DataError(NO_SUCH_FILE.format(name=label))
        data = path.read_bytes()
    kind = format_of(label, fmt)
    if kind == "csv" and Path(label).suffix.lower() == ".tsv" and "delimiter" not in mapping.model_fields_set:
        mapping = mapping.model_copy(update={"delimiter": "\t"})  # tab-separated, as the name says
    if not data.strip():
        raise DataError(EMPTY_FILE.format(name=label))
    if kind == "csv":
        raw, positions, broken = _csv(label, data, mapping)
    elif kind == "jsonl":
        raw, positions, broken = _jsonl(label, data)
    else:
        raw, positions, broken = _parquet(label, data)
    wanted = mapping.columns(map(str, raw.columns))
    for field, column in wanted.items():
        if column not in raw.columns:
            columns = ", ".join(map(str, raw.columns)) or "none"
            raise DataError(MISSING_COLUMN.format(name=label, column=column, field=field, columns=columns))
    refused, refusals = nested_values(raw, wanted, positions)
    rows = pd.DataFrame({field: _strings(raw[column]) for field, column in wanted.items()})
    keep = (rows != "").any(axis=1).to_numpy() & ~refused  # a blank line is no row
    return ConsentTable(
        name=label,
        sha256=hashlib.sha256(data).hexdigest(),
        format=kind,  # type: ignore[arg-type]
        rows=rows[keep].reset_index(drop=True),
        positions=positions[keep],
        broken=tuple(sorted((*broken, *refusals))),
    )
