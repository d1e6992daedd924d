"""Calibration over provider groups: the re-ranker, its inputs, and the per-user miscalibration the audit compares.

The re-ranker is Steck's calibration with the items' provider groups as categories,
so it is checked against the category re-ranker on the indicator of those groups
and against a plain greedy reference; the audit's per-user figure is checked
against a hand computation of the KL divergence, user by user.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.collect_fairness import fairness_facts
from governance.policy import parse_pack
from governance.rerank import (
    CalibrationReranker,
    Candidates,
    ProviderCalibrationReranker,
    Reason,
    build_pipeline,
    history_group_distribution,
)
from governance.rerank.calibration import history_group_distribution_of_row, provider_categories
from recommender.errors import DataError
from recommender.feedback import FeedbackConfig
from recommender.loaders import load_data
from recommender.pipeline import run_evaluation
from recommender.split import SplitConfig
from recommender.synthetic import SyntheticSpec, generate


def batch(seed: int, n_users: int = 4, c: int = 12, n_items: int = 30, sorted_scores: bool = True) -> Candidates:
    rng = np.random.default_rng(seed)
    items = np.stack([rng.permutation(n_items)[:c] for _ in range(n_users)]).astype(np.int64)
    lengths = rng.integers(0, c + 1, n_users)
    items[np.arange(c)[None, :] >= lengths[:, None]] = -1
    scores = rng.normal(size=(n_users, c)).astype(np.float32)
    if sorted_scores:
        scores = np.sort(scores, axis=1)[:, ::-1].copy()
    group = rng.choice([-1, 0, 1, 2], size=n_items, p=[0.1, 0.5, 0.3, 0.1])
    history = sp.csr_matrix(rng.random((n_users, n_items)) < 0.3, dtype=np.float64)
    return Candidates(
        items=items,
        scores=scores,
        item_group=group,
        user_group_dist=history_group_distribution(history, group),
        seeds=rng.integers(0, 2**31, n_users),
    )


# -- the re-ranker ------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lam=st.sampled_from([0.0, 0.3, 0.75, 1.0]), k=st.integers(1, 10))
def test_provider_calibration_is_calibration_over_the_provider_groups(seed, lam, k):
    cands = batch(seed).validate()
    out = ProviderCalibrationReranker(tradeoff=lam)(cands, k)
    as_categories = Candidates(
        items=cands.items,
        scores=cands.scores,
        item_categories=provider_categories(cands.item_group),
        user_category_dist=cands.user_group_dist,
    )
    expected = CalibrationReranker(tradeoff=lam)(as_categories, k)
    assert out.items.tolist() == expected.items.tolist()
    moved = out.moves[out.moves != Reason.model]
    assert set(moved.tolist()) <= {int(Reason.provider_calibration)}


def test_a_user_who_prefers_the_independents_gets_them_back():
    # Items 0-2 of group 0 (majors) score highest; the user's history is three quarters group 1.
    group = np.array([0, 0, 0, 1, 1, 1])
    history = sp.csr_matrix(np.array([[1, 0, 0, 1, 1, 1]], dtype=np.float64))
    cands = Candidates(
        items=np.array([[0, 1, 2, 3, 4, 5]]),
        scores=np.array([[1.0, 0.95, 0.9, 0.5, 0.45, 0.4]]),
        item_group=group,
        user_group_dist=history_group_distribution(history, group),
    )
    assert cands.user_group_dist.tolist() == [[0.25, 0.75]]
    out = ProviderCalibrationReranker(tradeoff=0.75)(cands, 4)
    # By hand, relevance r = min-max scaled scores (1, .917, .833, .167, .083, 0), gain
    # .25 r - .75 KL(p || .99 q + .01 p) with p = (.25, .75):
    # place 1: item 0 gives q = (1, 0), KL 3.109, gain -2.08; item 3 gives q = (0, 1), KL .941, gain -.664
    # place 2: item 0 gives q = (.5, .5), KL .136, gain .148 (item 4: q = (0, 1), gain -.685)
    # place 3: item 1 gives q = (2/3, 1/3), KL .355, gain -.037; item 4 gives q = (1/3, 2/3), KL .016, gain .009
    # place 4: item 1 gives q = (.5, .5), gain .127; item 5 gives q = (.25, .75), KL 0, gain 0
    assert out.items[0].tolist() == [3, 0, 4, 1]  # plain: [0, 1, 2, 3], one independent in four
    assert [int(m) for m in out.moves[0]] == [int(Reason.provider_calibration), 0, int(Reason.provider_calibration), 0]


def test_provider_categories_and_history_mix_by_hand():
    group = np.array([0, 1, -1, 2, 1])
    cats = provider_categories(group).toarray()
    assert cats.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]]
    history = sp.csr_matrix(np.array([[2, 1, 5, 0, 1], [0, 0, 3, 0, 0]], dtype=np.float64))
    # Every item once, whatever its weight (as the audit counts them); the unknown-group item is left out.
    assert np.allclose(history_group_distribution(history, group), [[1 / 3, 2 / 3, 0.0], [0.0, 0.0, 0.0]])
    assert provider_categories(np.array([0, 0])).shape == (2, 2)  # at least two columns


def test_bad_provider_mixes_are_located_errors():
    cands = batch(1)
    with pytest.raises(DataError, match="user_group_dist"):
        Candidates(items=cands.items, scores=cands.scores, item_group=cands.item_group,
                   user_group_dist=np.ones((4, 2))).validate()  # fmt: skip
    with pytest.raises(DataError, match="user_group_dist"):
        Candidates(items=cands.items, scores=cands.scores, item_group=cands.item_group,
                   user_group_dist=-np.ones((4, 3))).validate()  # fmt: skip
    with pytest.raises(DataError, match="user_group_dist.*needs item_group"):
        Candidates(items=cands.items, scores=cands.scores, user_group_dist=np.ones((4, 3))).validate()
    with pytest.raises(DataError, match="user_group_dist"):
        build_pipeline([{"name": "provider_calibration", "params": {"tradeoff": 0.5}}])(
            Candidates(items=cands.items, scores=cands.scores, item_group=cands.item_group), 5
        )


def test_the_pack_validates_the_step():
    head = "apiVersion: recgov/v1\nmetadata: {name: p, version: 1.0.0, owner: tests}\n"
    ok = parse_pack(
        head + "reranking:\n  enabled: true\n  steps:\n    - {name: provider_calibration, params: {tradeoff: 0.75}}\n",
        "p.yaml",
    )
    assert ok.pack.reranking.steps[0].name == "provider_calibration"
    with pytest.raises(Exception, match="tradeoff"):
        parse_pack(
            head + "reranking:\n  enabled: true\n  steps:\n    - {name: provider_calibration, params: {tradeoff: 2}}\n",
            "p.yaml",
        )


# -- the audit's per-user miscalibration by group -----------------------------------------------
def _kl_by_hand(listed: list[int], history: list[int], groups: list[object], alpha: float) -> float:
    labels = sorted({g for g in groups if g is not None})

    def mix(items: list[int]) -> dict[object, float]:
        known = [groups[i] for i in items if groups[i] is not None]
        return {g: known.count(g) / len(known) for g in labels} if known else {}

    p, q = mix(history), mix(listed)
    if not p or not q:
        return math.nan
    return sum(p[g] * math.log(p[g] / ((1 - alpha) * q[g] + alpha * p[g])) for g in labels if p[g] > 0)


def test_the_provider_miscalibration_by_group_is_the_mean_of_each_users_kl():
    dataset = generate(SyntheticSpec(n_users=300, n_items=150, n_interactions=9000, seed=2,
                                     group_provider_affinity={"X": 4.0}, protected_groups={"F": 0.5, "M": 0.3, "X": 0.2}))  # fmt: skip
    run = run_evaluation(
        dataset, split_config=SplitConfig(kind="random", test_fraction=0.2), feedback=FeedbackConfig(),
        k=10, tune=False, als_params={"factors": 8, "iterations": 3},
    )  # fmt: skip
    head = "apiVersion: recgov/v1\nmetadata: {name: p, version: 1.0.0, owner: tests}\n"
    pack = parse_pack(
        head + "fairness:\n  audit_attributes: [gender]\n  provider_attribute: provider_group\n", "p.yaml"
    )
    facts = fairness_facts(dataset, run, pack, n_boot=50)
    figures = facts.consumer["gender"]["provider_miscalibration"]
    ev, train = run.comparison.evaluations["als"], run.matrices.train
    item_groups = dataset.items["provider_group"].reindex(train.item_ids).tolist()
    users = pd.Index(train.user_ids)[ev.user_index]
    gender = dataset.users["gender"].reindex(users).astype(str).to_numpy()
    per_user = []
    for row, listed in zip(ev.user_index, ev.recommended):
        history = train.matrix[row].indices.tolist()
        per_user.append(_kl_by_hand([int(i) for i in listed if i >= 0], history, item_groups, 0.01))
    per_user = np.array(per_user)
    for g, fig in figures.groups.items():
        values = per_user[(gender == g) & ~np.isnan(per_user)]
        assert fig.n == len(values)
        assert fig.value == pytest.approx(values.mean(), rel=1e-9)
    assert "miscalibration" in facts.consumer["gender"]


# -- the planted group-provider link in the synthetic data ------------------------------------
def _independent_share(dataset, group: str) -> float:
    events = dataset.events.merge(dataset.users[["gender"]], left_on="user_id", right_index=True)
    events = events.merge(dataset.items[["provider_group"]], left_on="item_id", right_index=True)
    mine = events[events["gender"] == group]
    return float((mine["provider_group"] == "independent").mean())


def test_the_planted_link_draws_the_group_to_the_independents_and_nothing_else_without_it():
    spec = {"n_users": 1500, "n_items": 300, "n_interactions": 40_000, "seed": 4, "exposure_bias": 3.0,
            "protected_groups": {"F": 0.45, "M": 0.45, "X": 0.1}}  # fmt: skip
    neutral = generate(SyntheticSpec(**spec))
    explicit_one = generate(SyntheticSpec(**spec, group_provider_affinity={"X": 1.0}))
    pd.testing.assert_frame_equal(neutral.events, explicit_one.events)
    linked = generate(SyntheticSpec(**spec, group_provider_affinity={"X": 4.0}))
    before, after = _independent_share(neutral, "X"), _independent_share(linked, "X")
    assert after > before + 0.15
    # The other groups keep their mix (their events shift only by the shared random stream).
    assert _independent_share(linked, "F") == pytest.approx(_independent_share(neutral, "F"), abs=0.02)


@pytest.mark.parametrize(
    ("affinity", "message"),
    [
        ({"Z": 2.0}, "group_provider_affinity names group"),
        ({"X": 0.0}, "provider affinities"),
        ({"X": math.inf}, "provider affinities"),
        ({"X": 101.0}, "at most 100"),
    ],
)
def test_a_bad_planted_link_is_a_clear_error(affinity, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(group_provider_affinity=affinity)


def test_the_planted_link_reads_from_a_synthetic_data_argument():
    text = "synthetic:n_users=200,n_items=100,n_interactions=3000,group_provider_affinity=X:4;F:1.5"
    expected = generate(SyntheticSpec(n_users=200, n_items=100, n_interactions=3000,
                                      group_provider_affinity={"X": 4.0, "F": 1.5}))  # fmt: skip
    pd.testing.assert_frame_equal(load_data(text).events, expected.events)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), lam=st.sampled_from([0.3, 0.75, 1.0]), k=st.integers(1, 12),
    sorted_scores=st.booleans(),
)  # fmt: skip
def test_one_list_alone_is_ranked_as_in_a_batch(seed, lam, k, sorted_scores):
    # A served request re-ranks one list through a path of its own; it must give the batch's list,
    # whether the scores come in the model's order or reordered by an earlier step.
    cands = batch(seed, n_users=5, sorted_scores=sorted_scores).validate()
    step = ProviderCalibrationReranker(tradeoff=lam)
    together = step(cands, k)
    for u in range(cands.n_users):
        alone = step(cands.rows(u, u + 1), k)
        assert alone.items.tolist() == together.items[u : u + 1].tolist()
        assert alone.moves.tolist() == together.moves[u : u + 1].tolist()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lam=st.sampled_from([0.75, 1.0]), k=st.integers(1, 10))
def test_after_a_reordering_step_the_served_list_is_the_batch_list(seed, lam, k):
    cands = batch(seed, n_users=4, c=15)
    rng = np.random.default_rng(seed)
    cats = sp.random(cands.n_items, 4, density=0.4, random_state=rng, format="csr")
    cands = Candidates(items=cands.items, scores=cands.scores, item_group=cands.item_group,
                       user_group_dist=cands.user_group_dist, item_categories=cats, seeds=cands.seeds)  # fmt: skip
    pipe = build_pipeline(
        [{"name": "mmr", "params": {"tradeoff": 0.7}}, {"name": "provider_calibration", "params": {"tradeoff": lam}}]
    )
    together = pipe(cands, k)
    for u in range(cands.n_users):
        alone = pipe(cands.rows(u, u + 1), k)
        assert alone.items.tolist() == together.items[u : u + 1].tolist()


def test_the_history_mix_must_match_the_catalog():
    with pytest.raises(DataError, match="3 item columns but item_group gives 4 items"):
        history_group_distribution(sp.csr_matrix(np.ones((1, 3))), np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="outside the 4 of item_group"):
        history_group_distribution_of_row(np.array([0, 4]), np.ones(2), np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="codes beyond the 2 groups given"):
        history_group_distribution_of_row(np.array([0, 3]), np.ones(2), np.array([0, 1, 0, 2]), n_groups=2)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_groups=st.integers(1, 4))
def test_a_served_rows_history_mix_is_the_matrix_rows(seed, n_groups):
    """The serving path reads one user's mix from the row's arrays; it must be that row of the matrix form."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 6, 12
    values = rng.integers(-1, 3, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.5)
    history = sp.csr_matrix(values.astype(np.float64))
    # Stored zeros too (a csr built from a dense array drops them; a model's matrix may hold them).
    rows, cols = np.nonzero(values == 0)
    keep = rng.random(len(rows)) < 0.3
    history = sp.csr_matrix(
        (np.concatenate((history.data, np.zeros(int(keep.sum())))), (np.concatenate((history.nonzero()[0], rows[keep])), np.concatenate((history.nonzero()[1], cols[keep])))),
        shape=history.shape,
    )
    history.sum_duplicates()
    group = rng.integers(-1, n_groups, size=n_items)
    whole = history_group_distribution(history, group)
    for row in range(n_users):
        start, end = history.indptr[row], history.indptr[row + 1]
        one = history_group_distribution_of_row(history.indices[start:end], history.data[start:end], group)
        assert one.shape == (1, whole.shape[1])
        assert np.array_equal(one[0], whole[row])
        known = history_group_distribution_of_row(history.indices[start:end], history.data[start:end], group, whole.shape[1])
        assert np.array_equal(known, one)


def test_each_calibration_takes_only_its_own_config():
    from governance.rerank import CalibrationConfig, ProviderCalibrationConfig
    from recommender.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a CalibrationConfig"):
        CalibrationReranker(ProviderCalibrationConfig(tradeoff=0.5))
    with pytest.raises(ConfigError, match="needs a ProviderCalibrationConfig"):
        ProviderCalibrationReranker(CalibrationConfig(tradeoff=0.5))
