"""The ALS core builds implicit's model in one place (make_als): a fit and a loaded model have the
factors the former constructions gave, bit for bit, with the same dtype and thread handling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from recommender.als import ALSRecommender, blas_single_thread, make_als
from recommender.data import InteractionMatrix
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

PARAMS = {"factors": 8, "iterations": 5, "regularization": 0.05, "alpha": 2.0, "random_state": 3}


@pytest.fixture(scope="module")
def train() -> InteractionMatrix:
    return to_implicit(generate(SyntheticSpec(n_users=150, n_items=90, n_interactions=5_000, seed=2)).events)


def test_fit_gives_the_factors_of_implicits_factory(train):
    from implicit.als import AlternatingLeastSquares

    with blas_single_thread():
        reference = AlternatingLeastSquares(**PARAMS, use_gpu=False, calculate_training_loss=False)
        reference.fit(train.matrix, show_progress=False)
    model = ALSRecommender(**PARAMS).fit(train)
    assert type(model.model_) is type(reference)
    assert model.user_factors_.dtype == reference.user_factors.dtype == np.float32
    assert np.array_equal(model.user_factors_, reference.user_factors)
    assert np.array_equal(model.item_factors_, reference.item_factors)


def test_a_loaded_model_recommends_exactly_as_the_fitted_one(train, tmp_path):
    model = ALSRecommender(**PARAMS).fit(train)
    model.save(tmp_path / "m.npz")
    loaded = ALSRecommender.load(tmp_path / "m.npz")
    assert loaded.model_.num_threads == model.model_.num_threads
    assert loaded.model_.dtype == model.model_.dtype
    users = np.arange(20)
    assert np.array_equal(
        loaded.recommend_index(users, 10, filter_seen=True)[0], model.recommend_index(users, 10, filter_seen=True)[0]
    )


def test_make_als_takes_the_recommenders_parameters_and_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # implicit warns when built under a threaded BLAS
        inner = make_als(ALSRecommender(factors=4, regularization=1, alpha=3, iterations=2).get_params(), num_threads=1)
    assert (inner.factors, inner.regularization, inner.alpha, inner.iterations) == (4, 1.0, 3.0, 2)
    assert isinstance(inner.regularization, float) and inner.dtype == np.float32 and inner.num_threads == 1


def test_continue_fit_gives_fits_factors_bit_for_bit() -> None:
    """Sweeps on the once-converted pair, in steps, equal implicit's own fit with the total count."""
    import scipy.sparse as sp

    from recommender.als import ConfidencePair, continue_fit, make_als

    rng = np.random.default_rng(4)
    dense = (rng.random((60, 40)) < 0.15) * rng.integers(1, 4, size=(60, 40))
    matrix = sp.csr_matrix(dense.astype(np.float64))
    params = {"factors": 8, "regularization": 0.05, "alpha": 3.7, "iterations": 5, "random_state": 3}
    reference = make_als(params)
    from recommender.als import blas_single_thread

    with blas_single_thread():
        reference.fit(matrix, show_progress=False)
    pair = ConfidencePair(matrix)
    stepped = make_als({**params, "iterations": 1})
    continue_fit(stepped, pair, 2)
    continue_fit(stepped, pair, 3)
    assert np.array_equal(stepped.user_factors, reference.user_factors)
    assert np.array_equal(stepped.item_factors, reference.item_factors)
    # the pair's matrices are not the caller's and are not altered by a candidate's alpha
    assert pair.cui.dtype == np.float32 and np.array_equal(pair.cui.toarray(), dense.astype(np.float32))
    other = make_als({**params, "alpha": 1.0})
    continue_fit(other, pair, 1)
    assert np.array_equal(pair.cui.toarray(), dense.astype(np.float32))
    continue_fit(other, pair, 0)  # no sweep: nothing changes, nothing fails
