"""Loaders: the DATA argument, and CSV/Parquet event logs with a column mapping.

The layouts of published data sets (MovieLens, Amazon, Last.fm, Book-Crossing,
Retailrocket) are read by :mod:`recommender.datasets`; the MovieLens-100K names
are re-exported here, where callers have always found them.

Every loader returns a :class:`~recommender.data.Dataset` or raises
:class:`~recommender.errors.DataError` with one line that names the file, the line
where it can, and what is wrong. Nothing is half-loaded.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recommender.csv_lines import record_line
from recommender.data import LATEST_EVENT_TIME, Dataset, canonical_ids, ensure_event_schema, read_parquet_flat
from recommender.datasets import FORMATS, detect_format, load_format
from recommender.datasets.movielens_100k import (
    BAD_ENCODING,
    BAD_RELEASE,
    EMPTY_FILE,
    ML100K_GENRES,
    NOT_NUMBER,
    NOT_TEXT,
    OUT_OF_RANGE,
    WRONG_FIELDS,
    is_movielens_dir,
    load_movielens_100k,
    read_text,
    write_movielens_100k,
)
from recommender.errors import DataError

__all__ = [
    "ML100K_GENRES",
    "ColumnMapping",
    "load_movielens_100k",
    "write_movielens_100k",
    "load_event_log",
    "is_movielens_dir",
    "load_data",
    "BAD_ENCODING",
    "BAD_RELEASE",
    "EMPTY_FILE",
    "NOT_NUMBER",
    "NOT_TEXT",
    "OUT_OF_RANGE",
    "WRONG_FIELDS",
    "REPEATED_COLUMN",
    "SHORT_LINE",
    "AFTER_LATEST",
]

_PLAIN = {"string", "integer", "floating", "mixed-integer-float", "mixed-integer", "decimal", "boolean", "empty", "categorical"}
"""What pandas infers for a column of single values (a Parquet list or struct cell is none of these)."""
EPOCH = pd.Timestamp(0, tz="UTC")
PRE_EPOCH = (
    "{where}: {column} {value} is before 1970-01-01T00:00:00Z (a negative Unix time): no event log records "
    "such a time; it is a placeholder, a sign error or the wrong unit. Correct or drop the row"
)
"""Message of the refusal of an event time before the Unix epoch (``where`` names the file and line or row)."""
AFTER_LATEST = (
    "{where}: {column} {value} is after 2262-04-11T23:47:16Z, the latest time recgov compares: it is a placeholder "
    "or the wrong unit (milliseconds or microseconds read as seconds?). Correct or drop the row"
)
"""Message of the refusal of an event time a nanosecond clock cannot hold (:data:`recommender.data.LATEST_EVENT_TIME`)."""
REPEATED_COLUMN = "{path} line 1: the column {column!r} appears {times} times in the header; name each column once"
_SHOWN_CHARS = 60


def _shown(value: object) -> str:
    """``value`` quoted for a message, cut to its first characters: a cell may be megabytes long."""
    text = str(value)
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return f"{text[:_SHOWN_CHARS]!r}... ({len(text):,} characters)"


def _check_header(path: Path, text: str, delimiter: str) -> None:
    """Refuse a header that names a column twice: pandas would rename the second copy and read the first silently."""
    header = next(csv.reader(io.StringIO(text.partition("\n")[0].lstrip("\ufeff")), delimiter=delimiter), [])
    names = [name.strip() for name in header]
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            raise DataError(REPEATED_COLUMN.format(path=path, column=name, times=names.count(name)))


SHORT_LINE = (
    "{path} line {line}: {found} field(s) where the header names {expected} ({names}): a broken line (a field "
    "missing, or the file cut off while it was written); mend or drop the line"
)
"""Message of the refusal of a CSV line with fewer fields than its header (pandas would pad it with empty ones)."""


def _refuse_short_lines(path: Path, text: str, delimiter: str, raw: pd.DataFrame) -> None:
    """Refuse the first line with fewer fields than the header: pandas pads it with empty fields, so a line cut
    off or missing a field would load as an event of another item, or of no time.

    A short line always leaves the last column empty, so a file whose last column is filled everywhere is not
    read again; otherwise the records are counted with :mod:`csv`, as pandas splits them (quotes, blank lines).
    """
    expected = len(raw.columns)
    if expected < 2 or not len(raw) or not raw.iloc[:, -1].isna().any():
        return
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    ended = 0
    for number, row in enumerate(reader):
        start, ended = ended + 1, reader.line_num
        if number == 0 or not row or (len(row) == 1 and not row[0].strip()):  # the header; a blank line pandas skips
            continue
        if len(row) < expected:
            names = ", ".join(map(str, raw.columns[:6])) + (", ..." if expected > 6 else "")
            raise DataError(SHORT_LINE.format(path=path, line=start, found=len(row), expected=expected, names=names))


class ColumnMapping(BaseModel):
    """Which columns of an event log hold the fields recgov needs."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = "user_id"
    """Column with the user id."""
    item_id: str = "item_id"
    """Column with the item id."""
    timestamp: str = "timestamp"
    """Column with the event time: Unix seconds or ISO 8601."""
    event_type: str | None = "event_type"
    """Column with the event type; ``None`` or an absent column uses ``default_event_type``."""
    value: str | None = "value"
    """Column with the rating or dwell time, if any."""
    session_id: str | None = "session_id"
    """Column with the session id, if any."""
    context: str | None = None
    """Column with free context, if any."""
    default_event_type: str = Field("view", min_length=1)
    """Event type of every row when the log has no event-type column."""
    delimiter: str = Field(",", min_length=1, max_length=1)
    """Field separator of a CSV log."""

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """Parse ``"user_id=uid,item_id=sku,timestamp=ts"`` (the CLI's ``--map``)."""
        from recommender.option_pairs import parse_pairs

        pairs = parse_pairs(text, "--map", "user_id=uid")
        unknown = sorted(set(pairs) - set(cls.model_fields))
        if unknown:
            raise DataError(f"--map: unknown field(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}")
        return cls(**pairs)


def load_event_log(path: str | Path, mapping: ColumnMapping | None = None) -> Dataset:
    """Load a CSV or Parquet event log, renaming its columns with ``mapping``."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a CSV or Parquet event log")
    if path.stat().st_size == 0:
        raise DataError(EMPTY_FILE.format(path=path, what="a CSV or Parquet event log with a header row"))
    if suffix == ".parquet":
        try:
            raw = read_parquet_flat(path)
        except DataError:
            raise
        except Exception as err:  # pyarrow raises many types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err
        line_of = lambda pos: f"row {pos + 1}"  # noqa: E731
    elif suffix in (".csv", ".tsv", ".txt"):
        text = read_text(path, "utf-8", "a CSV event log with a header row")
        _check_header(path, text, mapping.delimiter)
        try:
            raw = pd.read_csv(io.StringIO(text), sep=mapping.delimiter, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, csv.Error) as err:
            raise DataError(f"{path}: malformed CSV ({str(err).strip()})") from err
        _refuse_short_lines(path, text, mapping.delimiter, raw)
        line_of = lambda pos: f"line {record_line(text, mapping.delimiter, pos)}"  # noqa: E731
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .parquet")
    wanted = {
        "user_id": mapping.user_id,
        "item_id": mapping.item_id,
        "timestamp": mapping.timestamp,
        "event_type": mapping.event_type,
        "value": mapping.value,
        "session_id": mapping.session_id,
        "context": mapping.context,
    }
    required = ("user_id", "item_id", "timestamp")
    missing = [f"{src} (for {dst})" for dst, src in wanted.items() if dst in required and src not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:12]))
        hint = " (is the delimiter right?)" if len(raw.columns) == 1 else ""
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {found}{hint}")
    events = pd.DataFrame({dst: raw[src] for dst, src in wanted.items() if src is not None and src in raw.columns})
    if "event_type" not in events:
        events["event_type"] = mapping.default_event_type
    if "value" in events:
        text_values = events["value"]
        values = pd.to_numeric(text_values, errors="coerce")
        bad = (values.isna() | np.isinf(values)) & text_values.notna()  # "inf" is no more a weight than "nan"
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            what = "is not a number" if pd.isna(values.iloc[pos]) else "is not a finite number"
            raise DataError(f"{path} {line_of(pos)}: {mapping.value} {_shown(text_values.iloc[pos])} {what}")
        events["value"] = values.astype("float64")
    ts = events["timestamp"]
    numeric_ts = pd.to_numeric(ts, errors="coerce") if not pd.api.types.is_datetime64_any_dtype(ts) else None
    if numeric_ts is None:  # a real time column (Parquet): as it is, naive read as UTC
        parsed = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        bad = pd.Series(False, index=ts.index)
    elif numeric_ts.notna().sum() >= max(1, ts.notna().sum() // 2):
        parsed = pd.to_datetime(numeric_ts, unit="s", utc=True, errors="coerce")
        bad = parsed.isna() & ts.notna()  # not a number, or seconds no time can hold
    else:
        parsed = pd.to_datetime(ts, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & ts.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path} {line_of(pos)}: {mapping.timestamp} {_shown(ts.iloc[pos])} is not a time (Unix seconds or ISO 8601)")
    early = (parsed < EPOCH).to_numpy(dtype=bool, na_value=False)
    if early.any():  # as the published data sets' readers refuse a negative Unix time
        pos = int(np.flatnonzero(early)[0])
        raise DataError(PRE_EPOCH.format(where=f"{path} {line_of(pos)}", column=mapping.timestamp, value=_shown(ts.iloc[pos])))
    late = (parsed > LATEST_EVENT_TIME).to_numpy(dtype=bool, na_value=False)
    if late.any():  # every rule that compares times reads nanoseconds: a later time would wrap to another century
        pos = int(np.flatnonzero(late)[0])
        raise DataError(AFTER_LATEST.format(where=f"{path} {line_of(pos)}", column=mapping.timestamp, value=_shown(ts.iloc[pos])))
    events["timestamp"] = parsed
    for column in ("user_id", "item_id", "event_type", "session_id"):  # a Parquet list or struct cell is no id
        if column in events and pd.api.types.infer_dtype(events[column], skipna=True) not in _PLAIN:
            odd = events[column].map(lambda v: not pd.api.types.is_scalar(v)).to_numpy(dtype=bool)
            if odd.any():
                pos = int(np.flatnonzero(odd)[0])
                cell = events[column].iloc[pos]
                raise DataError(
                    f"{path} {line_of(pos)}: {wanted[column]} {_shown(list(cell) if hasattr(cell, 'tolist') else cell)} "
                    f"is {'an object' if isinstance(cell, dict) else 'a list'}, not one value; expected text or a whole number"
                )
    for column in ("user_id", "item_id"):  # integer ids (in Parquet, floats if one is missing) read "10", not "10.0"
        ids = canonical_ids(events[column]).astype("string").str.strip()
        # an id of blanks names no one: a missing id (validation counts it), not one person holding every anonymous event
        events[column] = ids.mask(ids.eq("").fillna(False)).astype("category")
    events["event_type"] = events["event_type"].astype("string").str.strip().astype("category")
    sources = {dst: src for dst, src in wanted.items() if src is not None and src in raw.columns}
    return Dataset(events=ensure_event_schema(events, source=str(path)), name=path.stem, source=str(path), columns_from=sources)


SYNTHETIC_PREFIX = "synthetic"


def _synthetic_spec(text: str):  # -> SyntheticSpec (imported lazily: generation is optional work)
    from pydantic import ValidationError

    from recommender.synthetic import SyntheticSpec

    params: dict[str, Any] = {}
    body = text[len(SYNTHETIC_PREFIX) :].lstrip(":")
    if body.startswith("{"):  # the spec as a dataset records its source (SyntheticSpec JSON): the same data again
        try:
            return SyntheticSpec.model_validate_json(body)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise DataError(f"{text[:200]}: invalid synthetic spec: {problems}") from err
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"{text}: {part!r} is not of the form name=value (e.g. synthetic:n_users=1000,seed=1)")
        key, value = key.strip(), value.strip()
        if key in params:  # the last would win silently: the user meant one of them
            raise DataError(f"{text[:200]}: {key!r} is given twice; give each name once")
        annotation = SyntheticSpec.model_fields[key].annotation if key in SyntheticSpec.model_fields else None
        if annotation == dict[str, float]:  # a mapping: name:number;name:number
            mapping = {}
            for entry in filter(None, (e.strip() for e in value.split(";"))):
                name, colon, number = entry.partition(":")
                if not colon or not name.strip():
                    raise DataError(
                        f"{text}: {key}: {entry!r} is not of the form name:number "
                        f"(e.g. {key}=X:4 or {key}=a:0.3;b:0.7)"
                    )
                if name.strip() in mapping:  # the last would win silently
                    raise DataError(f"{text[:200]}: {key}: {name.strip()!r} is given twice; give each name once")
                mapping[name.strip()] = number.strip()
            params[key] = mapping
        elif getattr(annotation, "__origin__", None) is list:  # a list: a;b;c
            entries = [entry.strip() for entry in value.split(";") if entry.strip()]
            if len(set(entries)) < len(entries):
                raise DataError(f"{text[:200]}: {key}: an entry is given twice; give each once")
            params[key] = entries
        else:
            params[key] = value
    try:
        return SyntheticSpec(**params)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"{text}: invalid synthetic spec: {problems}") from err


def load_data(
    source: str | Path, mapping: ColumnMapping | None = None, *, show_progress: bool = False, format: str | None = None
) -> Dataset:
    """Resolve the command line's DATA argument to a dataset.

    ``source`` is one of: a directory or file of a published data set (MovieLens
    100K, 1M, 20M/25M/32M CSV, Amazon reviews, Last.fm, Book-Crossing,
    Retailrocket: see :mod:`recommender.datasets`), read in ``format`` or in the
    format its files show; a ``.csv``/``.tsv``/``.parquet`` event log (columns
    renamed by ``mapping``; ``format="events"``); or ``synthetic`` /
    ``synthetic:name=value,...`` for the generator with those
    :class:`~recommender.synthetic.SyntheticSpec` fields, or
    ``synthetic:{...}``, the spec's JSON, as a generated dataset records its
    ``source`` (so a recorded source loads the same data again).
    """
    text = str(source)
    if text == SYNTHETIC_PREFIX or text.startswith(SYNTHETIC_PREFIX + ":"):
        from recommender.synthetic import generate

        return generate(_synthetic_spec(text), show_progress=show_progress)
    path = Path(text)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or directory; DATA must be a data set directory or file ({', '.join(FORMATS)}), "
            "a .csv/.parquet event log, or synthetic[:name=value,...]"
        )
    if format == "events":
        return load_event_log(path, mapping)
    if format is not None:
        return load_format(path, format)
    detected = detect_format(path)
    if detected is not None:
        return load_format(path, detected)
    if path.is_dir():
        raise DataError(
            f"{path}: a directory without u.data or another known layout (ratings.dat, ratings.csv, "
            "the Last.fm or Book-Crossing files); name its layout with --format"
        )
    return load_event_log(path, mapping)
