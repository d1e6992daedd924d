"""Numerical safety of every family: what extreme numbers in a model file or in the training weights do.

* A model file whose numbers are finite but huge (``1e300``), resealed so that its content address matches,
  is refused on load naming the array and the bound (:data:`recommender.base.MODEL_VALUE_BOUND`); a file
  whose numbers all sit at the bound loads and serves full, finite lists: the bound is one no score overflows.
* A model holding such a number is refused at save, before a byte is written.
* A fit on interaction weights no model can score with (not finite, or beyond the bound) is refused naming them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.base import MODEL_VALUE_BOUND
from recommender.data import InteractionMatrix
from recommender.errors import DataError
from tests.recommender.test_family_review import FAMILIES, _make, _reseal, _rewrite, clustered


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


def _float_arrays(path) -> list[str]:
    with np.load(path, allow_pickle=False) as npz:
        return [k for k in npz.files if k != "meta" and npz[k].dtype.kind == "f" and npz[k].size]


def test_a_huge_finite_number_is_a_data_error_naming_the_array_and_the_bound(family, tmp_path):
    """Regression: one finite number near the float limit (1e300 in a float64 array, 1.7e38 in a float32 one)
    written into a model file and resealed loaded; EASE, item-kNN, PureSVD, BPR and ALS then served lists whose
    scores overflowed to inf or NaN, those items dropped (lists short, scored NaN)."""
    path = tmp_path / "m.npz"
    _make(family).fit(clustered()).save(path)
    saved = path.read_bytes()
    names = _float_arrays(path)
    assert names, f"{family.name} saves no float array"
    for name in names:
        path.write_bytes(saved)

        def edit(meta, arrays, name=name):
            arrays[name] = arrays[name].copy()
            arrays[name].flat[0] = np.finfo(arrays[name].dtype).max / 2
            _reseal(meta, arrays)

        _rewrite(path, edit)
        with pytest.raises(DataError, match=rf"m\.npz: array '{name}' holds 1 of \d+ value\(s\) beyond the bound of a model's numbers, {re.escape(f'+/-{MODEL_VALUE_BOUND:g}')}"):
            family.build.load(path)


def test_numbers_at_the_bound_load_and_serve_full_finite_lists(family, tmp_path):
    """The bound is one no score overflows: every stored number of an array (one array at a time, then all at
    once) pushed to +/- the bound, resealed, still gives every user a full list of finite scores without seen
    items. (Families whose content address a forger cannot recompute refuse the edit as altered.)"""
    train = clustered()
    path = tmp_path / "m.npz"
    _make(family).fit(train).save(path)
    saved = path.read_bytes()
    names = _float_arrays(path)
    for chosen in [[n] for n in names] + [names]:
        path.write_bytes(saved)

        def edit(meta, arrays, chosen=chosen):
            for name in chosen:
                a = arrays[name]
                arrays[name] = np.where(a != 0, np.sign(a) * MODEL_VALUE_BOUND, 0).astype(a.dtype)
            _reseal(meta, arrays)

        _rewrite(path, edit)
        try:
            model = family.build.load(path)
        except DataError as err:
            assert "version id" in str(err), str(err)  # refused as altered, not for its numbers
            continue
        batch = model.recommend(list(train.user_ids), k=5)
        assert (batch.item_indices >= 0).all(), f"{family.name} {chosen}: lists short"
        assert np.isfinite(batch.scores).all(), f"{family.name} {chosen}: scores not finite"
        seen = model.train_.matrix
        for row, items in enumerate(batch.item_indices):
            assert not set(items) & set(seen[row].indices), f"{family.name} {chosen}: a seen item served"


def test_a_model_holding_a_huge_number_is_refused_at_save_before_a_byte_is_written(tmp_path):
    model = _make(FAMILIES["ease"]).fit(clustered())
    model.weights_[0, 1] = 1e300
    path = tmp_path / "m.npz"
    with pytest.raises(DataError, match=r"m\.npz: cannot save the model: array 'weights' holds 1 of \d+ value\(s\) beyond the bound"):
        model.save(path)
    assert not path.exists()


@pytest.mark.parametrize("weight", [np.inf, np.nan, 1e30, -1e30])
def test_a_fit_on_weights_no_model_can_score_with_is_refused(family, weight):
    """Regression: such a weight (an event weight of 1e308 is inf in the float32 matrix, one of 1e30 stays
    finite) reached every family's fit: ALS and the hybrid failed in the solver (NaN in the factors), item-kNN
    served short lists on an infinite weight, and the binary families fitted a model whose file cannot load."""
    train = clustered()
    m = train.matrix.copy()
    m.data[3] = weight
    with pytest.raises(DataError, match=rf"cannot fit .*: 1 of \d+ interaction weight\(s\) are not finite or lie beyond {re.escape(f'+/-{MODEL_VALUE_BOUND:g}')}"):
        _make(family).fit(InteractionMatrix(sp.csr_matrix(m), train.user_ids, train.item_ids))


def _rank_deficient() -> InteractionMatrix:
    """Twenty users with one same history, and twenty whose items come from the first five: rank 6 < 8 factors."""
    base = clustered()
    dense = np.zeros((40, base.n_items), dtype=np.float32)
    dense[:20] = base.matrix[0].toarray()
    rng = np.random.default_rng(2)
    dense[20:, :5] = rng.random((20, 5)) < 0.5
    dense[20:, 0] = 1.0
    return InteractionMatrix(sp.csr_matrix(dense), np.array([f"u{u:03d}" for u in range(40)], dtype=object), base.item_ids)


def test_pure_svd_on_a_matrix_of_rank_below_its_factors_gives_the_same_lists_and_tags_every_fit():
    """Regression: on such a matrix ARPACK's vectors differ from fit to fit (its restarts draw from a generator whose
    state lives on in the process), the unseen items' scores were rounding noise, and the lists of one seed changed
    between fits; the tags' terms carried the arbitrary null-space vectors and changed too."""
    train = _rank_deficient()
    users = list(train.user_ids)
    fits = [_make(FAMILIES["pure_svd"], random_state=0).fit(train) for _ in range(3)]
    lists = [m.recommend(users, k=6).item_indices for m in fits]
    assert all(np.array_equal(lists[0], other) for other in lists[1:])
    assert (lists[0] >= 0).all()
    seen = train.matrix
    for row, items in enumerate(lists[0]):
        assert not set(items) & set(seen[row].indices)
    named = [[str(train.item_ids[i]) for i in row] for row in lists[0]]

    def summary(per_user_tags):
        return [[(t[0].kind, t[0].items, t[0].evidence.get("contributions")) for t in per_user] for per_user in per_user_tags]

    first = summary(fits[0].explain_batch(users, named))
    assert all(summary(m.explain_batch(users, named)) == first for m in fits[1:])
    assert summary([fits[0].explain(u, items) for u, items in zip(users, named)]) == first


@pytest.mark.parametrize("weight", [1e-25, 1e-40])
def test_tiny_weights_rank_as_their_pattern_in_every_family(family, weight):
    """Regression: with every weight 1e-25 (or subnormal, 1e-40) item-kNN's cosine squared them to 0 in float32,
    every item's norm was 0 and every list came back empty. A family that ranks by the pattern or by relative
    weights serves full lists of finite scores without seen items."""
    train = clustered()
    tiny = train.matrix.copy()
    tiny.data[:] = weight
    model = _make(family).fit(InteractionMatrix(tiny, train.user_ids, train.item_ids))
    batch = model.recommend(list(train.user_ids), k=5)
    assert (batch.item_indices >= 0).all() and np.isfinite(batch.scores).all()
    for row, items in enumerate(batch.item_indices):
        assert not set(items) & set(train.matrix[row].indices)


def test_item_knn_cosine_lists_do_not_depend_on_the_scale_of_the_weights():
    train = clustered()
    tiny = train.matrix.copy()
    tiny.data[:] = 1e-30
    users = list(train.user_ids)
    plain = _make(FAMILIES["item_knn"]).fit(train).recommend(users, k=5).item_indices
    scaled = _make(FAMILIES["item_knn"]).fit(InteractionMatrix(tiny, train.user_ids, train.item_ids)).recommend(users, k=5).item_indices
    assert np.array_equal(plain, scaled)
