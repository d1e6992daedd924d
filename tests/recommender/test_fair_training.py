"""Fairness reweighting of ALS training: hand-checked weights, plain ALS at strength 0, the intended direction.

The weights are checked against a hand computation; strength 0 must give plain
ALS bit for bit; up-weighting a provider group must raise that group's share of
the recommended slots, and up-weighting a user group must fit that group's own
training positives better. The attribute never reaches the model: the saved
artifact holds the per-group multipliers only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.als import ALSRecommender
from recommender.errors import ConfigError
from recommender.fair_training import (
    FairReweighting,
    apply_weights,
    fairness_groups_for,
    parse_fair_reweighting,
    reweighting_weights,
)
from recommender.feedback import FeedbackConfig, to_implicit
from recommender.synthetic import SyntheticSpec, generate

PARAMS = {"factors": 8, "iterations": 6, "regularization": 0.05, "alpha": 2.0}


@pytest.fixture(scope="module")
def data():
    dataset = generate(
        SyntheticSpec(n_users=300, n_items=200, n_interactions=12_000, exposure_bias=3.0,
                      group_provider_affinity={"X": 4.0}, protected_groups={"F": 0.45, "M": 0.45, "X": 0.10}, seed=3)
    )  # fmt: skip
    return dataset, to_implicit(dataset.events, FeedbackConfig())


# -- the weights, by hand -------------------------------------------------------------------------
def test_mass_balancing_weights_match_a_hand_computation():
    # users a, b in group g (mass 1 + 1 = 2), user c in group h (mass 6): N = 3, M = 8
    m = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0], [2.0, 2.0, 2.0]], dtype=np.float32))
    groups = np.array(["g", "g", "h"], dtype=object)
    weights, per_group = reweighting_weights(m, groups, FairReweighting(attribute="x"))
    # w_g = (2/3) / (2/8) = 8/3, w_h = (1/3) / (6/8) = 4/9; total mass 2*8/3 + 6*4/9 = 8 already
    assert per_group == pytest.approx({"g": 8 / 3, "h": 4 / 9})
    np.testing.assert_allclose(weights, [8 / 3, 8 / 3, 4 / 9])
    out = apply_weights(m, weights, "consumer")
    assert out.sum() == pytest.approx(m.sum())  # the total confidence mass is kept
    mass = np.asarray(out.sum(axis=1)).ravel()
    assert mass[:2].sum() / mass.sum() == pytest.approx(2 / 3)  # each group's mass share is its head share
    np.testing.assert_array_equal(out.indices, m.indices)  # the same pairs, only their confidence moves
    # half strength: sqrt of the ratios, renormalised to the same total mass
    _, half = reweighting_weights(m, groups, FairReweighting(attribute="x", strength=0.5))
    c = 8 / (2 * np.sqrt(8 / 3) + 6 * np.sqrt(4 / 9))
    assert half == pytest.approx({"g": c * np.sqrt(8 / 3), "h": c * np.sqrt(4 / 9)})


def test_provider_side_weights_columns():
    m = sp.csr_matrix(np.array([[1.0, 3.0], [0, 4.0]], dtype=np.float32))  # item 0: mass 1, item 1: mass 7
    weights, per_group = reweighting_weights(m, np.array(["ind", "maj"]), FairReweighting(attribute="p", side="provider"))
    assert per_group == pytest.approx({"ind": 0.5 / (1 / 8), "maj": 0.5 / (7 / 8)})
    out = apply_weights(m, weights, "provider").toarray()
    np.testing.assert_allclose(out.sum(axis=0), [4.0, 4.0])


# -- plain ALS at strength 0, and the intended direction ------------------------------------------
def test_strength_zero_is_plain_als_bit_for_bit(data):
    dataset, train = data
    plain = ALSRecommender(**PARAMS).fit(train)
    config = {"attribute": "gender", "strength": 0.0}
    zero = ALSRecommender(**PARAMS, fairness_reweighting=config).fit(
        train, fairness_groups=fairness_groups_for(dataset, train, parse_fair_reweighting(config))
    )
    np.testing.assert_array_equal(zero.user_factors_, plain.user_factors_)
    np.testing.assert_array_equal(zero.item_factors_, plain.item_factors_)
    assert zero.version_id_ != plain.version_id_  # the lineage still says a reweighting was asked for
    full = ALSRecommender(**PARAMS, fairness_reweighting={"attribute": "gender"}).fit(
        train, fairness_groups=fairness_groups_for(dataset, train, parse_fair_reweighting("gender"))
    )
    assert not np.array_equal(full.user_factors_, plain.user_factors_)


def _group_share_of_slots(model: ALSRecommender, item_is_group: np.ndarray, k: int = 10) -> float:
    ids, _, _ = model.recommend_index(np.arange(model.train_.n_users), k, filter_seen=True)
    ids = ids[ids >= 0]
    return float(item_is_group[ids].mean())


def test_upweighting_a_provider_group_raises_its_share_of_the_slots(data):
    dataset, train = data
    config = parse_fair_reweighting({"attribute": "provider_group", "side": "provider", "group_weights": {"independent": 3.0}})
    groups = fairness_groups_for(dataset, train, config)
    independent = groups == "independent"
    plain = ALSRecommender(**PARAMS).fit(train)
    fair = ALSRecommender(**PARAMS, fairness_reweighting=config.model_dump()).fit(train, fairness_groups=groups)
    before, after = _group_share_of_slots(plain, independent), _group_share_of_slots(fair, independent)
    assert after > before + 0.02, (before, after)
    down = parse_fair_reweighting({"attribute": "provider_group", "side": "provider", "group_weights": {"major": 3.0}})
    worse = ALSRecommender(**PARAMS, fairness_reweighting=down.model_dump()).fit(train, fairness_groups=groups)
    assert _group_share_of_slots(worse, independent) < before - 0.02


def _own_fit(model: ALSRecommender, rows: np.ndarray) -> float:
    """Mean score of the users' own training positives minus their mean score over all items (in-sample fit)."""
    scores = model.user_factors_[rows] @ model.item_factors_.T
    m = model.train_.matrix[rows]
    pos = np.asarray((m > 0).multiply(scores).sum(axis=1)).ravel() / np.maximum(m.getnnz(axis=1), 1)
    return float((pos - scores.mean(axis=1)).mean())


def test_upweighting_a_user_group_fits_that_group_better(data):
    dataset, train = data
    config = parse_fair_reweighting({"attribute": "gender", "group_weights": {"X": 4.0}})
    groups = fairness_groups_for(dataset, train, config)
    x = np.flatnonzero(groups == "X")
    others = np.flatnonzero(groups != "X")
    plain = ALSRecommender(**PARAMS).fit(train)
    fair = ALSRecommender(**PARAMS, fairness_reweighting=config.model_dump()).fit(train, fairness_groups=groups)
    gain_x = _own_fit(fair, x) - _own_fit(plain, x)
    gain_others = _own_fit(fair, others) - _own_fit(plain, others)
    assert gain_x > 0 and gain_x > gain_others, (gain_x, gain_others)


# -- what reaches the model ----------------------------------------------------------------------
def test_the_model_keeps_group_multipliers_only(data, tmp_path):
    dataset, train = data
    groups = fairness_groups_for(dataset, train, parse_fair_reweighting("gender"))
    model = ALSRecommender(**PARAMS, fairness_reweighting="gender").fit(train, fairness_groups=groups)
    assert set(model.fairness_weights_) == set(np.unique(groups))
    assert not hasattr(model, "_fairness_groups") or model._fairness_groups is None  # the labels are dropped
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        meta = json.loads(str(npz["meta"]))
    plain_path = tmp_path / "p.npz"
    ALSRecommender(**PARAMS).fit(train).save(plain_path)
    with np.load(plain_path, allow_pickle=False) as npz:
        assert files == set(npz.files)  # no array beyond a plain model's: no per-user attribute
    assert meta["fairness_weights"] == model.fairness_weights_
    assert meta["params"]["fairness_reweighting"]["attribute"] == "gender"
    np.testing.assert_array_equal(model.train_.matrix.data, train.matrix.data)  # seen-item filter: raw data
    loaded = ALSRecommender.load(path)
    assert loaded.version_id_ == model.version_id_ and loaded.fairness_weights_ == model.fairness_weights_
    users = np.asarray(train.user_ids[:20], dtype=object)
    assert loaded.recommend(users, k=5).as_records() == model.recommend(users, k=5).as_records()


# -- bad values: located errors -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"attribute": "gender", "strength": -1}, "fairness_reweighting.strength"),
        ({"attribute": "gender", "side": "items"}, "fairness_reweighting.side"),
        ({"attribute": "gender", "group_weights": {"X": 0}}, "group_weights.X"),
        ({"attribute": "gender", "bogus": 1}, "fairness_reweighting.bogus"),
        ({"attribute": ""}, "fairness_reweighting.attribute"),
        ("gender:lots", "strength after ':'"),
        (3, "expected a mapping"),
    ],
)
def test_bad_values_are_located(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_fair_reweighting(value)
    with pytest.raises(ConfigError, match=message.split(".")[-1]):
        ALSRecommender(fairness_reweighting=value).get_params()


def test_fit_errors_are_located_and_leave_the_model_unfitted(data):
    dataset, train = data
    model = ALSRecommender(**PARAMS, fairness_reweighting="gender")
    with pytest.raises(ConfigError, match="no fairness_groups"):
        model.fit(train)
    assert not hasattr(model, "train_")
    with pytest.raises(ConfigError, match="no column 'religion'"):
        fairness_groups_for(dataset, train, parse_fair_reweighting("religion"))
    groups = fairness_groups_for(dataset, train, parse_fair_reweighting("gender"))
    bad = ALSRecommender(**PARAMS, fairness_reweighting={"attribute": "gender", "group_weights": {"Q": 2.0}})
    with pytest.raises(ConfigError, match=r"group_weights: no consumer in group\(s\) \['Q'\]"):
        bad.fit(train, fairness_groups=groups)
    with pytest.raises(ConfigError, match="3 group labels for"):
        ALSRecommender(**PARAMS, fairness_reweighting="gender").fit(train, fairness_groups=groups[:3])


def test_an_empty_group_keeps_weight_one_and_missing_values_form_their_own_group():
    m = sp.csr_matrix(np.array([[1.0, 0], [0, 0]], dtype=np.float32))
    w, per_group = reweighting_weights(m, np.array(["a", "missing"]), FairReweighting(attribute="x"))
    assert np.isfinite(w).all() and per_group["a"] == pytest.approx(1.0)



# -- the recipe travels: evaluation refits it, unlearning refuses it ------------------------------
def test_an_evaluation_refits_a_reweighted_recipe_with_its_groups(data):
    from recommender.pipeline import run_evaluation
    from recommender.split import SplitConfig

    dataset, _ = data
    run = run_evaluation(
        dataset, split_config=SplitConfig(kind="random", test_fraction=0.2), feedback=FeedbackConfig(), k=10,
        tune=False, als_params={**PARAMS, "fairness_reweighting": {"attribute": "gender"}},
    )  # fmt: skip
    als = run.models["als"]
    assert set(als.fairness_weights_) == {"F", "M", "X"}
    assert run.comparison.evaluations["als"].params["fairness_reweighting"]["attribute"] == "gender"


def test_unlearning_refuses_a_reweighted_model(data):
    from recommender.unlearning import forget_users

    dataset, train = data
    groups = fairness_groups_for(dataset, train, parse_fair_reweighting("gender"))
    model = ALSRecommender(**PARAMS, fairness_reweighting="gender").fit(train, fairness_groups=groups)
    with pytest.raises(ConfigError, match="trained with fairness_reweighting"):
        forget_users(model, [str(train.user_ids[0])])


def test_an_identifier_like_attribute_is_refused_before_its_values_are_recorded():
    m = sp.csr_matrix(np.eye(13, dtype=np.float32))
    emails = np.array([f"person{i}@example.org" for i in range(13)], dtype=object)
    with pytest.raises(ConfigError, match=r"'email' has 13 distinct values; a group attribute has at most 12") as err:
        reweighting_weights(m, emails, FairReweighting(attribute="email"))
    assert "example.org" not in str(err.value)


def _lone_person_world() -> tuple:
    rng = np.random.default_rng(0)
    m = sp.csr_matrix((rng.random((1000, 500)) < 0.1).astype(np.float32))
    m = sp.lil_matrix(m)
    m[999, :] = 0
    m[999, 3] = 1.0  # one interaction, alone in group Z
    return sp.csr_matrix(m), np.array(["F"] * 500 + ["M"] * 499 + ["Z"], dtype=object)


def test_a_group_under_min_group_size_keeps_weight_one_and_no_recorded_multiplier():
    from recommender.fair_training import left_unweighted, parse_fair_reweighting, reweighting_weights

    m, groups = _lone_person_world()
    plain = parse_fair_reweighting("gender:1.0")
    _, unguarded = reweighting_weights(m, groups, plain)
    assert unguarded["Z"] > 20  # without a minimum, one person's single interaction weighs tens of times
    config = plain.model_copy(update={"min_group_size": 30})
    weights, per_group = reweighting_weights(m, groups, config)
    assert set(per_group) == {"F", "M"} and weights[999] == 1.0
    mass = np.asarray(m.sum(axis=1)).ravel()
    assert float(np.dot(weights[:999], mass[:999])) == pytest.approx(float(mass[:999].sum()))  # the weighted groups' mass stays
    reasons = left_unweighted(groups, config)
    assert set(reasons) == {"Z"} and "30" in reasons["Z"] and " 1 user" not in reasons["Z"]
    # explicit weights do not reach a group under the minimum either
    explicit = parse_fair_reweighting({"attribute": "gender", "group_weights": {"Z": 50.0, "F": 2.0}, "min_group_size": 30})
    w, per = reweighting_weights(m, groups, explicit)
    assert w[999] == 1.0 and "Z" not in per


def test_the_missing_value_group_keeps_weight_one_under_a_minimum():
    from recommender.fair_training import MISSING_GROUP, left_unweighted, parse_fair_reweighting, reweighting_weights

    m, groups = _lone_person_world()
    groups = groups.copy()
    groups[:100] = MISSING_GROUP
    config = parse_fair_reweighting({"attribute": "gender", "min_group_size": 30})
    weights, per_group = reweighting_weights(m, groups, config)
    assert MISSING_GROUP not in per_group and np.all(weights[:100] == 1.0)
    assert "missing" in left_unweighted(groups, config)[MISSING_GROUP]


def test_a_config_without_a_minimum_dumps_as_before():
    from recommender.fair_training import parse_fair_reweighting

    assert "min_group_size" not in parse_fair_reweighting("gender:1.0").model_dump()
    assert parse_fair_reweighting({"attribute": "gender", "min_group_size": 5}).model_dump()["min_group_size"] == 5


def test_a_value_named_like_the_missing_group_is_refused_not_left_unweighted_as_missing(data):
    """A group whose value is literally 'missing' (the label a missing value gets, as every fairness measure names
    it) would be merged with the users without the attribute: left at weight 1 and recorded as a missing value, its
    own users never balanced. A real value 'unknown' (a MovieLens genre) is a group like any other: fair reweighting
    named the missing group 'unknown' and refused it."""
    from recommender.errors import DataError
    from recommender.fairness import MISSING_GROUP as FAIRNESS_MISSING

    dataset, train = data
    users = dataset.users.copy()
    users["gender"] = users["gender"].astype(object)
    who = str(train.user_ids[4])
    users.loc[users.index.astype(str) == who, "gender"] = " Missing"
    renamed = dataset.__class__(events=dataset.events, users=users, items=dataset.items)
    with pytest.raises(DataError, match=rf"the users table, column 'gender', user '{who}' holds the value ' Missing', which reads as 'missing'"):
        fairness_groups_for(renamed, train, parse_fair_reweighting("gender"))
    users.loc[users.index.astype(str) == who, "gender"] = "unknown"  # a real value: its own group
    groups = fairness_groups_for(dataset.__class__(events=dataset.events, users=users, items=dataset.items), train,
                                 parse_fair_reweighting("gender"))  # fmt: skip
    assert groups[4] == "unknown"
    users.loc[users.index.astype(str) == who, "gender"] = None  # missing: the group every fairness measure names so
    groups = fairness_groups_for(dataset.__class__(events=dataset.events, users=users, items=dataset.items), train,
                                 parse_fair_reweighting("gender"))  # fmt: skip
    assert groups[4] == FAIRNESS_MISSING == "missing"


def test_training_groups_are_the_audits_however_labels_are_spelt(data):
    """Bug pinned: reweighting balanced 'F' and 'F ' (and a decomposed 'é') as groups apart, and a blank value
    as a group, while the audit reads them as one group and as missing: the groups balanced in training were
    not the groups then judged. Each user's training group is now the audit's (recommender.fairness.group_labels)."""
    from recommender.fairness import group_labels

    dataset, train = data
    users = dataset.users.copy()
    users["gender"] = users["gender"].astype(object)
    spellings = ["F ", " F", "\u00e9", "e\u0301", "", "  "]
    for i, value in enumerate(spellings):
        users.loc[users.index.astype(str) == str(train.user_ids[i]), "gender"] = value
    groups = fairness_groups_for(dataset.__class__(events=dataset.events, users=users, items=dataset.items), train,
                                 parse_fair_reweighting("gender"))  # fmt: skip
    codes, names = group_labels(users["gender"].reindex(train.user_ids.astype(str)).to_numpy(dtype=object))
    assert groups.tolist() == [names[c] for c in codes]
    assert groups[:6].tolist() == ["F", "F", "\u00e9", "\u00e9", "missing", "missing"]
