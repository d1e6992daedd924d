"""Splits: no look-ahead for the time split, exact counts for leave-last-k,
determinism, disjointness, and exact messages for bad parameters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recommender import ConfigError, DataError
from recommender.feedback import FeedbackConfig
from recommender.split import (
    BAD_PARAMETER,
    MISSING_COLUMN,
    MISSING_TIMESTAMP,
    NO_TRAINING_EVENTS,
    UNKNOWN_PARAMETER,
    SplitConfig,
    _last_k_by_rounds,
    _last_k_by_sorting,
    global_time_split,
    leave_last_k,
    random_holdout,
    split,
    train_test_matrices,
)


def make_events(n: int = 3000, n_users: int = 60, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Random views with many timestamp ties (only 500 distinct seconds)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": pd.Series([f"u{u}" for u in rng.integers(0, n_users, n)], dtype="string"),
            "item_id": pd.Series([f"i{i}" for i in rng.integers(0, n_items, n)], dtype="string"),
            "event_type": "view",
            "value": np.nan,
            "timestamp": pd.to_datetime(1_600_000_000 + rng.integers(0, 500, n), unit="s", utc=True),
        },
        index=pd.RangeIndex(1000, 1000 + n),  # not 0..n-1: the splits must keep the index
    )


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return make_events()


def assert_partition(events: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    assert train.index.intersection(test.index).empty
    assert len(train) + len(test) == len(events)
    assert train.index.union(test.index).sort_values().equals(events.index)
    assert train.index.is_monotonic_increasing and test.index.is_monotonic_increasing  # input order kept
    pd.testing.assert_frame_equal(train, events.loc[train.index])


# -- random holdout ------------------------------------------------------------------
def test_random_holdout_sizes_disjoint_and_deterministic(events):
    train, test = random_holdout(events, test_fraction=0.25, random_state=7)
    assert len(test) == math.ceil(0.25 * len(events))
    assert_partition(events, train, test)
    again_train, again_test = random_holdout(events, test_fraction=0.25, random_state=7)
    assert again_test.index.equals(test.index) and again_train.index.equals(train.index)
    _, other = random_holdout(events, test_fraction=0.25, random_state=8)
    assert not other.index.equals(test.index)


def test_random_holdout_of_nothing_is_nothing(events):
    train, test = random_holdout(events.iloc[:0])
    assert len(train) == len(test) == 0


# -- global time split ---------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_time_split_has_no_look_ahead(events, fraction):
    train, test = global_time_split(events, test_fraction=fraction)
    assert_partition(events, train, test)
    assert train["timestamp"].max() < test["timestamp"].min()
    # ties at the cutoff all go to test, so test is at least the requested share
    assert len(test) >= math.ceil(fraction * len(events))
    cutoff = test["timestamp"].min()
    assert (events["timestamp"] >= cutoff).sum() == len(test)


def test_time_split_sends_every_tie_at_the_cutoff_to_test():
    ts = pd.to_datetime([1, 2, 3, 3, 3, 4], unit="s", utc=True)
    events = pd.DataFrame({"user_id": list("abcdef"), "item_id": list("xxxxxx"), "timestamp": ts})
    train, test = global_time_split(events, test_fraction=0.3)  # ceil(1.8) = 2 events -> cutoff 3
    assert train["user_id"].tolist() == ["a", "b"]
    assert test["user_id"].tolist() == ["c", "d", "e", "f"]


def test_time_split_works_on_unix_seconds_and_is_deterministic(events):
    numeric = events.assign(timestamp=(events["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))
    assert numeric["timestamp"].dtype == np.int64
    a = global_time_split(numeric, 0.2)
    b = global_time_split(events, 0.2)
    assert a[1].index.equals(b[1].index)
    assert global_time_split(numeric, 0.2)[1].index.equals(a[1].index)


def test_time_split_refuses_to_leave_training_empty():
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [5, 5]})
    with pytest.raises(DataError) as info:
        global_time_split(events, 0.5)
    assert str(info.value) == NO_TRAINING_EVENTS.format(func="global_time_split", n=2, cutoff=5, test_fraction=0.5)


def test_time_split_refuses_missing_timestamps():
    events = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": pd.to_datetime([1, None, 3], unit="s", utc=True)}
    )
    with pytest.raises(DataError) as info:
        global_time_split(events)
    assert str(info.value) == MISSING_TIMESTAMP.format(func="global_time_split", n=1, row=1)


# -- leave last k --------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 60])
def test_leave_last_k_exact_counts_and_latest_events(events, k):
    train, test = leave_last_k(events, k=k)
    assert_partition(events, train, test)
    per_user = events.groupby("user_id").size()
    expected = per_user.where(per_user > k, 0).clip(upper=k)
    got = test.groupby("user_id").size().reindex(per_user.index, fill_value=0)
    pd.testing.assert_series_equal(got, expected, check_names=False)
    # for each test user: no training event is later than any of their test events
    last_train = train.groupby("user_id")["timestamp"].max()
    first_test = test.groupby("user_id")["timestamp"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()


def test_leave_last_k_hand_example_with_ties_broken_by_row_order():
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "a", "c", "c"],
            "item_id": ["p", "q", "r", "p", "s", "p", "q"],
            "timestamp": [1, 4, 4, 9, 2, 7, 7],
        }
    )
    train, test = leave_last_k(events, k=1)
    # a: the two events at t=4 tie; the later row (r) counts as the latest.
    # b: a single event stays in train. c: tie at 7, the later row (q) is held out.
    assert list(zip(test["user_id"], test["item_id"])) == [("a", "r"), ("c", "q")]
    _, test2 = leave_last_k(events, k=2)
    assert list(zip(test2["user_id"], test2["item_id"])) == [("a", "q"), ("a", "r")]  # c has only 2 events


def test_leave_last_k_keeps_missing_users_in_train():
    events = pd.DataFrame(
        {"user_id": pd.Series(["a", None, "a", None], dtype="string"), "item_id": list("wxyz"), "timestamp": [1, 5, 2, 6]}
    )
    train, test = leave_last_k(events, k=1)
    assert test["item_id"].tolist() == ["y"]


def test_leave_last_k_rounds_and_sorting_agree():
    rng = np.random.default_rng(3)
    users = rng.integers(-1, 200, 20_000)  # -1: a missing user id
    keys = rng.integers(0, 300, 20_000)  # many ties
    for k in (1, 2, 5, 8):
        np.testing.assert_array_equal(_last_k_by_rounds(users, keys, k), _last_k_by_sorting(users, keys, k))
    float_keys = keys.astype(np.float64)
    np.testing.assert_array_equal(_last_k_by_rounds(users, float_keys, 3), _last_k_by_sorting(users, float_keys, 3))


def test_leave_last_k_is_vectorized_enough_for_a_million_events():
    n = 1_000_000
    rng = np.random.default_rng(0)
    events = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(rng.integers(0, 50_000, n), categories=[f"u{i}" for i in range(50_000)]),
            "item_id": rng.integers(0, 5000, n),
            "timestamp": pd.to_datetime(rng.integers(1.6e9, 1.7e9, n), unit="s", utc=True),
        }
    )
    import time

    started = time.perf_counter()
    _, test = leave_last_k(events, k=2)
    assert time.perf_counter() - started < 5.0  # ~0.2 s here; a per-user loop takes minutes
    assert len(test) == 2 * 50_000 - 0  # every user has far more than 2 events


# -- config and messages -------------------------------------------------------------
def test_split_dispatches_on_the_config(events):
    for config, direct in [
        (SplitConfig(kind="random", test_fraction=0.3, random_state=4), random_holdout(events, 0.3, 4)),
        (SplitConfig(kind="time", test_fraction=0.3), global_time_split(events, 0.3)),
        ({"kind": "leave_last", "k": 2}, leave_last_k(events, 2)),
    ]:
        got = split(events, config)
        assert got[1].index.equals(direct[1].index)
    assert split(events)[1].index.equals(global_time_split(events, 0.2)[1].index)


@pytest.mark.parametrize(
    ("config", "name", "expected", "got"),
    [
        ({"test_fraction": 1.5}, "test_fraction", "a float in the range (0, 1)", 1.5),
        ({"test_fraction": 0}, "test_fraction", "a float in the range (0, 1)", 0),
        ({"k": 0}, "k", "an int in the range [1, inf)", 0),
        ({"kind": "by_session"}, "kind", "one of 'random', 'time', 'leave_last'", "by_session"),
        ({"random_state": -1}, "random_state", "an int in the range [0, inf)", -1),
    ],
)
def test_split_config_errors_say_what_and_what_was_expected(events, config, name, expected, got):
    with pytest.raises(ConfigError) as info:
        split(events, config)
    assert str(info.value) == BAD_PARAMETER.format(name=name, func="split", expected=expected, got=got)


def test_split_error_matches_the_documented_example(events):
    with pytest.raises(ConfigError, match=r"^The 'test_fraction' parameter of split must be a float in the range \(0, 1\)\. Got 1\.5 instead\.$"):
        split(events, {"kind": "time", "test_fraction": 1.5})


def test_split_rejects_unknown_keys(events):
    with pytest.raises(ConfigError) as info:
        split(events, {"kind": "time", "fraction": 0.2})
    assert str(info.value) == UNKNOWN_PARAMETER.format(
        func="split", name="fraction", known="kind, test_fraction, k, random_state"
    )


@pytest.mark.parametrize(
    ("call", "func", "name", "expected", "got"),
    [
        (lambda ev: random_holdout(ev, test_fraction=1.0), "random_holdout", "test_fraction", "a float in the range (0, 1)", 1.0),
        (lambda ev: random_holdout(ev, test_fraction=True), "random_holdout", "test_fraction", "a float in the range (0, 1)", True),
        (lambda ev: random_holdout(ev, random_state=1.5), "random_holdout", "random_state", "an int in the range [0, inf)", 1.5),
        (lambda ev: global_time_split(ev, test_fraction=-0.1), "global_time_split", "test_fraction", "a float in the range (0, 1)", -0.1),
        (lambda ev: leave_last_k(ev, k=0), "leave_last_k", "k", "an int in the range [1, inf)", 0),
        (lambda ev: leave_last_k(ev, k=2.0), "leave_last_k", "k", "an int in the range [1, inf)", 2.0),
    ],
)
def test_functions_validate_their_parameters(events, call, func, name, expected, got):
    with pytest.raises(ConfigError) as info:
        call(events)
    assert str(info.value) == BAD_PARAMETER.format(name=name, func=func, expected=expected, got=got)


def test_missing_column_is_a_data_error(events):
    with pytest.raises(DataError) as info:
        leave_last_k(events.drop(columns=["timestamp"]))
    assert str(info.value) == MISSING_COLUMN.format(
        func="leave_last_k", column="timestamp", columns="user_id, item_id, event_type, value"
    )


# -- matrices ------------------------------------------------------------------------
def test_train_test_matrices_align_and_count_what_they_drop():
    train_events = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "item_id": ["x", "y", "x", "z"],
            "event_type": ["view", "view", "view", "rating"],
            "value": [np.nan, np.nan, np.nan, 2.0],  # b's rating of z is below the threshold: z unknown
        }
    )
    test_events = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "b"],
            "item_id": ["y", "z", "y", "w", "x", "x"],
            "event_type": ["view", "view", "view", "view", "view", "rating"],
            "value": [np.nan, np.nan, np.nan, np.nan, np.nan, 1.0],  # low rating: not a positive
        }
    )
    mats = train_test_matrices(train_events, test_events, FeedbackConfig())
    assert list(mats.test.user_ids) == list(mats.train.user_ids) == ["a", "b"]
    assert list(mats.test.item_ids) == list(mats.train.item_ids) == ["x", "y", "z"]
    # test positives (b's rating of x is below the threshold): (a,y) is a training positive,
    # dropped as seen; (a,z) kept: z is in the training universe although its only training
    # event is not a positive; (b,y) kept; (b,w) unknown item; (c,x) unknown user
    assert mats.test.matrix.toarray().tolist() == [[0, 0, 1], [0, 1, 0]]
    assert mats.to_dict() == {
        "n_train_users": 2,
        "n_items": 3,
        "n_train_pairs": 3,
        "n_test_pairs": 5,
        "n_test_pairs_kept": 2,
        "n_dropped_unknown_user": 1,
        "n_dropped_unknown_item": 1,
        "n_dropped_seen": 1,
        "n_unknown_users": 1,
        "n_unknown_items": 1,
    }


def test_train_test_matrices_can_keep_seen_pairs(events):
    train, test = random_holdout(events, 0.3, random_state=1)
    kept = train_test_matrices(train, test, drop_seen=False)
    dropped = train_test_matrices(train, test)
    assert kept.n_dropped_seen == 0
    assert dropped.n_dropped_seen > 0  # a random holdout splits repeated pairs
    assert dropped.test.nnz + dropped.n_dropped_seen == kept.test.nnz
    assert dropped.test.matrix.multiply(dropped.train.matrix).nnz == 0
