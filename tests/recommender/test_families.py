"""Each new family's numbers against an independent computation: a hand-computed case, a dense reference,
scikit-learn's truncated SVD, implicit's BPR."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.families.bpr import BPRModel
from recommender.families.ease import EASEModel, ease_weights
from recommender.families.pure_svd import PureSVDModel
from recommender.families.user_knn import UserKNNModel
from recommender.family import families


def matrix(dense: np.ndarray) -> InteractionMatrix:
    dense = np.asarray(dense, dtype=np.float32)
    return InteractionMatrix(
        sp.csr_matrix(dense),
        np.array([f"u{u}" for u in range(dense.shape[0])], dtype=object),
        np.array([f"i{i}" for i in range(dense.shape[1])], dtype=object),
    )


def clustered(n_users: int, n_items: int, seed: int, p_in: float = 0.3, p_out: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    groups = 4
    p = np.where((np.arange(n_users) % groups)[:, None] == (np.arange(n_items) % groups)[None, :], p_in, p_out)
    # a popularity gradient inside each group, as real catalogues have
    p = p * np.linspace(1.5, 0.5, n_items)[None, :]
    dense = (rng.random((n_users, n_items)) < p).astype(np.float32)
    dense[dense.sum(axis=1) < 3, :3] = 1.0
    return dense


# -- EASE ---------------------------------------------------------------------------------------------------


def test_ease_weights_by_hand():
    # X = [[1,1],[1,0],[0,1]]: G = [[2,1],[1,2]]; lambda = 1: P = (G + I)^-1 = [[3,-1],[-1,3]] / 8;
    # B_01 = -P_01 / P_11 = (1/8) / (3/8) = 1/3, B_10 likewise, zero diagonal.
    b = ease_weights(np.array([[2.0, 1.0], [1.0, 2.0]]), 1.0)
    assert np.allclose(b, [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-12)


def test_ease_equals_a_ridge_regression_of_each_item_on_the_others():
    # Steck's closed form is the constrained least squares min ||X - XB||^2 + lambda ||B||^2, diag(B) = 0, whose
    # column j is the ridge regression of item j on every other item: solved here column by column, densely.
    dense = clustered(60, 15, seed=3).astype(np.float64)
    lam = 7.0
    g = dense.T @ dense
    reference = np.zeros_like(g)
    for j in range(g.shape[0]):
        others = np.array([i for i in range(g.shape[0]) if i != j])
        reference[others, j] = np.linalg.solve(g[np.ix_(others, others)] + lam * np.eye(len(others)), g[others, j])
    assert np.allclose(ease_weights(g, lam), reference, atol=1e-10)
    model = EASEModel(regularization=lam).fit(matrix(dense))
    assert np.allclose(model.weights_, reference, atol=1e-10)


def test_ease_forget_downdates_to_the_refit_weights():
    dense = clustered(40, 12, seed=4)
    model = EASEModel(regularization=5.0).fit(matrix(dense))
    model.forget(["u3", "u17"])
    keep = [u for u in range(40) if u not in (3, 17)]
    refit = EASEModel(regularization=5.0).fit(matrix(dense[keep]))
    assert np.array_equal(model.weights_, refit.weights_)


# -- exact tags add up to the served score ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ease", "pure_svd", "item_knn", "user_knn", "popularity"])
def test_exact_tags_carry_the_served_score(name):
    family = families()[name]
    train = matrix(clustered(50, 30, seed=5))
    model = family.create(**family.small_params).fit(train)
    batch = model.recommend(["u1", "u2", "u7"], k=6)
    for row, user in enumerate(batch.user_ids):
        tags = model.explain(user, list(batch.item_ids[row]))
        for j, per_item in enumerate(tags):
            tag = per_item[0]
            assert tag.exact
            figure = tag.evidence.get("score", tag.evidence.get("users_who_interacted"))
            assert figure == pytest.approx(float(batch.scores[row, j]), rel=1e-4, abs=1e-5)


def test_als_tags_decompose_the_exact_solve_close_to_the_served_score():
    family = families()["als"]
    train = matrix(clustered(50, 30, seed=5))
    model = family.create(factors=8, iterations=30, regularization=0.05, num_threads=1).fit(train)
    batch = model.recommend(["u1"], k=5)
    for j, per_item in enumerate(model.explain("u1", list(batch.item_ids[0]))):
        ev = per_item[0].evidence
        assert ev["served_score"] == pytest.approx(float(batch.scores[0, j]), rel=1e-4, abs=1e-5)
        assert ev["score"] == pytest.approx(ev["served_score"], rel=0.1, abs=0.02)


# -- user-kNN -----------------------------------------------------------------------------------------------


def test_user_knn_scores_match_a_brute_force_neighbourhood():
    dense = clustered(30, 20, seed=6).astype(np.float64)
    k = 4
    model = UserKNNModel(k_neighbours=k).fit(matrix(dense))
    norms = np.linalg.norm(dense, axis=1)
    for u in range(30):
        sims = [(dense[u] @ dense[v] / (norms[u] * norms[v]), v) for v in range(30) if v != u]
        sims.sort(key=lambda t: (-t[0], t[1]))
        expected = sum(s * dense[v] for s, v in sims[:k] if s > 0)
        batch = model.recommend([f"u{u}"], k=20, filter_seen=False)
        got = np.zeros(20)
        got[batch.item_indices[0]] = batch.scores[0]
        assert np.allclose(got, expected, atol=1e-5)


def test_user_knn_tag_counts_the_neighbours_who_liked_it():
    # u0's only neighbours (k=2) are u1 and u2; both liked i2, only u1 liked i3.
    dense = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=np.float32)
    model = UserKNNModel(k_neighbours=2).fit(matrix(dense))
    tags = model.explain("u0", ["i2", "i3", "i4"])
    assert [t[0].evidence["neighbours_who_interacted"] for t in tags] == [2, 1, 0]
    assert tags[0][0].text.startswith("2 of the 2 people")
    assert tags[2][0].kind == "no_neighbour_signal"


# -- PureSVD ------------------------------------------------------------------------------------------------


def test_pure_svd_item_space_matches_scikit_learn():
    from sklearn.decomposition import TruncatedSVD

    dense = clustered(80, 40, seed=8)
    model = PureSVDModel(factors=6).fit(matrix(dense))
    reference = TruncatedSVD(n_components=6, algorithm="arpack", random_state=0).fit(sp.csr_matrix(dense.astype(np.float64)))
    v_ref = reference.components_.T
    assert np.allclose(model.singular_values_, reference.singular_values_, rtol=1e-9)
    # singular vectors are defined up to sign: compare the projections V V^T
    assert np.allclose(model.item_factors_ @ model.item_factors_.T, v_ref @ v_ref.T, atol=1e-8)


# -- BPR ----------------------------------------------------------------------------------------------------


def _leave_one_out(dense: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = dense.copy()
    held = np.array([rng.choice(np.flatnonzero(row)) for row in dense])
    train[np.arange(len(dense)), held] = 0.0
    return train, held


def _ndcg(ranked: np.ndarray, held: np.ndarray) -> float:
    hits = ranked == held[:, None]
    rank = np.argmax(hits, axis=1)
    return float(np.where(hits.any(axis=1), 1.0 / np.log2(rank + 2.0), 0.0).mean())


def test_bpr_ranks_as_well_as_implicits_bpr_with_either_sampling():
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    dense = clustered(400, 120, seed=9, p_in=0.25, p_out=0.01)
    train_dense, held = _leave_one_out(dense, seed=1)
    train = matrix(train_dense)
    users = list(train.user_ids)
    figures = {}
    for sampling in ("uniform", "popularity"):
        model = BPRModel(factors=16, iterations=40, sampling=sampling, random_state=0).fit(train)
        figures[sampling] = _ndcg(model.recommend(users, k=10).item_indices, held)
    ref = BayesianPersonalizedRanking(factors=16, iterations=200, learning_rate=0.05, regularization=0.01, num_threads=1, random_state=0)
    ref.fit(train.matrix, show_progress=False)
    ids, _ = ref.recommend(np.arange(len(users)), train.matrix, N=10, filter_already_liked_items=True)
    figures["implicit"] = _ndcg(np.asarray(ids), held)
    rng = np.random.default_rng(0)
    random_lists = np.array([rng.choice(np.flatnonzero(row == 0), 10, replace=False) for row in train_dense])
    figures["random"] = _ndcg(random_lists, held)
    assert figures["implicit"] > 2 * figures["random"], figures
    assert figures["uniform"] >= 0.9 * figures["implicit"], figures
    assert figures["popularity"] >= 0.8 * figures["implicit"], figures


def test_bpr_popularity_sampling_draws_popular_negatives_more_often():
    dense = clustered(100, 40, seed=10)
    a = BPRModel(factors=8, iterations=5, sampling="uniform").fit(matrix(dense))
    b = BPRModel(factors=8, iterations=5, sampling="popularity").fit(matrix(dense))
    counts = dense.sum(axis=0)
    # popular items are pushed down more as negatives: their bias falls relative to the uniform run's
    corr_uniform = np.corrcoef(counts, a.item_bias_)[0, 1]
    corr_popularity = np.corrcoef(counts, b.item_bias_)[0, 1]
    assert corr_popularity < corr_uniform
