"""From events to the matrices models learn from.

Implicit feedback (:func:`to_implicit`) turns every event into a confidence weight:
a rating counts as a positive only at or above a threshold, other event types
weigh what :class:`FeedbackConfig` says, and the weights of one (user, item) pair
add up. The explicit view (:func:`to_explicit`) keeps the latest rating per pair.

Both are vectorized: ids become categorical codes and the matrix is assembled in
one COO -> CSR conversion, so that millions of events convert in a second or two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recommender.data import InteractionMatrix
from recommender.errors import DataError

__all__ = ["MODEL_INPUT_COLUMNS", "FeedbackConfig", "to_implicit", "to_explicit", "id_universe"]

MODEL_INPUT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "value")
"""The only event columns the conversion reads, and so the only fields a model
trained on its output has seen. User attributes and item metadata never enter:
the conversion takes nothing else, whatever the events table carries."""


class FeedbackConfig(BaseModel):
    """How events become implicit-feedback confidence weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rating_threshold: float | None = Field(4.0, ge=0, allow_inf_nan=False)
    """Ratings at or above this value are positives; lower ratings are dropped.
    ``None`` keeps every rating."""

    event_weights: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 1.0}
    )
    """Weight of one event of each type, a finite number (infinity and NaN are refused, with the event type
    named). Types not listed are ignored."""

    def weight_of(self, event_type: str) -> float:
        """The weight of one event of ``event_type`` (0 when not listed)."""
        return float(self.event_weights.get(event_type, 0.0))


def id_universe(values: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
    """The sorted distinct string ids in ``values`` (missing ids left out)."""
    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = s.cat.remove_unused_categories().cat.categories
        uniq = pd.Index(present).astype(str)
    else:
        uniq = pd.Index(s.dropna().unique()).astype(str)
    return np.sort(np.asarray(uniq, dtype=object))


def _codes(values: pd.Series, universe: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in ``universe`` (-1 for missing or unknown ids)."""
    cats = pd.Index(np.asarray(universe, dtype=object))
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")
    lookup = cats.get_indexer(pd.Index(values.cat.categories).astype(str))
    old = np.asarray(values.cat.codes, dtype=np.int64)
    return np.where(old >= 0, lookup[np.maximum(old, 0)] if len(lookup) else -1, -1)


def _assemble(
    users: pd.Series,
    items: pd.Series,
    weights: np.ndarray,
    user_ids: np.ndarray | None,
    item_ids: np.ndarray | None,
    *,
    reduce: str,
    order: np.ndarray | None = None,
) -> InteractionMatrix:
    if user_ids is None:
        user_ids = id_universe(users)
    if item_ids is None:
        item_ids = id_universe(items)
    rows = _codes(users, user_ids)
    cols = _codes(items, item_ids)
    keep = (rows >= 0) & (cols >= 0) & np.isfinite(weights)
    if order is not None:
        keep_idx = order[keep[order]]
    else:
        keep_idx = np.flatnonzero(keep)
    rows, cols, data = rows[keep_idx], cols[keep_idx], weights[keep_idx]
    shape = (len(user_ids), len(item_ids))
    if reduce == "sum":
        matrix = sp.csr_matrix((data.astype(np.float32), (rows, cols)), shape=shape)
        matrix.sum_duplicates()
    else:  # "last": events are in time order, keep the last value per pair
        key = rows * np.int64(shape[1]) + cols
        _, last_from_end = np.unique(key[::-1], return_index=True)
        pick = len(key) - 1 - last_from_end
        matrix = sp.csr_matrix((data[pick].astype(np.float32), (rows[pick], cols[pick])), shape=shape)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return InteractionMatrix(matrix=matrix, user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=object))


def to_implicit(
    events: pd.DataFrame,
    config: FeedbackConfig | None = None,
    *,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> InteractionMatrix:
    """Build the implicit-feedback confidence matrix of ``events``.

    Parameters
    ----------
    events:
        An events table (see :mod:`recommender.data`).
    config:
        The weights; the default counts ratings of 4 and above.
    user_ids, item_ids:
        Fix the row and column universes (to align a test matrix with a training
        one). Events of users or items outside them are left out. By default the
        universes are the sorted distinct ids of ``events``.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"],
    ...                    "event_type": ["rating"] * 3, "value": [5.0, 2.0, 4.0]})
    >>> to_implicit(ev).matrix.toarray().tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    config = config or FeedbackConfig()
    for column in ("user_id", "item_id"):
        if column not in events.columns:
            raise DataError(f"events: missing required column {column}")
    events = events[[c for c in MODEL_INPUT_COLUMNS if c in events.columns]]
    n = len(events)
    if "event_type" in events.columns:
        types = events["event_type"].astype("category")
        type_weights = np.array([config.weight_of(str(t)) for t in types.cat.categories], dtype=np.float64)
        codes = np.asarray(types.cat.codes)
        weights = np.where(codes >= 0, type_weights[np.maximum(codes, 0)], 0.0)
        is_rating = np.asarray(types == "rating", dtype=bool)
    else:
        weights = np.full(n, config.weight_of("view"))
        is_rating = np.zeros(n, dtype=bool)
    if config.rating_threshold is not None and is_rating.any() and "value" in events.columns:
        values = np.asarray(events["value"], dtype=np.float64)
        weights = np.where(is_rating & ~(values >= config.rating_threshold), 0.0, weights)
    return _assemble(events["user_id"], events["item_id"], weights, user_ids, item_ids, reduce="sum")


def to_explicit(
    events: pd.DataFrame,
    *,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> InteractionMatrix:
    """The explicit-feedback view: the latest rating of each (user, item) pair.

    Only ``rating`` events with a value take part; other events are ignored.
    """
    if "event_type" in events.columns:
        ratings = events[np.asarray(events["event_type"].astype("string") == "rating", dtype=bool)]
    else:
        ratings = events
    ratings = ratings[ratings["value"].notna()]
    order = np.argsort(np.asarray(ratings["timestamp"].astype("int64")), kind="stable") if "timestamp" in ratings else None
    values = np.asarray(ratings["value"], dtype=np.float64)
    return _assemble(ratings["user_id"], ratings["item_id"], values, user_ids, item_ids, reduce="last", order=order)
