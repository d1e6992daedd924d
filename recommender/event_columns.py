"""Reading the columns of a raw events table defensively, for validation.

Every reader turns one column into numpy arrays without ever raising on a bad
value: a missing or blank id becomes code -1, an unreadable time is flagged as
missing, a string where a number belongs is flagged as unreadable. The checks of
:mod:`recommender.validate` and :mod:`recommender.bots` then work on integer
codes and integer times only. :func:`json_value` and :func:`format_time` turn
values back into text for the examples of a report.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["format_time", "id_codes", "ids_as_text", "in_unit", "json_value", "numbers", "timestamps"]

UNIT_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
"""Ticks per second of each pandas time unit."""
_MAX_EXAMPLE_TEXT = 60

def id_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of an id column (-1 where missing or blank) and the distinct ids as strings."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = np.asarray(column.cat.codes, dtype=np.int64)
        uniques = pd.Index(column.cat.categories)
    else:
        try:
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
        except TypeError:  # unhashable values (lists, dicts): compare their text
            text = column.astype(str).where(column.notna())
            codes, uniques = pd.factorize(text, use_na_sentinel=True)
        codes = np.asarray(codes, dtype=np.int64)
        uniques = pd.Index(uniques)
    as_text = ids_as_text(uniques)
    blank = np.asarray(as_text.str.strip() == "", dtype=bool)
    if blank.any():
        codes = np.where((codes >= 0) & blank[np.maximum(codes, 0)], -1, codes)
    return codes, as_text


def ids_as_text(ids: pd.Index) -> pd.Index:
    """Ids as strings; integral floats (ids that went through NaN) lose their ``.0``."""
    if pd.api.types.is_float_dtype(ids.dtype):
        values = ids.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
            return pd.Index(values.astype(np.int64).astype(str), dtype=object)
    return pd.Index([str(v) for v in ids], dtype=object) if ids.dtype == object else ids.astype(str)


def timestamps(column: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """``(values, missing, units_per_second)``: the times as int64 in the column's unit, UTC.

    Missing or unreadable times are flagged in ``missing`` (their value is 0).
    Numbers are Unix seconds; naive times are read as UTC.
    """
    ts = column
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(ts.dtype):
        ts = ts.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(ts.dtype) and not pd.api.types.is_bool_dtype(ts.dtype):
        ts = pd.to_datetime(pd.to_numeric(ts, errors="coerce"), unit="s", utc=True, errors="coerce")
    else:
        ts = _parse_times(ts)
    missing = np.asarray(ts.isna(), dtype=bool)
    values = np.asarray(ts.array.asi8, dtype=np.int64).copy()
    values[missing] = 0
    return values, missing, UNIT_PER_SECOND[ts.dt.unit]


def in_unit(moment: datetime, per_second: int) -> int:
    """``moment`` (aware) as an integer count of ``1 / per_second`` seconds since the epoch."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * per_second + delta.microseconds * per_second // 10**6


def _parse_times(ts: pd.Series) -> pd.Series:
    """Parse text or mixed times; Unix seconds when most values are numbers."""
    ts = ts.astype(object).where(ts.notna(), None)
    numeric = pd.to_numeric(ts, errors="coerce")
    present = int(ts.notna().sum())
    if present and int(numeric.notna().sum()) >= max(1, present // 2):
        return pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
    try:
        return pd.to_datetime(ts, utc=True, errors="coerce", format="mixed")
    except (ValueError, TypeError, OverflowError):  # mixed garbage: read the distinct values one by one
        return pd.to_datetime(ts.map({value: _one_time(value) for value in pd.unique(ts.dropna())}), utc=True)


def _one_time(value: Any) -> pd.Timestamp:
    """One value as a UTC time, NaT when it is not one."""
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, unreadable)``: the column as float64, and where a present value is not a number."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    values = np.asarray(pd.to_numeric(column.astype(object), errors="coerce"), dtype=np.float64)
    unreadable = np.asarray(column.notna(), dtype=bool) & np.isnan(values)
    return values, unreadable



def json_value(value: Any) -> Any:
    """A value fit for JSON: NaN and NaT become None, long text is cut."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value)
    return text if len(text) <= _MAX_EXAMPLE_TEXT else text[: _MAX_EXAMPLE_TEXT - 3] + "..."


def format_time(value: int, per_second: int) -> str:
    """ISO 8601 text of a time in ``1 / per_second`` units, or a count when it has no calendar date."""
    unit = next(name for name, size in UNIT_PER_SECOND.items() if size == per_second)
    try:
        return pd.Timestamp(np.datetime64(value, unit)).tz_localize("UTC").isoformat()
    except (OverflowError, ValueError):  # OutOfBoundsDatetime is a ValueError
        return f"{value} {unit} after 1970-01-01"
