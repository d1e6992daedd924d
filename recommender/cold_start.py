"""Item cold start: a split that keeps chosen items out of training.

A model that learns only from interactions cannot rank an item nobody has used;
a content or hybrid model can. To measure that, :func:`cold_start_split` puts
every event on the *new* items (e.g. the synthetic generator's ``new_item``
column) in the test side and splits the other events at random; the test side
is then two matrices over the training users: one over the warm items (the
training items) and one over the new items. ``bench/bench_hybrid.py`` ranks
the new items among themselves and the warm ones among the warm ones (the
protocol of cold-start studies) and scores each side with
:func:`recommender.metrics.ranking_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.feedback import FeedbackConfig, to_implicit
from recommender.split import random_holdout, train_test_matrices

__all__ = ["ColdStartSplit", "cold_start_split"]


@dataclass(frozen=True)
class ColdStartSplit:
    """A training matrix of warm items and test matrices for the warm and the new items."""

    train: InteractionMatrix
    test_warm: InteractionMatrix
    """Aligned with ``train`` (same users, same items)."""
    new_item_ids: np.ndarray
    test_new: sp.csr_matrix
    """``(train users, new items)`` test positives on the new items."""


def cold_start_split(
    events: pd.DataFrame,
    new_item_ids: object,
    *,
    test_fraction: float = 0.2,
    random_state: int = 0,
    feedback_config: FeedbackConfig | None = None,
) -> ColdStartSplit:
    """Hold out every event on ``new_item_ids`` and a random ``test_fraction`` of the others.

    Raises
    ------
    DataError
        When no new item has an event, or every event is on a new item.
    """
    new = pd.Index(np.atleast_1d(np.asarray(new_item_ids, dtype=object)).astype(str)).unique()
    if len(new) == 0:
        raise ConfigError("cold_start_split: new_item_ids is empty; name at least one item to keep out of training")
    on_new = np.asarray(events["item_id"].astype(str).isin(new), dtype=bool)
    if not on_new.any():
        raise DataError(f"cold_start_split: none of the {len(new)} new items has an event (e.g. {new[0]!r})")
    if on_new.all():
        raise DataError("cold_start_split: every event is on a new item; nothing is left to train on")
    warm_train, warm_test = random_holdout(events.loc[~on_new], test_fraction, random_state=random_state)
    matrices = train_test_matrices(warm_train, warm_test, feedback_config)
    config = feedback_config or FeedbackConfig()
    cold = to_implicit(events.loc[on_new], config)
    rows = matrices.train.user_index(cold.user_ids)
    new_ids = np.asarray(new, dtype=object)
    cols = pd.Index(new_ids.astype(str)).get_indexer(np.asarray(cold.item_ids, dtype=object).astype(str))
    coo = cold.matrix.tocoo()
    keep = (rows[coo.row] >= 0) & (cols[coo.col] >= 0)
    test_new = sp.csr_matrix(
        (coo.data[keep].astype(np.float32), (rows[coo.row][keep], cols[coo.col][keep])),
        shape=(matrices.train.n_users, len(new_ids)),
    )
    test_new.eliminate_zeros()
    return ColdStartSplit(train=matrices.train, test_warm=matrices.test, new_item_ids=new_ids, test_new=test_new)
