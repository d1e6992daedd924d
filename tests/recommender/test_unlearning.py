"""Unlearning users from a fitted ALS model: the ids leave the model and its artifact,
the input model stays as it was, refreshed item factors are the exact least-squares
solution (checked against an independent dense solve), and other users' lists stay as
close to a full retrain as the original model was."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recommender import ConfigError, DataError, NotFittedError
from recommender.als import ALSRecommender, blas_single_thread
from recommender.baselines import PopularityRecommender
from recommender.data import InteractionMatrix
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate
from recommender.unlearning import ALL_USERS, NO_USERS, UNKNOWN_USERS, forget_users, residual_influence

PARAMS = {"factors": 16, "iterations": 10, "regularization": 0.05, "alpha": 2.0, "random_state": 0}


@pytest.fixture(scope="module")
def train() -> InteractionMatrix:
    return to_implicit(generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=15_000, seed=1)).events)


@pytest.fixture(scope="module")
def model(train: InteractionMatrix) -> ALSRecommender:
    return ALSRecommender(**PARAMS).fit(train)


def heavy_user(train: InteractionMatrix) -> str:
    """The user with the most interactions: the one whose removal changes most."""
    return str(train.user_ids[int(np.argmax(np.diff(train.matrix.indptr)))])


def exact_item_factor(users: np.ndarray, matrix: sp.csr_matrix, item: int, alpha: float, reg: float) -> np.ndarray:
    """Hu-Koren-Volinsky's (X^T C_i X + reg I)^{-1} X^T C_i p_i, dense, in float64.

    C_i = alpha * value on observed pairs (implicit's confidence) and 1 elsewhere;
    p_i = 1 on observed pairs. Written from the paper, not from implicit's code.
    """
    x = users.astype(np.float64)
    column = matrix[:, [item]].toarray().ravel().astype(np.float64)
    confidence = np.where(column != 0, alpha * column, 1.0)
    preference = (column > 0).astype(np.float64)
    a = x.T @ (confidence[:, None] * x) + reg * np.eye(x.shape[1])
    return np.linalg.solve(a, x.T @ (confidence * preference))


def npz_strings(path: Path) -> list[str]:
    """Every string held in a string array of an .npz file."""
    out = []
    with np.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            if npz[name].dtype.kind == "U":
                out.extend(str(s) for s in np.atleast_1d(npz[name]).ravel())
    return out


# -- the ids are gone -----------------------------------------------------------------------------
def test_removed_id_is_nowhere_in_the_model_or_its_artifact(model, train, tmp_path):
    uid = heavy_user(train)
    result = forget_users(model, [uid])
    new = result.model
    assert uid not in set(new.train_.user_ids)
    assert new.train_.n_users == train.n_users - 1
    assert new.user_factors_.shape == (train.n_users - 1, PARAMS["factors"])
    assert new.model_.user_factors is new.user_factors_
    assert new.train_.nnz == train.nnz - result.n_interactions_removed
    assert uid not in repr(result.as_dict())

    for m, path in ((model, tmp_path / "original.npz"), (new, tmp_path / "unlearned.npz")):
        m.save(path)
    # Positive control: the original artifact does hold the id (numpy stores strings as UTF-32).
    original_bytes = (tmp_path / "original.npz").read_bytes()
    assert uid.encode("utf-32-le") in original_bytes
    assert uid in npz_strings(tmp_path / "original.npz")

    raw = (tmp_path / "unlearned.npz").read_bytes()
    for encoding in ("utf-8", "utf-16-le", "utf-32-le"):
        assert uid.encode(encoding) not in raw, encoding
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:  # also inside each member, in case of compression
        for member in archive.namelist():
            assert uid.encode("utf-32-le") not in archive.read(member)
    assert not any(uid in s for s in npz_strings(tmp_path / "unlearned.npz"))


def test_forgotten_user_gets_the_cold_start_fallback(model, train):
    uid = heavy_user(train)
    batch = forget_users(model, [uid]).model.recommend([uid], k=5)
    assert batch.fallback.tolist() == [True]


def test_unlearned_model_round_trips_through_save(model, train, tmp_path):
    new = forget_users(model, [heavy_user(train)]).model
    new.save(tmp_path / "m.npz")
    loaded = ALSRecommender.load(tmp_path / "m.npz")
    assert loaded.version_id_ == new.version_id_
    others = list(new.train_.user_ids[:20])
    np.testing.assert_array_equal(loaded.recommend(others, k=10).item_indices, new.recommend(others, k=10).item_indices)


def test_unlearning_a_loaded_model_equals_unlearning_the_fitted_one(model, train, tmp_path):
    model.save(tmp_path / "original.npz")
    uid = heavy_user(train)
    from_disk = forget_users(ALSRecommender.load(tmp_path / "original.npz"), [uid])
    in_memory = forget_users(model, [uid])
    assert from_disk.version == in_memory.version
    np.testing.assert_array_equal(from_disk.model.item_factors_, in_memory.model.item_factors_)


def test_unlearned_model_has_exactly_the_fitted_state_of_a_fitted_model(model, train):
    """If ALSRecommender gains fitted state, forget_users must learn to rebuild it (or it leaks)."""
    new = forget_users(model, [heavy_user(train)]).model
    fitted = {name for name in vars(model) if name.endswith("_")}
    assert {name for name in vars(new) if name.endswith("_")} == fitted
    np.testing.assert_array_equal(new.popularity_, np.asarray((new.train_.matrix > 0).sum(axis=0)).ravel())


# -- the input is untouched ----------------------------------------------------------------------
def test_original_model_is_unchanged(model, train):
    before = {
        "user_factors": model.user_factors_.copy(),
        "item_factors": model.item_factors_.copy(),
        "inner_items": model.model_.item_factors.copy(),
        "data": model.train_.matrix.data.copy(),
        "indices": model.train_.matrix.indices.copy(),
        "indptr": model.train_.matrix.indptr.copy(),
        "user_ids": model.train_.user_ids.copy(),
        "item_ids": model.train_.item_ids.copy(),
        "popularity": model.popularity_.copy(),
    }
    version = model.version_id_
    forget_users(model, [heavy_user(train), str(train.user_ids[0])], propagate=1)
    after = {
        "user_factors": model.user_factors_,
        "item_factors": model.item_factors_,
        "inner_items": model.model_.item_factors,
        "data": model.train_.matrix.data,
        "indices": model.train_.matrix.indices,
        "indptr": model.train_.matrix.indptr,
        "user_ids": model.train_.user_ids,
        "item_ids": model.train_.item_ids,
        "popularity": model.popularity_,
    }
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert model.version_id_ == version


# -- the update is the exact half-step --------------------------------------------------------------
def test_refreshed_item_factors_are_the_exact_least_squares_solution(model, train):
    uid = heavy_user(train)
    result = forget_users(model, [uid])
    new = result.model
    row = train.user_index([uid])[0]
    touched = train.matrix[row].indices
    assert result.n_items_refreshed == len(touched) > 0
    for item in touched:
        expected = exact_item_factor(
            new.user_factors_, new.train_.matrix, item, PARAMS["alpha"], PARAMS["regularization"]
        )
        np.testing.assert_allclose(new.item_factors_[item], expected, atol=1e-4, rtol=0)
    untouched = np.setdiff1d(np.arange(train.n_items), touched)
    np.testing.assert_array_equal(new.item_factors_[untouched], model.item_factors_[untouched])
    keep = np.arange(train.n_users) != row
    np.testing.assert_array_equal(new.user_factors_, model.user_factors_[keep])


def test_propagate_resolves_the_neighbours_and_then_the_items_again(model, train):
    uid = heavy_user(train)
    result = forget_users(model, [uid], propagate=1)
    new = result.model
    touched = train.matrix[train.user_index([uid])[0]].indices
    neighbours = np.unique(new.train_.matrix[:, touched].tocoo().row)
    assert result.n_users_refreshed == len(neighbours)
    for item in touched:  # the last step is the item step: exact given the final user factors
        expected = exact_item_factor(
            new.user_factors_, new.train_.matrix, item, PARAMS["alpha"], PARAMS["regularization"]
        )
        np.testing.assert_allclose(new.item_factors_[item], expected, atol=1e-4, rtol=0)
    assert not np.allclose(new.user_factors_[neighbours], forget_users(model, [uid]).model.user_factors_[neighbours])


def test_without_refresh_only_rows_and_user_factors_go(model, train):
    result = forget_users(model, [heavy_user(train)], refresh_items=False)
    assert result.n_items_refreshed == 0
    np.testing.assert_array_equal(result.model.item_factors_, model.item_factors_)


def test_item_only_the_forgotten_user_touched_gets_a_zero_factor():
    rows = [[0, 1], [0, 2], [2, 3]]
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    matrix = sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=(3, 4))
    train = InteractionMatrix(
        matrix, np.array(["a", "b", "c"], dtype=object), np.array(["w", "x", "y", "z"], dtype=object)
    )
    model = ALSRecommender(factors=2, iterations=5).fit(train)
    new = forget_users(model, ["a"]).model
    assert np.abs(model.item_factors_[1]).max() > 0
    np.testing.assert_array_equal(new.item_factors_[1], np.zeros(2, dtype=np.float32))


# -- versions ------------------------------------------------------------------------------------------
def test_version_changes_and_never_collides_with_a_retrain(model, train):
    uid = heavy_user(train)
    result = forget_users(model, [uid])
    assert result.previous_version == model.version_id_
    assert result.version == result.model.version_id_ != model.version_id_
    assert result.version.startswith("als-")
    assert forget_users(model, [uid]).version == result.version  # deterministic
    assert forget_users(model, [uid], propagate=1).version != result.version
    retrained = ALSRecommender(**PARAMS).fit(result.model.train_)
    assert retrained.data_hash_ == result.model.data_hash_
    assert retrained.version_id_ != result.version


def test_user_without_interactions(model, train):
    matrix = sp.vstack([train.matrix, sp.csr_matrix((1, train.n_items), dtype=np.float32)]).tocsr()
    with_empty = InteractionMatrix(matrix, np.append(train.user_ids, "u-silent"), train.item_ids)
    base = ALSRecommender(**PARAMS).fit(with_empty)
    result = forget_users(base, ["u-silent"])
    assert (result.n_users_removed, result.n_interactions_removed, result.n_items_refreshed) == (1, 0, 0)
    np.testing.assert_array_equal(result.model.item_factors_, base.item_factors_)
    np.testing.assert_array_equal(result.model.user_factors_, base.user_factors_[:-1])
    assert result.version != base.version_id_
    assert "u-silent" not in set(result.model.train_.user_ids)


def test_duplicates_and_a_bare_string_are_one_user(model, train):
    uid = heavy_user(train)
    assert forget_users(model, [uid, uid]).n_users_removed == 1
    assert forget_users(model, uid).version == forget_users(model, [uid]).version


# -- errors --------------------------------------------------------------------------------------------
def test_unknown_ids_are_a_data_error_that_names_positions_not_ids(model, train):
    request = [str(train.user_ids[0]), "nobody-1", str(train.user_ids[1]), "nobody-2"]
    with pytest.raises(DataError) as info:
        forget_users(model, request)
    assert str(info.value) == UNKNOWN_USERS.format(n=2, total=4, version=model.version_id_, positions="1, 3")
    assert "nobody" not in str(info.value)


def test_removing_every_user_is_refused(model, train):
    with pytest.raises(DataError) as info:
        forget_users(model, list(train.user_ids))
    assert str(info.value) == ALL_USERS.format(n=train.n_users, version=model.version_id_)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_ids": []}, NO_USERS),
        ({"user_ids": ["u000001"], "propagate": -1}, "must be an int in the range [0, inf). Got -1 instead."),
        ({"user_ids": ["u000001"], "propagate": True}, "Got True instead."),
        ({"user_ids": ["u000001"], "refresh_items": "yes"}, "must be a bool. Got 'yes' instead."),
        ({"user_ids": ["u000001"], "refresh_items": False, "propagate": 1}, "so it needs refresh_items=True"),
    ],
)
def test_bad_requests_are_config_errors(model, kwargs, message):
    with pytest.raises(ConfigError) as info:
        forget_users(model, **kwargs)
    assert message in str(info.value)


def test_unfitted_or_other_models_are_refused(train):
    with pytest.raises(NotFittedError):
        forget_users(ALSRecommender(), ["u000001"])
    with pytest.raises(ConfigError, match="fitted ALSRecommender. Got PopularityRecommender"):
        forget_users(PopularityRecommender().fit(train), ["u000001"])


# -- how close to a retrain ------------------------------------------------------------------------------
def _jaccards(a: ALSRecommender, b: ALSRecommender, users: list[str], k: int) -> np.ndarray:
    la, lb = a.recommend(users, k=k).item_ids, b.recommend(users, k=k).item_ids
    return np.array([len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(la, lb)])


def test_other_users_stay_as_close_to_a_retrain_as_the_original_was(model, train):
    """The bound is computed, not tuned: the unlearned model's mean top-10 overlap with the
    retrain must not fall below the original model's by more than three standard errors of
    the original's per-user overlaps."""
    uid = heavy_user(train)
    new = forget_users(model, [uid]).model
    retrained = ALSRecommender(**PARAMS).fit(new.train_)
    others = [str(u) for u in new.train_.user_ids]
    batch = new.recommend(others, k=10)
    assert not batch.fallback.any() and (batch.item_indices >= 0).all()
    reference = _jaccards(model, retrained, others, 10)
    unlearned = _jaccards(new, retrained, others, 10)
    bound = reference.mean() - 3 * reference.std(ddof=1) / np.sqrt(len(reference))
    assert unlearned.mean() >= bound, (unlearned.mean(), reference.mean(), bound)

    report = residual_influence(new, retrained, original=model, forgotten=[uid], k=10)
    assert report["unlearned_vs_retrained"]["topk_jaccard_mean"] == pytest.approx(unlearned.mean())
    assert report["original_vs_retrained"]["topk_jaccard_mean"] == pytest.approx(reference.mean())
    assert report["n_users"] == len(others) and report["n_items"] == train.n_items
    assert set(report["residual_share"]) == {"topk_jaccard", "relative_frobenius"}
    subject = report["subject"]
    assert subject["n_subjects"] == 1
    assert set(subject) == {"n_subjects", "unlearned", "retrained", "original"}


def test_residual_influence_of_a_model_with_itself_is_nil(model):
    report = residual_influence(model, model, n_sample=50)
    same = report["unlearned_vs_retrained"]
    assert same["topk_jaccard_mean"] == same["topk_jaccard_p10"] == 1.0
    assert same["spearman_mean"] == pytest.approx(1.0)
    assert same["kendall_mean"] == pytest.approx(1.0)
    assert same["relative_frobenius"] == pytest.approx(0.0, abs=1e-6)
    assert "original_vs_retrained" not in report


def test_relative_frobenius_matches_the_dense_computation(model, train):
    new = forget_users(model, [heavy_user(train)], propagate=1).model
    report = residual_influence(new, model)
    users = model.train_.user_index(new.train_.user_ids)
    dense_a = new.user_factors_.astype(np.float64) @ new.item_factors_.T.astype(np.float64)
    dense_b = model.user_factors_[users].astype(np.float64) @ model.item_factors_.T.astype(np.float64)
    expected = np.linalg.norm(dense_a - dense_b) / np.linalg.norm(dense_b)
    assert report["unlearned_vs_retrained"]["relative_frobenius"] == pytest.approx(expected, rel=1e-6)


def test_residual_influence_arguments(model):
    with pytest.raises(ConfigError, match="needs 'original'"):
        residual_influence(model, model, forgotten=["u000001"])
    with pytest.raises(ConfigError, match=r"'k' parameter of residual_influence"):
        residual_influence(model, model, k=0)
    with pytest.raises(DataError, match="unknown to the"):
        residual_influence(model, model, users=["nobody"])


# -- one construction of implicit's model --------------------------------------------------------------
def _unlearned_the_former_way(model: ALSRecommender, rows: np.ndarray, refresh_items: bool, propagate: int, sweeps: int):
    """The factors forget_users gave when it built implicit's CPU model itself: the reference, bit for bit."""
    from implicit.cpu.als import AlternatingLeastSquares as CpuALS

    keep = np.ones(model.train_.n_users, dtype=bool)
    keep[rows] = False
    matrix = model.train_.matrix[keep]
    matrix.sort_indices()
    touched = np.unique(model.train_.matrix[rows].indices).astype(np.int64)
    with blas_single_thread():
        inner = CpuALS(
            factors=model.factors,
            regularization=float(model.regularization),
            alpha=float(model.alpha),
            iterations=model.iterations,
            random_state=model.random_state,
            num_threads=model.num_threads,
        )
        inner.user_factors = np.ascontiguousarray(model.user_factors_[keep])
        inner.item_factors = np.array(model.item_factors_, copy=True)
        if refresh_items and touched.size:
            item_users = matrix[:, touched].T.tocsr()
            inner.partial_fit_items(touched, item_users)
            if propagate:
                neighbours = np.unique(item_users.indices).astype(np.int64)
                for _ in range(propagate):
                    inner.partial_fit_users(neighbours, matrix[neighbours])
                    inner.partial_fit_items(touched, item_users)
        if sweeps:
            inner.iterations = sweeps
            inner.fit(matrix, show_progress=False)
    return inner.user_factors, inner.item_factors


@pytest.mark.parametrize(
    "refresh_items, propagate, sweeps", [(True, 0, 0), (False, 0, 0), (True, 2, 0), (True, 0, 2), (True, 1, 1)]
)
def test_unlearned_factors_are_bit_identical_to_the_former_construction(model, train, refresh_items, propagate, sweeps):
    forgotten = [heavy_user(train), str(train.user_ids[5]), str(train.user_ids[77])]
    rows = np.unique(train.user_index(forgotten))
    users, items = _unlearned_the_former_way(model, rows, refresh_items, propagate, sweeps)
    result = forget_users(model, forgotten, refresh_items=refresh_items, propagate=propagate, sweeps=sweeps)
    assert result.model.user_factors_.dtype == users.dtype == np.float32
    assert np.array_equal(result.model.user_factors_, users)
    assert np.array_equal(result.model.item_factors_, items)
    assert result.model.model_.iterations == model.iterations
