"""The packed-key sorts of :mod:`recommender.bots` give what the row-wise pandas and lexsort path gave.

Each reference below is the straightforward implementation the validation used before the
packed keys (lexsort by user then time, ``drop_duplicates`` on the id columns, a hash of every
row for duplicates); the fast path must agree with it to the last element, on data with ties,
repeated pairs, missing event types, and times too wide to pack (the row-wise fallback).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.bots import (
    BotRules,
    _distinct_per_user,
    _sorted_within_user,
    bot_signals,
    repeated_user_times,
    sorted_user_times,
)
from recommender.synthetic import SyntheticSpec, generate
from recommender.validate import validate_events


def _events(seed: int, n: int = 4000, n_users: int = 50, grain: int = 10**9, wide: bool = False) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, 40, n)
    e = rng.integers(-1, 4, n)  # -1: a missing event type
    t = rng.integers(1_600_000_000, 1_600_000_000 + 3000, n).astype(np.int64) * grain
    if wide:  # offsets beyond what a user code can be packed with
        t[::7] = np.iinfo(np.int64).max - rng.integers(0, 10, len(t[::7]))
        t[::11] = -(2**62)
    return u, i, e, t


def _reference_duplicates(user: np.ndarray, item: np.ndarray, etype: np.ndarray, ts: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"u": user, "i": item, "e": etype, "t": ts})
    return frame.duplicated(keep="first").to_numpy()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("grain", "wide"), [(10**9, False), (10**6, False), (1, False), (1, True)])
def test_sorted_user_times_is_the_lexsort(seed: int, grain: int, wide: bool) -> None:
    u, _, _, t = _events(seed, grain=grain, wide=wide)
    order = np.lexsort((t, u))
    su, st = sorted_user_times(u, t)
    assert np.array_equal(su, u[order]) and np.array_equal(st, t[order])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per_second", [1, 10**3, 10**9])
def test_gaps_sorted_within_user_are_the_lexsort(seed: int, per_second: int) -> None:
    rng = np.random.default_rng(seed)
    gap_user = np.sort(rng.integers(0, 30, 3000))
    steps = rng.integers(1, 50, 3000).astype(np.int64) * rng.choice([1, 10**3, 10**9])
    gaps = (steps / per_second).astype(np.float64)
    expected = gaps[np.lexsort((gaps, gap_user))]
    assert np.array_equal(_sorted_within_user(gap_user, steps, per_second), expected)


@pytest.mark.parametrize("seed", range(4))
def test_distinct_counts_are_those_of_drop_duplicates(seed: int) -> None:
    u, i, e, _ = _events(seed)
    n_users = int(u.max()) + 1
    user_items = pd.DataFrame({"u": u, "i": i}).drop_duplicates()
    pairs = pd.DataFrame({"u": u, "i": i, "e": e}).drop_duplicates()
    n_items, n_pairs, distinct = _distinct_per_user(u, i, e, n_users)
    assert np.array_equal(n_items, np.bincount(user_items["u"], minlength=n_users))
    assert np.array_equal(n_pairs, np.bincount(pairs["u"], minlength=n_users))
    assert distinct == user_items["i"].nunique()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("wide", [False, True])
def test_only_rows_sharing_a_user_and_time_can_repeat_one(seed: int, wide: bool) -> None:
    u, i, e, t = _events(seed, n=3000, n_users=20, wide=wide)
    shares = pd.DataFrame({"u": u, "t": t}).duplicated(keep=False).to_numpy()
    got = repeated_user_times(u, t)
    assert np.array_equal(got, np.ones(len(u), dtype=bool) if wide else shares)
    assert not (_reference_duplicates(u, i, e, t) & ~got).any()


@pytest.mark.parametrize("seed", range(3))
def test_validation_flags_the_rows_the_row_wise_checks_flag(seed: int) -> None:
    """Whole validation against the reference: duplicates flagged row for row on a log with replayed rows."""
    data = generate(SyntheticSpec(n_users=300, n_items=120, n_interactions=20_000, seed=seed))
    events = data.events.copy()
    rng = np.random.default_rng(seed)
    replay = events.iloc[rng.choice(len(events), 800, replace=False)]
    events = pd.concat([events, replay], ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    report = validate_events(events, now=pd.Timestamp("2100-01-01", tz="UTC").to_pydatetime())
    user = pd.factorize(events["user_id"])[0]
    item = pd.factorize(events["item_id"])[0]
    etype = pd.factorize(events["event_type"])[0]
    ts = pd.to_datetime(events["timestamp"], utc=True).array.asi8
    assert np.array_equal(report.row_flags["duplicate_events"], _reference_duplicates(user, item, etype, ts))
    assert report.row_flags["duplicate_events"].sum() >= 800


@pytest.mark.parametrize("seed", range(3))
def test_bot_signals_equal_on_packed_and_row_wise_paths(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing the row-wise fallback (nothing can be packed) gives the same signals to the last bit."""
    import recommender.bots as bots

    u, i, e, t = _events(seed, n=6000, n_users=30)
    e = np.maximum(e, 0)
    eligible = np.ones(len(u), dtype=bool)
    eligible[::13] = False
    rules = BotRules()
    fast = bot_signals(u, i, e, t, eligible, 10**9, rules, n_users=30, catalog_size=0)
    monkeypatch.setattr(bots, "_INT64_LIMIT", 1)
    slow = bot_signals(u, i, e, t, eligible, 10**9, rules, n_users=30, catalog_size=0)
    for name in ("counts", "distinct_times", "median_gap", "per_minute", "gap_cv", "longest_hours", "longest_events",
                 "catalog_share", "events_per_pair", "zscore"):  # fmt: skip
        a, b = getattr(fast, name), getattr(slow, name)
        assert np.array_equal(a, b, equal_nan=True), name
    for reason in fast.reasons:
        assert np.array_equal(fast.reasons[reason], slow.reasons[reason]), reason
    assert np.isfinite(fast.median_gap).any()
