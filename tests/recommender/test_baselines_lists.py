"""The baselines' lists, block by block, against independent computations.

Popularity and item-kNN are checked against a brute-force ranking (a dense score
matrix, seen cells at -inf, a full sort by score then item index) and item-kNN also
against ``implicit``'s own ``recommend``. Random is checked for what it promises:
unseen items only, distinct, seeded, the same list for a user whatever batch it is
ranked in, and uniform over the unseen items (a chi-square test on many draws).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from recommender.base import top_k_from_scores
from recommender.baselines import ItemKNNRecommender, PopularityRecommender, RandomRecommender
from recommender.data import InteractionMatrix


def random_matrix(n_users: int, n_items: int, density: float, seed: int, heavy: int = 3) -> InteractionMatrix:
    """A skewed implicit matrix: item popularity follows a power law; a few users have seen almost everything."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    dense = rng.random((n_users, n_items)) < np.clip(density * n_items * weights, 0, 0.95)
    dense[:heavy] = rng.random((heavy, n_items)) < 0.97  # nearly the whole catalogue seen
    dense[heavy, :] = False
    dense[heavy, 0] = True  # one user with one item
    counts = np.where(dense, rng.integers(1, 5, dense.shape), 0).astype(np.float32)
    matrix = sp.csr_matrix(counts)
    matrix.sort_indices()
    return InteractionMatrix(
        matrix, np.array([f"u{u}" for u in range(n_users)], dtype=object), np.array([f"i{i}" for i in range(n_items)], dtype=object)
    )


def brute_force(scores: np.ndarray, seen: sp.csr_matrix | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by a full sort: score descending, then item index ascending; -1/NaN past the eligible items."""
    scores = np.array(scores, dtype=np.float64)
    if seen is not None:
        scores[seen.toarray() != 0] = -np.inf
    idx = np.full((len(scores), k), -1, dtype=np.int64)
    val = np.full((len(scores), k), np.nan)
    for u, row in enumerate(scores):
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[np.isfinite(row[order])][:k]
        idx[u, : len(order)], val[u, : len(order)] = order, row[order]
    return idx, val


def assert_same_up_to_ties(got_idx, got_val, ref_idx, ref_val, all_scores, seen):
    """Same scores at every place; same items except where several items tie at the k-th place."""
    np.testing.assert_array_equal(got_idx < 0, ref_idx < 0)
    np.testing.assert_allclose(got_val, ref_val, rtol=1e-6, equal_nan=True)
    k = got_idx.shape[1]
    dense_seen = seen.toarray() != 0
    for u in range(len(got_idx)):
        eligible = all_scores[u][~dense_seen[u]]
        last = ref_val[u][np.isfinite(ref_val[u])]
        if len(last) == 0:
            continue
        tied_at_cut = np.sum(np.isclose(eligible, last[-1], rtol=1e-6)) > np.sum(np.isclose(last, last[-1], rtol=1e-6))
        untied = ~np.isclose(ref_val[u], last[-1], rtol=1e-6) if tied_at_cut else np.ones(k, dtype=bool)
        untied &= ref_idx[u] >= 0
        assert set(got_idx[u][untied]) == set(ref_idx[u][untied]), f"user {u}"
    assert (got_idx >= 0).sum() == (ref_idx >= 0).sum()


@pytest.mark.parametrize("k", [1, 10, 40])
def test_popularity_lists_are_the_first_unseen_items_of_the_popularity_order(k):
    train = random_matrix(120, 60, 0.1, seed=1)
    model = PopularityRecommender().fit(train)
    users = np.arange(train.n_users)
    idx, val = model._recommend_known(users, k, filter_seen=True)
    pop = np.asarray((train.matrix > 0).sum(axis=0)).ravel().astype(np.float64)
    ref_idx, ref_val = brute_force(np.broadcast_to(pop, (len(users), len(pop))), train.matrix, k)
    np.testing.assert_array_equal(idx, ref_idx)  # popularity breaks every tie by item index
    np.testing.assert_allclose(val, ref_val, equal_nan=True)
    # unfiltered: the same top-k for everyone
    idx_all, _ = model._recommend_known(users[:3], k, filter_seen=False)
    ref_all, _ = brute_force(pop[None, :], None, k)
    np.testing.assert_array_equal(idx_all, np.repeat(ref_all, 3, axis=0))


@pytest.mark.parametrize("similarity", ["cosine", "bm25", "tfidf"])
@pytest.mark.parametrize("k", [5, 25])
def test_item_knn_lists_match_a_full_sort_of_implicits_scores(similarity, k):
    train = random_matrix(150, 80, 0.08, seed=2)
    model = ItemKNNRecommender(k_neighbours=12, similarity=similarity).fit(train)
    users = np.arange(train.n_users)
    idx, val = model.recommend_index(users, k)[:2]
    scores = (train.matrix @ model.model_.similarity).toarray().astype(np.float32)
    ref_idx, ref_val = brute_force(scores, train.matrix, k)
    assert_same_up_to_ties(idx, val, ref_idx, ref_val, scores, train.matrix)
    # and the lists of the implementation before block scoring (dense scores, one top-k over every column)
    old_idx, old_val = top_k_from_scores(scores, k, train.matrix)
    assert_same_up_to_ties(idx, val, old_idx, old_val, scores, train.matrix)


def test_item_knn_lists_match_implicits_recommend():
    train = random_matrix(100, 70, 0.1, seed=3)
    model = ItemKNNRecommender(k_neighbours=20, similarity="cosine").fit(train)
    users = np.arange(train.n_users)
    idx, val = model.recommend_index(users, 10)[:2]
    ids, scores = model.model_.recommend(users, train.matrix[users], N=10, filter_already_liked_items=True)
    full = (train.matrix @ model.model_.similarity).toarray().astype(np.float32)
    # implicit pads short lists with -1 / -inf-ish scores; compare where it has items
    ref_val = np.where(ids >= 0, scores, np.nan).astype(np.float32)
    ref_idx = np.where(ids >= 0, ids, -1)
    # implicit's lists stop at the items with a score it keeps (zeros may be left out): compare those places
    placed = (ref_idx >= 0) & np.isfinite(ref_val) & (ref_val > 0)
    np.testing.assert_allclose(np.where(placed, val, np.nan), np.where(placed, ref_val, np.nan), rtol=1e-5, equal_nan=True)
    ref_full_idx, ref_full_val = brute_force(full, train.matrix, 10)
    assert_same_up_to_ties(idx, val, ref_full_idx, ref_full_val, full, train.matrix)


def test_item_knn_block_size_does_not_change_lists(monkeypatch):
    import recommender.baselines as B

    train = random_matrix(90, 50, 0.1, seed=4)
    model = ItemKNNRecommender(k_neighbours=10).fit(train)
    users = np.arange(train.n_users)
    whole = model.recommend_index(users, 10)
    monkeypatch.setattr(B, "block_rows", lambda n_items, budget_bytes=0: 7)
    np.testing.assert_array_equal(model.recommend_index(users, 10)[0], whole[0])


def test_random_lists_are_unseen_distinct_seeded_and_independent_of_the_batch():
    train = random_matrix(200, 40, 0.15, seed=5)
    model = RandomRecommender(random_state=11).fit(train)
    users = np.arange(train.n_users)
    idx, val, _ = model.recommend_index(users, 10)
    dense = train.matrix.toarray() != 0
    for u in users:
        row = idx[u][idx[u] >= 0]
        assert len(set(row)) == len(row)
        assert not dense[u, row].any()
        assert len(row) == min(10, int((~dense[u]).sum()))  # full unless fewer unseen items exist
    both = (idx[:, 1:] >= 0) & (idx[:, :-1] >= 0)
    assert np.all((val[:, 1:] < val[:, :-1])[both])  # best first
    # the same list for a user alone, in another order, and from a fresh model with the same seed
    np.testing.assert_array_equal(model.recommend_index(users[[7]], 10)[0][0], idx[7])
    shuffled = np.random.default_rng(0).permutation(users)
    np.testing.assert_array_equal(model.recommend_index(shuffled, 10)[0], idx[shuffled])
    np.testing.assert_array_equal(RandomRecommender(random_state=11).fit(train).recommend_index(users, 10)[0], idx)
    assert not np.array_equal(RandomRecommender(random_state=12).fit(train).recommend_index(users, 10)[0], idx)


def test_random_lists_are_uniform_over_unseen_items():
    """Every unseen item is equally likely at every place: chi-square over many users that saw the same items."""
    n_users, n_items, k = 6000, 30, 5
    seen_items = [0, 3, 4, 17, 29]
    matrix = sp.csr_matrix(
        (np.ones(n_users * len(seen_items), dtype=np.float32), (np.repeat(np.arange(n_users), len(seen_items)), np.tile(seen_items, n_users))),
        shape=(n_users, n_items),
    )
    train = InteractionMatrix(matrix, np.arange(n_users).astype(str).astype(object), np.arange(n_items).astype(str).astype(object))
    idx, _, _ = RandomRecommender(random_state=3).fit(train).recommend_index(np.arange(n_users), k)
    unseen = np.setdiff1d(np.arange(n_items), seen_items)
    for place in range(k):
        counts = np.bincount(idx[:, place], minlength=n_items)
        assert counts[seen_items].sum() == 0
        assert stats.chisquare(counts[unseen]).pvalue > 1e-4, place
    # pairs of first and second place are uniform over ordered pairs of distinct unseen items
    pair = idx[:, 0] * n_items + idx[:, 1]
    assert np.all(idx[:, 0] != idx[:, 1])
    observed = np.bincount(pair, minlength=n_items * n_items).reshape(n_items, n_items)[np.ix_(unseen, unseen)]
    off_diagonal = observed[~np.eye(len(unseen), dtype=bool)]
    assert stats.chisquare(off_diagonal).pvalue > 1e-4


def test_random_users_who_saw_almost_everything_still_get_uniform_unseen_items():
    """The fallback for heavy users (score per item) keeps the same law: uniform over the few unseen items."""
    n_users, n_items = 3000, 50
    unseen = [2, 9, 33, 41, 47, 48]
    seen_items = np.setdiff1d(np.arange(n_items), unseen)
    matrix = sp.csr_matrix(
        (np.ones(n_users * len(seen_items), dtype=np.float32), (np.repeat(np.arange(n_users), len(seen_items)), np.tile(seen_items, n_users))),
        shape=(n_users, n_items),
    )
    train = InteractionMatrix(matrix, np.arange(n_users).astype(str).astype(object), np.arange(n_items).astype(str).astype(object))
    idx, _, _ = RandomRecommender(random_state=1).fit(train).recommend_index(np.arange(n_users), 10)
    assert np.all(idx[:, 6:] == -1)
    assert np.all(np.sort(idx[:, :6], axis=1) == np.array(unseen))
    counts = np.bincount(idx[:, 0], minlength=n_items)[unseen]
    assert stats.chisquare(counts).pvalue > 1e-4
