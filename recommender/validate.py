"""Validation of raw event logs: find the rows a pipeline should not learn from.

:func:`validate_events` runs every check on a whole events table at once (pandas
and numpy, no loop over rows or users) and returns a :class:`ValidationReport`:
one :class:`Finding` per problem found, with a stable code, a count, a share of
rows, a few examples and a plain message, plus a boolean mask of the rows behind
each finding so that the caller can drop them (:meth:`ValidationReport.clean`) or
refuse the data. Validation never drops anything itself, and a bad row (a
missing id, an unreadable time, a string where a number belongs) is a finding,
never a crash.

The checks, by code:

``missing_user_id``, ``missing_item_id``
    the id is missing or blank.
``missing_timestamp``
    the time is missing or cannot be read.
``unknown_event_type``
    the type is missing or not one of :data:`~recommender.data.EVENT_TYPES`.
``unknown_user``, ``unknown_item``
    the id is not in the dataset's users (items) table; skipped when the table is
    empty.
``duplicate_events``
    the row repeats an earlier row's user, item, event type and timestamp (the
    first one is not flagged, so dropping the flagged rows keeps one of each).
``value_out_of_range``
    a rating outside ``rating_range`` or missing; any other value that is
    negative, infinite or not a number.
``future_timestamp``
    after ``now``.
``bot_users``
    every row of a user whose activity is not human: at least ``bot_min_events``
    events and a median gap between events under ``bot_min_gap`` seconds, or more
    than ``bot_rate_threshold`` events per minute over the active span, or a
    volume that is an extreme outlier (robust z-score of the log event count,
    median and MAD, above ``bot_volume_zscore``).

Privacy: examples show row numbers (0-based positions), items, types, values and
times, never a user id, so that a report can be shared without personal data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recommender.data import EVENT_TYPES, REQUIRED_EVENT_COLUMNS, Dataset
from recommender.errors import ConfigError, DataError

__all__ = [
    "CODES",
    "MESSAGES",
    "MISSING_COLUMNS",
    "Finding",
    "ValidationReport",
    "validate_events",
]

CODES: tuple[str, ...] = (
    "missing_user_id",
    "missing_item_id",
    "missing_timestamp",
    "unknown_event_type",
    "unknown_user",
    "unknown_item",
    "duplicate_events",
    "value_out_of_range",
    "future_timestamp",
    "bot_users",
)
"""Every finding code, in report order. Codes are stable and never reused."""

MESSAGES: dict[str, str] = {
    "missing_user_id": "{count} row(s) have no user id; they cannot be attributed to anyone",
    "missing_item_id": "{count} row(s) have no item id; they cannot be attributed to any item",
    "missing_timestamp": "{count} row(s) have a missing or unreadable timestamp; they cannot be placed in time",
    "unknown_event_type": "{count} row(s) have an event type that is missing or not one of {known}",
    "unknown_user": "{count} row(s) name a user that is not in the users table",
    "unknown_item": "{count} row(s) name an item that is not in the items table",
    "duplicate_events": "{count} row(s) repeat an earlier row with the same user, item, event type and timestamp",
    "value_out_of_range": (
        "{count} row(s) have an invalid value: a rating outside {low:g}..{high:g} or missing, "
        "or another value that is negative, infinite or not a number"
    ),
    "future_timestamp": "{count} row(s) are timestamped after {now} (the validation time)",
    "bot_users": (
        "{count} row(s) come from {n_users} user(s) whose activity is not human "
        "(implausibly fast or an extreme volume outlier)"
    ),
}
"""Message template of each finding (tests assert on these)."""

MISSING_COLUMNS = "events: missing required column(s) {missing}; an events table needs {required} (got {got})"
"""Message of the :class:`DataError` raised when a required column is missing."""

DUPLICATE_COLUMNS = "events: column name(s) {names} appear more than once; each column must be unique"
BAD_PARAMETER = "The {name!r} parameter of validate_events must be {expected}. Got {got!r} instead."
NOT_EVENTS = "validate_events expects a Dataset or an events DataFrame; got {got}"
WRONG_LENGTH = "this report is for {expected} rows; the events given have {got}. Validate these events first."
UNKNOWN_CODES = "unknown finding code(s) {codes}; the codes are {known}"

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_MIN_LOG_SCALE = 0.5  # floor of the spread of log counts: when (almost) every user has the same
# count, MAD is 0 and any difference would be infinitely far; with the floor and the default
# z-score of 5, a volume outlier has at least e ** 2.5, about 12 times, the median count
_MIN_USERS_FOR_VOLUME = 20  # fewer users than this: no volume outliers (the median means little)
_UNIT_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_MAX_EXAMPLE_TEXT = 60


@dataclass(frozen=True)
class Finding:
    """One kind of problem in an events table.

    Attributes
    ----------
    code:
        Stable snake_case code (one of :data:`CODES`).
    count:
        Number of rows concerned.
    share:
        ``count`` divided by the number of rows.
    message:
        One plain sentence saying what is wrong.
    examples:
        A few flagged rows: their 0-based row number and the values that matter
        (never a user id).
    details:
        Extra numbers, such as the number of bot users or a breakdown by reason.
    """

    code: str
    count: int
    share: float
    message: str
    examples: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "count": self.count,
            "share": self.share,
            "message": self.message,
            "examples": [dict(e) for e in self.examples],
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate_events`.

    Attributes
    ----------
    n_rows:
        Rows validated.
    findings:
        One :class:`Finding` per code with at least one row, in :data:`CODES` order.
    row_flags:
        For each code of :data:`CODES` that ran, a boolean array of length
        ``n_rows``: True where the row has that problem.
    now:
        The time timestamps were compared with.
    skipped:
        Checks that could not run, with the reason (say, no users table).
    parameters:
        The thresholds used.
    """

    n_rows: int
    findings: list[Finding]
    row_flags: dict[str, np.ndarray]
    now: datetime
    skipped: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check found anything (skipped checks aside)."""
        return not self.findings

    @property
    def codes(self) -> list[str]:
        """The codes of the findings, in report order."""
        return [f.code for f in self.findings]

    def finding(self, code: str) -> Finding | None:
        """The finding with ``code``, or None when that check found nothing."""
        return next((f for f in self.findings if f.code == code), None)

    def count(self, code: str) -> int:
        """Rows flagged with ``code`` (0 when none)."""
        found = self.finding(code)
        return found.count if found else 0

    def flagged(self, codes: Iterable[str] | None = None) -> np.ndarray:
        """Boolean mask of the rows flagged by any of ``codes`` (all codes by default)."""
        selected = self._check_codes(codes)
        mask = np.zeros(self.n_rows, dtype=bool)
        for code in selected:
            if code in self.row_flags:
                mask |= self.row_flags[code]
        return mask

    def clean(self, events: pd.DataFrame, codes: Iterable[str] | None = None) -> pd.DataFrame:
        """``events`` without the rows flagged by ``codes`` (all codes by default).

        ``events`` must be the table that was validated (same rows, same order).

        Raises
        ------
        DataError
            When ``events`` does not have the number of rows the report is for.
        ConfigError
            When a code is unknown.
        """
        if isinstance(events, Dataset):
            events = events.events
        if len(events) != self.n_rows:
            raise DataError(WRONG_LENGTH.format(expected=self.n_rows, got=len(events)))
        return events.iloc[np.flatnonzero(~self.flagged(codes))]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the row masks are summarized as a count)."""
        return {
            "n_rows": self.n_rows,
            "ok": self.ok,
            "n_flagged_rows": int(self.flagged().sum()),
            "now": self.now.isoformat(),
            "findings": [f.to_dict() for f in self.findings],
            "skipped": dict(self.skipped),
            "parameters": dict(self.parameters),
        }

    def summary_table(self) -> list[dict[str, str]]:
        """One row per finding, as strings, for a command-line table.

        Keys: ``code``, ``rows``, ``share`` (a percentage) and ``message``.
        """
        return [
            {"code": f.code, "rows": f"{f.count:,}", "share": f"{100 * f.share:.2f}%", "message": f.message}
            for f in self.findings
        ]

    def _check_codes(self, codes: Iterable[str] | None) -> list[str]:
        if codes is None:
            return list(CODES)
        selected = [codes] if isinstance(codes, str) else list(codes)
        unknown = sorted(set(selected) - set(CODES))
        if unknown:
            raise ConfigError(UNKNOWN_CODES.format(codes=", ".join(unknown), known=", ".join(CODES)))
        return selected


# -- reading columns defensively ------------------------------------------------


def _id_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
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
    as_text = _ids_as_text(uniques)
    blank = np.asarray(as_text.str.strip() == "", dtype=bool)
    if blank.any():
        codes = np.where((codes >= 0) & blank[np.maximum(codes, 0)], -1, codes)
    return codes, as_text


def _ids_as_text(ids: pd.Index) -> pd.Index:
    """Ids as strings; integral floats (ids that went through NaN) lose their ``.0``."""
    if pd.api.types.is_float_dtype(ids.dtype):
        values = ids.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
            return pd.Index(values.astype(np.int64).astype(str), dtype=object)
    return pd.Index([str(v) for v in ids], dtype=object) if ids.dtype == object else ids.astype(str)


def _timestamps(column: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
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
    return values, missing, _UNIT_PER_SECOND[ts.dt.unit]


def _in_unit(moment: datetime, per_second: int) -> int:
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


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, unreadable)``: the column as float64, and where a present value is not a number."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    values = np.asarray(pd.to_numeric(column.astype(object), errors="coerce"), dtype=np.float64)
    unreadable = np.asarray(column.notna(), dtype=bool) & np.isnan(values)
    return values, unreadable


# -- the checks -----------------------------------------------------------------


def _check_parameters(
    rating_range: Any,
    bot_rate_threshold: Any,
    bot_min_gap: Any,
    bot_volume_zscore: Any,
    bot_min_events: Any,
    max_examples: Any,
) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in rating_range)
    except (TypeError, ValueError):
        raise ConfigError(
            BAD_PARAMETER.format(name="rating_range", expected="a pair (low, high) of numbers", got=rating_range)
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ConfigError(
            BAD_PARAMETER.format(
                name="rating_range", expected="a pair (low, high) of finite numbers with low <= high", got=rating_range
            )
        )
    for name, value, low_ok in (
        ("bot_rate_threshold", bot_rate_threshold, 0.0),
        ("bot_min_gap", bot_min_gap, 0.0),
        ("bot_volume_zscore", bot_volume_zscore, 0.0),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (value >= low_ok and math.isfinite(value))
        ):
            raise ConfigError(BAD_PARAMETER.format(name=name, expected="a finite number >= 0", got=value))
    for name, value, lowest in (("bot_min_events", bot_min_events, 2), ("max_examples", max_examples, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ConfigError(
                BAD_PARAMETER.format(name=name, expected=f"an int in the range [{lowest}, inf)", got=value)
            )
    return low, high


def _duplicates(
    user: np.ndarray, item: np.ndarray, etype: np.ndarray, ts: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """Rows repeating an earlier eligible row's (user, item, type, time)."""
    rows = np.flatnonzero(eligible)
    flags = np.zeros(len(user), dtype=bool)
    if len(rows) < 2:
        return flags
    columns = [user[rows], item[rows], etype[rows] + 1, pd.factorize(ts[rows])[0]]
    sizes = [int(c.max()) + 1 for c in columns]
    if math.prod(sizes) < 2**63:  # one int64 key per row: a single hash pass
        key = np.zeros(len(rows), dtype=np.int64)
        for values, size in zip(columns, sizes):
            key = key * size + values
        flags[rows] = pd.Series(key).duplicated(keep="first").to_numpy()
    else:
        keys = pd.DataFrame(dict(enumerate(columns)))
        flags[rows] = keys.duplicated(keep="first").to_numpy()
    return flags


def _bots(
    user: np.ndarray,
    ts: np.ndarray,
    eligible: np.ndarray,
    per_second: int,
    *,
    rate_threshold: float,
    min_gap: float,
    volume_zscore: float,
    min_events: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bot user codes and per-user statistics, from the eligible rows."""
    rows = np.flatnonzero(eligible)
    n_codes = int(user.max()) + 1 if len(user) else 0
    empty = np.zeros(0, dtype=np.int64)
    if len(rows) == 0 or n_codes == 0:
        return empty, {}
    u, t = user[rows], ts[rows]
    order = np.lexsort((t, u))
    u, t = u[order], t[order]
    counts = np.bincount(u, minlength=n_codes)
    first = np.searchsorted(u, np.arange(n_codes))
    last = first + counts - 1
    active = counts > 0
    span_s = np.zeros(n_codes)
    span_s[active] = (t[last[active]] - t[first[active]]) / per_second
    # Median gap per user: gaps sorted within user, then the middle one(s).
    same = u[1:] == u[:-1]
    gaps = (np.diff(t)[same] / per_second).astype(np.float64)
    gap_user = u[1:][same]
    gaps = gaps[np.lexsort((gaps, gap_user))]
    n_gaps = np.bincount(gap_user, minlength=n_codes)
    gap_start = np.concatenate([[0], np.cumsum(n_gaps)[:-1]])
    median_gap = np.full(n_codes, np.inf)
    has_gap = n_gaps > 0
    lo = gap_start[has_gap] + (n_gaps[has_gap] - 1) // 2
    hi = gap_start[has_gap] + n_gaps[has_gap] // 2
    median_gap[has_gap] = (gaps[lo] + gaps[hi]) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_minute = np.where(counts > 1, (counts - 1) / (span_s / 60.0), 0.0)
    enough = counts >= min_events
    fast = enough & ((median_gap < min_gap) | (per_minute > rate_threshold))
    # Volume: robust z-score of log counts among active users.
    zscore = np.zeros(n_codes)
    log_counts = np.log(counts[active].astype(np.float64))
    if active.sum() >= _MIN_USERS_FOR_VOLUME:
        center = float(np.median(log_counts))
        scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(log_counts - center))), _MIN_LOG_SCALE)
        zscore[active] = (log_counts - center) / scale
    heavy = enough & (zscore > volume_zscore)
    bots = np.flatnonzero(fast | heavy)
    stats = {
        "counts": counts,
        "median_gap": median_gap,
        "per_minute": per_minute,
        "zscore": zscore,
        "fast": fast,
        "heavy": heavy,
    }
    return bots, stats


def _json_value(value: Any) -> Any:
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


def validate_events(
    dataset: Dataset | pd.DataFrame,
    *,
    now: datetime | None = None,
    rating_range: tuple[float, float] = (1, 5),
    bot_rate_threshold: float = 60.0,
    bot_min_gap: float = 1.0,
    bot_volume_zscore: float = 5.0,
    bot_min_events: int = 20,
    max_examples: int = 5,
) -> ValidationReport:
    """Run every check on an events table and report what is wrong, row by row.

    Parameters
    ----------
    dataset:
        A :class:`~recommender.data.Dataset` (its users and items tables enable the
        ``unknown_user`` and ``unknown_item`` checks) or an events DataFrame with at
        least ``user_id``, ``item_id`` and ``timestamp``.
    now:
        Timestamps after this are ``future_timestamp`` (default: the current UTC
        time; a naive time is read as UTC). Pass the extraction time of the log to
        make a report reproducible.
    rating_range:
        The valid ``(low, high)`` range of ``rating`` values, inclusive.
    bot_rate_threshold:
        Events per minute over a user's active span above which the user is a bot.
    bot_min_gap:
        Median seconds between a user's events below which the user is a bot. Logs
        with whole-second timestamps that batch events (MovieLens rates many movies
        in the same second) may need 0 here, which disables this rule.
    bot_volume_zscore:
        Robust z-score of a user's log event count (median and MAD, the MAD floored
        at 0.5 / 1.4826 so that a log where nearly everybody has the same count
        does not make small differences infinite) above which the user is a bot
        whatever its pace. Needs 20 active users or more.
    bot_min_events:
        Users with fewer events are never bots (a human may click twice quickly).
    max_examples:
        Examples kept per finding.

    Returns
    -------
    ValidationReport
        Always the same type, with an empty ``findings`` list when all is well.

    Raises
    ------
    DataError
        When ``dataset`` is not a table of events or a required column is missing.
    ConfigError
        When a parameter is out of range.

    Examples
    --------
    >>> import pandas as pd
    >>> events = pd.DataFrame({"user_id": ["a", "a", None], "item_id": ["x", "x", "y"],
    ...                        "timestamp": [1_700_000_000] * 3})
    >>> validate_events(events).codes
    ['missing_user_id', 'duplicate_events']
    """
    low, high = _check_parameters(
        rating_range, bot_rate_threshold, bot_min_gap, bot_volume_zscore, bot_min_events, max_examples
    )
    events, users, items = _tables(dataset)
    now = _as_utc(now)
    n = len(events)
    flags: dict[str, np.ndarray] = {}
    details: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    user, user_ids = _id_codes(events["user_id"])
    item, item_ids = _id_codes(events["item_id"])
    ts, ts_missing, per_second = _timestamps(events["timestamp"])
    flags["missing_user_id"] = user < 0
    flags["missing_item_id"] = item < 0
    flags["missing_timestamp"] = ts_missing
    etype, is_rating = _flag_event_types(events, flags, skipped)
    _flag_unknown("unknown_user", user, user_ids, users, "users", flags, skipped)
    _flag_unknown("unknown_item", item, item_ids, items, "items", flags, skipped)
    eligible = (user >= 0) & (item >= 0) & ~ts_missing
    flags["duplicate_events"] = _duplicates(user, item, etype, ts, eligible)
    _flag_values(events, is_rating, low, high, flags, details, skipped)
    flags["future_timestamp"] = ~ts_missing & (ts > _in_unit(now, per_second))
    stats = _flag_bots(
        user, user_ids, ts, eligible & ~flags["duplicate_events"], per_second, flags, details,
        rate_threshold=float(bot_rate_threshold), min_gap=float(bot_min_gap),
        volume_zscore=float(bot_volume_zscore), min_events=int(bot_min_events),
    )  # fmt: skip

    findings = []
    for code in CODES:
        mask = flags.get(code)
        if mask is None or not mask.any():
            continue
        count = int(mask.sum())
        message = MESSAGES[code].format(
            count=f"{count:,}",
            known=", ".join(EVENT_TYPES),
            low=low,
            high=high,
            now=now.isoformat(timespec="seconds"),
            n_users=details.get("bot_users", {}).get("n_users", 0),
        )
        examples = _examples(code, mask, events, max_examples, stats, user, ts, per_second) if max_examples else ()
        findings.append(Finding(code, count, count / n if n else 0.0, message, examples, details.get(code, {})))
    parameters = {
        "rating_range": [low, high],
        "bot_rate_threshold": float(bot_rate_threshold),
        "bot_min_gap": float(bot_min_gap),
        "bot_volume_zscore": float(bot_volume_zscore),
        "bot_min_events": int(bot_min_events),
    }
    return ValidationReport(n, findings, flags, now, skipped, parameters)


def _tables(dataset: Dataset | pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The events table (checked for its required, unique columns) and the users and items tables, if any."""
    if isinstance(dataset, Dataset):
        events, users, items = dataset.events, dataset.users, dataset.items
    elif isinstance(dataset, pd.DataFrame):
        events, users, items = dataset, None, None
    else:
        raise DataError(NOT_EVENTS.format(got=type(dataset).__name__))
    if not isinstance(events, pd.DataFrame):
        raise DataError(NOT_EVENTS.format(got=f"a Dataset whose events are a {type(events).__name__}"))
    missing_columns = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
    if missing_columns:
        raise DataError(
            MISSING_COLUMNS.format(
                missing=", ".join(missing_columns),
                required=", ".join(REQUIRED_EVENT_COLUMNS),
                got=", ".join(map(str, events.columns)) or "no columns",
            )
        )
    repeated = sorted({str(c) for c in events.columns[events.columns.duplicated()]})
    if repeated:
        raise DataError(DUPLICATE_COLUMNS.format(names=", ".join(repeated)))
    return events, users, items


def _as_utc(now: datetime | None) -> datetime:
    """``now`` in UTC (a naive time is read as UTC); the current time when None."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _flag_event_types(events: pd.DataFrame, flags: dict[str, np.ndarray], skipped: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Flag unknown event types; return each row's event-type code and whether it is a rating."""
    n = len(events)
    if "event_type" not in events.columns:
        skipped["unknown_event_type"] = "no event_type column (every row counts as a view)"
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    etype, type_names = _id_codes(events["event_type"])
    known_type = np.asarray(type_names.isin(EVENT_TYPES), dtype=bool)
    flags["unknown_event_type"] = (etype < 0) | ~known_type[np.maximum(etype, 0)] if len(type_names) else etype < 0
    rating_code = type_names.get_indexer(["rating"])[0] if len(type_names) else -1
    return etype, (etype == rating_code) & (rating_code >= 0)


def _flag_unknown(
    code: str, codes: np.ndarray, ids: pd.Index, table: pd.DataFrame | None, what: str,
    flags: dict[str, np.ndarray], skipped: dict[str, str],
) -> None:  # fmt: skip
    """Flag rows whose id is not in the users or items ``table`` (skipped without a table)."""
    if table is None or len(table) == 0:
        skipped[code] = f"no {what} table to compare with"
        return
    known = np.asarray(ids.isin(_ids_as_text(pd.Index(table.index))), dtype=bool)
    flags[code] = (codes >= 0) & ~known[np.maximum(codes, 0)] if len(ids) else np.zeros(len(codes), dtype=bool)


def _flag_values(
    events: pd.DataFrame, is_rating: np.ndarray, low: float, high: float,
    flags: dict[str, np.ndarray], details: dict[str, dict[str, Any]], skipped: dict[str, str],
) -> None:  # fmt: skip
    """Flag ratings outside ``[low, high]`` and other values that are unreadable, negative or infinite."""
    if "value" not in events.columns:
        skipped["value_out_of_range"] = "no value column"
        return
    value, unreadable = _numbers(events["value"])
    finite = np.isfinite(value)
    bad_rating = is_rating & ~(finite & (value >= low) & (value <= high))
    bad_other = ~is_rating & (unreadable | (~np.isnan(value) & ((value < 0) | np.isinf(value))))
    flags["value_out_of_range"] = bad_rating | bad_other
    details["value_out_of_range"] = {
        "ratings_outside_range": int((is_rating & finite & ((value < low) | (value > high))).sum()),
        "ratings_missing_or_not_finite": int((is_rating & ~finite).sum()),
        "other_values_invalid": int(bad_other.sum()),
    }


def _flag_bots(
    user: np.ndarray, user_ids: pd.Index, ts: np.ndarray, eligible: np.ndarray, per_second: int,
    flags: dict[str, np.ndarray], details: dict[str, dict[str, Any]], **thresholds: Any,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Flag every row of a bot-like user (see :func:`_bots`); return the per-user statistics."""
    bots, stats = _bots(user, ts, eligible, per_second, **thresholds)
    is_bot = np.zeros(len(user_ids), dtype=bool)
    is_bot[bots] = True
    flags["bot_users"] = (user >= 0) & is_bot[np.maximum(user, 0)] if len(user_ids) else np.zeros(len(user), dtype=bool)
    if len(bots):
        details["bot_users"] = {
            "n_users": len(bots),
            "fast": int(stats["fast"][bots].sum()),
            "volume_outliers": int(stats["heavy"][bots].sum()),
        }
    return stats


_EXAMPLE_FIELDS: dict[str, tuple[str, ...]] = {
    "missing_user_id": ("item_id", "event_type", "timestamp"),
    "missing_item_id": ("event_type", "timestamp"),
    "missing_timestamp": ("item_id", "event_type", "timestamp"),
    "unknown_event_type": ("item_id", "event_type"),
    "unknown_user": ("item_id", "event_type"),  # never the user id itself
    "unknown_item": ("item_id", "event_type"),
    "duplicate_events": ("item_id", "event_type", "timestamp"),
    "value_out_of_range": ("item_id", "event_type", "value"),
    "future_timestamp": ("item_id", "event_type", "timestamp"),
}


def _format_time(value: int, per_second: int) -> str:
    """ISO 8601 text of a time in ``1 / per_second`` units, or a count when it has no calendar date."""
    unit = next(name for name, size in _UNIT_PER_SECOND.items() if size == per_second)
    try:
        return pd.Timestamp(np.datetime64(value, unit)).tz_localize("UTC").isoformat()
    except (OverflowError, ValueError):  # OutOfBoundsDatetime is a ValueError
        return f"{value} {unit} after 1970-01-01"


def _examples(
    code: str,
    mask: np.ndarray,
    events: pd.DataFrame,
    limit: int,
    stats: dict[str, np.ndarray],
    user: np.ndarray,
    ts: np.ndarray,
    per_second: int,
) -> tuple[dict[str, Any], ...]:
    """A few flagged rows of ``code``, JSON-ready, without user ids."""
    rows = np.flatnonzero(mask)
    if code == "bot_users":
        # One example per bot user: its first row and its statistics, not its id.
        codes = user[rows]
        _, first = np.unique(codes, return_index=True)
        out = []
        for row in np.sort(rows[first])[:limit]:
            u = user[row]
            out.append(
                {
                    "first_row": int(row),
                    "n_events": int(stats["counts"][u]),
                    "median_gap_seconds": _json_value(round(float(stats["median_gap"][u]), 3)),
                    "events_per_minute": _json_value(round(float(stats["per_minute"][u]), 2)),
                    "volume_zscore": _json_value(round(float(stats["zscore"][u]), 2)),
                }
            )
        return tuple(out)
    fields = [f for f in _EXAMPLE_FIELDS[code] if f in events.columns]
    picked = events.iloc[rows[:limit]]
    out = []
    for k, row in enumerate(rows[:limit]):
        example: dict[str, Any] = {"row": int(row)}
        for name in fields:
            if name == "timestamp" and code != "missing_timestamp":  # the time as read, not as written
                example[name] = _format_time(int(ts[row]), per_second)
            else:
                example[name] = _json_value(picked[name].iloc[k])
        out.append(example)
    return tuple(out)
