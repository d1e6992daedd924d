"""Group-sequential boundaries against the published tables and an independent integration.

Published values: Pocock (1977) and O'Brien & Fleming (1979) constants as
tabulated by Jennison & Turnbull (2000), Tables 2.1 and 2.3 (two-sided 0.05);
their sample-size ratios, Tables 2.2 and 2.4; and the Lan-DeMets O'Brien-Fleming
spending boundaries that gsDesign (``gsDesign(k=3, test.type=1, sfu=sfLDOF)``)
and rpact (``designGroupSequential(kMax=3, typeOfDesign="asOF")``) print:
3.710, 2.511, 1.993.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import optimize, stats

import recommender.experiments.boundaries as boundaries_module
from recommender import ConfigError
from recommender.experiments.boundaries import (
    constant_shape_boundaries,
    crossing_probabilities,
    spending_boundaries,
    spent_alpha,
)


def equal(k: int) -> list[float]:
    return [i / k for i in range(1, k + 1)]


@pytest.mark.parametrize(
    ("looks", "pocock", "obrien_fleming_final"),
    [(2, 2.178, 1.977), (3, 2.289, 2.004), (4, 2.361, 2.024), (5, 2.413, 2.040)],
)
def test_classic_constants_match_the_published_tables(looks: int, pocock: float, obrien_fleming_final: float) -> None:
    assert constant_shape_boundaries(equal(looks), 0.05, shape="pocock")[0] == pytest.approx(pocock, abs=5e-4)
    assert constant_shape_boundaries(equal(looks), 0.05, shape="obrien_fleming")[-1] == pytest.approx(
        obrien_fleming_final, abs=5e-4
    )


def test_obrien_fleming_five_looks_whole_boundary() -> None:
    """Jennison & Turnbull Table 2.3, K = 5: C_B(5, 0.05) = 2.040, so c_k = 2.040 * sqrt(5 / k)."""
    got = constant_shape_boundaries(equal(5), 0.05, shape="obrien_fleming")
    assert got == pytest.approx([4.562, 3.226, 2.634, 2.281, 2.040], abs=1e-3)


@pytest.mark.parametrize(
    ("shape", "looks", "power", "ratio"),
    [
        ("pocock", 2, 0.8, 1.110),
        ("pocock", 5, 0.8, 1.228),
        ("pocock", 5, 0.9, 1.207),
        ("obrien_fleming", 2, 0.8, 1.008),
        ("obrien_fleming", 5, 0.8, 1.028),
        ("obrien_fleming", 5, 0.9, 1.026),
    ],
)
def test_power_under_drift_gives_the_published_sample_size_ratios(
    shape: str, looks: int, power: float, ratio: float
) -> None:
    bounds = constant_shape_boundaries(equal(looks), 0.05, shape=shape)  # type: ignore[arg-type]
    drift = optimize.brentq(
        lambda d: crossing_probabilities(equal(looks), bounds, d, two_sided=True).sum() - power, 0.0, 10.0
    )
    fixed = stats.norm.isf(0.025) + stats.norm.ppf(power)
    assert (drift / fixed) ** 2 == pytest.approx(ratio, abs=1e-3)


def test_lan_demets_obrien_fleming_matches_gsdesign_and_rpact() -> None:
    one_sided = spending_boundaries(equal(3), 0.025, spending="obrien_fleming", two_sided=False)
    assert one_sided == pytest.approx([3.710, 2.511, 1.993], abs=1e-3)
    # Two-sided 0.05 spends 0.025 a side: the same boundaries (the chance of crossing both sides is ~1e-9).
    assert spending_boundaries(equal(3), 0.05, two_sided=True) == pytest.approx(one_sided, abs=1e-6)


def test_first_boundary_is_the_normal_quantile_of_the_first_spend() -> None:
    """Hand-computed: look 1 spends alpha(t_1) alone, so c_1 = Phi^-1(1 - alpha(t_1) / 2) two-sided."""
    for spending in ("obrien_fleming", "pocock"):
        spent = float(spent_alpha(0.3, 0.05, spending, two_sided=True))  # type: ignore[arg-type]
        first = spending_boundaries([0.3, 1.0], 0.05, spending=spending, two_sided=True)[0]  # type: ignore[arg-type]
        assert first == pytest.approx(stats.norm.isf(spent / 2), abs=1e-9)
    assert float(spent_alpha(0.5, 0.05, "pocock", two_sided=True)) == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2))


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
@pytest.mark.parametrize("two_sided", [True, False])
def test_spending_boundaries_spend_exactly_the_planned_alpha(spending: str, two_sided: bool) -> None:
    fractions = [0.15, 0.4, 0.55, 0.8, 1.0]  # unequal: Lan-DeMets allows any outcome-independent schedule
    bounds = spending_boundaries(fractions, 0.05, spending=spending, two_sided=two_sided)  # type: ignore[arg-type]
    per_look = crossing_probabilities(fractions, bounds, two_sided=two_sided)
    expected = np.diff(np.concatenate([[0.0], spent_alpha(np.array(fractions), 0.05, spending, two_sided=two_sided)]))  # type: ignore[arg-type]
    assert per_look == pytest.approx(expected, abs=1e-9)
    assert per_look.sum() == pytest.approx(0.05, abs=1e-9)


def test_crossing_probabilities_agree_with_scipy_multivariate_normal() -> None:
    """An independent computation: 1 - P(no crossing) = 1 - the MVN cdf of the correlated z statistics."""
    fractions, bounds, drift = np.array([0.25, 0.6, 1.0]), [2.6, 2.3, 2.0], 1.3
    mine = crossing_probabilities(fractions, bounds, drift, two_sided=False).sum()
    cov = np.sqrt(np.minimum.outer(fractions, fractions) / np.maximum.outer(fractions, fractions))
    mvn = stats.multivariate_normal(mean=drift * np.sqrt(fractions), cov=cov, abseps=1e-9, releps=1e-9)
    assert mine == pytest.approx(1.0 - mvn.cdf(np.array(bounds)), abs=1e-6)


def test_a_look_that_spends_nothing_cannot_reject() -> None:
    """Pocock spending is strictly increasing, but O'Brien-Fleming at t -> 0 spends ~0: an infinite boundary."""
    assert math.isinf(spending_boundaries([1e-6, 1.0], 0.05)[0])


@pytest.mark.parametrize("fractions", [[], [0.5, 0.5], [0.6, 0.4], [0.0, 1.0], [0.5, 1.2]])
def test_bad_fractions_are_refused(fractions: list[float]) -> None:
    with pytest.raises(ConfigError, match="information fractions"):
        spending_boundaries(fractions, 0.05)


def test_bad_alpha_and_spending_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, 1\); got 1.5"):
        spending_boundaries([1.0], 1.5)
    with pytest.raises(ConfigError, match="spending must be one of obrien_fleming, pocock; got 'linear'"):
        spending_boundaries([1.0], 0.05, spending="linear")  # type: ignore[arg-type]


def test_module_examples_run() -> None:
    assert doctest.testmod(boundaries_module).failed == 0
