"""Audit figures on Spark: the same numbers as recommender.metrics on the same lists, and, on the same data,
MLlib's ALS within a stated tolerance of implicit's (the solvers differ, see governance.spark.als)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from governance.spark.als import train_als_spark
from governance.spark.audit import list_figures
from governance.spark.filters import events_frame
from recommender.als import ALSRecommender
from recommender.errors import ConfigError, DataError
from recommender.fairness import group_labels
from recommender.feedback import to_implicit
from recommender.metrics import exposure, ranking_metrics
from recommender.split import random_holdout
from recommender.synthetic import SyntheticSpec, generate

K = 10
PARAMS = {"factors": 16, "regularization": 0.05, "alpha": 2.0, "iterations": 10, "random_state": 0}
# Stated before measuring: the two solvers (confidence 1 + alpha r and lambda n_u in MLlib, alpha r and
# lambda in implicit; exact solves against conjugate gradient) may move NDCG@10 and recall@10 by up to
# 15% of implicit's value, and a provider group's share of position-weighted exposure by 0.05.
QUALITY_TOLERANCE = 0.15
EXPOSURE_TOLERANCE = 0.05


def _top_k(U: np.ndarray, Y: np.ndarray, seen: Any, k: int) -> np.ndarray:
    scores = U @ Y.T
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top


def _frame(spark: Any, users: np.ndarray, item_ids: np.ndarray, rec: np.ndarray) -> Any:
    return spark.createDataFrame(
        pd.DataFrame({"user_id": [str(u) for u in users], "items": [[str(item_ids[i]) for i in row] for row in rec]}),
        "user_id string, items array<string>",
    )


@pytest.fixture(scope="module")
def world() -> Any:
    data = generate(SyntheticSpec(n_users=150, n_items=90, n_interactions=7000, seed=21))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    train, test = random_holdout(events, test_fraction=0.2, random_state=0)
    return data, train, test


def test_the_figures_on_spark_are_recgovs_metrics_on_the_same_lists(spark: Any, world: Any) -> None:
    data, train, test = world
    matrix = to_implicit(train)
    model = ALSRecommender(**PARAMS).fit(matrix)
    rec = _top_k(model.user_factors_, model.item_factors_, matrix.matrix, K)
    relevant = to_implicit(test, user_ids=matrix.user_ids, item_ids=matrix.item_ids).matrix
    expected = ranking_metrics(rec, relevant, K).mean()
    groups = data.items["provider_group"].astype(str)
    item_groups = spark.createDataFrame(pd.DataFrame({"item_id": groups.index.astype(str), "group": groups.to_numpy()}))
    positives = relevant.tocoo()
    rel = spark.createDataFrame(
        pd.DataFrame({"user_id": matrix.user_ids[positives.row].astype(str), "item_id": matrix.item_ids[positives.col].astype(str)})
    )
    got = list_figures(_frame(spark, matrix.user_ids, matrix.item_ids, rec), rel, K, item_groups)
    assert got["users"] == int((np.diff(relevant.indptr) > 0).sum())
    assert got["ndcg"] == pytest.approx(expected["ndcg"], abs=1e-9)
    assert got["recall"] == pytest.approx(expected["recall"], abs=1e-9)
    weights = exposure(rec, matrix.n_items, position_weighted=True)
    by_group = pd.Series(weights, index=groups.reindex(matrix.item_ids.astype(str)).to_numpy()).groupby(level=0).sum()
    for group, share in (by_group / by_group.sum()).items():
        assert got["exposure_share"][group] == pytest.approx(share, abs=1e-9)
    with pytest.raises(ConfigError, match="'k' parameter"):
        list_figures(_frame(spark, matrix.user_ids, matrix.item_ids, rec), rel, 0)
    # Items without a provider group (a null group, or no row at all) form the in-process audit's group
    # "missing", with the same share; a group that reads as "missing" is refused on both paths.
    listed = matrix.item_ids[np.unique(rec)].astype(str)
    partial = groups.copy().astype(object)
    partial[listed[:3]] = None
    known = partial.drop(listed[3:5])
    codes, names = group_labels(known.reindex(matrix.item_ids.astype(str)).to_numpy())
    expected_shares = np.bincount(codes, weights=weights, minlength=len(names)) / weights.sum()
    item_frame = spark.createDataFrame(
        pd.DataFrame({"item_id": known.index.astype(str), "group": known.to_numpy()}), "item_id string, group string"
    )
    got = list_figures(_frame(spark, matrix.user_ids, matrix.item_ids, rec), rel, K, item_frame)
    assert list(got["exposure_share"]) == list(names) and "missing" in names
    for group, share in zip(names, expected_shares, strict=True):
        assert got["exposure_share"][group] == pytest.approx(share, abs=1e-9)
    renamed = partial.reindex(matrix.item_ids.astype(str)).fillna(" Missing").to_numpy()
    with pytest.raises(DataError, match="reads as 'missing'") as in_process:
        group_labels(renamed)
    bad = spark.createDataFrame(pd.DataFrame({"item_id": matrix.item_ids.astype(str), "group": renamed}))
    with pytest.raises(DataError, match="reads as 'missing'") as on_spark:
        list_figures(_frame(spark, matrix.user_ids, matrix.item_ids, rec), rel, K, bad)
    assert "' Missing'" in str(in_process.value) and "' Missing'" in str(on_spark.value)


def test_mllib_and_implicit_agree_on_the_audit_figures_within_the_stated_tolerance(spark: Any, world: Any) -> None:
    data, train, test = world
    matrix = to_implicit(train)
    implicit_model = ALSRecommender(**PARAMS).fit(matrix)
    mllib = train_als_spark(events_frame(spark, train), params=PARAMS)
    assert list(mllib.user_ids) == list(matrix.user_ids) and list(mllib.item_ids) == list(matrix.item_ids)
    relevant = to_implicit(test, user_ids=matrix.user_ids, item_ids=matrix.item_ids).matrix
    groups = data.items["provider_group"].astype(str)
    item_groups = spark.createDataFrame(pd.DataFrame({"item_id": groups.index.astype(str), "group": groups.to_numpy()}))
    positives = relevant.tocoo()
    rel = spark.createDataFrame(
        pd.DataFrame({"user_id": matrix.user_ids[positives.row].astype(str), "item_id": matrix.item_ids[positives.col].astype(str)})
    )
    figures = {}
    for name, U, Y in (
        ("implicit", implicit_model.user_factors_, implicit_model.item_factors_),
        ("mllib", mllib.user_factor_matrix(), mllib.item_factors_),
    ):
        rec = _top_k(np.asarray(U), np.asarray(Y), matrix.matrix, K)
        figures[name] = list_figures(_frame(spark, matrix.user_ids, matrix.item_ids, rec), rel, K, item_groups)
    a, b = figures["implicit"], figures["mllib"]
    print("audit figures", figures)
    assert a["ndcg"] > 0.05  # a model that learned something, or the comparison says nothing
    assert abs(b["ndcg"] - a["ndcg"]) <= QUALITY_TOLERANCE * a["ndcg"], figures
    assert abs(b["recall"] - a["recall"]) <= QUALITY_TOLERANCE * a["recall"], figures
    for group, share in a["exposure_share"].items():
        assert abs(b["exposure_share"].get(group, 0.0) - share) <= EXPOSURE_TOLERANCE, figures
