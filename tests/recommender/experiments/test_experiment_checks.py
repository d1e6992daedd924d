"""Sample ratio, guardrails and multiplicity: against scipy/statsmodels and hand-computed cases."""

from __future__ import annotations

import doctest
import math

import pytest
from scipy import stats
from statsmodels.stats.proportion import test_proportions_2indep as proportions_2indep

import recommender.experiments.guardrail as guardrail_module
import recommender.experiments.multiple as multiple_module
import recommender.experiments.srm as srm_module
from recommender import ConfigError, DataError
from recommender.experiments import ArmData, correct, guardrail_check, srm_check


def test_srm_hand_computed_and_scipy() -> None:
    """5,100 / 4,900 against 50/50: chi2 = (100^2 + 100^2) / 5000 = 4.0, p = 0.0455."""
    result = srm_check({"control": 5100, "treatment": 4900}, {"control": 0.5, "treatment": 0.5})
    assert result.chi2 == pytest.approx(4.0) and result.p_value == pytest.approx(stats.chi2.sf(4.0, 1))
    assert result.mismatch is False and result.expected == {"control": 5000.0, "treatment": 5000.0}
    three = srm_check({"a": 3400, "b": 3300, "c": 3000}, {"a": 0.34, "b": 0.33, "c": 0.33}, alpha=0.01)
    reference = stats.chisquare([3400, 3300, 3000], [9700 * 0.34, 9700 * 0.33, 9700 * 0.33])
    assert three.p_value == pytest.approx(reference.pvalue) and three.mismatch is True


@pytest.mark.parametrize(
    ("observed", "allocation", "error", "message"),
    [
        ({"control": 10}, {"control": 0.5, "treatment": 0.5}, DataError, "the observed arms \\['control'\\] are not"),
        ({"control": 10, "treatment": -1}, {"control": 0.5, "treatment": 0.5}, DataError, "'treatment' must be a non-negative integer"),
        ({"control": 0, "treatment": 0}, {"control": 0.5, "treatment": 0.5}, DataError, "no units have been assigned yet"),
        ({"control": 1, "treatment": 1}, {"control": 0.5, "treatment": 0.6}, ConfigError, "allocation shares must sum to 1"),
        ({"control": 1}, {"control": 1.0}, ConfigError, "allocation must name at least two arms"),
    ],
)
def test_srm_refuses_bad_input(observed, allocation, error, message) -> None:
    with pytest.raises(error, match=message):
        srm_check(observed, allocation)


def test_guardrail_is_the_statsmodels_non_inferiority_test_for_a_rate() -> None:
    """Welch's t on 0/1 values with n - 1 variances is the Wald z test to within n / (n - 1)."""
    control, treatment = ArmData(20_000, 4000, 4000), ArmData(20_000, 3900, 3900)
    result = guardrail_check(control, treatment, margin=0.015, direction="higher_is_better", alpha=0.05)
    reference = proportions_2indep(3900, 20_000, 4000, 20_000, method="wald", value=-0.015, alternative="larger")
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-3)
    assert result.estimate == pytest.approx(-0.005) and result.non_inferior is True
    assert result.ci_low > -0.015 and math.isinf(result.ci_high)
    worse = guardrail_check(control, treatment, margin=0.004, direction="higher_is_better", alpha=0.05)
    assert worse.non_inferior is False  # -0.005 is beyond the margin: the harm is not ruled out


def test_guardrail_lower_is_better_by_hand() -> None:
    """Latency-like metric: means 100 and 101, sd 10 on 400 each: se = sqrt(2 * 100 / 400) = 0.7071,
    t = (1 - 3) / 0.7071 = -2.828 against margin 3, p = P(T < -2.828) ~ 0.0024."""
    def arm(mean: float) -> ArmData:
        return ArmData(400, 400 * mean, 399 * 100 + 400 * mean**2)

    result = guardrail_check(arm(100), arm(101), margin=3.0, direction="lower_is_better", alpha=0.025)
    assert result.statistic == pytest.approx(-2.0 / math.sqrt(0.5), rel=1e-9)
    assert result.df == pytest.approx(798.0)
    assert result.p_value == pytest.approx(stats.t.cdf(-2.0 / math.sqrt(0.5), 798))
    assert result.non_inferior is True and math.isinf(result.ci_low)
    assert result.ci_high == pytest.approx(1.0 + stats.t.isf(0.025, 798) * math.sqrt(0.5))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(margin=0.0), ConfigError, "margin must be a positive, finite difference"),
        (dict(direction="up"), ConfigError, "direction must be one of 'higher_is_better', 'lower_is_better'"),
        (dict(alpha=0.6), ConfigError, r"alpha must be in \(0, 0.5\) for a one-sided test"),
        (dict(control=ArmData(1, 1, 1)), DataError, "the control arm needs at least 2 units"),
        (dict(control=ArmData(10, 0, 0), treatment=ArmData(10, 0, 0)), DataError, "does not vary in either arm"),
    ],
)
def test_guardrail_refuses_bad_input(kwargs, error, message) -> None:
    args = dict(control=ArmData(100, 10, 10), treatment=ArmData(100, 12, 12), margin=0.01,
                direction="higher_is_better", alpha=0.05) | kwargs  # fmt: skip
    with pytest.raises(error, match=message):
        guardrail_check(**args)


def test_corrections_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert correct(p, "none") == p
    assert correct(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> running max 0.09, 0.5.
    assert correct(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # Benjamini-Hochberg: p_(i) * 4 / i from the top, running min: 0.5, 0.0533, 0.0533, 0.04.
    assert correct(p, "fdr_bh") == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert correct([], "holm") == []


def test_corrections_refuse_bad_input() -> None:
    with pytest.raises(ConfigError, match="method must be one of 'none', 'bonferroni', 'holm', 'fdr_bh'; got 'sidak'"):
        correct([0.1], "sidak")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"p_values\[1\] must be a probability in \[0, 1\]; got 1.2"):
        correct([0.1, 1.2], "holm")


@pytest.mark.parametrize("module", [srm_module, guardrail_module, multiple_module])
def test_module_examples_run(module) -> None:
    assert doctest.testmod(module).failed == 0
