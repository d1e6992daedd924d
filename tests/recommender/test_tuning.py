"""Tuning: the validation split is carved from training data only, and tuning picks better-than-default models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender import ConfigError
from recommender.data import InteractionMatrix
from recommender.feedback import to_implicit
from recommender.tuning import carve_validation, tune_als, tune_item_knn, validation_ndcg
from recommender.als import ALSRecommender


def taste_matrix(seed: int = 0, n_users: int = 300, n_items: int = 200, n_events: int = 12000) -> InteractionMatrix:
    """Users pick items by a low-rank taste plus popularity: ALS has signal to find."""
    rng = np.random.default_rng(seed)
    uf, itf = rng.normal(size=(n_users, 4)), rng.normal(size=(n_items, 4))
    logits = 1.5 * uf @ itf.T + np.log1p(rng.pareto(1.0, n_items))[None, :]
    users = rng.integers(0, n_users, n_events)
    gumbel = logits[users] + rng.gumbel(size=(n_events, n_items))
    items = gumbel.argmax(axis=1)
    events = pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str), "event_type": "click"})
    return to_implicit(events)


def test_carve_validation_partitions_and_leaves_input_untouched() -> None:
    """Regression: the carved matrices shared index arrays with the input, and
    eliminate_zeros() on them corrupted the caller's training matrix."""
    train = taste_matrix()
    before = train.matrix.copy()
    inner, valid = carve_validation(train, 0.25, random_state=1)
    assert (train.matrix != before).nnz == 0
    assert train.matrix.nnz == before.nnz
    assert inner.nnz + valid.nnz == train.nnz
    assert inner.matrix.multiply(valid.matrix).nnz == 0
    assert ((inner.matrix + valid.matrix) != train.matrix).nnz == 0
    # every user with data keeps at least one training pair
    has_data = np.diff(train.matrix.indptr) > 0
    assert (np.diff(inner.matrix.indptr)[has_data] > 0).all()
    assert 0.2 < valid.nnz / train.nnz < 0.3


def test_carve_validation_is_seeded() -> None:
    train = taste_matrix()
    a = carve_validation(train, 0.2, random_state=3)[1].matrix
    b = carve_validation(train, 0.2, random_state=3)[1].matrix
    c = carve_validation(train, 0.2, random_state=4)[1].matrix
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_bad_fraction_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"The 'fraction' parameter of carve_validation must be a float in the range \(0, 1\)\. Got 1\.0 instead\."):
        carve_validation(taste_matrix(), 1.0)


def test_tuned_als_is_no_worse_than_defaults_on_held_out_data() -> None:
    train = taste_matrix(seed=1)
    result = tune_als(train, n_trials=6, random_state=0)
    scores = [t["ndcg"] for t in result.trials]
    assert result.best_score == max(scores)
    assert scores == sorted(scores, reverse=True)
    assert len(result.trials) == 8  # 6 sampled + 2 iteration refinements
    # The defaults are always a candidate, so the winner is at least as good on validation.
    default_trial = [t for t in result.trials if t["params"]["factors"] == 64 and t["params"]["alpha"] == 2.0]
    assert default_trial and result.best_score >= default_trial[0]["ndcg"]
    # And the validation score is the one validation_ndcg computes for those parameters.
    inner, valid = carve_validation(train, 0.2, 0)
    refit = ALSRecommender(**result.best_params, random_state=0).fit(inner)
    assert validation_ndcg(refit, valid) == pytest.approx(result.best_score, abs=1e-6)


def test_item_knn_tuning_reports_every_candidate() -> None:
    result = tune_item_knn(taste_matrix(seed=2))
    assert len(result.trials) == 12
    assert result.best_params["similarity"] in ("cosine", "bm25")
    assert result.to_dict()["n_trials"] == 12


def test_empty_validation_is_refused() -> None:
    train = taste_matrix()
    empty = InteractionMatrix(sp.csr_matrix(train.matrix.shape, dtype=np.float32), train.user_ids, train.item_ids)
    model = ALSRecommender(factors=4, iterations=2).fit(train)
    with pytest.raises(ConfigError, match="the validation split is empty"):
        validation_ndcg(model, empty)


def test_halving_stops_poor_configurations_early_and_is_seeded() -> None:
    train = taste_matrix(seed=1)
    first = tune_als(train, n_trials=9, random_state=0)
    again = tune_als(train, n_trials=9, random_state=0)
    assert first.trials == again.trials
    reached = sorted(t["params"]["iterations"] for t in first.trials)
    # 9 candidates: 6 stop after 3 sweeps, 2 after 8, 1 reaches 15; then the winner's 8 and 30.
    assert reached.count(3) == 6 and reached.count(15) == 1 and reached.count(30) == 1 and reached.count(8) == 3
    # Every recorded score is the score of a fresh fit with those parameters.
    inner, valid = carve_validation(train, 0.2, 0)
    for trial in (first.trials[0], first.trials[-1]):
        refit = ALSRecommender(**trial["params"], random_state=0).fit(inner)
        assert validation_ndcg(refit, valid) == pytest.approx(trial["ndcg"], abs=1e-6)


def test_random_search_fits_every_candidate_in_full() -> None:
    result = tune_als(taste_matrix(seed=1), n_trials=6, random_state=0, search="random")
    assert len(result.trials) == 8
    assert sorted(t["params"]["iterations"] for t in result.trials).count(15) == 6


def test_unknown_search_is_refused() -> None:
    expected = r"The 'search' parameter of tune_als must be one of 'halving', 'random'\. Got 'grid' instead\."
    with pytest.raises(ConfigError, match=expected):
        tune_als(taste_matrix(), search="grid")


def test_validation_users_are_a_seeded_sample_only_above_the_cap() -> None:
    """Up to the cap every validation user is scored; above it, the same seeded sample of exactly the cap,
    and the NDCG over it is the hand-computed mean of those users' NDCG."""
    from recommender.metrics import ndcg_at_k
    from recommender.scoring import ranked_lists
    from recommender.tuning import _validation_users

    train = taste_matrix(seed=3)
    inner, valid = carve_validation(train, 0.2, random_state=0)
    everyone = np.flatnonzero(np.diff(valid.matrix.indptr) > 0)
    assert np.array_equal(_validation_users(valid, 0, None), everyone)
    assert np.array_equal(_validation_users(valid, 0, len(everyone)), everyone)
    sample = _validation_users(valid, 5, 50)
    assert len(sample) == 50 and len(set(sample.tolist())) == 50
    assert np.all(np.diff(sample) > 0) and np.isin(sample, everyone).all()
    assert np.array_equal(sample, _validation_users(valid, 5, 50))
    assert not np.array_equal(sample, _validation_users(valid, 6, 50))
    model = ALSRecommender(factors=8, iterations=3).fit(inner)
    recs, _ = ranked_lists(model, sample, 10)
    expected = float(np.mean(ndcg_at_k(recs, valid.matrix[sample], 10)))
    assert validation_ndcg(model, valid, 10, max_users=50, random_state=5) == pytest.approx(expected, abs=1e-12)
    assert validation_ndcg(model, valid, 10) == pytest.approx(
        float(np.mean(ndcg_at_k(ranked_lists(model, everyone, 10)[0], valid.matrix[everyone], 10))), abs=1e-12
    )


def test_tuning_sample_keeps_all_items_and_only_users_with_data() -> None:
    """At most max_users users with data, every item column, each sampled row exactly its original row."""
    from recommender.tuning import user_sample

    train = taste_matrix(seed=2)
    assert user_sample(train, None) is train
    assert user_sample(train, train.n_users) is train
    sample = user_sample(train, 40, random_state=1)
    assert sample.matrix.shape == (40, train.n_items)
    assert list(sample.item_ids) == list(train.item_ids)
    positions = {u: i for i, u in enumerate(train.user_ids)}
    for r, user in enumerate(sample.user_ids):
        assert (sample.matrix[r] != train.matrix[positions[user]]).nnz == 0
        assert sample.matrix[r].nnz > 0
    assert list(user_sample(train, 40, random_state=1).user_ids) == list(sample.user_ids)
    tuned = tune_als(train, n_trials=3, max_users=40, random_state=0)
    assert tuned.best_params and 0 <= tuned.best_score <= 1
    assert tuned.searched_users == 40 and tuned.to_dict()["searched_users"] == 40
    assert tune_als(train, n_trials=2, max_users=None).searched_users is None
    with pytest.raises(ConfigError, match="max_users"):
        tune_als(train, max_users=0)


# -- the other families: small grids on the same kind of validation split ------------------------------------


def _weighted_taste(seed: int = 3) -> InteractionMatrix:
    """The taste matrix with summed weights: clicks repeated up to ten times on a few pairs (heavy tails)."""
    base = taste_matrix(seed=seed)
    m = base.matrix.copy().astype(np.float32)
    m.data = np.where(np.random.default_rng(seed).random(m.nnz) < 0.05, 10.0, 1.0).astype(np.float32) * m.data
    return InteractionMatrix(m, base.user_ids, base.item_ids)


@pytest.mark.parametrize("name", ["ease", "pure_svd", "user_knn"])
def test_a_family_search_scores_every_candidate_on_validation_and_picks_the_best(name) -> None:
    from recommender.family import get_family
    from recommender.tuning import FAMILY_GRIDS, tune_family

    train = _weighted_taste()
    result = tune_family(name, train, random_state=0)
    assert len(result.trials) == len(FAMILY_GRIDS[name])
    assert result.best_score == max(t["ndcg"] for t in result.trials if t["ndcg"] is not None)
    # each figure is reproduced by an independent fit on the same carved split
    inner, valid = carve_validation(train, 0.2, 0)
    family = get_family(name)
    for trial in result.trials[:2]:
        params = {**family.default_params, **trial["params"]}
        if "random_state" in (family.parameter_names() or []):
            params["random_state"] = 0
        again = validation_ndcg(family.create(**params).fit(inner), valid, 10)
        assert again == pytest.approx(trial["ndcg"], abs=1e-6)


def test_ease_search_prefers_a_lambda_on_the_scale_of_its_gram_matrix() -> None:
    from recommender.tuning import tune_family

    result = tune_family("ease", _weighted_taste(), candidates=[{"regularization": 0.01}, {"regularization": 100.0}])
    assert result.best_params == {"regularization": 100.0}
    assert result.trials[0]["ndcg"] > result.trials[1]["ndcg"]


def test_bpr_search_scores_epoch_counts_from_one_run_each_equal_to_a_fresh_fit() -> None:
    from recommender.families.bpr import BPRModel
    from recommender.tuning import tune_family

    train = taste_matrix(seed=4, n_users=120, n_items=80, n_events=3000)
    result = tune_family("bpr", train, candidates=[{"factors": 8, "learning_rate": 0.05}])
    assert sorted(t["params"]["iterations"] for t in result.trials) == [10, 20, 40]
    inner, valid = carve_validation(train, 0.2, 0)
    twenty = next(t for t in result.trials if t["params"]["iterations"] == 20)
    fresh = BPRModel(factors=8, learning_rate=0.05, iterations=20, random_state=0).fit(inner)
    assert validation_ndcg(fresh, valid, 10) == pytest.approx(twenty["ndcg"], abs=1e-6)


def test_bpr_checkpoint_is_the_fit_with_that_many_epochs_version_id_included() -> None:
    from recommender.families.bpr import BPRModel

    train = taste_matrix(seed=5, n_users=60, n_items=40, n_events=1200)
    paused = BPRModel(factors=4, iterations=6, random_state=1)
    seen = []
    for epochs in paused.fit_checkpoints(train, [2, 5]):
        seen.append(epochs)
        fresh = BPRModel(factors=4, iterations=epochs, random_state=1).fit(train)
        assert paused.version_id_ == fresh.version_id_ and np.array_equal(paused.item_factors_, fresh.item_factors_)
    assert seen == [2, 5]
    with pytest.raises(ConfigError, match="epochs"):
        next(BPRModel(iterations=3).fit_checkpoints(train, [4]))


def test_tune_family_refuses_a_family_without_candidates() -> None:
    from recommender.tuning import tune_family

    with pytest.raises(ConfigError, match="popularity"):
        tune_family("popularity", taste_matrix(seed=1))


@pytest.mark.parametrize("name", ["ease", "pure_svd", "user_knn"])
def test_binary_input_ignores_the_weights_and_weighted_input_does_not(name) -> None:
    from recommender.family import get_family

    family = get_family(name)
    weighted = _weighted_taste()
    pattern = InteractionMatrix((weighted.matrix > 0).astype(np.float32), weighted.user_ids, weighted.item_ids)
    users = list(weighted.user_ids[:40])
    small = {"ease": {"regularization": 50.0}, "pure_svd": {"factors": 8}, "user_knn": {"k_neighbours": 20}}[name]
    on_weights = family.create(**small).fit(weighted).recommend(users, k=10).item_indices
    on_pattern = family.create(**small).fit(pattern).recommend(users, k=10).item_indices
    assert np.array_equal(on_weights, on_pattern)
    not_binary = family.create(**small, binary=False).fit(weighted).recommend(users, k=10).item_indices
    assert not np.array_equal(not_binary, on_pattern)
    with pytest.raises(ConfigError, match="binary"):
        family.create(**small, binary="yes").fit(weighted)
