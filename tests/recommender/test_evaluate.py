"""The evaluation runner: lists for every test user, batching, segments, baselines, JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k

from recommender import ConfigError, DataError, NotFittedError
from recommender import metrics as M
from recommender.base import Recommender, top_k_from_scores
from recommender.baselines import ItemKNNRecommender, PopularityRecommender, RandomRecommender
from recommender.data import InteractionMatrix
from recommender.evaluate import (
    BAD_K,
    BAD_SEGMENT,
    BEYOND_METRICS,
    MODEL_UNIVERSE_MISMATCH,
    UNIVERSE_MISMATCH,
    activity_segments,
    compare_models,
    evaluate_model,
)


class FixedScores(Recommender):
    """A model whose scores are given: the lists it returns are known in advance."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def get_params(self) -> dict[str, Any]:
        return {"n_items": int(self.scores.shape[1])}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self.scores_ = np.asarray(self.scores, dtype=np.float32)

    def _recommend_known(self, user_index, k, *, filter_seen):
        exclude = self.train_.matrix[user_index] if filter_seen else None
        return top_k_from_scores(self.scores_[user_index], k, exclude)


def matrix(dense: np.ndarray, prefix: tuple[str, str] = ("u", "i")) -> InteractionMatrix:
    m = sp.csr_matrix(np.asarray(dense, dtype=np.float32))
    return InteractionMatrix(
        m,
        np.array([f"{prefix[0]}{u}" for u in range(m.shape[0])], dtype=object),
        np.array([f"{prefix[1]}{i}" for i in range(m.shape[1])], dtype=object),
    )


# 4 users x 6 items, checkerboard-style: even users trained on item 0, odd users on item 1.
#   train      test positives   scores rank items 0..5 as 5, 4, 3, 2, 1, 0 (same for everyone)
#   u0: {0}    {2, 4}           list after filtering seen {0}: [1, 2, 3]   hits [0, 1, 0]
#   u1: {1}    {3}              list after filtering seen {1}: [0, 2, 3]   hits [0, 0, 1]
#   u2: {0}    {}               not evaluated (no test positive)
#   u3: {1, 5} {0}              list after filtering {1, 5}:   [0, 2, 3]   hits [1, 0, 0]
TRAIN = matrix([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1]])
TEST = InteractionMatrix(
    sp.csr_matrix(np.array([[0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0], [0] * 6, [1, 0, 0, 0, 0, 0]], dtype=np.float32)),
    TRAIN.user_ids,
    TRAIN.item_ids,
)
SCORES = np.tile(np.arange(6, 0, -1, dtype=np.float32), (4, 1))


@pytest.fixture()
def fixed() -> FixedScores:
    return FixedScores(SCORES).fit(TRAIN)


def test_evaluates_every_test_user_with_seen_items_filtered(fixed):
    ev = evaluate_model(fixed, TRAIN, TEST, k=3)
    assert ev.user_index.tolist() == [0, 1, 3]
    assert ev.recommended.tolist() == [[1, 2, 3], [0, 2, 3], [0, 2, 3]]
    assert ev.n_test_users == 3 and ev.n_fallback == 0
    # precision: 1/3 each; recall: 1/2, 1, 1; ndcg: u0 (1/log2 3) / (1 + 1/log2 3), u1 0.5/1, u3 1
    np.testing.assert_allclose(ev.per_user["precision"], [1 / 3] * 3)
    np.testing.assert_allclose(ev.per_user["recall"], [0.5, 1.0, 1.0])
    w2 = 1 / math.log2(3)
    np.testing.assert_allclose(ev.per_user["ndcg"], [w2 / (1 + w2), 0.5, 1.0])
    np.testing.assert_allclose(ev.per_user["mrr"], [0.5, 1 / 3, 1.0])
    assert ev.metrics["hit_rate"] == 1.0
    assert ev.metrics["map"] == pytest.approx((0.5 / 2 + 1 / 3 + 1) / 3)
    # beyond accuracy: items shown {0, 1, 2, 3} of 6; training popularity [2, 2, 0, 0, 0, 1]
    assert ev.beyond["coverage"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(ev.per_user["average_popularity"], [2 / 3, 2 / 3, 2 / 3])
    assert ev.beyond["intra_list_diversity"] is None


def test_matches_implicit_on_the_same_lists():
    rng = np.random.default_rng(1)
    n_users, n_items = 120, 40
    train = matrix((rng.random((n_users, n_items)) < 0.15).astype(np.float32))
    test = InteractionMatrix(
        sp.csr_matrix(((rng.random((n_users, n_items)) < 0.1) & (train.matrix.toarray() == 0)).astype(np.float32)),
        train.user_ids,
        train.item_ids,
    )
    model = ItemKNNRecommender(k_neighbours=10).fit(train)
    ev = evaluate_model(model, train, test, k=5)

    class Lists:  # implicit asks this object for the lists our runner produced
        def recommend(self, userid, user_items, N=10, **kwargs):  # noqa: N803
            rows = np.searchsorted(ev.user_index, np.asarray(userid))
            return ev.recommended[rows].astype(np.int32), np.zeros((len(rows), N), np.float32)

    theirs = ranking_metrics_at_k(Lists(), train.matrix, test.matrix, K=5, show_progress=False)
    assert ev.metrics["ndcg"] == pytest.approx(theirs["ndcg"], abs=1e-6)
    assert ev.metrics["map"] == pytest.approx(theirs["map"], abs=1e-6)
    assert M.pooled_precision_at_k(ev.recommended, test.matrix[ev.user_index]) == pytest.approx(theirs["precision"], abs=1e-6)


def test_batches_do_not_change_the_result(fixed):
    a = evaluate_model(fixed, TRAIN, TEST, k=3, batch_size=1)
    b = evaluate_model(fixed, TRAIN, TEST, k=3)
    np.testing.assert_array_equal(a.recommended, b.recommended)
    assert a.metrics == b.metrics


def test_activity_segments_are_quantile_buckets():
    # training positives per user: 1, 1, 1, 2, 4, 6 -> tertile edges (np.quantile at 1/3, 2/3) 1 and 2.67;
    # a user on an edge goes to the lower bucket
    dense = np.zeros((6, 8))
    for u, n in enumerate([1, 1, 1, 2, 4, 6]):
        dense[u, :n] = 1
    labels = activity_segments(matrix(dense))
    assert list(labels) == ["light", "light", "light", "medium", "heavy", "heavy"]
    assert list(labels.categories) == ["light", "medium", "heavy"]
    # the edges come from the given rows only
    assert list(activity_segments(matrix(dense), rows=np.array([3, 4, 5]))) == [
        "light", "light", "light", "light", "medium", "heavy"
    ]


def test_segment_means_include_user_attributes_and_missing(fixed):
    attribute = np.array(["f", "m", "f", None], dtype=object)
    ev = evaluate_model(fixed, TRAIN, TEST, k=3, segments={"gender": attribute})
    # u0 (f) recall 0.5, u1 (m) recall 1, u3 (missing) recall 1
    assert ev.segments["gender"]["f"]["recall"] == 0.5 and ev.segments["gender"]["f"]["n_users"] == 1
    assert ev.segments["gender"]["m"]["recall"] == 1.0
    assert ev.segments["gender"]["missing"]["n_users"] == 1
    # activity among evaluated users: positives 1, 1, 2 -> edges 1 and 1.33: u0, u1 light; u3 heavy
    assert {g: v["n_users"] for g, v in ev.segments["activity"].items()} == {"light": 2, "heavy": 1}
    assert ev.segments["activity"]["light"]["precision"] == pytest.approx(1 / 3)


def test_diversity_with_item_categories(fixed):
    categories = ["a", "a", "b", "a|b", None, "c"]
    ev = evaluate_model(fixed, TRAIN, TEST, k=3, item_categories=categories)
    # [1, 2, 3]: (1,2) apart, (1,3) share a, (2,3) share b -> 1/3; [0, 2, 3]: same pattern -> 1/3
    np.testing.assert_allclose(ev.per_user["intra_list_diversity"], [1 / 3] * 3)
    assert ev.beyond["intra_list_diversity"] == pytest.approx(1 / 3)


def test_compare_models_lifts_over_the_baselines():
    rng = np.random.default_rng(0)
    # two taste groups over 40 items: users like (mostly) items of their group
    n_users, n_items = 200, 40
    group = np.arange(n_users) % 2
    likes = rng.random((n_users, n_items)) < np.where((np.arange(n_items) % 2)[None, :] == group[:, None], 0.4, 0.02)
    held = likes & (rng.random(likes.shape) < 0.25)
    train = matrix((likes & ~held).astype(np.float32))
    test = InteractionMatrix(sp.csr_matrix(held.astype(np.float32)), train.user_ids, train.item_ids)
    models = {
        "knn": ItemKNNRecommender(k_neighbours=20).fit(train),
        "pop": PopularityRecommender().fit(train),
        "rand": RandomRecommender(random_state=0).fit(train),
    }
    comparison = compare_models(models, train, test, k=5, segments={"group": group})
    assert comparison.baselines == {"popularity": "pop", "random": "rand"}
    assert comparison.lift["pop"]["popularity"]["ndcg"] == pytest.approx(1.0)
    knn, pop = comparison.evaluations["knn"].metrics, comparison.evaluations["pop"].metrics
    assert comparison.lift["knn"]["popularity"]["ndcg"] == pytest.approx(knn["ndcg"] / pop["ndcg"])
    assert comparison.lift["knn"]["popularity"]["ndcg"] > 1.5  # personalization pays on this data
    assert comparison.lift["knn"]["random"]["precision"] > comparison.lift["pop"]["random"]["precision"]
    assert set(comparison.evaluations["knn"].segments) == {"activity", "group"}
    # JSON-ready: plain types, no NaN
    document = comparison.to_dict()
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text)["models"]["rand"]["params"] == {"random_state": 0}
    rows = comparison.table_rows()
    assert [r["model"] for r in rows] == ["knn", "pop", "rand"]
    assert {"ndcg@5", "coverage", "ndcg_lift_vs_popularity", "ndcg_lift_vs_random"} <= set(rows[0])
    assert all(isinstance(v, str) for row in rows for v in row.values())


def test_baselines_can_be_named_and_are_optional(fixed):
    comparison = compare_models({"a": fixed, "b": FixedScores(SCORES[:, ::-1].copy()).fit(TRAIN)}, TRAIN, TEST, k=3)
    assert comparison.baselines == {} and comparison.lift == {"a": {}, "b": {}}
    named = compare_models({"a": fixed, "b": fixed}, TRAIN, TEST, k=3, baselines={"popularity": "b"})
    assert named.lift["a"]["popularity"]["ndcg"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="baseline model"):
        compare_models({"a": fixed}, TRAIN, TEST, k=3, baselines={"random": "zz"})


def test_to_dict_uses_none_for_undefined_values(fixed):
    empty_test = InteractionMatrix(sp.csr_matrix(TRAIN.matrix.shape, dtype=np.float32), TRAIN.user_ids, TRAIN.item_ids)
    ev = evaluate_model(fixed, TRAIN, empty_test, k=3)
    document = ev.to_dict(per_user=True)
    json.dumps(document, allow_nan=False)
    assert document["metrics"]["ndcg"] is None and document["n_test_users"] == 0
    assert set(document["beyond"]) == set(BEYOND_METRICS)
    assert ev.table_rows()[0] == {"metric": "precision@3", "all": "-"}


def test_per_user_frame_and_table(fixed):
    ev = evaluate_model(fixed, TRAIN, TEST, k=3)
    frame = ev.per_user_frame(TRAIN.user_ids)
    assert frame.index.tolist() == ["u0", "u1", "u3"]
    assert frame.loc["u1", "recall"] == 1.0
    rows = ev.table_rows()
    assert rows[0]["metric"] == "precision@3" and rows[0]["all"] == "0.3333"
    assert next(r for r in rows if r["metric"] == "n_users")["all"] == "3"
    document = ev.to_dict(per_user=True)
    assert document["per_user"]["user_index"] == [0, 1, 3]
    assert document["params"] == {"n_items": 6}


# -- errors -------------------------------------------------------------------------
def test_bad_k_message(fixed):
    with pytest.raises(ConfigError) as info:
        evaluate_model(fixed, TRAIN, TEST, k=0)
    assert str(info.value) == BAD_K.format(func="evaluate_model", got=0)


@pytest.mark.parametrize("k", [1001, 10**12])
def test_a_list_longer_than_recgov_evaluates_is_refused_before_any_allocation(fixed, k):
    # A k of 10**12 used to reach an (n_users, k) allocation and end in MemoryError.
    with pytest.raises(ConfigError) as info:
        evaluate_model(fixed, TRAIN, TEST, k=k)
    assert str(info.value) == f"The 'k' parameter of evaluate_model must be an int in the range [1, 1000]. Got {k!r} instead."
    with pytest.raises(ConfigError, match=r"of recommend must be an int in the range \[1, 1000\]"):
        fixed.recommend(["u0"], k=k)


def test_test_matrix_on_other_universes_is_refused(fixed):
    other = matrix(TEST.matrix.toarray(), prefix=("v", "i"))
    with pytest.raises(DataError) as info:
        evaluate_model(fixed, TRAIN, other, k=3)
    assert str(info.value) == UNIVERSE_MISMATCH.format(func="evaluate_model", test_shape=(4, 6), train_shape=(4, 6))


def test_model_fitted_elsewhere_is_refused():
    model = FixedScores(SCORES[:, :5]).fit(matrix(TRAIN.matrix.toarray()[:, :5]))
    with pytest.raises(DataError) as info:
        evaluate_model(model, TRAIN, TEST, k=3)
    assert str(info.value) == MODEL_UNIVERSE_MISMATCH.format(
        func="evaluate_model", model="fixed", model_shape=(4, 5), train_shape=(4, 6)
    )


def test_unfitted_model_and_bad_segments(fixed):
    with pytest.raises(NotFittedError):
        evaluate_model(FixedScores(SCORES), TRAIN, TEST, k=3)
    with pytest.raises(DataError) as info:
        evaluate_model(fixed, TRAIN, TEST, k=3, segments={"age": np.array([1, 2])})
    assert str(info.value) == BAD_SEGMENT.format(func="evaluate_model", name="age", got=2, n_users=4)


def test_segments_accept_series_and_keep_categorical_order(fixed):
    bands = pd.Series(pd.Categorical(["old", "young", "old", "young"], categories=["young", "old"], ordered=True))
    ev = evaluate_model(fixed, TRAIN, TEST, k=3, segments={"age": bands})
    assert list(ev.segments["age"]) == ["young", "old"]
