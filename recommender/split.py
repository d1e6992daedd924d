"""Train/test splits of an events table, and the matrices built from them.

Three protocols, each deterministic for a given input (and seed):

* :func:`random_holdout` -- a uniformly random share of the events (rows) is
  held out. Simple, but the test set contains events older than training events
  (look-ahead); use it for sanity checks, not for claims about the future.
* :func:`global_time_split` -- one cutoff time for everybody: every training event
  is strictly before every test event, so the model never sees the future. This
  is the protocol to report.
* :func:`leave_last_k` -- each user's last ``k`` events are held out. Every test
  user has history, but one user's test events may be older than another user's
  training events (cross-user look-ahead).

All three work on whole columns (sorting, ``bincount``), never loop over users,
and return ``(train_events, test_events)``: row subsets of the input, in input
order, with the input index. :func:`train_test_matrices` then turns the two
tables into aligned :class:`~recommender.data.InteractionMatrix` objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.feedback import FeedbackConfig, to_implicit

__all__ = [
    "SplitConfig",
    "SplitMatrices",
    "split",
    "random_holdout",
    "global_time_split",
    "leave_last_k",
    "train_test_matrices",
    "BAD_PARAMETER",
    "UNKNOWN_PARAMETER",
    "MISSING_COLUMN",
    "MISSING_TIMESTAMP",
    "NO_TRAINING_EVENTS",
]

BAD_PARAMETER = "The {name!r} parameter of {func} must be {expected}. Got {got!r} instead."
"""Message of the :class:`ConfigError` raised for an out-of-range parameter."""

UNKNOWN_PARAMETER = "{func} got an unexpected parameter {name!r}; the parameters are {known}."
"""Message of the :class:`ConfigError` raised for an unknown configuration key."""

MISSING_COLUMN = "{func}: the events table has no column {column!r}; the columns are {columns}."
"""Message of the :class:`DataError` raised when a needed column is missing."""

MISSING_TIMESTAMP = (
    "{func}: {n} event(s) have no timestamp (first at row {row}); "
    "a time-based split cannot place them. Drop or repair them first."
)
"""Message of the :class:`DataError` raised for missing timestamps."""

NO_TRAINING_EVENTS = (
    "{func}: all {n} events are at or after the cutoff {cutoff}, so no event is left for "
    "training; lower 'test_fraction' (got {test_fraction}) or use more varied timestamps."
)
"""Message of the :class:`DataError` raised when a time split leaves training empty."""

_EXPECTED = {
    "kind": "one of 'random', 'time', 'leave_last'",
    "test_fraction": "a float in the range (0, 1)",
    "k": "an int in the range [1, inf)",
    "random_state": "an int in the range [0, inf)",
}


class SplitConfig(BaseModel):
    """How to split events into training and test sets (policy-pack friendly)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["random", "time", "leave_last"] = "time"
    """The protocol: ``random`` (:func:`random_holdout`), ``time``
    (:func:`global_time_split`, the default: no look-ahead) or ``leave_last``
    (:func:`leave_last_k`)."""

    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of the events held out for ``random`` and ``time``."""

    k: int = Field(1, ge=1)
    """Events held out per user for ``leave_last``."""

    random_state: int = Field(0, ge=0)
    """Seed of ``random`` (the other protocols use no randomness)."""


@dataclass(frozen=True)
class SplitMatrices:
    """A training and a test matrix on the same user and item universes.

    Attributes
    ----------
    train, test:
        The matrices. ``test`` has the rows and columns of ``train``.
    n_test_pairs:
        Positive (user, item) pairs of the test events before anything is dropped.
    n_dropped_unknown_user:
        Test pairs left out because their user has no event in training (cold users).
    n_dropped_unknown_item:
        Test pairs of known users left out because their item has no event in training.
    n_dropped_seen:
        Test pairs left out because the pair is already a training positive (a model
        that filters seen items can never recommend them).
    n_unknown_users, n_unknown_items:
        Distinct test users and items absent from training.
    """

    train: InteractionMatrix
    test: InteractionMatrix
    n_test_pairs: int
    n_dropped_unknown_user: int
    n_dropped_unknown_item: int
    n_dropped_seen: int
    n_unknown_users: int
    n_unknown_items: int

    def to_dict(self) -> dict[str, int]:
        """The counts, JSON-ready (for a report or the lineage record)."""
        return {
            "n_train_users": self.train.n_users,
            "n_items": self.train.n_items,
            "n_train_pairs": self.train.nnz,
            "n_test_pairs": self.n_test_pairs,
            "n_test_pairs_kept": self.test.nnz,
            "n_dropped_unknown_user": self.n_dropped_unknown_user,
            "n_dropped_unknown_item": self.n_dropped_unknown_item,
            "n_dropped_seen": self.n_dropped_seen,
            "n_unknown_users": self.n_unknown_users,
            "n_unknown_items": self.n_unknown_items,
        }


# -- parameter checks ------------------------------------------------------------
def _bad(func: str, name: str, got: object) -> ConfigError:
    return ConfigError(BAD_PARAMETER.format(name=name, func=func, expected=_EXPECTED[name], got=got))


def _check_fraction(func: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(func, "test_fraction", value)
    if not 0.0 < float(value) < 1.0:
        raise _bad(func, "test_fraction", value)
    return float(value)


def _check_int(func: str, name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise _bad(func, name, value)
    return int(value)


def _column(events: pd.DataFrame, column: str, func: str) -> pd.Series:
    if column not in events.columns:
        raise DataError(
            MISSING_COLUMN.format(func=func, column=column, columns=", ".join(map(str, events.columns)) or "none")
        )
    return events[column]


def _time_keys(events: pd.DataFrame, func: str) -> np.ndarray:
    """Sortable int64 (or float64) keys of the timestamp column; refuses missing times."""
    ts = _column(events, "timestamp", func)
    if pd.api.types.is_integer_dtype(ts) and not ts.hasnans:
        keys = np.asarray(ts, dtype=np.int64)  # exact, even for nanosecond epochs
        missing = np.zeros(len(keys), dtype=bool)
    elif pd.api.types.is_numeric_dtype(ts):
        keys = ts.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(keys)
    else:
        if not pd.api.types.is_datetime64_any_dtype(ts):
            try:
                ts = pd.to_datetime(ts, utc=True, format="mixed")
            except (ValueError, TypeError, OverflowError) as err:
                raise DataError(f"{func}: column timestamp cannot be read as a time: {err}") from err
        missing = np.asarray(ts.isna(), dtype=bool)
        keys = np.asarray(ts.array.asi8, dtype=np.int64)
    if missing.any():
        raise DataError(MISSING_TIMESTAMP.format(func=func, n=int(missing.sum()), row=int(np.argmax(missing))))
    return keys


def _take(events: pd.DataFrame, test: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    return events[~test], events[test]


# -- the protocols ---------------------------------------------------------------
def random_holdout(
    events: pd.DataFrame, test_fraction: float = 0.2, random_state: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a uniformly random share of the events.

    Exactly ``ceil(test_fraction * n_events)`` rows go to test (scikit-learn's
    rounding), chosen by a seeded permutation, so the same input and seed always
    give the same split. The split is over events, not (user, item) pairs: a pair
    with several events may land on both sides; :func:`train_test_matrices` drops
    such test pairs and counts them.

    Parameters
    ----------
    events:
        An events table (see :mod:`recommender.data`).
    test_fraction:
        Share of the rows held out, in (0, 1).
    random_state:
        Seed of the permutation (a non-negative int).

    Returns
    -------
    (train_events, test_events):
        Row subsets of ``events`` in input order, with its index.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"user_id": list("aabbc"), "item_id": list("xyxyz")})
    >>> train, test = random_holdout(ev, test_fraction=0.4, random_state=1)
    >>> len(train), len(test)
    (3, 2)
    """
    func = "random_holdout"
    test_fraction = _check_fraction(func, test_fraction)
    random_state = _check_int(func, "random_state", random_state, 0)
    n = len(events)
    n_test = min(n, math.ceil(test_fraction * n))
    chosen = np.random.default_rng(random_state).permutation(n)[:n_test]
    test = np.zeros(n, dtype=bool)
    test[chosen] = True
    return _take(events, test)


def global_time_split(events: pd.DataFrame, test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split at one cutoff time: training strictly before it, test at or after it.

    The cutoff is the timestamp of the event at position ``n - ceil(test_fraction
    * n)`` in time order. Every event at the cutoff goes to test, so that no
    training event is at or after any test event (no look-ahead); with many ties
    the test share can exceed ``test_fraction``.

    Parameters
    ----------
    events:
        An events table with a ``timestamp`` column (datetime, or numbers that
        order like times). Missing timestamps are an error.
    test_fraction:
        Target share of the events in test, in (0, 1).

    Returns
    -------
    (train_events, test_events):
        Row subsets of ``events`` in input order, with its index.

    Raises
    ------
    DataError
        When timestamps are missing, or when every event is at the cutoff (the
        training set would be empty).
    """
    func = "global_time_split"
    test_fraction = _check_fraction(func, test_fraction)
    keys = _time_keys(events, func)
    n = len(keys)
    if n == 0:
        return _take(events, np.zeros(0, dtype=bool))
    kth = n - min(n, math.ceil(test_fraction * n))
    cutoff = np.partition(keys, kth)[kth]
    test = keys >= cutoff
    if test.all():
        shown = events["timestamp"].iloc[int(np.argmax(keys == cutoff))]
        raise DataError(NO_TRAINING_EVENTS.format(func=func, n=n, cutoff=shown, test_fraction=test_fraction))
    return _take(events, test)


def leave_last_k(events: pd.DataFrame, k: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's last ``k`` events.

    Users with ``k`` events or fewer stay in training only (a test user always
    has history). Events with the same timestamp are ordered by their row
    position (a later row counts as later). Events with a missing ``user_id``
    stay in training.

    Parameters
    ----------
    events:
        An events table with ``user_id`` and ``timestamp`` columns.
    k:
        Events held out per user, an int >= 1.

    Returns
    -------
    (train_events, test_events):
        Row subsets of ``events`` in input order, with its index.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"user_id": list("aaab"), "item_id": list("xyzx"), "timestamp": [3, 1, 2, 1]})
    >>> train, test = leave_last_k(ev, k=1)
    >>> test["item_id"].tolist()  # a's latest; b has a single event and stays in train
    ['x']
    """
    func = "leave_last_k"
    k = _check_int(func, "k", k, 1)
    users, _ = pd.factorize(_column(events, "user_id", func), use_na_sentinel=True)
    keys = _time_keys(events, func)
    n = len(keys)
    if n == 0:
        return _take(events, np.zeros(0, dtype=bool))
    users = np.asarray(users, dtype=np.int64)
    held = _last_k_by_rounds(users, keys, k) if k <= _ROUNDS_MAX_K else _last_k_by_sorting(users, keys, k)
    return _take(events, held)


_ROUNDS_MAX_K = 8
"""Up to this ``k``, :func:`leave_last_k` peels one latest event per user per round
(a few linear passes, ~0.2 s per round for 10M events); above it, one lexsort."""


def _last_k_by_rounds(users: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Mask of each eligible user's last ``k`` events, found ``k`` times by a per-user maximum."""
    n_users = max(int(users.max()) + 1, 1) if len(users) else 1
    counts = np.bincount(users[users >= 0], minlength=n_users)
    rows = np.flatnonzero((users >= 0) & (counts[np.maximum(users, 0)] > k))
    u, t = users[rows], keys[rows]
    position = np.arange(len(rows), dtype=np.int64)  # input order breaks time ties
    lowest = -np.inf if t.dtype.kind == "f" else np.iinfo(t.dtype).min
    taken = np.zeros(len(rows), dtype=bool)
    for _ in range(k):
        left = np.flatnonzero(~taken)
        latest = np.full(n_users, lowest, dtype=t.dtype)
        np.maximum.at(latest, u[left], t[left])
        tied = left[t[left] == latest[u[left]]]
        last = np.full(n_users, -1, dtype=np.int64)
        np.maximum.at(last, u[tied], position[tied])
        taken[last[last >= 0]] = True
    held = np.zeros(len(users), dtype=bool)
    held[rows[taken]] = True
    return held


def _last_k_by_sorting(users: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Mask of each eligible user's last ``k`` events, by one sort on (user, time, row)."""
    n = len(users)
    order = np.lexsort((keys, users))  # by user, then time; stable: input order breaks ties
    sorted_users = users[order]
    run_end = np.r_[np.flatnonzero(sorted_users[1:] != sorted_users[:-1]), n - 1]
    run_len = np.diff(np.r_[-1, run_end])
    run_of = np.repeat(np.arange(len(run_len)), run_len)
    from_end = run_end[run_of] - np.arange(n)  # 0 for a user's latest event
    chosen = (from_end < k) & (run_len[run_of] > k) & (sorted_users >= 0)
    held = np.zeros(n, dtype=bool)
    held[order[chosen]] = True
    return held


def split(
    events: pd.DataFrame, config: SplitConfig | Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``events`` as ``config`` says (the entry point for policy packs and the CLI).

    Parameters
    ----------
    events:
        An events table.
    config:
        A :class:`SplitConfig`, or a mapping of its fields (validated here, with
        scikit-learn-style messages); ``None`` means the default time split.

    Raises
    ------
    ConfigError
        On an unknown key or an out-of-range value, e.g. "The 'test_fraction'
        parameter of split must be a float in the range (0, 1). Got 1.5 instead."
    """
    if config is None:
        config = SplitConfig()
    elif not isinstance(config, SplitConfig):
        config = _parse_config(config)
    if config.kind == "random":
        return random_holdout(events, config.test_fraction, config.random_state)
    if config.kind == "time":
        return global_time_split(events, config.test_fraction)
    return leave_last_k(events, config.k)


def _parse_config(config: Mapping[str, Any]) -> SplitConfig:
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"split expects a SplitConfig or a mapping as its config. Got {type(config).__name__} instead."
        )
    try:
        return SplitConfig(**config)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "config"
        if first["type"] == "extra_forbidden":
            known = ", ".join(SplitConfig.model_fields)
            raise ConfigError(UNKNOWN_PARAMETER.format(func="split", name=name, known=known)) from err
        if name in _EXPECTED:
            raise _bad("split", name, first.get("input")) from err
        raise ConfigError(f"split: invalid config: {first['msg']}") from err


# -- matrices --------------------------------------------------------------------
def train_test_matrices(
    train_events: pd.DataFrame,
    test_events: pd.DataFrame,
    feedback_config: FeedbackConfig | None = None,
    *,
    drop_seen: bool = True,
) -> SplitMatrices:
    """Build the training matrix and a test matrix on the same universes.

    The training matrix is :func:`~recommender.feedback.to_implicit` of
    ``train_events``; its users and items (every id in the training events, even
    one whose events are all below the rating threshold) fix the universes. The test events go
    through the same conversion (so a rating below the threshold is not a test
    positive), then every test pair whose user or item is absent from the training
    events is dropped (a model cannot score it; cold start is evaluated
    separately), and,
    with ``drop_seen``, every pair that is already a training positive (models
    recommend with ``filter_seen=True`` and could never hit it). All drops are
    counted in the result.

    Parameters
    ----------
    train_events, test_events:
        The two sides of a split.
    feedback_config:
        How events become positives; the default counts ratings of 4 and above.
    drop_seen:
        Drop test pairs already positive in training (default ``True``).
    """
    config = feedback_config or FeedbackConfig()
    train = to_implicit(train_events, config)
    own = to_implicit(test_events, config)
    coo = own.matrix.tocoo()
    row_map = train.user_index(own.user_ids)
    col_map = train.item_index(own.item_ids)
    rows, cols = row_map[coo.row], col_map[coo.col]
    unknown_user = rows < 0
    unknown_item = (cols < 0) & ~unknown_user
    keep = ~(unknown_user | unknown_item)
    test = sp.csr_matrix(
        (coo.data[keep].astype(np.float32), (rows[keep], cols[keep])), shape=train.matrix.shape
    )
    n_seen = 0
    if drop_seen and test.nnz:
        seen = test.multiply(train.matrix > 0).tocsr()
        seen.eliminate_zeros()
        n_seen = int(seen.nnz)
        if n_seen:
            test = (test - seen).tocsr()
    test.eliminate_zeros()
    test.sort_indices()
    return SplitMatrices(
        train=train,
        test=InteractionMatrix(matrix=test, user_ids=train.user_ids, item_ids=train.item_ids),
        n_test_pairs=int(coo.nnz),
        n_dropped_unknown_user=int(unknown_user.sum()),
        n_dropped_unknown_item=int(unknown_item.sum()),
        n_dropped_seen=n_seen,
        n_unknown_users=int((row_map[np.unique(coo.row)] < 0).sum()),
        n_unknown_items=int((col_map[np.unique(coo.col)] < 0).sum()),
    )
