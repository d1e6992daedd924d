"""One look at a time: the statistic against statsmodels, the mSPRT by hand, the decisions and the refusals."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import test_proportions_2indep as proportions_2indep

import recommender.experiments.analysis as analysis_module
import recommender.experiments.arms as arms_module
import recommender.experiments.msprt as msprt_module
from recommender import ConfigError, DataError
from recommender.experiments import (
    AnalysisPlan,
    ArmData,
    LookResult,
    analyze_look,
    rejection_looks,
    spending_boundaries,
    stopping_looks,
)
from recommender.experiments.boundaries import spent_alpha


def gs_plan(**kwargs) -> AnalysisPlan:
    args = dict(method="group_sequential", alpha=0.05, power=0.8, kind="proportion", mde=0.01,
                planned_n_per_arm=10_000, looks=4)  # fmt: skip
    return AnalysisPlan(**(args | kwargs))  # type: ignore[arg-type]


def test_proportion_statistic_is_statsmodels_wald() -> None:
    control, treatment = ArmData(5000, 500, 500), ArmData(5000, 560, 560)
    result = analyze_look(gs_plan(method="fixed", looks=1), control, treatment, look=1)
    reference = proportions_2indep(560, 5000, 500, 5000, method="wald", compare="diff")
    assert result.statistic == pytest.approx(abs(reference.statistic), rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.estimate == pytest.approx(0.012)
    assert result.boundary == pytest.approx(stats.norm.isf(0.025))
    assert result.decision == "accept"  # z = 1.94 < 1.96 at the only look
    se = 0.012 / reference.statistic
    assert (result.ci_low, result.ci_high) == pytest.approx((0.012 - 1.959964 * se, 0.012 + 1.959964 * se), abs=1e-6)


def test_mean_statistic_is_welch_with_the_sample_variance() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 2, 400), rng.normal(10.4, 3, 300)
    plan = gs_plan(method="fixed", kind="mean", mde=0.5, looks=1)
    result = analyze_look(
        plan, ArmData(400, a.sum(), (a**2).sum()), ArmData(300, b.sum(), (b**2).sum()), look=1
    )
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert result.statistic == pytest.approx(abs(welch.statistic), rel=1e-9)
    assert result.estimate == pytest.approx(b.mean() - a.mean())


def test_msprt_hand_computed() -> None:
    """p = 0.10 vs 0.12 on 1,000 each, tau = 0.01:

    V = 0.09/1000 + 0.1056/1000 = 1.956e-4, tau^2 = 1e-4,
    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))) with d = 0.02
           = sqrt(1.956 / 2.956) * exp(4e-8 / (2 * 1.956e-4 * 2.956e-4)) = 0.813453 * exp(0.345908) = 1.14963.
    """
    plan = gs_plan(method="msprt", looks=3)
    result = analyze_look(plan, ArmData(1000, 100, 100), ArmData(1000, 120, 120), look=1)
    v = 0.1 * 0.9 / 1000 + 0.12 * 0.88 / 1000
    by_hand = math.sqrt(v / (v + 1e-4)) * math.exp(1e-4 * 0.02**2 / (2 * v * (v + 1e-4)))
    assert by_hand == pytest.approx(1.14963, abs=1e-5)
    assert result.p_value == pytest.approx(1 / by_hand, rel=1e-9)
    assert result.decision == "continue" and result.alpha_spent == 0.05
    r = 1e-4 / v
    assert result.boundary == pytest.approx(math.sqrt((1 + r) / r * (2 * math.log(20) + math.log(1 + r))))


def test_msprt_p_value_and_interval_never_loosen() -> None:
    plan = gs_plan(method="msprt", looks=3)
    first = analyze_look(plan, ArmData(2000, 200, 200), ArmData(2000, 250, 250), look=1)
    second = analyze_look(plan, ArmData(4000, 400, 400), ArmData(4000, 410, 410), look=2, history=[first])
    assert second.p_value == first.p_value  # the new evidence is weaker; the running minimum holds
    assert second.ci_low >= first.ci_low and second.ci_high <= first.ci_high


def test_a_history_stored_as_json_with_nan_for_infinity_gives_the_same_look() -> None:
    """JSON has no infinity: a store that writes null for it and reads NaN back must not change the next look."""
    import dataclasses
    import json

    for alternative in ("larger", "smaller"):
        plan = gs_plan(method="msprt", looks=3, alternative=alternative)
        first = analyze_look(plan, ArmData(2000, 200, 200), ArmData(2000, 230, 230), look=1)
        stored = json.loads(json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                                        for k, v in dataclasses.asdict(first).items()}))  # fmt: skip
        restored = LookResult(**{k: (math.nan if v is None else v) for k, v in stored.items()})
        second = [analyze_look(plan, ArmData(4000, 400, 400), ArmData(4000, 445, 445), look=2, history=[h])
                  for h in (first, restored)]  # fmt: skip
        assert second[0] == second[1]


def test_one_sided_msprt_is_the_half_normal_mixture() -> None:
    """Lambda_one_sided = 2 Phi(d tau / sqrt(V (V + tau^2))) * Lambda_two_sided, by hand."""
    d, v, tau2 = 0.015, 1e-4, 4e-4
    two = math.exp(float(msprt_module.log_mixture_ratio(d, v, tau2)))
    one = math.exp(float(msprt_module.log_mixture_ratio(d, v, tau2, one_sided=True)))
    assert one == pytest.approx(2 * stats.norm.cdf(d * 0.02 / math.sqrt(v * (v + tau2))) * two, rel=1e-12)


def test_one_sided_msprt_far_on_the_wrong_side_is_a_p_value_of_one() -> None:
    """A half-normal mixture far on the null's side has Lambda < 1: the p-value is capped at 1, nothing rejects."""
    plan = gs_plan(method="msprt", alternative="larger")
    result = analyze_look(plan, ArmData(5000, 1500, 1500), ArmData(5000, 500, 500), look=1)
    assert result.p_value == 1.0 and result.decision == "continue"


def test_group_sequential_walks_through_its_looks_and_rejects_on_a_crossing() -> None:
    plan = gs_plan()
    history: list[LookResult] = []
    counts = [(2500, 250, 262), (5000, 500, 540), (7500, 750, 840)]
    for look, (n, c, t) in enumerate(counts, start=1):
        history.append(analyze_look(plan, ArmData(n, c, c), ArmData(n, t, t), look=look, history=history))
    assert [h.information_fraction for h in history] == pytest.approx([0.25, 0.5, 0.75])
    expected = spending_boundaries([0.25, 0.5, 0.75], 0.05)
    assert [h.boundary for h in history] == pytest.approx(expected)
    assert [h.decision for h in history] == ["continue", "continue", "reject"]  # z = 3.43 at look 3 > 2.34
    assert history[-1].ci_low > 0
    with pytest.raises(ConfigError, match="the experiment stopped at look 3 \\(reject\\); it has no look 4"):
        analyze_look(plan, ArmData(10_000, 1000, 1000), ArmData(10_000, 1100, 1100), look=4, history=history)


def test_repeated_p_value_by_hand_at_the_first_look() -> None:
    """At look 1 the design of level a rejects when the nominal p <= alpha_a(t_1); with Pocock spending
    alpha_a(t) = a ln(1 + (e - 1) t), so the repeated p-value is p_nominal / ln(1 + (e - 1) t_1)."""
    plan = gs_plan(spending="pocock")
    result = analyze_look(plan, ArmData(3000, 300, 300), ArmData(3000, 345, 345), look=1)
    nominal = 2 * stats.norm.sf(result.statistic)
    assert result.information_fraction == 0.3
    assert result.p_value == pytest.approx(nominal / math.log(1 + (math.e - 1) * 0.3), rel=1e-3)


def test_repeated_p_value_rejects_exactly_when_the_design_does() -> None:
    plan = gs_plan(looks=3, planned_n_per_arm=6000)
    first = analyze_look(plan, ArmData(2000, 200, 200), ArmData(2000, 215, 215), look=1)
    for successes in range(200, 320, 6):
        r = analyze_look(plan, ArmData(4000, 400, 400), ArmData(4000, 400 + successes - 200 + 30, 400 + successes - 200 + 30),
                         look=2, history=[first])  # fmt: skip
        assert (r.p_value <= 0.05) == (r.decision == "reject"), r
        assert r.p_value >= 2 * stats.norm.sf(r.statistic) - 1e-12  # never below the nominal p-value


def test_unequal_planned_arms_give_the_harmonic_information_fraction() -> None:
    plan = gs_plan(planned_n_per_arm=(7000, 3000))
    result = analyze_look(plan, ArmData(3500, 350, 350), ArmData(1500, 160, 160), look=1)
    assert result.information_fraction == pytest.approx((3500 * 1500 / 5000) / (7000 * 3000 / 10000))
    assert gs_plan(planned_n_per_arm=[7000, 3000]).planned_n_per_arm == (7000, 3000)


def test_the_last_look_spends_the_rest_and_accepts_without_a_crossing() -> None:
    plan = gs_plan(looks=2)
    first = analyze_look(plan, ArmData(4000, 400, 400), ArmData(4000, 410, 410), look=1)
    last = analyze_look(plan, ArmData(7000, 700, 700), ArmData(7000, 712, 712), look=2, history=[first])
    assert last.information_fraction == 1.0 and last.alpha_spent == pytest.approx(0.05)
    assert last.decision == "accept"


def test_non_inferiority_rejects_inferiority_within_the_margin() -> None:
    plan = gs_plan(method="fixed", looks=1, alternative="larger", non_inferiority_margin=0.02)
    result = analyze_look(plan, ArmData(5000, 1000, 1000), ArmData(5000, 990, 990), look=1)
    reference = proportions_2indep(990, 5000, 1000, 5000, method="wald", value=-0.02, alternative="larger")
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.decision == "reject" and math.isinf(result.ci_high) and result.ci_low > -0.02


def test_fixed_design_interim_looks_never_decide() -> None:
    plan = gs_plan(method="fixed", looks=3)
    result = analyze_look(plan, ArmData(3000, 300, 300), ArmData(3000, 400, 400), look=1)
    assert result.p_value < 1e-4 and result.decision == "continue" and math.isinf(result.boundary)
    assert result.alpha_spent == 0.0


def test_rejection_looks_makes_the_same_decisions_as_analyze_look() -> None:
    rng = np.random.default_rng(3)
    plan = gs_plan(looks=3, planned_n_per_arm=3000)
    for method, futility in (("group_sequential", None), ("group_sequential", 0.3), ("msprt", None), ("fixed", None)):
        p = AnalysisPlan(**{**plan.__dict__, "method": method, "futility_power": futility})
        n_c = np.cumsum(rng.binomial(2000, 0.5, (60, 3)), axis=1)
        n_t = np.cumsum(rng.binomial(2000, 0.5, (60, 3)), axis=1)
        s_c = np.cumsum(rng.binomial(1000, 0.1, (60, 3)), axis=1)
        s_t = np.cumsum(rng.binomial(1000, 0.125, (60, 3)), axis=1)
        vectorised = rejection_looks(p, n_c, s_c, s_c, n_t, s_t, s_t)
        stopped_at, _ = stopping_looks(p, n_c, s_c, s_c, n_t, s_t, s_t)
        for e in range(60):
            history: list[LookResult] = []
            for k in range(3):
                r = analyze_look(p, ArmData(int(n_c[e, k]), int(s_c[e, k]), int(s_c[e, k])),
                                 ArmData(int(n_t[e, k]), int(s_t[e, k]), int(s_t[e, k])), look=k + 1, history=history)  # fmt: skip
                history.append(r)
                if r.decision != "continue":
                    break
            one_at_a_time = history[-1].look if history[-1].decision == "reject" else 0
            assert vectorised[e] == one_at_a_time, (method, e)
            assert stopped_at[e] == history[-1].look, (method, e)
        assert 0 < (vectorised > 0).sum() < 60


def test_conditional_power_agrees_with_simulating_the_rest_of_the_experiment() -> None:
    """From look 1 of 2 (half the data), draw the second half under the planned effect many times and count
    the final z statistics beyond the final boundary: the share is the conditional power the look reports."""
    plan = gs_plan(kind="mean", mde=0.1, planned_n_per_arm=2000, looks=2, futility_power=0.2)
    control, treatment = ArmData(1000, 1000 * 5.0, 999 * 1.0 + 1000 * 25.0), ArmData(1000, 1000 * 5.02, 999 * 1.0 + 1000 * 5.02**2)
    result = analyze_look(plan, control, treatment, look=1)
    rng = np.random.default_rng(1)
    second_half = rng.normal(0.1, math.sqrt(2 / 1000), 400_000)  # the difference of two means of 1,000 with sd 1
    final_z = (0.02 + second_half) / 2 / math.sqrt(2 / 2000)
    final_boundary = spending_boundaries([0.5, 1.0], 0.05)[-1]
    simulated = np.mean(np.abs(final_z) >= final_boundary)
    assert result.conditional_power == pytest.approx(simulated, abs=0.003)
    assert result.decision == ("futility" if simulated < 0.2 else "continue")


def test_futility_stops_an_experiment_going_nowhere() -> None:
    plan = gs_plan(futility_power=0.2)
    nowhere = analyze_look(plan, ArmData(5000, 500, 500), ArmData(5000, 497, 497), look=1)
    assert nowhere.decision == "futility" and nowhere.conditional_power < 0.2
    assert nowhere.alpha_spent == pytest.approx(float(spent_alpha(0.5, 0.05, "obrien_fleming", two_sided=True)))
    promising = analyze_look(plan, ArmData(5000, 500, 500), ArmData(5000, 540, 540), look=1)
    assert promising.decision == "continue" and promising.conditional_power > 0.2
    with pytest.raises(ConfigError, match="the experiment stopped at look 1 \\(futility\\); it has no look 2"):
        analyze_look(plan, ArmData(7500, 750, 750), ArmData(7500, 750, 750), look=2, history=[nowhere])
    with pytest.raises(ConfigError, match="futility_power applies to group-sequential designs"):
        gs_plan(method="msprt", futility_power=0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="bayes"), "method must be one of"),
        (dict(alpha=0.0), r"AnalysisPlan.alpha must be a number in \(0, 1\); got 0.0"),
        (dict(mde=0), "AnalysisPlan.mde must be a positive, finite number; got 0"),
        (dict(planned_n_per_arm=1), r"AnalysisPlan.planned_n_per_arm must be an integer >= 2 or a \(control, treatment\) pair"),
        (dict(planned_n_per_arm=(10, 20, 30)), "AnalysisPlan.planned_n_per_arm must be an integer >= 2 or a"),
        (dict(non_inferiority_margin=0.01), "a non-inferiority test is one-sided"),
        (dict(spending="linear"), "spending must be one of"),
        (dict(looks=101), "looks must be an integer from 1 to 100; got 101"),
        (dict(futility_power=1.0), r"AnalysisPlan.futility_power must be a number in \(0, 1\) or None; got 1.0"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        gs_plan(**kwargs)


def test_bad_looks_and_data_are_refused_with_located_messages() -> None:
    plan, arm = gs_plan(), ArmData(100, 10, 10)
    with pytest.raises(ConfigError, match="look 2 needs the results of the 1 earlier looks; got 0"):
        analyze_look(plan, arm, arm, look=2)
    with pytest.raises(ConfigError, match="the plan has 4 looks; look 5 is beyond its last"):
        analyze_look(plan, arm, arm, look=5, history=[])
    with pytest.raises(DataError, match="the treatment arm needs at least 2 units to be analysed; got n=1"):
        analyze_look(plan, arm, ArmData(1, 1, 1), look=1)
    with pytest.raises(DataError, match="the control arm does not hold a proportion metric"):
        analyze_look(plan, ArmData(100, 10, 7), arm, look=1)
    with pytest.raises(DataError, match="at look 1 the metric does not vary in either arm"):
        analyze_look(plan, ArmData(100, 0, 0), ArmData(100, 0, 0), look=1)
    first = analyze_look(plan, ArmData(3000, 300, 300), ArmData(3000, 330, 330), look=1)
    with pytest.raises(DataError, match="look 2 has no more information than look 1"):
        analyze_look(plan, ArmData(3000, 300, 300), ArmData(3000, 330, 330), look=2, history=[first])
    with pytest.raises(DataError, match=r"ArmData.n must be a non-negative integer \(a count of units\); got -1"):
        ArmData(-1, 0, 0)
    with pytest.raises(DataError, match="ArmData is inconsistent: total\\^2 = 100 exceeds n \\* total_sq = 20"):
        ArmData(2, 10.0, 10.0)
    with pytest.raises(DataError, match="ArmData.total must be finite; got nan"):
        ArmData(2, math.nan, 1.0)


@pytest.mark.parametrize("module", [analysis_module, arms_module, msprt_module])
def test_module_examples_run(module) -> None:
    assert doctest.testmod(module).failed == 0
