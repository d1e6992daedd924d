"""Arm-level guardrails: the ratio's delta method by hand, the gap's bootstrap against scipy's, and A/A false alarms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recommender.errors import ConfigError, DataError
from recommender.experiments import exposure_gap, gap_noninferiority, group_gap, quality_gap_noninferiority, ratio_noninferiority


def test_ratio_delta_method_matches_a_hand_computation():
    # control: R = 2/40 = 0.05; residuals y - R d = -0.5, 0.5, -0.5, 0.5 -> sum of squares 1;
    # Var = 1 / 40^2 * 4/3 = 1/1200. Treatment: R = 6/40 = 0.15, residuals -1.5, 0.5, 0.5, 0.5 -> 3; Var = 3/1200.
    r = ratio_noninferiority([0, 1, 0, 1], [10] * 4, [0, 2, 2, 2], [10] * 4, margin=0.2, direction="lower_is_better", alpha=0.05)
    assert r.control == pytest.approx(0.05) and r.treatment == pytest.approx(0.15)
    se = math.sqrt(4 / 1200)
    assert r.se == pytest.approx(se)
    assert r.ci_high == pytest.approx(0.10 + 1.6448536269514722 * se)
    assert r.p_value == pytest.approx(stats.norm.sf((0.2 - 0.10) / se))
    assert r.non_inferior is (r.ci_high < 0.2) and r.non_inferior is (r.p_value < 0.05)
    assert r.harm_significant is (0.10 - 1.6448536269514722 * se > 0)


def test_ratio_delta_method_agrees_with_a_cluster_bootstrap():
    rng = np.random.default_rng(3)
    den_c, den_t = rng.integers(5, 30, 800).astype(float), rng.integers(5, 30, 800).astype(float)
    num_c, num_t = rng.binomial(den_c.astype(int), 0.04).astype(float), rng.binomial(den_t.astype(int), 0.05).astype(float)
    r = ratio_noninferiority(num_c, den_c, num_t, den_t, margin=0.02, direction="lower_is_better", alpha=0.05)
    boot = np.empty(4000)
    for b in range(boot.size):
        i, j = rng.integers(0, 800, 800), rng.integers(0, 800, 800)
        boot[b] = num_t[j].sum() / den_t[j].sum() - num_c[i].sum() / den_c[i].sum()
    assert r.se == pytest.approx(boot.std(ddof=1), rel=0.06)


def test_exposure_gap_by_hand():
    assert float(exposure_gap(np.array([1.0, 1.0, 2.0]), np.array([0.25, 0.25, 0.5]))) == 0.0
    # shares 0.6, 0.4 against 0.2, 0.8: 0.5 * (0.4 + 0.4)
    assert float(exposure_gap(np.array([6.0, 4.0]), np.array([0.2, 0.8]))) == pytest.approx(0.4)


def _arm(rng: np.random.Generator, n: int, probs: np.ndarray, k: int = 10) -> np.ndarray:
    """Per subject, the exposure (1/log2(rank+1)) each provider group gets in a list of ``k`` items."""
    weights = 1.0 / np.log2(np.arange(2, k + 2))
    groups = rng.choice(probs.size, size=(n, k), p=probs)
    out = np.zeros((n, probs.size))
    for g in range(probs.size):
        out[:, g] = ((groups == g) * weights).sum(axis=1)
    return out


def test_gap_bound_matches_scipy_bootstrap_percentile():
    rng = np.random.default_rng(7)
    target = np.array([0.5, 0.3, 0.2])
    c, t = _arm(rng, 400, np.array([0.6, 0.3, 0.1])), _arm(rng, 400, np.array([0.62, 0.28, 0.1]))
    ours = gap_noninferiority(c, t, target, margin=0.05, alpha=0.05, n_boot=4000, random_state=1)

    def difference(ci, ti, axis=-1):
        def gap(idx_rows, matrix):
            return exposure_gap(matrix[idx_rows.astype(int)].sum(axis=-2), target)
        return gap(ti, t) - gap(ci, c)

    ref = stats.bootstrap(
        (np.arange(400), np.arange(400)), difference, paired=False, vectorized=True, confidence_level=0.90,
        method="percentile", n_resamples=4000, random_state=2,
    )  # the upper end of a 90% two-sided percentile interval is the one-sided 95% bound
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert ours.estimate == pytest.approx(difference(np.arange(400)[None], np.arange(400)[None])[0])


def test_gap_false_alarm_rate_on_aa_data_is_at_most_alpha():
    """A/A: both arms serve the same provider mix; harm is signalled in at most alpha (+ simulation slack) of them."""
    rng = np.random.default_rng(11)
    target, probs = np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.25, 0.15])
    alarms, runs, alpha = 0, 600, 0.05
    for r in range(runs):
        c, t = _arm(rng, 200, probs), _arm(rng, 200, probs)
        alarms += gap_noninferiority(c, t, target, margin=0.05, alpha=alpha, n_boot=200, random_state=r).harm_significant
    # binomial sd at 600 runs is 0.0089: alpha + 2.8 sd
    assert alarms / runs <= alpha + 0.025


def test_gap_size_at_the_margin_is_at_most_alpha():
    """When the treatment is exactly ``margin`` worse, non-inferiority is (wrongly) shown at most alpha of the time."""
    rng = np.random.default_rng(12)
    target = np.array([0.5, 0.5])
    control, treatment = np.array([0.6, 0.4]), np.array([0.65, 0.35])  # population gaps 0.10 and 0.15
    shown, runs, alpha = 0, 600, 0.05
    for r in range(runs):
        c, t = _arm(rng, 200, control), _arm(rng, 200, treatment)
        shown += gap_noninferiority(c, t, target, margin=0.05, alpha=alpha, n_boot=200, random_state=r).non_inferior
    assert shown / runs <= alpha + 0.025  # 1000 runs of this design gave 0.047


def test_ratio_false_alarm_rate_on_aa_data_is_at_most_alpha():
    rng = np.random.default_rng(13)
    runs, alpha, n = 2000, 0.05, 300
    den_c, den_t = rng.integers(1, 20, (runs, n)), rng.integers(1, 20, (runs, n))
    num_c, num_t = rng.binomial(den_c, 0.03), rng.binomial(den_t, 0.03)
    alarms = sum(
        ratio_noninferiority(num_c[r], den_c[r], num_t[r], den_t[r], margin=0.01, direction="lower_is_better", alpha=alpha).harm_significant
        for r in range(runs)
    )
    assert alarms / runs <= alpha + 0.012  # binomial sd at 2000 runs is 0.0049


def test_gap_detects_a_real_harm():
    rng = np.random.default_rng(5)
    target = np.array([0.5, 0.5])
    c, t = _arm(rng, 500, np.array([0.5, 0.5])), _arm(rng, 500, np.array([0.8, 0.2]))
    r = gap_noninferiority(c, t, target, margin=0.05, alpha=0.05, n_boot=500)
    assert not r.non_inferior and r.harm_significant and r.estimate > 0.2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"margin": 0}, ConfigError, "margin must be a positive"),
        ({"alpha": 0.6}, ConfigError, "alpha must be in (0, 0.5)"),
        ({"direction": "up"}, ConfigError, "direction must be one of"),
        ({"n_boot": 10}, ConfigError, "n_boot must be an integer >= 100"),
        ({"target": [0.5, 0.6]}, DataError, "summing to 1"),
        ({"control": np.ones((1, 2))}, DataError, "at least 2 subjects"),
        ({"treatment": np.ones((3, 3))}, DataError, "(subjects, 2 groups)"),
        ({"control": -np.ones((3, 2))}, DataError, "finite and non-negative"),
    ],
)
def test_gap_refuses_bad_input(kwargs, error, message):
    args = {"control": np.ones((3, 2)), "treatment": np.ones((3, 2)), "target": [0.5, 0.5], "margin": 0.1, "alpha": 0.05, **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        gap_noninferiority(args.pop("control"), args.pop("treatment"), args.pop("target"), **args)


def test_ratio_refuses_bad_input():
    with pytest.raises(DataError, match="denominator sums to 0"):
        ratio_noninferiority([0, 0], [0, 0], [0, 1], [1, 1], margin=0.1, direction="lower_is_better", alpha=0.05)
    with pytest.raises(DataError, match="differ in length"):
        ratio_noninferiority([0, 0], [1, 1, 1], [0, 1], [1, 1], margin=0.1, direction="lower_is_better", alpha=0.05)
    with pytest.raises(DataError, match="no standard error"):
        ratio_noninferiority([0, 0], [1, 1], [0, 0], [1, 1], margin=0.1, direction="lower_is_better", alpha=0.05)


def test_clustering_many_subjects_keeps_the_bootstrap_bound():
    """Summing 20,000 subjects into 2,000 random clusters leaves the bound where the subject bootstrap puts it."""
    rng = np.random.default_rng(21)
    target = np.array([0.4, 0.6])
    c, t = _arm(rng, 20_000, np.array([0.5, 0.5])), _arm(rng, 20_000, np.array([0.52, 0.48]))
    by_subject = gap_noninferiority(c, t, target, margin=0.05, alpha=0.05, n_boot=400, clusters=None)
    by_cluster = gap_noninferiority(c, t, target, margin=0.05, alpha=0.05, n_boot=400, clusters=2000)
    assert by_cluster.n_control == 20_000 and by_cluster.estimate == by_subject.estimate
    assert by_cluster.se == pytest.approx(by_subject.se, rel=0.15)
    assert by_cluster.ci_high == pytest.approx(by_subject.ci_high, abs=0.4 * by_subject.se)  # two independent 400-replicate quantiles


def _clicks(counts: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per group ``(subjects, clickers)``: a 0/1 value per subject and its group code."""
    values = np.concatenate([np.r_[np.ones(k), np.zeros(n - k)] for n, k in counts.values()])
    codes = np.concatenate([np.full(n, g, dtype=np.int64) for g, (n, _) in counts.items()])
    return values, codes


def test_quality_gap_by_hand():
    # control: group 0 clicks 20 of 40 (0.5), group 1 16 of 40 (0.4): gap 0.1; treatment: 24 of 40 (0.6), 12 of 40 (0.3): gap 0.3
    c, gc = _clicks({0: (40, 20), 1: (40, 16)})
    t, gt = _clicks({0: (40, 24), 1: (40, 12)})
    r = quality_gap_noninferiority(c, gc, t, gt, groups=2, margin=0.05, alpha=0.05, n_boot=4000, random_state=3)
    assert (r.control, r.treatment, r.estimate) == (pytest.approx(0.1), pytest.approx(0.3), pytest.approx(0.2))
    assert (r.n_control, r.n_treatment, r.method, r.n_boot) == (80, 80, "bootstrap", 4000)
    # four independent means: the gap difference's se is about sqrt(sum p(1-p)/40) = sqrt(0.88/40) = 0.148
    assert r.se == pytest.approx(math.sqrt((0.25 + 0.24 + 0.24 + 0.21) / 40), rel=0.15)
    assert r.ci_low == -math.inf and r.estimate < r.ci_high == pytest.approx(0.2 + 1.6448536269514722 * r.se, abs=0.06)
    assert not r.non_inferior and r.p_value > 0.05 and not r.harm_significant  # 80 subjects an arm: harm not shown either
    assert float(group_gap(np.array([[20.0, 16.0], [24.0, 12.0]]), np.array([[40.0, 40.0], [40.0, 40.0]]))[1]) == pytest.approx(0.3)


def test_quality_gap_holds_for_equal_arms_and_its_bound_matches_the_normal_approximation():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(2), 3000)
    p = np.where(g == 0, 0.5, 0.3)  # the groups are far apart: the gap is smooth here, |m0 - m1| = m0 - m1
    c, t = rng.binomial(1, p).astype(float), rng.binomial(1, p).astype(float)
    r = quality_gap_noninferiority(c, g, t, g, groups=2, margin=0.1, alpha=0.05, n_boot=4000, random_state=1)
    se = math.sqrt(2 * (0.25 / 3000 + 0.21 / 3000))
    assert r.se == pytest.approx(se, rel=0.08) and r.non_inferior and r.p_value < 0.05
    up = quality_gap_noninferiority(c, g, t, g, groups=2, margin=0.1, alpha=0.05, direction="higher_is_better", n_boot=1000, random_state=1)
    assert up.ci_high == math.inf and math.isfinite(up.ci_low)
    # clusters of subjects: the same figures, the same spread
    clustered = quality_gap_noninferiority(c, g, t, g, groups=2, margin=0.1, alpha=0.05, n_boot=4000, random_state=1, clusters=500)
    assert clustered.estimate == pytest.approx(r.estimate) and clustered.se == pytest.approx(r.se, rel=0.15)


def test_quality_gap_refuses_groups_too_small_to_compare():
    values, codes = np.ones(10), np.r_[np.zeros(9, dtype=np.int64), 1]
    with pytest.raises(DataError, match="at least 2 subjects in each arm"):
        quality_gap_noninferiority(values, codes, values, codes, groups=2, margin=0.1, alpha=0.05)
    with pytest.raises(DataError, match="2 or more groups"):
        quality_gap_noninferiority(values, np.zeros(10, dtype=np.int64), values, np.zeros(10, dtype=np.int64), groups=1, margin=0.1, alpha=0.05)
    with pytest.raises(DataError, match=r"group codes must be integers in \[0, 2\)"):
        quality_gap_noninferiority(values, np.full(10, 2), values, codes, groups=2, margin=0.1, alpha=0.05)
