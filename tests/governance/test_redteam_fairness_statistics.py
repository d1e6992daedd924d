"""Red team: consumer-gap rules that a reviewer can defend, under labels that mean nothing.

Holes pinned here (each test fails on the code before the correction):

* a consumer-gap rule judged on intervals compared every pair of groups at 95% with no
  correction: with five groups and nothing to find, it failed about a third of the time;
* the pairs' bootstrap percentile intervals fell short of their coverage for small,
  skewed groups;
* the evidence did not say how the pairs were tested, nor with which p-values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import governance.checks  # noqa: F401  (registers the checks)
from governance.checks._significance import adjust, gap_test
from governance.collect_fairness import _group_metric
from governance.facts import AuditFacts, FairnessFacts, GroupFigure, GroupMetricFacts
from governance.registry import get_check
from recommender import fairness as F
from recommender.significance import difference_interval, ratio_interval

ALPHA = 0.05
SIZES = np.array([40, 60, 90, 150, 260])
"""Five groups of unequal sizes, all above the rules' default min_group_size (30): ten pairs."""


def margin(rate: float, n: int) -> float:
    """Three binomial standard errors of a rate estimated from ``n`` draws."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / n)


def per_user_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """NDCG-like values: most users 0, the others spread over (0, 1), skewed."""
    return np.where(rng.random(n) < 0.55, 0.0, rng.beta(2.0, 3.0, n))


def permuted_groups(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.array(list("abcde"), dtype=object), SIZES)
    return per_user_values(rng, int(SIZES.sum())), rng.permutation(labels)


def facts_of(values: np.ndarray, labels: np.ndarray) -> AuditFacts:
    """The facts a consumer-gap rule reads, from each group's size, mean and standard deviation."""
    groups = {}
    for g in sorted(set(labels)):
        x = values[labels == g]
        groups[g] = GroupFigure(n=len(x), value=float(x.mean()), sd=float(x.std(ddof=1)))
    metric = GroupMetricFacts(groups=groups)
    return AuditFacts(fairness=FairnessFacts(consumer={"g": {"ndcg": metric}}))


def consumer_gap(facts: AuditFacts, **params: Any):
    cls = get_check("consumer_gap")
    config = cls.Config.model_validate({"attribute": "g", "judge": "ci", **params})
    return cls().evaluate(config, facts, None)


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_under_permuted_labels_the_rule_fails_at_most_at_its_nominal_rate(correction):
    """Hole: ten uncorrected pairs at 95% failed a rule with nothing to find ~35% of the time.

    The labels are permuted, so every gap is noise; the strictest bounds (no gap at all, a ratio
    of 1) make every pair a test at level alpha, twenty hypotheses per rule. The rule, with its correction, must fail at most at alpha
    (plus three binomial standard errors of the simulation)."""
    rng = np.random.default_rng(20261205)
    n_sims = 1500
    fails = sum(
        consumer_gap(
            facts_of(*permuted_groups(rng)), correction=correction, max_difference=0.0, min_ratio=1.0
        ).status.value
        == "fail"
        for _ in range(n_sims)
    )
    rate = fails / n_sims
    assert rate <= ALPHA + margin(ALPHA, n_sims), f"{correction}: failed {rate:.3f} of rules with nothing to find"


def test_a_real_gap_is_still_found():
    """The correction must not make the rule blind: a planted gap of 0.1 in one group fails it."""
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(50):
        values, labels = permuted_groups(rng)
        values = np.where(labels == "e", np.clip(values + 0.1, 0, 1), values)
        found += consumer_gap(facts_of(values, labels), max_difference=0.0).status.value == "fail"
    assert found >= 45


def test_pair_intervals_cover_the_true_gap_under_permuted_labels():
    """Hole: the pairs' percentile bootstrap intervals covered the true gap (0) ~93% of the time at 95%.

    Every interval of every pair is checked, for the difference (true value 0) and the ratio (true
    value 1). Pairs of one dataset share groups, so the margin counts datasets, not pairs."""
    rng = np.random.default_rng(11)
    n_sims, covered_diff, covered_ratio, total = 600, 0, 0, 0
    for _ in range(n_sims):
        values, labels = permuted_groups(rng)
        stats = {
            g: (values[labels == g].mean(), values[labels == g].std(ddof=1), int((labels == g).sum())) for g in "abcde"
        }
        for a in "abcde":
            for b in "abcde":
                if a >= b:
                    continue
                (ma, sa, na), (mb, sb, nb) = stats[a], stats[b]
                args = (ma, sa / math.sqrt(na), na, mb, sb / math.sqrt(nb), nb, 0.95)
                low, high = difference_interval(*args)
                r_low, r_high = ratio_interval(*args)
                covered_diff += low <= 0.0 <= high
                covered_ratio += r_low <= 1.0 <= r_high
                total += 1
    for name, covered in (("difference", covered_diff), ("ratio", covered_ratio)):
        coverage = covered / total
        assert coverage >= 0.95 - margin(0.05, n_sims), f"{name} intervals covered {coverage:.3f}"


def test_the_facts_carry_the_same_intervals_and_spreads_the_rule_tests_with():
    """The path an audit takes (compare_groups -> facts) gives each group its sd, and each pair the Welch and
    Fieller intervals of those figures: the simulations above exercise the same statistics."""
    rng = np.random.default_rng(3)
    values, labels = permuted_groups(rng)
    report = F.compare_groups({"ndcg": values}, labels, attribute="g", n_boot=50)["ndcg"]
    facts = _group_metric(report)
    direct = facts_of(values, labels).fairness.consumer["g"]["ndcg"]
    for g, figure in facts.groups.items():
        assert (figure.n, figure.value, figure.sd) == pytest.approx(
            (direct.groups[g].n, direct.groups[g].value, direct.groups[g].sd), rel=1e-12
        )
    for pair in facts.pairs:
        h, lo = facts.groups[pair.higher], facts.groups[pair.lower]
        args = (h.value, h.sd / math.sqrt(h.n), h.n, lo.value, lo.sd / math.sqrt(lo.n), lo.n, 0.95)
        assert pair.difference_ci == pytest.approx(difference_interval(*args), rel=1e-12)
        assert pair.ratio_ci == pytest.approx(ratio_interval(*args), rel=1e-12)


def test_welch_p_values_agree_with_scipy():
    """Cross-check on raw data: the rule's p-value is scipy's Welch test (a bound shifts the lower group)."""
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(5)
    a, b = per_user_values(rng, 45) + 0.05, per_user_values(rng, 120)
    fig_a = GroupFigure(n=45, value=float(a.mean()), sd=float(a.std(ddof=1)))
    fig_b = GroupFigure(n=120, value=float(b.mean()), sd=float(b.std(ddof=1)))
    for bound in (0.0, 0.02):
        ours = gap_test(fig_a, fig_b, bound=bound, kind="difference", confidence=0.95)
        theirs = ttest_ind(a, b + bound, equal_var=False)
        assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-10)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-8)
    # A ratio bound r tests lower - r * higher: Welch on (b, r * a).
    ours = gap_test(fig_a, fig_b, bound=0.9, kind="ratio", confidence=0.95)
    theirs = ttest_ind(0.9 * a, b, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-8)


def test_holm_and_benjamini_hochberg_by_hand():
    """Four p-values adjusted by hand (Holm 1979, Table; Benjamini & Hochberg 1995, step-up)."""
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max.
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted times 4/1, 4/2, 4/3, 4/4 -> 0.02, 0.02, 0.04, 0.04 -> running min from the top.
    assert adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust([0.2, 0.5], "holm") == pytest.approx([0.4, 0.5])
    assert adjust([], "bh") == []


def test_the_evidence_states_the_method_and_both_p_values():
    """Hole: a reviewer could not see how the pairs were judged."""
    rng = np.random.default_rng(9)
    result = consumer_gap(facts_of(*permuted_groups(rng)), max_difference=0.0, correction="bh")
    tests = result.evidence["tests"]
    assert tests["correction"] == "bh" and tests["alpha"] == 0.05 and tests["decides"] is True
    assert tests["correction_method"] == "Benjamini-Hochberg step-up (false discovery rate)"
    assert len(tests["hypotheses"]) == 10
    raw = [h["p_value"] for h in tests["hypotheses"]]
    assert [h["p_adjusted"] for h in tests["hypotheses"]] == pytest.approx(adjust(raw, "bh"))
    assert "Benjamini-Hochberg-adjusted over 10 hypotheses" in result.message
    assert (
        get_check("consumer_gap").Config.model_validate({"attribute": "g", "max_difference": 0.1}).correction == "holm"
    )


def test_facts_written_by_hand_with_pair_intervals_only_are_still_tested_and_corrected():
    """Groups without a spread but pairs with intervals (a policy-test fixture): each pair is tested from its own
    interval (normal, se = half-width / 1.96), in the same family as the others, never judged on its point alone."""
    groups = {g: GroupFigure(n=100, value=v) for g, v in (("a", 0.3), ("b", 0.2), ("c", 0.2))}
    pairs = [
        {"higher": "a", "lower": "b", "difference": 0.1, "difference_ci": (0.05, 0.15), "ratio": 2 / 3},
        {"higher": "a", "lower": "c", "difference": 0.1, "difference_ci": (-0.2, 0.4), "ratio": 2 / 3},
        {"higher": "b", "lower": "c", "difference": 0.0, "difference_ci": (-0.2, 0.2), "ratio": 1.0},
    ]
    metric = GroupMetricFacts(groups=groups, pairs=pairs)
    facts = AuditFacts(fairness=FairnessFacts(consumer={"g": {"ndcg": metric}}))
    result = consumer_gap(facts, max_difference=0.0)
    hypotheses = result.evidence["tests"]["hypotheses"]
    assert [h["test"] for h in hypotheses] == ["interval"] * 3
    first = hypotheses[0]
    assert first["statistic"] == pytest.approx(0.1 / (0.1 / (2 * 1.959963984540054)))
    assert first["p_adjusted"] == pytest.approx(3 * first["p_value"])
    assert result.status.value == "fail"  # a - b: z 3.92, p 9e-5, Holm 3e-4
    assert consumer_gap(facts, max_difference=0.06).status.value == "pass"  # z 1.57: not beyond noise
