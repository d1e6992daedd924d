"""Ranking metrics: hand-worked small cases for every metric, and an exact
cross-check against implicit.evaluation.ranking_metrics_at_k."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k

from recommender import ConfigError, DataError
from recommender import metrics as M

L2 = math.log2

# The hand example: 3 users, 6 items, lists of k = 3.
#
#   relevant (test positives)      recommended    hits
#   u0: {0, 2, 4}  (even items)    [0, 1, 2]      [1, 0, 1]
#   u1: {1}        (one odd item)  [0, 2, 1]      [0, 0, 1]
#   u2: {1, 3, 5}  (odd items)     [0, 2, 4]      [0, 0, 0]
#
# u0: precision 2/3; recall 2/3;
#     DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG (min(3,3)=3 hits) = 1 + 1/log2(3) + 1/2 = 2.130930
#     NDCG = 0.703918; AP = (1/1 + 2/3) / min(3, 3) = 5/9; hit 1; RR 1
# u1: precision 1/3; recall 1/1; DCG = 1/log2(4) = 0.5; IDCG (1 hit) = 1; NDCG 0.5
#     AP = (1/3) / min(3, 1) = 1/3; hit 1; RR 1/3
# u2: everything 0.
# Means: precision 1/3, recall 5/9, NDCG 0.401306, MAP (5/9 + 1/3) / 3 = 8/27,
#        hit rate 2/3, MRR 4/9.  implicit's pooled precision: (2 + 1 + 0) / (3 + 1 + 3) = 3/7.
RECOMMENDED = np.array([[0, 1, 2], [0, 2, 1], [0, 2, 4]])
RELEVANT = sp.csr_matrix(
    (np.ones(7), ([0, 0, 0, 1, 2, 2, 2], [0, 2, 4, 1, 1, 3, 5])), shape=(3, 6)
)
IDCG3 = 1 + 1 / L2(3) + 0.5
EXPECTED_PER_USER = {
    "precision": [2 / 3, 1 / 3, 0.0],
    "recall": [2 / 3, 1.0, 0.0],
    "ndcg": [1.5 / IDCG3, 0.5, 0.0],
    "map": [5 / 9, 1 / 3, 0.0],
    "hit_rate": [1.0, 1.0, 0.0],
    "mrr": [1.0, 1 / 3, 0.0],
}

# Training popularity (users per item) and categories for the beyond-accuracy metrics.
#   popularity [3, 2, 1, 1, 0, 0] over n_users = 3 training users
#   categories: 0 {a}, 1 {b}, 2 {a, b}, 3 {c}, 4 {c}, 5 none
POPULARITY = np.array([3.0, 2.0, 1.0, 1.0, 0.0, 0.0])
CATEGORIES = [{"a"}, {"b"}, {"a", "b"}, {"c"}, {"c"}, set()]


# -- accuracy ------------------------------------------------------------------------
def test_hand_example_per_user():
    result = M.ranking_metrics(RECOMMENDED, RELEVANT)
    assert result.k == 3
    for name, expected in EXPECTED_PER_USER.items():
        np.testing.assert_allclose(result.per_user[name], expected, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(result.per_user["ndcg"][0], 0.703918, atol=1e-6)


def test_hand_example_means_and_pooled_precision():
    result = M.ranking_metrics(RECOMMENDED, RELEVANT)
    expected = {"precision": 1 / 3, "recall": 5 / 9, "ndcg": 0.401306, "map": 8 / 27, "hit_rate": 2 / 3, "mrr": 4 / 9}
    for name, value in expected.items():
        assert result.mean()[name] == pytest.approx(value, abs=1e-6), name
    assert result.pooled_precision == pytest.approx(3 / 7)
    assert M.pooled_precision_at_k(RECOMMENDED, RELEVANT) == pytest.approx(3 / 7)


@pytest.mark.parametrize(
    ("function", "name"),
    [
        (M.precision_at_k, "precision"),
        (M.recall_at_k, "recall"),
        (M.ndcg_at_k, "ndcg"),
        (M.average_precision_at_k, "map"),
        (M.hit_rate_at_k, "hit_rate"),
        (M.reciprocal_rank_at_k, "mrr"),
    ],
)
def test_single_metric_functions_agree_with_the_batch(function, name):
    np.testing.assert_allclose(function(RECOMMENDED, RELEVANT), EXPECTED_PER_USER[name], atol=1e-12)


def test_k_cuts_the_lists():
    # at k = 1 only rank 1 counts: u0 hits (item 0), u1 and u2 miss
    result = M.ranking_metrics(RECOMMENDED, RELEVANT, k=1)
    np.testing.assert_allclose(result.per_user["precision"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(result.per_user["recall"], [1 / 3, 0.0, 0.0])
    np.testing.assert_allclose(result.per_user["ndcg"], [1.0, 0.0, 0.0])  # IDCG of min(1, R) = 1 hit
    np.testing.assert_allclose(result.per_user["map"], [1.0, 0.0, 0.0])


def test_users_without_relevant_items_are_excluded_and_padding_misses():
    recommended = np.array([[1, -1, -1], [5, 4, 3]])
    relevant = sp.csr_matrix(([1.0], ([0], [1])), shape=(2, 6))  # u1 has no relevant item
    result = M.ranking_metrics(recommended, relevant)
    assert result.evaluated.tolist() == [True, False]
    assert result.per_user["precision"][0] == pytest.approx(1 / 3)  # padding counts as a miss
    assert result.per_user["ndcg"][0] == 1.0
    for values in result.per_user.values():
        assert np.isnan(values[1])
    assert result.mean()["precision"] == pytest.approx(1 / 3)


def test_no_evaluated_users_gives_nan_without_warnings():
    relevant = sp.csr_matrix((2, 6))
    with np.errstate(all="raise"):
        result = M.ranking_metrics(np.array([[0, 1], [2, 3]]), relevant)
    assert all(math.isnan(v) for v in result.mean().values())
    assert math.isnan(result.pooled_precision)


def test_explicit_zeros_and_weights_are_handled_as_binary_relevance():
    # confidence weights instead of 1s, and an explicit zero at (1, 0), which is not relevant
    rows, cols = [0, 0, 0, 1, 1, 2, 2, 2], [0, 2, 4, 0, 1, 1, 3, 5]
    weighted = sp.csr_matrix((np.array([5.0, 2, 1, 0, 3, 1, 1, 9]), (rows, cols)), shape=(3, 6))
    assert weighted.nnz == 8
    result = M.ranking_metrics(RECOMMENDED, weighted)
    np.testing.assert_allclose(result.per_user["ndcg"], EXPECTED_PER_USER["ndcg"])


def test_unsorted_csr_indices_are_looked_up_correctly():
    shuffled = sp.csr_matrix(
        (np.ones(7), np.array([4, 0, 2, 1, 5, 3, 1]), np.array([0, 3, 4, 7])), shape=(3, 6)
    )
    assert not shuffled.has_sorted_indices
    np.testing.assert_array_equal(M.hit_matrix(RECOMMENDED, shuffled), M.hit_matrix(RECOMMENDED, RELEVANT))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ConfigError) as info:
        M.ranking_metrics(RECOMMENDED, RELEVANT, k=4)
    assert str(info.value) == M.BAD_K.format(func="ranking_metrics", width=3, got=4)
    with pytest.raises(DataError) as info:
        M.ranking_metrics(RECOMMENDED[:2], RELEVANT)
    assert str(info.value) == M.BAD_SHAPE.format(func="ranking_metrics", n_rec=2, n_rel=3)
    with pytest.raises(DataError) as info:
        M.ranking_metrics(np.array([[0, 6, 1]] * 3), RELEVANT)
    assert str(info.value) == M.BAD_ITEM.format(func="ranking_metrics", item=6, n_items=6, last=5)
    with pytest.raises(DataError, match="must be a 2-D integer array"):
        M.ranking_metrics(np.array([0, 1, 2]), RELEVANT)


# -- cross-check with implicit ---------------------------------------------------------
class FixedLists:
    """Quacks like an implicit model: ``recommend`` returns precomputed lists."""

    def __init__(self, lists: np.ndarray) -> None:
        self.lists = lists.astype(np.int32)

    def recommend(self, userid, user_items, N=10, **kwargs):  # noqa: N803 - implicit's signature
        ids = np.ascontiguousarray(self.lists[np.asarray(userid)][:, :N])
        return ids, np.zeros(ids.shape, dtype=np.float32)


def random_case(seed: int, n_users: int = 400, n_items: int = 60, k: int = 10):
    rng = np.random.default_rng(seed)
    # 0 to 25 relevant items per user: some none (skipped by both), many fewer than k, some more
    n_rel = rng.integers(0, 26, n_users)
    rows = np.repeat(np.arange(n_users), n_rel)
    cols = np.concatenate([rng.choice(n_items, r, replace=False) for r in n_rel])
    relevant = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    lists = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    short = rng.random(n_users) < 0.1  # some short lists, padded with -1
    lists[short, k // 2 :] = -1
    return lists, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_map_and_pooled_precision_match_implicit_exactly(seed):
    lists, relevant = random_case(seed)
    k = lists.shape[1]
    theirs = ranking_metrics_at_k(FixedLists(lists), sp.csr_matrix(relevant.shape, dtype=np.float32), relevant, K=k, show_progress=False)
    ours = M.ranking_metrics(lists, relevant)
    assert ours.mean()["ndcg"] == pytest.approx(theirs["ndcg"], abs=1e-6)
    assert ours.mean()["map"] == pytest.approx(theirs["map"], abs=1e-6)
    assert ours.pooled_precision == pytest.approx(theirs["precision"], abs=1e-6)
    # and our precision@k is a different quantity whenever some user has fewer than k relevant items
    assert abs(ours.mean()["precision"] - theirs["precision"]) > 1e-3


def test_precisions_coincide_when_every_user_has_at_least_k_relevant_items():
    rng = np.random.default_rng(5)
    n_users, n_items, k = 50, 40, 5
    relevant = sp.csr_matrix((rng.random((n_users, n_items)) < 0.5) | (np.arange(n_items) < k)).astype(np.float32)
    lists = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    theirs = ranking_metrics_at_k(FixedLists(lists), sp.csr_matrix(relevant.shape, dtype=np.float32), relevant, K=k, show_progress=False)
    assert M.ranking_metrics(lists, relevant).mean()["precision"] == pytest.approx(theirs["precision"], abs=1e-6)


# -- beyond accuracy -------------------------------------------------------------------
def test_item_popularity_counts_users_with_a_positive():
    train = sp.csr_matrix(np.array([[2.0, 1, 0], [0, 3, 0], [1, 0, 0]]))
    np.testing.assert_array_equal(M.item_popularity(train), [2.0, 2.0, 0.0])


def test_coverage_and_exposure():
    # items shown: 0 (3 times), 1 (2), 2 (3), 4 (1); never 3 or 5 -> coverage 4/6
    assert M.catalog_coverage(RECOMMENDED, 6) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(M.exposure(RECOMMENDED, 6), [3, 2, 3, 0, 1, 0])
    w2, w3 = 1 / L2(3), 0.5  # rank discounts 1/log2(rank + 1)
    np.testing.assert_allclose(
        M.exposure(RECOMMENDED, 6, position_weighted=True), [3, w2 + w3, w3 + 2 * w2, 0, w3, 0]
    )
    assert M.catalog_coverage(np.array([[0, -1], [-1, -1]]), 6) == pytest.approx(1 / 6)


def test_gini():
    assert M.gini_index([1, 1, 1, 1]) == pytest.approx(0.0)
    assert M.gini_index([0, 0, 0, 5]) == pytest.approx(3 / 4)  # (n - 1) / n
    assert math.isnan(M.gini_index([0, 0]))
    # exposure [3, 2, 3, 0, 1, 0] sorted [0, 0, 1, 2, 3, 3], sum 9, coefficients 2i - n - 1 = -5..5:
    # (-1*1 + 1*2 + 3*3 + 5*3) / (6 * 9) = 25 / 54
    assert M.exposure_gini(RECOMMENDED, 6) == pytest.approx(25 / 54)
    # position-weighted exposure sorted [0, 0, w3, w2+w3, w3+2w2, 3]
    w2, w3 = 1 / L2(3), 0.5
    x = [0, 0, w3, w2 + w3, w3 + 2 * w2, 3]
    expected = (-1 * x[2] + 1 * x[3] + 3 * x[4] + 5 * x[5]) / (6 * sum(x))
    assert M.exposure_gini(RECOMMENDED, 6, position_weighted=True) == pytest.approx(expected)
    assert expected == pytest.approx(0.545315, abs=1e-6)


def test_novelty_is_mean_self_information_under_training_popularity():
    # p = popularity / 3 users, unseen items count as seen by one: [1, 2/3, 1/3, 1/3, 1/3, 1/3]
    info = [0.0, -L2(2 / 3), L2(3), L2(3), L2(3), L2(3)]
    expected = [(info[0] + info[1] + info[2]) / 3] * 2 + [(info[0] + info[2] + info[4]) / 3]
    np.testing.assert_allclose(M.novelty(RECOMMENDED, POPULARITY, 3), expected)
    np.testing.assert_allclose(expected, [0.723308, 0.723308, 1.056642], atol=1e-6)
    # padding is skipped; an empty list has no novelty
    got = M.novelty(np.array([[2, -1], [-1, -1]]), POPULARITY, 3)
    assert got[0] == pytest.approx(L2(3)) and math.isnan(got[1])


def test_average_recommendation_popularity():
    # u0, u1: (3 + 2 + 1) / 3 = 2; u2: (3 + 1 + 0) / 3 = 4/3
    np.testing.assert_allclose(M.average_popularity(RECOMMENDED, POPULARITY), [2, 2, 4 / 3])


def test_long_tail_head_and_share():
    # popularity [3, 2, 1, 1, 0, 0], total 7; sorted cumulative shares 3/7, 5/7, 6/7, 7/7
    # head_share 0.8 -> 3 items needed (6/7 >= 0.8); the third has popularity 1, and item 3 ties
    # with it, so the head is {0, 1, 2, 3} and the tail {4, 5}
    assert M.long_tail_items(POPULARITY, 0.8).tolist() == [False, False, False, False, True, True]
    np.testing.assert_allclose(M.long_tail_share(RECOMMENDED, POPULARITY, 0.8), [0, 0, 1 / 3])
    # head_share 0.5 -> 2 items (5/7 >= 0.5): head {0, 1}
    assert M.long_tail_items(POPULARITY, 0.5).tolist() == [False, False, True, True, True, True]
    np.testing.assert_allclose(M.long_tail_share(RECOMMENDED, POPULARITY, 0.5), [1 / 3, 1 / 3, 2 / 3])
    with pytest.raises(ConfigError) as info:
        M.long_tail_items(POPULARITY, 1.5)
    assert str(info.value) == M.BAD_HEAD_SHARE.format(func="long_tail_items", got=1.5)


def test_intra_list_diversity_by_category():
    # u0 [0, 1, 2]: (0,1) a|b apart; (0,2) share a; (1,2) share b -> 1/3; u1 is the same set
    # u2 [0, 2, 4]: (0,2) share a; (0,4) apart; (2,4) apart -> 2/3
    np.testing.assert_allclose(M.intra_list_diversity(RECOMMENDED, CATEGORIES), [1 / 3, 1 / 3, 2 / 3])
    # uncategorised items (5) and padding take part in no pair
    got = M.intra_list_diversity(np.array([[0, 5, 3], [5, 3, -1], [1, 1, -1]]), CATEGORIES)
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == 0.0


def test_category_inputs_agree_and_many_categories_use_several_words():
    as_strings = ["a", "b", "a|b", "c", "c", None]
    sparse = M.item_category_matrix(CATEGORIES)
    assert (M.item_category_matrix(as_strings) != sparse).nnz == 0
    np.testing.assert_array_equal(
        M.intra_list_diversity(RECOMMENDED, sparse), M.intra_list_diversity(RECOMMENDED, as_strings)
    )
    # 130 categories (3 words of 64 bits): item i has category i and 129 shared by 0 and 5
    rng = np.random.default_rng(0)
    n_items = 130
    cats = [{i} for i in range(n_items)]
    cats[0].add(129)
    cats[5].add(129)
    lists = np.array([[0, 5, 7], [1, 2, 3]])
    np.testing.assert_allclose(M.intra_list_diversity(lists, cats, chunk_size=1), [2 / 3, 1.0])
    # chunking does not change the result
    big = rng.integers(-1, n_items, (300, 8))
    np.testing.assert_array_equal(
        M.intra_list_diversity(big, cats, chunk_size=7), M.intra_list_diversity(big, cats)
    )
