"""Telling automated accounts from people in an event log.

People act in bursts: a MovieLens user rates forty films within the same second
when a page of ratings is submitted, then comes back days later; a shopper views,
clicks and buys, then sleeps. Machines act otherwise, and each style leaves its
own trace. :func:`bot_signals` measures, for every user at once (numpy over
arrays sorted by user and time, no loop over users), one statistic per trace and
compares it with a :class:`BotRules` threshold:

``fast``
    the median gap between a user's *distinct* event times is under ``min_gap``
    seconds, or the user keeps up more than ``rate_threshold`` distinct times per
    minute over the whole active span. Events that share a timestamp count once:
    a batch submitted at once is one human action, not a hundred fast clicks
    (the rule that counted them one by one called 54% of MovieLens-100K's ratings
    bot traffic).
``regular``
    the gaps between distinct times are machine-regular: their coefficient of
    variation (standard deviation over mean) is under ``regular_cv``. Human gaps
    mix seconds inside a session with hours or days between sessions, so their
    coefficient is well above 1. Needs ``regular_min_events`` distinct times,
    because a short single session of a person can look even by chance.
``tireless``
    the user never pauses: a stretch of activity without a break of
    ``session_gap_minutes`` lasts ``max_session_hours`` or more, or holds
    ``max_session_events`` distinct event times or more. People sleep and tire;
    a slow, jittered crawler that stays under every rate limit does not.
``catalog_crawl``
    the user touched ``catalog_share`` of the catalog or more (the catalog being
    the items table or, if larger, the distinct items of the log), when the
    catalog has at least ``catalog_min_items`` items.
``repetition``
    the user hammers a few things: at most ``repeat_max_items`` distinct
    (item, event type) pairs, each repeated ``repeat_ratio`` times or more on
    average. Counting pairs per event type keeps a shopper's view, click, cart and
    purchase of one item a funnel, not a repetition.
``volume_outliers``
    an extreme volume outlier: the robust z-score (median and MAD) of the log of
    the user's event count exceeds ``volume_zscore``.

Each rule applies only to users with at least ``min_events`` events (twice
clicking quickly is not a bot), and a user is a bot when any rule fires; the
report counts the users behind each reason so that a reviewer sees why.
Duplicated rows are left out before measuring (the caller passes them as not
eligible), so that a log replayed twice does not make its users look fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommender.errors import ConfigError

__all__ = ["BOT_REASONS", "BotRules", "BotSignals", "bot_signals", "parse_bot_rules", "repeated_user_times", "sorted_user_times"]

BOT_REASONS: tuple[str, ...] = ("fast", "regular", "tireless", "catalog_crawl", "repetition", "volume_outliers")
"""The reasons a user can be called a bot, in report order."""

INVALID_RULES = "bot rules: {problems}"
"""Message of the :class:`ConfigError` raised for thresholds out of range."""

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_MIN_LOG_SCALE = 0.5  # floor of the spread of log counts: when (almost) every user has the same
# count, MAD is 0 and any difference would be infinitely far; with the floor and the default
# z-score of 5, a volume outlier has at least e ** 2.5, about 12 times, the median count
_MIN_USERS_FOR_VOLUME = 20  # fewer users than this: no volume outliers (the median means little)


class BotRules(BaseModel):
    """The thresholds of bot detection; the defaults suit both clickstreams and rating logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_events: int = Field(20, ge=2)
    """Users with fewer events are never bots (a person may click twice quickly)."""
    min_gap: float = Field(1.0, ge=0, allow_inf_nan=False)
    """Median seconds between a user's distinct event times under which the user is fast; 0 turns it off."""
    rate_threshold: float = Field(60.0, ge=0, allow_inf_nan=False)
    """Distinct event times per minute over the active span above which the user is fast."""
    volume_zscore: float = Field(5.0, ge=0, allow_inf_nan=False)
    """Robust z-score of the log event count above which the user is a volume outlier (20 active users or more)."""
    regular_cv: float = Field(0.2, ge=0, allow_inf_nan=False)
    """Coefficient of variation of the gaps under which activity is machine-regular; 0 turns it off."""
    regular_min_events: int = Field(50, ge=3)
    """Distinct event times needed before regularity is judged."""
    session_gap_minutes: float = Field(30.0, gt=0, allow_inf_nan=False)
    """A pause this long ends a stretch of activity."""
    max_session_hours: float = Field(12.0, gt=0)
    """A stretch of activity without a pause this long or longer is tireless; ``inf`` turns it off."""
    max_session_events: int = Field(1500, ge=2)
    """A stretch of activity with this many distinct event times or more is tireless."""
    catalog_share: float = Field(0.5, gt=0, le=1)
    """Share of the catalog touched at or above which the user crawls it."""
    catalog_min_items: int = Field(500, ge=1)
    """Catalogs smaller than this are not judged for crawling (an avid customer of a small shop sees most of it)."""
    repeat_ratio: float = Field(10.0, ge=1, allow_inf_nan=False)
    """Events per distinct (item, event type) pair at or above which a narrow user repeats."""
    repeat_max_items: int = Field(10, ge=1)
    """Most distinct (item, event type) pairs a repeating user has."""


def parse_bot_rules(value: BotRules | dict[str, Any] | None) -> BotRules:
    """``value`` as :class:`BotRules` (a mapping of thresholds, or None for the defaults).

    Raises
    ------
    ConfigError
        When a threshold is unknown or out of range, naming each one.
    """
    if value is None:
        return BotRules()
    if isinstance(value, BotRules):
        return value
    try:
        return BotRules.model_validate(value)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rules'}: {e['msg']}" for e in err.errors())
        raise ConfigError(INVALID_RULES.format(problems=problems)) from err


@dataclass(frozen=True)
class BotSignals:
    """Per-user statistics and rule outcomes, indexed by user code.

    Every array has one entry per user code. ``reasons`` maps each of
    :data:`BOT_REASONS` to a boolean array; ``is_bot`` is their union.
    """

    counts: np.ndarray
    distinct_times: np.ndarray
    median_gap: np.ndarray
    per_minute: np.ndarray
    gap_cv: np.ndarray
    longest_hours: np.ndarray
    longest_events: np.ndarray
    catalog_share: np.ndarray
    events_per_pair: np.ndarray
    zscore: np.ndarray
    reasons: dict[str, np.ndarray]

    @property
    def is_bot(self) -> np.ndarray:
        """True for the users any rule calls a bot."""
        out = np.zeros(len(self.counts), dtype=bool)
        for mask in self.reasons.values():
            out |= mask
        return out

    def reasons_of(self, code: int) -> list[str]:
        """The reasons user ``code`` is a bot, in :data:`BOT_REASONS` order."""
        return [name for name in BOT_REASONS if self.reasons[name][code]]


def bot_signals(
    user: np.ndarray,
    item: np.ndarray,
    etype: np.ndarray,
    ts: np.ndarray,
    eligible: np.ndarray,
    per_second: int,
    rules: BotRules,
    *,
    n_users: int,
    catalog_size: int = 0,
) -> BotSignals:
    """Measure every user's activity and apply ``rules``.

    Parameters
    ----------
    user, item, etype:
        Integer codes per row (``user`` and ``item`` >= 0 where eligible).
    ts:
        Times as integers in ``1 / per_second`` seconds.
    eligible:
        Rows to measure (not missing, not duplicated).
    rules:
        The thresholds.
    n_users:
        Number of user codes (the length of every returned array).
    catalog_size:
        Items in the items table, if known; the distinct items of the log count when larger.
    """
    rows = np.flatnonzero(eligible)
    u, i, e, t = user[rows], item[rows], etype[rows], ts[rows]
    counts = np.bincount(u, minlength=n_users)
    su, st = sorted_user_times(u, t)
    timing = _timing(su, st, per_second, rules, n_users)
    del su, st
    catalog, catalog_share, events_per_pair, n_pairs = _breadth(u, i, e, counts, n_users, catalog_size)
    zscore = _volume_zscore(counts)
    enough = counts >= rules.min_events
    timed = timing["distinct_times"] >= rules.min_events
    reasons = {
        "fast": timed & ((timing["median_gap"] < rules.min_gap) | (timing["per_minute"] > rules.rate_threshold)),
        "regular": (timing["distinct_times"] >= max(rules.regular_min_events, rules.min_events))
        & (timing["gap_cv"] < rules.regular_cv),
        "tireless": enough
        & ((timing["longest_hours"] >= rules.max_session_hours) | (timing["longest_events"] >= rules.max_session_events)),
        "catalog_crawl": enough & (catalog >= rules.catalog_min_items) & (catalog_share >= rules.catalog_share),
        "repetition": enough & (n_pairs <= rules.repeat_max_items) & (events_per_pair >= rules.repeat_ratio),
        "volume_outliers": enough & (zscore > rules.volume_zscore),
    }
    return BotSignals(
        counts=counts,
        catalog_share=catalog_share,
        events_per_pair=events_per_pair,
        zscore=zscore,
        reasons=reasons,
        **timing,
    )


def _timing(u: np.ndarray, t: np.ndarray, per_second: int, rules: BotRules, n_users: int) -> dict[str, np.ndarray]:
    """Gap statistics over each user's distinct event times (rows sorted by user, then time)."""
    new = np.ones(len(u), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (t[1:] != t[:-1])
    du, dt = u[new], t[new]
    distinct = np.bincount(du, minlength=n_users)
    same = du[1:] == du[:-1]
    steps = np.diff(dt)
    gaps = (steps[same] / per_second).astype(np.float64)
    gap_user = du[1:][same]
    n_gaps = np.bincount(gap_user, minlength=n_users)
    has_gap = n_gaps > 0
    mean = np.zeros(n_users)
    mean[has_gap] = np.bincount(gap_user, weights=gaps, minlength=n_users)[has_gap] / n_gaps[has_gap]
    spread = np.bincount(gap_user, weights=(gaps - mean[gap_user]) ** 2, minlength=n_users)
    gap_cv = np.full(n_users, np.inf)
    positive = has_gap & (mean > 0)
    gap_cv[positive] = np.sqrt(spread[positive] / n_gaps[positive]) / mean[positive]
    # Median gap: gaps sorted within user, then the middle one(s).
    sorted_gaps = _sorted_within_user(gap_user, steps[same], per_second)
    gap_start = np.concatenate([[0], np.cumsum(n_gaps)[:-1]]).astype(np.int64)
    median_gap = np.full(n_users, np.inf)
    lo = gap_start[has_gap] + (n_gaps[has_gap] - 1) // 2
    hi = gap_start[has_gap] + n_gaps[has_gap] // 2
    median_gap[has_gap] = (sorted_gaps[lo] + sorted_gaps[hi]) / 2.0
    # Active span and sustained pace.
    first = np.searchsorted(du, np.arange(n_users))
    last = first + distinct - 1
    span_s = np.zeros(n_users)
    active = distinct > 0
    span_s[active] = (dt[last[active]] - dt[first[active]]) / per_second
    per_minute = np.zeros(n_users)
    paced = (distinct > 1) & (span_s > 0)
    per_minute[paced] = (distinct[paced] - 1) / (span_s[paced] / 60.0)
    # Stretches of activity: split at a user change or a pause of session_gap_minutes.
    starts = np.ones(len(du), dtype=bool)
    starts[1:] = ~same | (steps >= rules.session_gap_minutes * 60 * per_second)
    s_first = np.flatnonzero(starts)
    s_last = np.append(s_first[1:], len(du))[: len(s_first)].astype(np.int64) - 1
    longest_hours = np.zeros(n_users)
    np.maximum.at(longest_hours, du[s_first], (dt[s_last] - dt[s_first]) / per_second / 3600.0)
    longest_events = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(longest_events, du[s_first], s_last - s_first + 1)
    return {
        "distinct_times": distinct,
        "median_gap": median_gap,
        "per_minute": per_minute,
        "gap_cv": gap_cv,
        "longest_hours": longest_hours,
        "longest_events": longest_events,
    }


def _breadth(
    u: np.ndarray, i: np.ndarray, e: np.ndarray, counts: np.ndarray, n_users: int, catalog_size: int
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The catalog size, the share of it each user touched, events per distinct (item, type) pair, and the pair count."""
    if len(u) == 0:
        zeros = np.zeros(n_users)
        return int(catalog_size), zeros, zeros, np.zeros(n_users, dtype=np.int64)
    n_items, n_pairs, distinct_items = _distinct_per_user(u, i, e, n_users)
    catalog = max(int(catalog_size), distinct_items)
    per_pair = np.zeros(n_users)
    touched = n_pairs > 0
    per_pair[touched] = counts[touched] / n_pairs[touched]
    return catalog, n_items / max(catalog, 1), per_pair, n_pairs


def _volume_zscore(counts: np.ndarray) -> np.ndarray:
    """Robust z-score of the log event count among active users (0 with fewer than 20 of them)."""
    zscore = np.zeros(len(counts))
    active = counts > 0
    if active.sum() >= _MIN_USERS_FOR_VOLUME:
        log_counts = np.log(counts[active].astype(np.float64))
        center = float(np.median(log_counts))
        scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(log_counts - center))), _MIN_LOG_SCALE)
        zscore[active] = (log_counts - center) / scale
    return zscore


# -- sorting by one int64 key ----------------------------------------------------
# numpy sorts plain int64 values several times faster than it argsorts or lexsorts them, and
# far faster than pandas hashes pairs of columns. Every statistic here depends only on the
# values in (user, time) order, or on the set of distinct (user, item, type) rows, never on
# which row held a value, so the pairs are packed into one int64 and sorted as values.
# When a packed key could overflow, the row-wise path (lexsort, drop_duplicates) is used.

_INT64_LIMIT = 2**63


def _time_grain(offsets: np.ndarray) -> int:
    """The largest of 10**9, 10**6, 10**3 and 1 dividing every (non-negative) time offset."""
    for grain in (10**9, 10**6, 10**3):
        if not np.any(offsets % grain):
            return grain
    return 1


def _packed_user_times(u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int, int, int] | None:
    """``(key, span, grain, base)``: each row's (user, time) as one int64, ordered as the pairs are; None when it
    could overflow. The time is the offset from the earliest (``base``) in its coarsest exact ``grain``."""
    base = int(t.min())
    if int(t.max()) - base >= _INT64_LIMIT:  # the offsets themselves would overflow
        return None
    offsets = t - base
    grain = _time_grain(offsets)
    span = int(offsets.max()) // grain + 1
    if (int(u.max()) + 1) * span >= _INT64_LIMIT:
        return None
    offsets //= grain
    offsets += u.astype(np.int64) * span
    return offsets, span, grain, base


def sorted_user_times(u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(u, t)`` sorted by user, then time: the values ``np.lexsort((t, u))`` puts in that order.

    The pairs are packed into one int64 (:func:`_packed_user_times`) and one value sort
    replaces the lexsort. Equal pairs are equal values, so the result is the lexsort's to the
    last element.
    """
    packed = _packed_user_times(u, t) if len(u) else None
    if packed is None:
        order = np.lexsort((t, u))
        return u[order], t[order]
    key, span, grain, base = packed
    key.sort()
    su, rest = np.divmod(key, span)
    del key
    rest *= grain
    rest += base
    return su, rest


def repeated_user_times(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, whether another row has the same (user, time); all True when the pairs cannot be packed.

    Only such rows can repeat each other on (user, item, type, time): the duplicate check
    hashes these rows alone instead of every row.
    """
    packed = _packed_user_times(u, t) if len(u) > 1 else None
    if packed is None:
        return np.ones(len(u), dtype=bool)
    key = packed[0]
    ordered = np.sort(key)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if len(repeated) == 0:
        return np.zeros(len(u), dtype=bool)
    values = np.unique(repeated)
    at = np.minimum(np.searchsorted(values, key), len(values) - 1)
    return values[at] == key


def _sorted_within_user(gap_user: np.ndarray, steps: np.ndarray, per_second: int) -> np.ndarray:
    """The gaps ``steps / per_second`` sorted by user, then value (``gap_user`` is sorted, ``steps`` > 0).

    What ``gaps[np.lexsort((gaps, gap_user))]`` gives: dividing by ``per_second`` keeps the order
    of the integer steps, so the steps are sorted packed under their user and divided after.
    """
    if len(steps) == 0:
        return (steps / per_second).astype(np.float64)
    grain = _time_grain(steps)
    span = int(steps.max()) // grain + 1
    if (int(gap_user.max()) + 1) * span >= _INT64_LIMIT:
        gaps = (steps / per_second).astype(np.float64)
        return gaps[np.lexsort((gaps, gap_user))]
    key = gap_user.astype(np.int64) * span + steps // grain
    key.sort()
    key %= span
    key *= grain
    return (key / per_second).astype(np.float64)


def _distinct_per_user(
    u: np.ndarray, i: np.ndarray, e: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per user, the distinct items and the distinct (item, event type) pairs; and the distinct items overall.

    The counts of ``drop_duplicates`` on the (user, item) and (user, item, type) columns, from
    one sort of packed keys (``i`` >= 0; ``e`` >= -1, a missing type being code -1).
    """
    n_i = int(i.max()) + 1
    n_e = int(e.max()) + 2
    distinct_items = int(np.count_nonzero(np.bincount(i, minlength=n_i)))
    if (int(u.max()) + 1) * n_i * n_e >= _INT64_LIMIT:
        user_items = pd.DataFrame({"u": u, "i": i}).drop_duplicates()
        pairs = pd.DataFrame({"u": u, "i": i, "e": e}).drop_duplicates()
        return (
            np.bincount(user_items["u"].to_numpy(), minlength=n_users),
            np.bincount(pairs["u"].to_numpy(), minlength=n_users),
            distinct_items,
        )
    key = (u.astype(np.int64) * n_i + i) * n_e + (e + 1)
    key.sort()
    first = np.ones(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=first[1:])
    pairs = key[first]
    del key, first
    user_item = pairs // n_e  # sorted too
    new_item = np.ones(len(user_item), dtype=bool)
    np.not_equal(user_item[1:], user_item[:-1], out=new_item[1:])
    n_pairs = np.bincount(user_item // n_i, minlength=n_users)
    n_items = np.bincount(user_item[new_item] // n_i, minlength=n_users)
    return n_items, n_pairs, distinct_items
