"""The contract every registered model family passes (governance relies on it, whatever the family).

Parametrised over :func:`recommender.family.families`, so a family added in
:mod:`recommender.families` is covered without editing this file. A family
module whose optional extra is missing is listed by
:func:`recommender.family.unavailable_families`: skipped with the reason here,
except under ``CI=true``, where a missing extra fails.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError, NotFittedError
from recommender.family import KNOWN_INPUTS, ErasureKind, ForgetOutcome, GovernedModel, ModelTag, families, unavailable_families

FAMILIES = families()
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def clustered(n_users: int = 48, n_items: int = 36, seed: int = 7) -> InteractionMatrix:
    """Three taste groups, each mostly on its own third of the catalogue, with a little noise (binary values)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % 3
    item_group = np.arange(n_items) % 3
    p = np.where(group[:, None] == item_group[None, :], 0.45, 0.04)
    dense = (rng.random((n_users, n_items)) < p).astype(np.float32)
    dense[dense.sum(axis=1) == 0, 0] = 1.0
    return InteractionMatrix(
        sp.csr_matrix(dense),
        np.array([f"u{u:03d}" for u in range(n_users)], dtype=object),
        np.array([f"i{i:03d}" for i in range(n_items)], dtype=object),
    )


@pytest.fixture(scope="module")
def train() -> InteractionMatrix:
    return clustered()


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


def _make(family, **extra) -> GovernedModel:
    return family.create(**{**family.small_params, **extra})


def _lists(model: GovernedModel, users, k: int = 5) -> list[list[str]]:
    return [r["items"] for r in model.recommend(list(users), k=k).as_records()]


@pytest.mark.parametrize("module", sorted(unavailable_families()) or ["<none>"])
def test_a_family_whose_extra_is_missing_is_skipped_with_the_reason_except_in_ci(module):
    missing = unavailable_families()
    if module == "<none>":
        assert not missing
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"model family module {module} cannot be imported under CI: {missing[module]}")
    pytest.skip(f"model family module {module}: {missing[module]}")


def test_declarations(family):
    model = _make(family)
    assert isinstance(model, GovernedModel)
    assert family.inputs <= KNOWN_INPUTS and "interactions" in family.inputs or family.inputs <= KNOWN_INPUTS
    assert type(model).inputs == family.inputs
    assert type(model).erasure == family.erasure and isinstance(family.erasure, ErasureKind)
    assert SNAKE.match(family.name) and family.description


def test_not_fitted_error(family):
    model = _make(family)
    for call in (lambda: model.recommend(["u000"]), lambda: model.explain("u000", ["i000"]), lambda: model.forget(["u000"])):
        with pytest.raises(NotFittedError):
            call()
    with pytest.raises(NotFittedError):
        model.save("never-written.npz")


def test_fit_returns_self_and_lists_hold_no_seen_item(family, train):
    model = _make(family)
    assert model.fit(train) is model
    batch = model.recommend(list(train.user_ids), k=5)
    assert not batch.fallback.any()
    seen = train.matrix.toarray() > 0
    idx = batch.item_indices
    assert (idx >= 0).all(), "every user has at least 5 unseen items"
    assert not seen[np.arange(train.n_users)[:, None], idx].any()
    assert all(len(set(row)) == len(row) for row in idx.tolist())


def test_same_seed_same_lists(family, train):
    first = _lists(_make(family).fit(train), train.user_ids)
    second = _lists(_make(family).fit(train), train.user_ids)
    assert first == second


def test_unknown_user_falls_back_and_says_so(family, train):
    model = _make(family).fit(train)
    batch = model.recommend(["nobody", "u001"], k=5)
    assert batch.fallback.tolist() == [True, False]
    top_counts = np.sort(model.popularity_)[::-1][:5]
    assert model.popularity_[batch.item_indices[0]].tolist() == top_counts.tolist()  # the most popular (ties in any order)
    tags = model.explain("nobody", [str(i) for i in batch.item_ids[0]])
    assert len(tags) == 5
    # the list is the popularity ranking, and its tags say so (recommender.family.fallback_tag, or the serving
    # vocabulary's popular_in_context / not_personalized)
    said = {"popularity_fallback", "popular_in_context", "not_personalized"}
    assert all(t and t[0].kind in said and t[0].text for t in tags), [t[0].kind for t in tags if t]


def test_save_load_round_trip_gives_identical_lists_and_version(family, train, tmp_path):
    model = _make(family).fit(train)
    path = tmp_path / "model.npz"
    digest = model.save(path)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    with np.load(path, allow_pickle=False) as npz:  # no pickle anywhere in the file
        assert all(npz[name].dtype != object for name in npz.files)
    loaded = type(model).load(path)
    assert loaded.version_id_ == model.version_id_
    assert _lists(loaded, train.user_ids) == _lists(model, train.user_ids)
    user = str(train.user_ids[4])
    items = [str(i) for i in model.recommend([user], k=5).item_ids[0]]
    assert [[t.to_dict() for t in ts] for ts in loaded.explain(user, items)] == [[t.to_dict() for t in ts] for ts in model.explain(user, items)]


def test_a_model_file_is_readable_by_its_owner_only(family, train, tmp_path):
    # A fitted model holds the ids of the subjects it learned from: never world-readable, whatever the umask,
    # and a wider file it replaces is narrowed.
    model = _make(family).fit(train)
    path = tmp_path / "model.npz"
    path.write_bytes(b"")
    path.chmod(0o644)
    before = os.umask(0o022)
    try:
        model.save(path)
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert type(model).load(path).version_id_ == model.version_id_


def test_load_refuses_a_file_that_is_not_a_model(family, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    model_type = type(_make(family))
    with pytest.raises(DataError):
        model_type.load(bad)


def test_version_id_changes_with_content(family, train):
    model = _make(family).fit(train)
    again = _make(family).fit(train)
    assert model.version_id_ == again.version_id_
    dense = train.matrix.toarray()
    dense[0, :] = 0
    dense[0, np.flatnonzero(train.matrix[1].toarray()[0] == 0)[:4]] = 1.0
    changed = InteractionMatrix(sp.csr_matrix(dense), train.user_ids, train.item_ids)
    assert _make(family).fit(changed).version_id_ != model.version_id_


def test_explain_tags_every_item_of_every_list(family, train):
    model = _make(family).fit(train)
    batch = model.recommend(list(train.user_ids), k=5)
    for user, items in zip(train.user_ids, batch.item_ids):
        tags = model.explain(str(user), [str(i) for i in items])
        assert len(tags) == len(items)
        for per_item in tags:
            assert per_item, f"{family.name}: an item without a tag"
            for tag in per_item:
                assert isinstance(tag, ModelTag)
                assert SNAKE.match(tag.kind), tag.kind
                assert tag.text.strip()
                assert isinstance(tag.exact, bool)
                assert set(tag.items) <= set(map(str, train.item_ids))
    with pytest.raises(ConfigError):
        model.explain(str(train.user_ids[0]), ["no-such-item"])


def test_forget(family, train):
    model = _make(family).fit(train)
    subject = str(train.user_ids[5])
    before = model.version_id_
    outcome = model.forget([subject])
    assert isinstance(outcome, ForgetOutcome)
    assert outcome.kind == family.erasure
    assert outcome.removed == (subject,)
    assert subject not in set(map(str, model.subjects()))
    assert model.version_id_ != before
    assert model.recommend([subject], k=5).fallback.tolist() == [True]
    assert "u005" not in str(outcome.to_dict())
    others = [str(u) for u in train.user_ids if str(u) != subject]
    if outcome.kind == ErasureKind.exact:
        refit = _make(family).fit(_without(train, subject))
        assert _lists(model, others) == _lists(refit, others)
        assert model.version_id_ == refit.version_id_
    elif outcome.kind == ErasureKind.approximate:
        assert outcome.residual is not None and np.isfinite(outcome.residual) and outcome.residual >= 0
    else:
        assert outcome.retrain_required
    with pytest.raises((ConfigError, DataError)):
        model.forget(["never-a-subject"])


def _without(train: InteractionMatrix, subject: str) -> InteractionMatrix:
    """The matrix a fit on the events without ``subject`` gets: their row gone, and the items only they had."""
    keep = np.array([str(u) != subject for u in train.user_ids])
    matrix = train.matrix[keep].tocsr()
    cols = np.flatnonzero(matrix.getnnz(axis=0) > 0)
    return InteractionMatrix(matrix[:, cols].tocsr(), train.user_ids[keep], train.item_ids[cols])


def test_forget_of_an_items_only_user_leaves_the_model_trained_without_them(family, train, tmp_path):
    # the subject is the only one who ever touched two items: after an exact erasure the model is the one
    # fitted without the subject, so those items are gone from it, its file and its version id
    subject, secret = "u005", ["i-secret-a", "i-secret-b"]
    dense = np.hstack([train.matrix.toarray(), np.zeros((train.n_users, 2), dtype=np.float32)])
    dense[5, -2:] = 1.0
    data = InteractionMatrix(sp.csr_matrix(dense), train.user_ids, np.concatenate([train.item_ids, np.array(secret, dtype=object)]))
    model = _make(family).fit(data)
    outcome = model.forget([subject])
    assert not set(secret) & set(map(str, model.train_.item_ids)) or outcome.kind != ErasureKind.exact
    if outcome.kind != ErasureKind.exact:
        return
    rest = _without(data, subject)
    assert set(map(str, rest.item_ids)) == set(map(str, train.item_ids))
    refit = _make(family).fit(rest)
    assert model.version_id_ == refit.version_id_
    others = [str(u) for u in train.user_ids if str(u) != subject]
    assert _lists(model, others) == _lists(refit, others)
    assert not set(secret) & {i for lst in _lists(model, others, k=10) for i in lst}
    model.save(tmp_path / "m")
    saved = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(s.encode() in saved for s in secret)


def test_broken_params_give_a_clear_config_error(family, train):
    with pytest.raises(ConfigError, match="no_such_parameter"):
        family.create(no_such_parameter=1)
    if family.broken_params:
        name = next(iter(family.broken_params))
        with pytest.raises(ConfigError, match=name):
            _make(family, **family.broken_params).fit(train)
