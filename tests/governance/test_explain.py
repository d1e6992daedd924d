"""Explanation tags: the batched ALS decomposition equals implicit's explain, item by item."""

from __future__ import annotations

import numpy as np
import pytest

from governance.explain import TagKind, because_tags, explain_als_list, fallback_tags, regularized_gram
from recommender.als import ALSRecommender, blas_single_thread
from recommender.errors import ConfigError
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="module")
def fitted():
    data = generate(SyntheticSpec(n_users=400, n_items=300, n_interactions=20000, seed=4))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=16, iterations=8, alpha=3.0, regularization=0.1).fit(matrix)
    return model, matrix


@pytest.mark.parametrize("user", [0, 7, 123, 399])
def test_batched_decomposition_equals_implicit_explain(fitted, user: int) -> None:
    model, matrix = fitted
    recs, _, _ = model.recommend_index(np.array([user]), 10)
    row = matrix.matrix[user]
    ex = explain_als_list(model.item_factors_, model.regularization, model.alpha, row.indices, row.data, recs[0], n=3)
    with blas_single_thread():
        for j, item in enumerate(recs[0]):
            total, top, _ = model.model_.explain(user, matrix.matrix, int(item), N=3)
            assert ex.scores[j] == pytest.approx(total, abs=1e-5)
            assert [c for c, _ in top] == ex.contributors[j][: len(top)].tolist()
            np.testing.assert_allclose(ex.weights[j][: len(top)], [w for _, w in top], atol=1e-5)


@pytest.mark.parametrize("user", [0, 123])
def test_a_precomputed_gram_gives_the_same_explanation(fitted, user: int) -> None:
    model, matrix = fitted
    recs, _, _ = model.recommend_index(np.array([user]), 10)
    row = matrix.matrix[user]
    Y = model.item_factors_
    gram = regularized_gram(Y.T.astype(np.float64) @ Y.astype(np.float64), model.regularization)
    args = (Y, model.regularization, model.alpha, row.indices, row.data, recs[0])
    plain, fast = explain_als_list(*args, n=3), explain_als_list(*args, n=3, gram=gram)
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=1e-12)
    assert (fast.contributors == plain.contributors).all()
    np.testing.assert_allclose(fast.weights, plain.weights, rtol=1e-12)
    with blas_single_thread():  # and both are implicit's, item by item
        for j, item in enumerate(recs[0][:3]):
            total, top, _ = model.model_.explain(user, matrix.matrix, int(item), N=3)
            assert fast.scores[j] == pytest.approx(total, abs=1e-5)
            assert [c for c, _ in top] == fast.contributors[j][: len(top)].tolist()


def test_a_broken_system_is_a_clear_error_not_a_wrong_tag() -> None:
    Y = np.eye(3, dtype=np.float32)
    broken = Y.copy()
    broken[0, 1] = np.nan  # a history item's factor
    with pytest.raises(ValueError, match="not finite"):
        explain_als_list(broken, 0.1, 1.0, np.array([0]), np.array([2.0]), np.array([1]), n=2)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):  # a negative regularization
        explain_als_list(Y, -5.0, 1.0, np.array([0]), np.array([2.0]), np.array([1]), n=2)


def test_scores_sum_the_contributions_and_match_the_model_score(fitted) -> None:
    model, matrix = fitted
    user = 11
    recs, scores, _ = model.recommend_index(np.array([user]), 5)
    row = matrix.matrix[user]
    ex = explain_als_list(model.item_factors_, model.regularization, model.alpha, row.indices, row.data, recs[0], n=len(row.indices))
    np.testing.assert_allclose(np.nansum(ex.weights, axis=1), ex.scores, rtol=1e-9)
    # The decomposition recomputes the user factor exactly; ALS's stored factor is
    # the last CG iterate, so the two agree closely but not to the last digit.
    np.testing.assert_allclose(ex.scores, scores[0], rtol=0.05, atol=1e-3)


def test_padding_and_short_history() -> None:
    Y = np.eye(3, dtype=np.float32)
    ex = explain_als_list(Y, 0.1, 1.0, np.array([0]), np.array([2.0]), np.array([1, -1]), n=3)
    assert np.isnan(ex.scores[1]) and (ex.contributors[1] == -1).all()
    assert ex.contributors[0].tolist() == [0, -1, -1]


def test_tags_name_the_contributing_items(fitted) -> None:
    model, matrix = fitted
    row = matrix.matrix[3]
    recs, _, _ = model.recommend_index(np.array([3]), 4)
    ex = explain_als_list(model.item_factors_, model.regularization, model.alpha, row.indices, row.data, recs[0], n=2)
    tags = because_tags(ex, matrix.item_ids)
    assert len(tags) == 4 and all(t.kind == TagKind.because_you_interacted for t in tags)
    assert tags[0].items == tuple(str(matrix.item_ids[i]) for i in ex.contributors[0][:2])
    assert tags[0].text.startswith("Because you interacted with ")
    assert [t.kind for t in fallback_tags(2, profiling_allowed=False)] == [TagKind.not_personalized] * 2
    assert fallback_tags(1, profiling_allowed=True)[0].to_dict() == {"kind": "popular_in_context", "text": "Popular in your context"}


def test_a_singular_system_is_decomposed_through_the_minimum_norm_solution() -> None:
    """Regression: without regularization and with fewer items than factors, ``Y^T C_u Y`` is singular and the
    tags of every ALS list raised LinAlgError (a 500 from the API, a traceback from ``recgov recommend``). The
    decomposition is now that of the minimum-norm least-squares user factor, still exact for it."""
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(4, 8)).astype(np.float32)  # 4 items, 8 factors: rank 4 at most
    hist, values, items = np.array([0, 2]), np.array([1.0, 3.0]), np.array([1, 3, 0])
    ex = explain_als_list(Y, 0.0, 2.0, hist, values, items, n=2)
    assert ex.solver == "pseudo_inverse"
    conf = 2.0 * values
    y = Y.astype(np.float64)
    a = y.T @ y + (y[hist].T * (conf - 1.0)) @ y[hist]
    user = np.linalg.lstsq(a, y[hist].T @ conf, rcond=None)[0]  # the minimum-norm least-squares factor
    np.testing.assert_allclose(ex.scores, y[items] @ user, rtol=1e-8, atol=1e-10)
    assert np.isfinite(ex.weights[ex.contributors >= 0]).all()
    regular = explain_als_list(Y, 0.1, 2.0, hist, values, items, n=2)
    assert regular.solver == "cholesky"


def test_an_infinite_or_huge_als_parameter_is_refused_before_any_system_is_built() -> None:
    """Regression: ``regularization`` and ``alpha`` took ``inf`` (``inf >= 0``); a huge one in a model file's
    meta made the explanation's system overflow (a ValueError at serving)."""
    for params in ({"regularization": float("inf")}, {"alpha": float("inf")}, {"alpha": 1e300}, {"regularization": float("nan")}):
        name = next(iter(params))
        with pytest.raises(ConfigError, match=rf"The '{name}' parameter of ALSRecommender must be a float in the range"):
            ALSRecommender(factors=4, iterations=1, **params)._validate_params()
