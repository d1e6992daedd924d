"""Block scoring: the same top-k lists as implicit's recommend, and the same metrics as the per-batch path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender import ConfigError
from recommender.als import ALSRecommender
from recommender.evaluate import evaluate_model
from recommender.scoring import block_rows, factor_top_k, mask_seen, ranked_lists, top_k_rows, uses_factor_scores
from recommender.tuning import validation_ndcg
from tests.recommender.test_tuning import taste_matrix


@pytest.fixture(scope="module")
def fitted() -> ALSRecommender:
    return ALSRecommender(factors=16, iterations=5, random_state=3).fit(taste_matrix(seed=5))


def test_block_lists_equal_implicits_recommend(fitted: ALSRecommender) -> None:
    rows = np.arange(fitted.train_.n_users)
    expected, expected_scores, _ = fitted.recommend_index(rows, 10)
    # A tiny budget forces many blocks: block boundaries must not change a list.
    got, got_scores = factor_top_k(
        fitted.user_factors_, fitted.item_factors_, rows, 10, seen=fitted.train_.matrix, budget_bytes=4 * 200 * 7
    )
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got_scores, expected_scores, rtol=1e-5)
    assert uses_factor_scores(fitted)


def test_seen_items_are_never_listed_and_short_lists_are_padded(fitted: ALSRecommender) -> None:
    seen = fitted.train_.matrix
    n_items = fitted.train_.n_items
    rows = np.arange(20)
    got, scores = factor_top_k(fitted.user_factors_, fitted.item_factors_, rows, n_items, seen=seen)
    for j, row in enumerate(rows):
        listed = got[j][got[j] >= 0]
        assert not set(listed) & set(seen.indices[seen.indptr[row] : seen.indptr[row + 1]])
        assert len(listed) == n_items - (seen.indptr[row + 1] - seen.indptr[row])
        assert np.isnan(scores[j][got[j] < 0]).all()
    expected, _, _ = fitted.recommend_index(rows, n_items)
    np.testing.assert_array_equal(got, expected)


def test_mask_seen_matches_a_per_row_loop() -> None:
    rng = np.random.default_rng(0)
    seen = sp.random(30, 40, density=0.2, format="csr", random_state=1)
    rows = rng.permutation(30)[:12]
    scores = rng.random((12, 40)).astype(np.float32)
    expected = scores.copy()
    for j, row in enumerate(rows):
        expected[j, seen[row].indices] = -np.inf
    mask_seen(scores, seen, rows)
    np.testing.assert_array_equal(scores, expected)


def test_ties_are_ordered_by_item_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.5, 3.0]], dtype=np.float32)
    idx, val = top_k_rows(scores, 4)
    assert idx.tolist() == [[1, 2, 4, 0]]
    assert val.tolist() == [[3.0, 3.0, 3.0, 1.0]]


def test_metrics_equal_the_per_batch_path(fitted: ALSRecommender) -> None:
    train = fitted.train_
    rng = np.random.default_rng(2)
    test = sp.csr_matrix((rng.random(train.matrix.shape) < 0.02).astype(np.float32))
    test = type(train)(test - test.multiply(train.matrix > 0), train.user_ids, train.item_ids)
    fast = evaluate_model(fitted, train, test, k=10)
    rows = fast.user_index
    slow_lists, _, _ = fitted.recommend_index(rows, 10)
    np.testing.assert_array_equal(fast.recommended, slow_lists)
    valid = test
    users = np.flatnonzero(np.diff(valid.matrix.indptr) > 0)
    from recommender.metrics import ndcg_at_k

    slow_ndcg = float(np.mean(ndcg_at_k(slow_lists, valid.matrix[users], 10)))
    assert validation_ndcg(fitted, valid) == pytest.approx(slow_ndcg, abs=1e-9)
    assert fast.metrics["ndcg"] == pytest.approx(slow_ndcg, abs=1e-9)


def test_other_models_go_through_recommend_index() -> None:
    from recommender.baselines import PopularityRecommender

    model = PopularityRecommender().fit(taste_matrix(seed=5))
    assert not uses_factor_scores(model)
    rows = np.arange(7)
    idx, fallback = ranked_lists(model, rows, 5, batch_size=3)
    np.testing.assert_array_equal(idx, model.recommend_index(rows, 5)[0])
    assert not fallback.any()


def test_bad_arguments_are_refused(fitted: ALSRecommender) -> None:
    bad_k = r"The 'k' parameter of factor_top_k must be an int in the range \[1, inf\)\. Got 0 instead\."
    with pytest.raises(ConfigError, match=bad_k):
        factor_top_k(fitted.user_factors_, fitted.item_factors_, np.arange(3), 0)
    with pytest.raises(ConfigError, match=r"user rows must be in 0\.\."):
        factor_top_k(fitted.user_factors_, fitted.item_factors_, np.array([-1]), 3)
    with pytest.raises(ConfigError, match="budget_bytes"):
        block_rows(10, 0)
    assert block_rows(10, 1) == 1


@pytest.mark.parametrize("n_cols,k", [(997, 10), (1000, 10), (64, 3), (31, 1), (500, 50), (12, 12)])
def test_grouped_selection_equals_a_full_sort(n_cols: int, k: int) -> None:
    rng = np.random.default_rng(n_cols + k)
    scores = rng.normal(size=(40, n_cols)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # masked cells
    scores[0, :] = -np.inf
    scores[1, : n_cols - 2] = -np.inf  # fewer eligible items than k
    idx, val = top_k_rows(scores, k)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    expected = np.where(np.isfinite(np.take_along_axis(scores, order, axis=1)), order, -1)
    np.testing.assert_array_equal(idx, expected)
    assert np.isnan(val[0]).all()
