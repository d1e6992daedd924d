"""Sample sizes: a hand-computed case, statsmodels' power solver, and the sequential inflation factors."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower

import recommender.experiments.sample_size as sample_size_module
from recommender import ConfigError
from recommender.experiments import plan_sample_size, spending_boundaries
from recommender.experiments.msprt import z_boundary


def test_proportion_hand_computed() -> None:
    """10 % -> 11 %, alpha 0.05 two-sided, power 0.8: (1.959964 + 0.841621)^2 * (0.09 + 0.0979) / 0.0001."""
    plan = plan_sample_size("proportion", 0.10, 0.01, alpha=0.05, power=0.8, allocation=[0.5, 0.5])
    by_hand = (1.959964 + 0.841621) ** 2 * (0.10 * 0.90 + 0.11 * 0.89) / 0.01**2  # per arm
    assert plan.n_per_arm == (math.ceil(by_hand), math.ceil(by_hand)) == (14749, 14749)
    assert plan.n_total == 29498 and plan.inflation == 1.0 and plan.method == "fixed"


@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
@pytest.mark.parametrize("allocation", [(0.5, 0.5), (0.7, 0.3)])
def test_mean_agrees_with_statsmodels(alternative: str, allocation: tuple[float, float]) -> None:
    plan = plan_sample_size(
        "mean", 3.0, 0.2, alpha=0.05, power=0.9, allocation=allocation, sd=1.5, alternative=alternative  # type: ignore[arg-type]
    )
    n_control = NormalIndPower().solve_power(
        effect_size=0.2 / 1.5,
        alpha=0.05,
        power=0.9,
        ratio=allocation[1] / allocation[0],
        alternative="two-sided" if alternative == "two-sided" else "larger",
    )
    # statsmodels' two-sided power counts the far tail too (~1e-7 here); the sizes agree to a unit.
    assert plan.n_per_arm[0] == pytest.approx(n_control, abs=1.0)
    assert plan.n_per_arm[1] == pytest.approx(n_control * allocation[1] / allocation[0], abs=1.0)


def test_multiplicity_corrections_size_at_alpha_over_comparisons() -> None:
    kwargs = dict(alpha=0.05, power=0.8, allocation=[0.34, 0.33, 0.33], comparisons=2)
    none = plan_sample_size("proportion", 0.2, 0.02, correction="none", **kwargs)  # type: ignore[arg-type]
    bonferroni = plan_sample_size("proportion", 0.2, 0.02, correction="bonferroni", **kwargs)  # type: ignore[arg-type]
    holm = plan_sample_size("proportion", 0.2, 0.02, correction="holm", **kwargs)  # type: ignore[arg-type]
    assert none.alpha_per_comparison == 0.05 and bonferroni.alpha_per_comparison == 0.025
    assert holm.n_per_arm == bonferroni.n_per_arm and bonferroni.n_total > none.n_total
    ratio = ((stats.norm.isf(0.0125) + stats.norm.ppf(0.8)) / (stats.norm.isf(0.025) + stats.norm.ppf(0.8))) ** 2
    assert bonferroni.n_total / none.n_total == pytest.approx(ratio, rel=1e-3)
    assert len(none.n_per_arm) == 3


def test_group_sequential_inflation_is_the_published_one() -> None:
    """Lan-DeMets spending needs a little more than the classic designs (J&T Tables 2.2, 2.4: 1.028 and 1.228)."""
    kwargs = dict(alpha=0.05, power=0.8, allocation=[0.5, 0.5], method="group_sequential", looks=5)
    obf = plan_sample_size("proportion", 0.1, 0.01, **kwargs)  # type: ignore[arg-type]
    pocock = plan_sample_size("proportion", 0.1, 0.01, spending="pocock", **kwargs)  # type: ignore[arg-type]
    fractions = [k / 5 for k in range(1, 6)]
    for plan, spending in ((obf, "obrien_fleming"), (pocock, "pocock")):
        bounds = spending_boundaries(fractions, 0.05, spending=spending)
        # The planned power, found again by simulating 200,000 experiments' z paths (no numerical integration),
        # and a design one percent smaller falls short of it: the inflation is the smallest that gives the power.
        assert _simulated_power(bounds, plan.inflation) == pytest.approx(0.8, abs=0.004)
        assert _simulated_power(bounds, plan.inflation * 0.97) < 0.8 - 0.004
    assert pocock.inflation > obf.inflation > 1.0  # Pocock spends early and pays for it at the end
    assert obf.n_per_arm[0] / obf.n_fixed_per_arm[0] == pytest.approx(obf.inflation, abs=1e-4)
    assert "Lan-DeMets" in obf.sizing


def test_msprt_needs_more_units_and_fewer_with_more_looks() -> None:
    kwargs = dict(alpha=0.05, power=0.8, allocation=[0.5, 0.5], method="msprt")
    five = plan_sample_size("proportion", 0.1, 0.01, looks=5, **kwargs)  # type: ignore[arg-type]
    twenty = plan_sample_size("proportion", 0.1, 0.01, looks=20, **kwargs)  # type: ignore[arg-type]
    assert twenty.inflation > 1.0, "an always-valid test at 20 looks must cost more units than a fixed horizon"
    assert twenty.inflation < five.inflation, "more looks must need fewer units (each look is closer to the data)"
    z_sum = stats.norm.isf(0.025) + stats.norm.ppf(0.8)

    def power_at(inflation: float, looks: int) -> float:
        fractions = [k / looks for k in range(1, looks + 1)]
        bounds = [z_boundary(1.0, t * inflation * z_sum**2, 0.05) for t in fractions]
        return _simulated_power(bounds, inflation)

    for plan, looks in ((five, 5), (twenty, 20)):
        # The planned power found again by simulation, and a design 3% smaller falls short of it.
        assert power_at(plan.inflation, looks) == pytest.approx(0.8, abs=0.004)
        assert power_at(plan.inflation * 0.97, looks) < 0.8 - 0.004
    assert "tau = mde" in five.sizing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(alpha=0), r"alpha must be a number in \(0, 1\); got 0"),
        (dict(power=1.0), r"power must be a number in \(0, 1\); got 1.0"),
        (dict(allocation=[0.5, 0.6]), "allocation shares must sum to 1"),
        (dict(allocation=[1.0]), "allocation must list at least two positive shares"),
        (dict(method="bayes"), "method must be one of 'fixed', 'group_sequential', 'msprt'; got 'bayes'"),
        (dict(looks=0), "looks must be an integer from 1 to 100; got 0"),
        (dict(comparisons=0), "comparisons must be a positive integer; got 0"),
        (dict(mde=-0.01), "mde must be a positive, finite absolute difference; got -0.01"),
        (dict(mde=0.95), r"a proportion's baseline and baseline \+ mde must lie in \(0, 1\)"),
        (dict(kind="mean"), "a mean metric needs its standard deviation sd > 0; got sd=None"),
        (dict(correction="sidak"), "correction must be one of 'none', 'bonferroni', 'holm'; got 'sidak'"),
    ],
)
def test_bad_parameters_are_refused_with_a_located_message(kwargs: dict, message: str) -> None:
    args = dict(kind="proportion", baseline=0.1, mde=0.01, alpha=0.05, power=0.8, allocation=[0.5, 0.5]) | kwargs
    with pytest.raises(ConfigError, match=message):
        plan_sample_size(**args)  # type: ignore[arg-type]


def test_module_examples_run() -> None:
    assert doctest.testmod(sample_size_module).failed == 0


def _simulated_power(bounds: list[float] | tuple[float, ...], inflation: float, n: int = 200_000) -> float:
    """Share of simulated two-sided experiments (looks at equal information steps) that cross a boundary.

    The z statistic at information fraction t is (W(t) + drift t) / sqrt(t), W a standard Brownian motion,
    drift the planned effect's expected z at the inflated sample size.
    """
    looks = len(bounds)
    drift = (stats.norm.isf(0.025) + stats.norm.ppf(0.8)) * np.sqrt(inflation)
    t = np.arange(1, looks + 1) / looks
    steps = np.random.default_rng(7).standard_normal((n, looks)) * np.sqrt(1.0 / looks)
    z = (np.cumsum(steps, axis=1) + drift * t) / np.sqrt(t)
    return float((np.abs(z) >= np.asarray(bounds)).any(axis=1).mean())

