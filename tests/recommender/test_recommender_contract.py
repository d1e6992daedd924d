"""The contract every recgov recommender passes (after implicit's RecommenderBaseTestMixin).

Each model here only supplies its constructor; the tests are shared.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender import ConfigError, NotFittedError
from recommender.als import ALSRecommender
from recommender.baselines import ItemKNNRecommender, PopularityRecommender, RandomRecommender
from recommender.base import NOT_FITTED
from recommender.data import InteractionMatrix

MODELS = {
    "als": lambda: ALSRecommender(factors=8, iterations=10, regularization=0.01, random_state=3),
    "popularity": PopularityRecommender,
    "random": lambda: RandomRecommender(random_state=5),
    "item_knn": lambda: ItemKNNRecommender(k_neighbours=20),
}


def checkerboard(n: int = 30) -> InteractionMatrix:
    """Every even user liked every even item and every odd user every odd item; the diagonal is withheld."""
    rows, cols = [], []
    for u in range(n):
        for i in range(n):
            if u % 2 == i % 2 and u != i:
                rows.append(u)
                cols.append(i)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    return InteractionMatrix(matrix, np.array([f"u{u}" for u in range(n)], dtype=object), np.array([f"i{i}" for i in range(n)], dtype=object))


@pytest.fixture(params=sorted(MODELS))
def make(request):
    return MODELS[request.param]


def test_not_fitted_error_names_the_fix(make):
    model = make()
    with pytest.raises(NotFittedError) as info:
        model.recommend(["u0"])
    assert str(info.value) == NOT_FITTED.format(name=type(model).__name__, method="recommend")


def test_fit_returns_self_and_recommends_unseen_items(make):
    train = checkerboard()
    model = make()
    assert model.fit(train) is model
    batch = model.recommend([f"u{u}" for u in range(train.n_users)], k=5)
    assert batch.item_indices.shape == (train.n_users, 5)
    assert not batch.fallback.any()
    dense = train.matrix.toarray()
    for u in range(train.n_users):
        recs = batch.item_indices[u]
        assert (recs >= 0).all()
        assert len(set(recs)) == 5
        assert dense[u, recs].sum() == 0, "an already-seen item was recommended"


@pytest.mark.parametrize("name", ["als", "item_knn"])
def test_personalized_models_recover_the_withheld_diagonal(name):
    model = MODELS[name]().fit(checkerboard())
    batch = model.recommend([f"u{u}" for u in range(30)], k=1)
    # The only unseen item of a user's own parity is the withheld diagonal one.
    assert (batch.item_indices[:, 0] == np.arange(30)).mean() >= 0.9


def test_same_seed_same_lists(make):
    a = make().fit(checkerboard()).recommend(["u1", "u2"], k=4)
    b = make().fit(checkerboard()).recommend(["u1", "u2"], k=4)
    np.testing.assert_array_equal(a.item_indices, b.item_indices)


def test_unknown_user_falls_back_to_popularity_and_says_so(make):
    train = checkerboard()
    model = make().fit(train)
    batch = model.recommend(["u3", "nobody"], k=3)
    assert batch.fallback.tolist() == [False, True]
    popular = np.argsort(-model.popularity_, kind="stable")[:3]
    assert set(batch.item_indices[1]) == set(popular)
    assert batch.as_records()[1]["fallback"] == "popularity"


def test_bad_k_is_a_clear_error(make):
    model = make().fit(checkerboard())
    for k in (0, 10**12):  # a huge k used to end in MemoryError
        with pytest.raises(ConfigError, match=rf"The 'k' parameter of recommend must be an int in the range \[1, 1000\]\. Got {k} instead\."):
            model.recommend(["u1"], k=k)


def test_short_lists_are_padded(make):
    model = make().fit(checkerboard(6))
    batch = model.recommend(["u0"], k=10)
    # u0 has seen 2 of 6 items: at most 4 can be recommended.
    assert (batch.item_indices[0] >= 0).sum() <= 4
    assert (batch.item_indices[0][4:] == -1).all()
    assert np.isnan(batch.scores[0][4:]).all()


def test_similar_items_excludes_the_item_and_falls_back_for_unknown(make):
    model = make().fit(checkerboard())
    batch = model.similar_items("i4", k=3)
    assert 4 not in batch.item_indices[0]
    assert not batch.fallback[0]
    assert model.similar_items("no-such-item", k=3).fallback[0]


def test_empty_training_matrix_is_refused(make):
    empty = InteractionMatrix(sp.csr_matrix((0, 0), dtype=np.float32), np.array([], dtype=object), np.array([], dtype=object))
    with pytest.raises(ConfigError, match="empty interaction matrix"):
        make().fit(empty)
