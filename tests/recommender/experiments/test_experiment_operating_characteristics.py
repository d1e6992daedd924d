"""What the designs promise, checked on simulated experiments looked at after every batch.

* A/A (no effect): the sequential methods' false-positive rate is at most 5.5 %
  at alpha 0.05 (the 99 % Clopper-Pearson interval of the rate is in the
  failure message), while stopping at the first nominal p < 0.05 of a naive
  fixed-horizon test after every batch is not: this suite can fail.
* A planted effect of the planned size is found with the planned power, within
  5 points, at the size :func:`plan_sample_size` gives.
* The sample ratio check finds a planted 1 % imbalance (50.5 / 49.5 where
  50 / 50 was configured) with 99 % power at the size :func:`srm_sample_size`
  states (315,493 units at alpha 0.001), and raises false alarms at its level.

Every experiment is simulated at once, as arrays: each batch's successes are
binomial draws, cumulated over the looks, and decided by
:func:`rejection_looks`, which makes the decisions :func:`analyze_look` makes
(``test_rejection_looks_makes_the_same_decisions_as_analyze_look``). 10,000
experiments per design make the binomial error of a rate about 0.2 points.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recommender.experiments import AnalysisPlan, plan_sample_size, rejection_looks, srm_sample_size, stopping_looks
from recommender.experiments.arms import difference_moments
from recommender.experiments.srm import srm_p_values

EXPERIMENTS = 10_000
LOOKS = 5
ALPHA = 0.05
POWER = 0.8
BASELINE, MDE = 0.10, 0.01


def interval(hits: int, trials: int) -> str:
    ci = stats.binomtest(hits, trials).proportion_ci(confidence_level=0.99, method="exact")
    return f"{hits}/{trials} = {hits / trials:.4f}, 99% Clopper-Pearson [{ci.low:.4f}, {ci.high:.4f}]"


def simulate(
    rng: np.random.Generator, n_per_arm: int, p_control: float, p_treatment: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulated ``(n, successes_control, successes_treatment)`` per experiment and look, equal batches."""
    batch = -(-n_per_arm // LOOKS)
    n = np.broadcast_to(batch * np.arange(1, LOOKS + 1), (EXPERIMENTS, LOOKS))
    control = np.cumsum(rng.binomial(batch, p_control, (EXPERIMENTS, LOOKS)), axis=1)
    treatment = np.cumsum(rng.binomial(batch, p_treatment, (EXPERIMENTS, LOOKS)), axis=1)
    return n, control, treatment


def design(method: str, spending: str = "obrien_fleming", futility_power: float | None = None) -> AnalysisPlan:
    size = plan_sample_size(
        "proportion", BASELINE, MDE, alpha=ALPHA, power=POWER, allocation=[0.5, 0.5],
        method=method, looks=LOOKS, spending=spending,  # type: ignore[arg-type]
    )  # fmt: skip
    return AnalysisPlan(
        method, ALPHA, POWER, "proportion", MDE, size.n_per_arm[0], looks=LOOKS, spending=spending,  # type: ignore[arg-type]
        futility_power=futility_power,
    )  # fmt: skip


SEQUENTIAL = [
    ("group_sequential", "obrien_fleming", None),
    ("group_sequential", "obrien_fleming", 0.1),  # non-binding futility: fewer rejections, never more
    ("group_sequential", "pocock", None),
    ("msprt", "obrien_fleming", None),
]


@pytest.mark.parametrize(("method", "spending", "futility"), SEQUENTIAL)
def test_sequential_false_positive_rate_is_at_most_5_5_percent_when_looking_after_every_batch(
    method: str, spending: str, futility: float | None
) -> None:
    plan = design(method, spending, futility)
    rng = np.random.default_rng(20_231)
    n, control, treatment = simulate(rng, plan.planned_n_per_arm, BASELINE, BASELINE)
    rejected = int((rejection_looks(plan, n, control, control, n, treatment, treatment) > 0).sum())
    assert rejected / EXPERIMENTS <= 0.055, interval(rejected, EXPERIMENTS)


def test_futility_stops_most_aa_experiments_early() -> None:
    """With no effect, the conditional power under the planned effect soon falls below 10 %."""
    plan = design("group_sequential", futility_power=0.1)
    rng = np.random.default_rng(20_231)
    n, control, treatment = simulate(rng, plan.planned_n_per_arm, BASELINE, BASELINE)
    look, rejected = stopping_looks(plan, n, control, control, n, treatment, treatment)
    assert (look < LOOKS).mean() > 0.5 and rejected.mean() <= 0.055
    assert rejected.sum() <= (rejection_looks(design("group_sequential"), n, control, control, n, treatment, treatment) > 0).sum()


def test_group_sequential_on_a_mean_metric_keeps_its_level_too() -> None:
    """Skewed per-unit values (exponential, sd = mean = 2): sums and sums of squares drawn per batch."""
    plan = AnalysisPlan("group_sequential", ALPHA, POWER, "mean", 0.25, 1000, looks=LOOKS)
    rng = np.random.default_rng(11)
    batch = 200
    n = np.broadcast_to(batch * np.arange(1, LOOKS + 1), (EXPERIMENTS, LOOKS))

    def arm() -> tuple[np.ndarray, np.ndarray]:
        sums, squares = np.empty((EXPERIMENTS, LOOKS)), np.empty((EXPERIMENTS, LOOKS))
        for look in range(LOOKS):  # one batch at a time keeps the draws at 2 million values
            values = rng.exponential(2.0, (EXPERIMENTS, batch))
            sums[:, look], squares[:, look] = values.sum(axis=1), (values**2).sum(axis=1)
        return np.cumsum(sums, axis=1), np.cumsum(squares, axis=1)

    (total_c, sq_c), (total_t, sq_t) = arm(), arm()
    rejected = int((rejection_looks(plan, n, total_c, sq_c, n, total_t, sq_t) > 0).sum())
    assert rejected / EXPERIMENTS <= 0.055, interval(rejected, EXPERIMENTS)


def test_naive_peeking_after_every_batch_does_inflate_false_positives() -> None:
    """Stopping at the first look with a fixed-horizon p < 0.05: about 14 % with 5 looks (Armitage et al. 1969)."""
    plan = design("fixed")
    rng = np.random.default_rng(20_231)
    n, control, treatment = simulate(rng, plan.planned_n_per_arm, BASELINE, BASELINE)
    estimate, variance = difference_moments("proportion", n, control, control, n, treatment, treatment)
    nominal = 2 * stats.norm.sf(np.abs(estimate) / np.sqrt(variance))
    peeked = int((nominal < ALPHA).any(axis=1).sum())
    assert peeked / EXPERIMENTS > 0.10, interval(peeked, EXPERIMENTS)
    # The same data, tested once at the planned end as the design says: the level holds.
    once = int((rejection_looks(plan, n, control, control, n, treatment, treatment) > 0).sum())
    assert once / EXPERIMENTS <= 0.055, interval(once, EXPERIMENTS)


@pytest.mark.parametrize(("method", "spending", "futility"), [("fixed", "obrien_fleming", None), *SEQUENTIAL])
def test_a_planted_effect_of_the_planned_size_is_found_with_the_planned_power(
    method: str, spending: str, futility: float | None
) -> None:
    plan = design(method, spending, futility)
    rng = np.random.default_rng(4_242)
    n, control, treatment = simulate(rng, plan.planned_n_per_arm, BASELINE, BASELINE + MDE)
    found = int((rejection_looks(plan, n, control, control, n, treatment, treatment) > 0).sum())
    assert abs(found / EXPERIMENTS - POWER) <= 0.05, interval(found, EXPERIMENTS)


def test_srm_finds_a_planted_one_percent_imbalance_at_the_stated_size() -> None:
    units = srm_sample_size([0.5, 0.5], [0.505, 0.495], alpha=0.001, power=0.99)
    assert units == 315_493  # the size the documentation states
    rng = np.random.default_rng(5)
    control = rng.binomial(units, 0.505, EXPERIMENTS)
    _, p = srm_p_values(np.column_stack([control, units - control]), [0.5, 0.5])
    caught = int((p < 0.001).sum())
    assert caught / EXPERIMENTS >= 0.98, interval(caught, EXPERIMENTS)
    # At a tenth of that size the same imbalance mostly goes unnoticed: the size matters.
    small = units // 10
    control = rng.binomial(small, 0.505, EXPERIMENTS)
    _, p = srm_p_values(np.column_stack([control, small - control]), [0.5, 0.5])
    assert (p < 0.001).mean() < 0.25


def test_srm_false_alarms_stay_near_its_level_without_imbalance() -> None:
    trials = 200_000
    rng = np.random.default_rng(6)
    control = rng.binomial(315_493, 0.5, trials)
    _, p = srm_p_values(np.column_stack([control, 315_493 - control]), [0.5, 0.5])
    alarms = int((p < 0.001).sum())
    ci = stats.binomtest(alarms, trials).proportion_ci(confidence_level=0.99, method="exact")
    assert ci.low <= 0.001 <= ci.high and alarms / trials <= 0.0015, interval(alarms, trials)
