"""Silent failures of an offline evaluation: a split that leaks the future, labels built wrongly.

Neither failure raises anything: a leaky split or a wrong label only makes the
figures look better (or different) than the model deserves. This module
measures both from the split's own tables and matrices, with its own
vectorised code (not the code that built them), so that a bug in the split or
the label conversion shows up as a count:

* :func:`temporal_leakage` -- training events dated after the labels they
  are evaluated against: after the earliest test positive of anybody
  (cross-user look-ahead, what a global time split rules out) and after the
  same user's earliest test positive (what any time-aware split must rule out);
* :func:`label_audit` -- the test labels against the declared feedback: test
  labels that are training positives, labels the declared event weights and
  rating threshold do not make (another event type or threshold was used),
  declared labels missing from the test matrix, and users counted in a model's
  metrics with no label at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from recommender.data import InteractionMatrix
from recommender.feedback import FeedbackConfig
from recommender.split import _time_keys

__all__ = ["label_audit", "positive_events", "temporal_leakage"]


def positive_events(events: pd.DataFrame, feedback: FeedbackConfig) -> np.ndarray:
    """Mask of the events that are positives under ``feedback``: a listed event type of positive weight, and a
    rating at or above the threshold (written apart from :func:`recommender.feedback.to_implicit`, to check it)."""
    n = len(events)
    if "event_type" not in events.columns:
        return np.full(n, feedback.weight_of("view") > 0, dtype=bool)
    kinds = events["event_type"].astype("string").fillna("")
    positive_kinds = [t for t, w in feedback.event_weights.items() if w > 0]
    mask = np.asarray(kinds.isin(positive_kinds), dtype=bool)
    if feedback.rating_threshold is not None and "value" in events.columns:
        rating = np.asarray(kinds == "rating", dtype=bool)
        values = pd.to_numeric(events["value"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        below = rating & ~(values >= feedback.rating_threshold)
        mask = mask & ~below
    return mask


def temporal_leakage(train_events: pd.DataFrame, test_events: pd.DataFrame, feedback: FeedbackConfig) -> dict[str, Any]:
    """Training events dated after the test labels they are evaluated against.

    Returns ``{n_train_events, n_test_labels, after_any_label, after_own_label, after_any_label_share,
    after_own_label_share, first_label_time}``: ``after_any_label`` counts training events strictly after the
    earliest test positive of any user, ``after_own_label`` those strictly after their own user's earliest test
    positive (users with no test positive have nothing to leak into). Ties are not leaks.
    """
    func = "temporal_leakage"
    n_train = len(train_events)
    labels = test_events[positive_events(test_events, feedback)]
    out: dict[str, Any] = {"n_train_events": int(n_train), "n_test_labels": int(len(labels))}
    if n_train == 0 or len(labels) == 0:
        return {**out, "after_any_label": 0, "after_own_label": 0, "after_any_label_share": 0.0,
                "after_own_label_share": 0.0, "first_label_time": None}  # fmt: skip
    train_t = _time_keys(train_events, func)
    label_t = _time_keys(labels, func)
    if train_t.dtype != label_t.dtype:
        train_t, label_t = train_t.astype(np.float64), label_t.astype(np.float64)
    first = label_t.min()
    after_any = int((train_t > first).sum())
    # each user's earliest label, looked up for the user's training events (one factorize, no string copies)
    codes, uniques = pd.factorize(pd.concat([labels["user_id"], train_events["user_id"]], ignore_index=True))
    label_users, train_users = codes[: len(labels)], codes[len(labels) :]
    none = np.inf if label_t.dtype.kind == "f" else np.iinfo(np.int64).max  # exact int64: ns ties stay ties
    earliest = np.full(len(uniques) + 1, none, dtype=label_t.dtype)
    known = label_users >= 0  # a label without a user id belongs to nobody's history
    np.minimum.at(earliest, label_users[known], label_t[known])
    own = earliest[train_users]  # -1 (a missing user id) reads the last slot: no label, never a leak
    after_own = int((train_t > own).sum())
    shown = labels["timestamp"].iloc[int(np.argmin(label_t))]
    return {
        **out,
        "after_any_label": after_any,
        "after_own_label": after_own,
        "after_any_label_share": after_any / n_train,
        "after_own_label_share": after_own / n_train,
        "first_label_time": str(shown),
    }


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * np.int64(n_items) + items.astype(np.int64)


def _matrix_keys(matrix: Any) -> np.ndarray:
    coo = matrix.tocoo()
    keep = coo.data > 0
    return np.unique(_pair_keys(coo.row[keep], coo.col[keep], matrix.shape[1]))


def label_audit(
    test_events: pd.DataFrame,
    train: InteractionMatrix,
    test: InteractionMatrix,
    feedback: FeedbackConfig,
    evaluated_rows: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The test labels an evaluation used, against the labels the declared ``feedback`` makes of the test events.

    Parameters
    ----------
    test_events:
        The test side of the split.
    train, test:
        The training and test matrices the evaluation used (same universes).
    feedback:
        The declared feedback (event weights and rating threshold).
    evaluated_rows:
        Model label -> the user rows counted in its metrics.

    Returns
    -------
    dict
        ``n_test_labels`` (pairs in the test matrix), ``test_labels_in_train`` (of them, training positives),
        ``undeclared_labels`` (not a positive of the declared feedback in the test events), ``missing_labels``
        (declared positives of known users and items, not training positives, absent from the test matrix),
        ``users_without_labels`` (model -> users counted with no label) and ``users_counted`` (model -> users).
    """
    n_items = train.n_items
    test_keys = _matrix_keys(test.matrix)
    train_keys = _matrix_keys(train.matrix)
    positives = test_events[positive_events(test_events, feedback)]
    users = pd.Index(np.asarray(train.user_ids, dtype=object).astype(str)).get_indexer(positives["user_id"].astype(str))
    items = pd.Index(np.asarray(train.item_ids, dtype=object).astype(str)).get_indexer(positives["item_id"].astype(str))
    known = (users >= 0) & (items >= 0)
    declared = np.unique(_pair_keys(users[known], items[known], n_items))
    declared_new = np.setdiff1d(declared, train_keys, assume_unique=True)
    labelled = np.diff(test.matrix.indptr) > 0
    without: dict[str, int] = {}
    counted: dict[str, int] = {}
    for model, rows in (evaluated_rows or {}).items():
        rows = np.asarray(rows, dtype=np.int64)
        counted[model] = int(len(rows))
        without[model] = int((~labelled[rows]).sum()) if len(rows) else 0
    return {
        "n_test_labels": int(len(test_keys)),
        "test_labels_in_train": int(np.isin(test_keys, train_keys, assume_unique=True).sum()),
        "undeclared_labels": int((~np.isin(test_keys, declared, assume_unique=True)).sum()),
        "missing_labels": int((~np.isin(declared_new, test_keys, assume_unique=True)).sum()),
        "users_without_labels": without,
        "users_counted": counted,
    }
