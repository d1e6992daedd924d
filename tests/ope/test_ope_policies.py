"""Slate policies over a governed pool: exact probabilities by hand, against enumeration, and against sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recommender.errors import ConfigError, DataError
from recommender.ope import (
    ExactBoundError,
    SlatePolicy,
    enumerate_slates,
    pairwise_probabilities,
    position_marginals,
    sample_slate,
    slate_probabilities,
)

PL = SlatePolicy("plackett_luce", temperature=1.0)
SCORES = np.log(np.array([3.0, 2.0, 1.0]))  # Plackett-Luce weights 3, 2, 1


def test_plackett_luce_by_hand() -> None:
    prob, prefix = slate_probabilities(PL, SCORES, np.array([0, 1]))
    assert prob == pytest.approx(3 / 6 * 2 / 3) and prefix == pytest.approx([1 / 2, 1 / 3])
    marg = position_marginals(PL, SCORES, 2)
    # item 2 second: after 0 (1/2 * 1/3) or after 1 (1/3 * 1/4)
    assert marg[1, 2] == pytest.approx(1 / 2 * 1 / 3 + 1 / 3 * 1 / 4)
    assert marg[0] == pytest.approx([1 / 2, 1 / 3, 1 / 6])
    assert marg.sum(axis=1) == pytest.approx([1, 1])


def test_temperature_scales_the_scores() -> None:
    hot = SlatePolicy("plackett_luce", temperature=2.0)
    prob, _ = slate_probabilities(hot, 2 * SCORES, np.array([0, 1]))
    assert prob == pytest.approx(1 / 3)


def test_epsilon_slots_by_hand() -> None:
    eps = SlatePolicy("epsilon_slots", epsilon=0.2, explore=(2,))
    scores = np.zeros(5)
    assert slate_probabilities(eps, scores, np.array([0, 1, 2]))[0] == pytest.approx(0.8)
    prob, prefix = slate_probabilities(eps, scores, np.array([0, 1, 4]))
    assert prob == pytest.approx(0.1) and prefix == pytest.approx([1, 1, 0.1])
    assert slate_probabilities(eps, scores, np.array([1, 0, 2]))[0] == 0.0  # a non-exploration slot moved: impossible
    marg = position_marginals(eps, scores, 3)
    assert marg[2] == pytest.approx([0, 0, 0.8, 0.1, 0.1]) and marg[0, 0] == 1.0


def test_deterministic_is_recorded_as_such() -> None:
    for policy in (SlatePolicy(), SlatePolicy("epsilon_slots", epsilon=0.0, explore=(1,)), SlatePolicy("epsilon_slots", epsilon=0.5)):
        assert policy.deterministic and policy.to_dict() == {"kind": "deterministic"}
        assert slate_probabilities(policy, np.zeros(4), np.array([0, 1]))[0] == 1.0
        assert slate_probabilities(policy, np.zeros(4), np.array([1, 0]))[0] == 0.0


POLICIES = [
    SlatePolicy("plackett_luce", temperature=0.7),
    SlatePolicy("plackett_luce", temperature=0.3, fixed=(0, 2)),
    SlatePolicy("epsilon_slots", epsilon=0.3, explore=(0, 2)),
]


@pytest.mark.parametrize("policy", POLICIES, ids=["pl", "pl_fixed", "epsilon"])
def test_exact_quantities_agree_with_enumeration_of_every_permutation(policy: SlatePolicy) -> None:
    scores = np.random.default_rng(0).normal(size=6)
    k = 3
    slates, probs = enumerate_slates(policy, scores, k)
    assert probs.sum() == pytest.approx(1.0)
    # every ordered k-tuple of the pool: the ones not enumerated have probability 0
    listed = {tuple(s): p for s, p in zip(slates.tolist(), probs)}
    for slate in itertools.permutations(range(6), k):
        prob, prefix = slate_probabilities(policy, scores, np.array(slate))
        assert prob == pytest.approx(listed.get(slate, 0.0), abs=1e-15)
        assert prefix[-1] == pytest.approx(prob) and np.all(np.diff(prefix) <= 1e-15)
    marg = position_marginals(policy, scores, k)
    by_enumeration = np.zeros_like(marg)
    np.add.at(by_enumeration, (np.tile(np.arange(k), len(slates)), slates.ravel()), np.repeat(probs, k))
    assert marg == pytest.approx(by_enumeration, abs=1e-14)
    gamma = pairwise_probabilities(policy, scores, k)
    assert np.diag(gamma) == pytest.approx(marg.ravel(), abs=1e-14)
    assert gamma == pytest.approx(gamma.T)


@pytest.mark.parametrize("policy", POLICIES, ids=["pl", "pl_fixed", "epsilon"])
def test_sampling_follows_the_recorded_probabilities(policy: SlatePolicy) -> None:
    scores = np.random.default_rng(1).normal(size=6)
    rng = np.random.default_rng(2)
    draws = 20_000
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        key = tuple(sample_slate(policy, scores, 3, rng).tolist())
        counts[key] = counts.get(key, 0) + 1
    slates, probs = enumerate_slates(policy, scores, 3)
    assert set(counts) <= {tuple(s) for s in slates.tolist()}  # never a slate of probability 0
    for slate, p in zip(slates.tolist(), probs):
        se = np.sqrt(p * (1 - p) / draws)
        assert abs(counts.get(tuple(slate), 0) / draws - p) < 5 * se + 1e-4


def test_the_same_seed_reproduces_the_slate() -> None:
    scores = np.random.default_rng(3).normal(size=20)
    a = sample_slate(POLICIES[0], scores, 5, np.random.default_rng(12345))
    b = sample_slate(POLICIES[0], scores, 5, np.random.default_rng(12345))
    assert a.tolist() == b.tolist()


def test_plackett_luce_marginals_for_a_larger_pool_stay_exact_and_bounded() -> None:
    scores = np.random.default_rng(4).normal(size=20)
    marg = position_marginals(PL, scores, 5)
    assert marg.sum(axis=1) == pytest.approx(np.ones(5)) and marg.sum(axis=0).max() <= 1 + 1e-12
    # past the programme's sets, the exponential race gives them (no refusal): equal weights, equal marginals
    big = position_marginals(PL, np.zeros(40), 12, max_states=10_000)
    assert np.abs(big - 1 / 40).max() < 1e-12
    with pytest.raises(ExactBoundError, match="slates"):
        pairwise_probabilities(PL, np.zeros(20), 5, max_slates=1000)


def test_bad_policies_and_pools_are_refused() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        SlatePolicy("plackett_luce", temperature=0)
    with pytest.raises(ConfigError, match="epsilon"):
        SlatePolicy("epsilon_slots", epsilon=1.5, explore=(0,))
    with pytest.raises(ConfigError, match="distinct"):
        SlatePolicy("plackett_luce", fixed=(1, 1))
    with pytest.raises(DataError, match="beyond the first"):
        sample_slate(SlatePolicy("epsilon_slots", epsilon=0.5, explore=(0, 1)), np.zeros(3), 2, np.random.default_rng(0))
    with pytest.raises(DataError, match="unknown slate policy"):
        SlatePolicy.from_dict({"kind": "thompson"})
    assert SlatePolicy.from_dict(POLICIES[1].to_dict()) == POLICIES[1]


@pytest.mark.parametrize("policy", [SlatePolicy(), *POLICIES], ids=["deterministic", "pl", "pl_fixed", "epsilon"])
def test_prefix_probabilities_of_impossible_slates_agree_with_enumeration(policy: SlatePolicy) -> None:
    """A slate the policy cannot show whole still has the probability of its possible prefix (cascade IPS needs it)."""
    scores = np.random.default_rng(5).normal(size=6)
    k = 3
    slates, probs = enumerate_slates(policy, scores, k)
    for slate in itertools.permutations(range(6), k):
        _, prefix = slate_probabilities(policy, scores, np.array(slate))
        for j in range(k):
            expected = sum(p for s, p in zip(slates.tolist(), probs) if tuple(s[: j + 1]) == slate[: j + 1])
            assert prefix[j] == pytest.approx(expected, abs=1e-14), (slate, j)


@pytest.mark.parametrize(("m", "draws", "scale"), [(6, 4, 1.0), (9, 5, 2.0), (12, 6, 3.0), (10, 10, 0.5)])
def test_the_race_marginals_are_the_programmes_to_rounding(m: int, draws: int, scale: float) -> None:
    """The exponential race's quadrature against the programme over drawn sets (independent, exact): equal to 1e-12,
    rows and columns summing as probabilities must."""
    from recommender.ope.policies import _pl_race_marginals

    rng = np.random.default_rng(m * 31 + draws)
    e = np.exp(rng.normal(scale=scale, size=m))
    e /= e.max()
    exact = _pl_draw_marginals_programme(e, draws)
    race = _pl_race_marginals(e, draws)
    assert np.abs(race - exact).max() < 1e-12
    assert np.allclose(race.sum(axis=1), 1.0, atol=1e-12) and (race.sum(axis=0) <= 1 + 1e-12).all()


def test_a_pool_of_twenty_gets_its_marginals_by_the_race_and_they_sum_right() -> None:
    policy = SlatePolicy("plackett_luce", temperature=0.7)
    scores = np.sort(np.random.default_rng(3).normal(size=20))[::-1]
    marg = position_marginals(policy, scores, 10)
    assert np.allclose(marg.sum(axis=1), 1.0, atol=1e-12)
    # the first position's marginals are the softmax, in closed form
    w = np.exp((scores - scores.max()) / 0.7)
    assert np.allclose(marg[0], w / w.sum(), atol=1e-13)


def _pl_draw_marginals_programme(e: np.ndarray, draws: int) -> np.ndarray:
    from recommender.ope import policies

    saved = policies.QUADRATURE_FROM_STATES
    policies.QUADRATURE_FROM_STATES = 10**9
    try:
        return policies._pl_draw_marginals(e, draws, 10**7)
    finally:
        policies.QUADRATURE_FROM_STATES = saved
