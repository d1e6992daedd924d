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
``pre_epoch_timestamp``
    before 1970-01-01T00:00:00Z (a negative Unix time): a placeholder, a sign
    error or the wrong unit, never an event's time (the loaders of
    :mod:`recommender.loaders` and :mod:`recommender.datasets` refuse such a
    file; this finding is for a table built otherwise).
``bot_users``
    every row of a user whose activity is not human: fast, machine-regular,
    tireless, crawling the catalog, hammering a few items, or an extreme volume
    outlier (:mod:`recommender.bots` says how each is measured; its
    :class:`~recommender.bots.BotRules` holds the thresholds, which a policy pack
    or the caller may set). Events sharing one timestamp count as one action,
    so that a page of ratings submitted at once is not taken for a bot.

The column readers, which never raise on a bad value, are in
:mod:`recommender.event_columns`; the report's types in
:mod:`recommender.validation_report`.

Privacy: examples show row numbers (0-based positions), items, types, values and
times, never a user id, so that a report can be shared without personal data.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recommender.bots import BOT_REASONS, BotRules, BotSignals, bot_signals, parse_bot_rules, repeated_user_times
from recommender.data import EVENT_TYPES, REQUIRED_EVENT_COLUMNS, Dataset
from recommender.errors import ConfigError, DataError
from recommender.event_columns import format_time, id_codes, ids_as_text, in_unit, json_value, numbers, timestamps
from recommender.validation_report import CODES, Finding, ValidationReport

__all__ = [
    "CODES",
    "MESSAGES",
    "MISSING_COLUMNS",
    "Finding",
    "ValidationReport",
    "validate_events",
]

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
    "pre_epoch_timestamp": (
        "{count} row(s) are timestamped before 1970-01-01T00:00:00Z (a negative Unix time): "
        "a placeholder, a sign error or the wrong unit, not an event's time"
    ),
    "bot_users": (
        "{count} row(s) come from {n_users} user(s) whose activity is not human "
        "(fast, machine-regular, tireless, crawling the catalog, repeating a few items, or an extreme volume outlier)"
    ),
}
"""Message template of each finding (tests assert on these)."""

MISSING_COLUMNS = "events: missing required column(s) {missing}; an events table needs {required} (got {got})"
"""Message of the :class:`DataError` raised when a required column is missing."""

DUPLICATE_COLUMNS = "events: column name(s) {names} appear more than once; each column must be unique"
BAD_PARAMETER = "The {name!r} parameter of validate_events must be {expected}. Got {got!r} instead."
NOT_EVENTS = "validate_events expects a Dataset or an events DataFrame; got {got}"


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
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (value >= low_ok and math.isfinite(value))
        ):
            raise ConfigError(BAD_PARAMETER.format(name=name, expected="a finite number >= 0", got=value))
    for name, value, lowest in (("bot_min_events", bot_min_events, 2), ("max_examples", max_examples, 0)):
        if value is None and name == "bot_min_events":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ConfigError(
                BAD_PARAMETER.format(name=name, expected=f"an int in the range [{lowest}, inf)", got=value)
            )
    return low, high


def _bot_rules(
    rules: BotRules | dict[str, Any] | None, rate: float | None, gap: float | None, zscore: float | None, events: int | None
) -> BotRules:
    """The bot thresholds: ``rules`` with the shorthand parameters that were given laid over them."""
    base = parse_bot_rules(rules)
    shorthand = {"rate_threshold": rate, "min_gap": gap, "volume_zscore": zscore, "min_events": events}
    given = {name: value for name, value in shorthand.items() if value is not None}
    return parse_bot_rules({**base.model_dump(), **given}) if given else base


def _duplicates(
    user: np.ndarray, item: np.ndarray, etype: np.ndarray, ts: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """Rows repeating an earlier eligible row's (user, item, type, time)."""
    rows = np.flatnonzero(eligible)
    flags = np.zeros(len(user), dtype=bool)
    if len(rows) < 2:
        return flags
    # A repeat shares its (user, time) with the row it repeats: only those rows are hashed (in row order).
    rows = rows[repeated_user_times(user[rows], ts[rows])]
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


def validate_events(
    dataset: Dataset | pd.DataFrame,
    *,
    now: datetime | None = None,
    rating_range: tuple[float, float] | None = None,
    bot_rate_threshold: float | None = None,
    bot_min_gap: float | None = None,
    bot_volume_zscore: float | None = None,
    bot_min_events: int | None = None,
    bot_rules: BotRules | dict[str, Any] | None = None,
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
        The valid ``(low, high)`` range of ``rating`` values, inclusive (default:
        the dataset's ``rating_range``, 1 to 5 for a bare events table).
    bot_rules:
        The thresholds of bot detection (:class:`~recommender.bots.BotRules`, or a
        mapping of its fields, as a policy pack gives them); the defaults when None.
    bot_rate_threshold, bot_min_gap, bot_volume_zscore, bot_min_events:
        Shorthands that override ``bot_rules``' ``rate_threshold``, ``min_gap``,
        ``volume_zscore`` and ``min_events``.
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
    if rating_range is None:
        rating_range = dataset.rating_range if isinstance(dataset, Dataset) else (1, 5)
    low, high = _check_parameters(
        rating_range, bot_rate_threshold, bot_min_gap, bot_volume_zscore, bot_min_events, max_examples
    )
    rules = _bot_rules(bot_rules, bot_rate_threshold, bot_min_gap, bot_volume_zscore, bot_min_events)
    events, users, items = _tables(dataset)
    now = _as_utc(now)
    n = len(events)
    flags: dict[str, np.ndarray] = {}
    details: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    user, user_ids = id_codes(events["user_id"])
    item, item_ids = id_codes(events["item_id"])
    ts, ts_missing, per_second = timestamps(events["timestamp"])
    flags["missing_user_id"] = user < 0
    flags["missing_item_id"] = item < 0
    flags["missing_timestamp"] = ts_missing
    etype, is_rating = _flag_event_types(events, flags, skipped)
    _flag_unknown("unknown_user", user, user_ids, users, "users", flags, skipped)
    _flag_unknown("unknown_item", item, item_ids, items, "items", flags, skipped)
    eligible = (user >= 0) & (item >= 0) & ~ts_missing
    flags["duplicate_events"] = _duplicates(user, item, etype, ts, eligible)
    _flag_values(events, is_rating, low, high, flags, details, skipped)
    flags["future_timestamp"] = ~ts_missing & (ts > in_unit(now, per_second))
    flags["pre_epoch_timestamp"] = ~ts_missing & (ts < 0)
    signals = bot_signals(
        user, item, etype, ts, eligible & ~flags["duplicate_events"], per_second, rules,
        n_users=len(user_ids), catalog_size=0 if items is None else len(items),
    )  # fmt: skip
    _flag_bots(user, signals, flags, details)

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
        examples = _examples(code, mask, events, max_examples, signals, user, ts, per_second) if max_examples else ()
        findings.append(Finding(code, count, count / n if n else 0.0, message, examples, details.get(code, {})))
    parameters = {"rating_range": [low, high], "bots": rules.model_dump()}
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
    etype, type_names = id_codes(events["event_type"])
    known_type = np.asarray(type_names.isin(EVENT_TYPES), dtype=bool)
    flags["unknown_event_type"] = (etype < 0) | ~known_type[np.maximum(etype, 0)] if len(type_names) else etype < 0
    is_rating = np.asarray(type_names == "rating", dtype=bool)  # by position: 1 and "1" both read "1"
    return etype, (etype >= 0) & is_rating[np.maximum(etype, 0)] if len(type_names) else np.zeros(n, dtype=bool)


def _flag_unknown(
    code: str, codes: np.ndarray, ids: pd.Index, table: pd.DataFrame | None, what: str,
    flags: dict[str, np.ndarray], skipped: dict[str, str],
) -> None:  # fmt: skip
    """Flag rows whose id is not in the users or items ``table`` (skipped without a table)."""
    if table is None or len(table) == 0:
        skipped[code] = f"no {what} table to compare with"
        return
    known = np.asarray(ids.isin(ids_as_text(pd.Index(table.index))), dtype=bool)
    flags[code] = (codes >= 0) & ~known[np.maximum(codes, 0)] if len(ids) else np.zeros(len(codes), dtype=bool)


def _flag_values(
    events: pd.DataFrame, is_rating: np.ndarray, low: float, high: float,
    flags: dict[str, np.ndarray], details: dict[str, dict[str, Any]], skipped: dict[str, str],
) -> None:  # fmt: skip
    """Flag ratings outside ``[low, high]`` and other values that are unreadable, negative or infinite."""
    if "value" not in events.columns:
        skipped["value_out_of_range"] = "no value column"
        return
    value, unreadable = numbers(events["value"])
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
    user: np.ndarray, signals: BotSignals, flags: dict[str, np.ndarray], details: dict[str, dict[str, Any]]
) -> None:
    """Flag every row of a bot user; count the bot users behind each reason."""
    is_bot = signals.is_bot
    flags["bot_users"] = (user >= 0) & is_bot[np.maximum(user, 0)] if len(is_bot) else np.zeros(len(user), dtype=bool)
    if is_bot.any():
        details["bot_users"] = {
            "n_users": int(is_bot.sum()),
            **{reason: int(signals.reasons[reason].sum()) for reason in BOT_REASONS},
        }


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
    "pre_epoch_timestamp": ("item_id", "event_type", "timestamp"),
}


def _examples(
    code: str,
    mask: np.ndarray,
    events: pd.DataFrame,
    limit: int,
    stats: BotSignals,
    user: np.ndarray,
    ts: np.ndarray,
    per_second: int,
) -> tuple[dict[str, Any], ...]:
    """A few flagged rows of ``code``, JSON-ready, without user ids."""
    rows = np.flatnonzero(mask)
    if code == "bot_users":
        return _bot_examples(rows, limit, stats, user)
    fields = [f for f in _EXAMPLE_FIELDS[code] if f in events.columns]
    picked = events.iloc[rows[:limit]]
    out = []
    for k, row in enumerate(rows[:limit]):
        example: dict[str, Any] = {"row": int(row)}
        for name in fields:
            if name == "timestamp" and code != "missing_timestamp":  # the time as read, not as written
                example[name] = format_time(int(ts[row]), per_second)
            else:
                example[name] = json_value(picked[name].iloc[k])
        out.append(example)
    return tuple(out)


def _bot_examples(rows: np.ndarray, limit: int, signals: BotSignals, user: np.ndarray) -> tuple[dict[str, Any], ...]:
    """One example per bot user: its first row, its statistics and its reasons, never its id."""
    _, first = np.unique(user[rows], return_index=True)
    out = []
    for row in np.sort(rows[first])[:limit]:
        u = user[row]
        out.append(
            {
                "first_row": int(row),
                "n_events": int(signals.counts[u]),
                "median_gap_seconds": json_value(round(float(signals.median_gap[u]), 3)),
                "events_per_minute": json_value(round(float(signals.per_minute[u]), 2)),
                "gap_cv": json_value(round(float(signals.gap_cv[u]), 3)),
                "longest_active_hours": json_value(round(float(signals.longest_hours[u]), 2)),
                "longest_active_events": int(signals.longest_events[u]),
                "catalog_share": json_value(round(float(signals.catalog_share[u]), 4)),
                "events_per_item": json_value(round(float(signals.events_per_pair[u]), 2)),
                "volume_zscore": json_value(round(float(signals.zscore[u]), 2)),
                "reasons": signals.reasons_of(u),
            }
        )
    return tuple(out)
