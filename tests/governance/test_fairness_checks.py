"""The fairness checks on tiny facts where the answer is obvious, then the whole path on
synthetic data with a planted provider exposure bias.

Figures in the hand-made facts are exact in binary floating point (0.0625, 0.8125, ...),
so "exactly at the bound" really is.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from governance.checks.fairness import NO_FAIRNESS
from governance.collect_fairness import MATRIX_MISMATCH, NO_MATRICES, fairness_facts
from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import PolicyError, PolicyPack, parse_pack
from governance.registry import CheckResult, get_check
from recommender.als import ALSRecommender
from recommender.errors import ConfigError, DataError
from recommender.evaluate import evaluate_model
from recommender.split import SplitConfig, split, train_test_matrices
from recommender.synthetic import SyntheticSpec, generate


def pair(higher: str, lower: str, diff: float, diff_ci: list, ratio: float, ratio_ci: list) -> dict:
    return {
        "higher": higher,
        "lower": lower,
        "difference": diff,
        "difference_ci": diff_ci,
        "ratio": ratio,
        "ratio_ci": ratio_ci,
    }


def parity(di: float, di_ci: list, spd: float, spd_ci: list, groups: dict | None = None) -> dict:
    out = {"disparate_impact": di, "disparate_impact_ci": di_ci, "statistical_parity_difference": spd,
           "statistical_parity_difference_ci": spd_ci}  # fmt: skip
    return {**out, "groups": groups} if groups else out


FAIRNESS: dict[str, Any] = {
    "model": "als",
    "k": 10,
    "n_users": 910,
    "consumer": {
        "gender": {
            "ndcg": {
                "overall": 0.28,
                "groups": {
                    "F": {"n": 400, "value": 0.25, "ci": [0.2, 0.3]},
                    "M": {"n": 500, "value": 0.3125, "ci": [0.29, 0.33]},
                    "X": {"n": 10, "value": 0.125, "ci": [0.0, 0.3]},
                },
                "difference": 0.1875,
                "ratio": 0.4,
                "pairs": [
                    pair("M", "F", 0.0625, [0.0, 0.125], 0.8, [0.625, 1.0]),
                    pair("F", "X", 0.125, [-0.0625, 0.25], 0.5, [0.0, 1.25]),
                    pair("M", "X", 0.1875, [0.0625, 0.3125], 0.4, [0.0, 0.9]),
                ],
            }
        }
    },
    "outcomes": {
        "gender": {
            "positive_rate": {
                "F": {"n": 400, "value": 0.5},
                "M": {"n": 500, "value": 0.625},
                "X": {"n": 10, "value": 0.25},
            },
            "parity": {
                "M": parity(
                    0.75,
                    [0.6875, 0.8125],
                    -0.15625,
                    [-0.25, -0.0625],
                    groups={
                        "F": parity(0.8, [0.75, 0.875], -0.125, [-0.1875, -0.0625]),
                        "X": parity(0.4, [0.125, 1.125], -0.375, [-0.5, 0.0625]),
                    },
                ),
            },
        }
    },
    "provider_attribute": "provider_group",
    "exposure": {
        "log": {
            "gini": 0.75,
            "coverage": 0.5,
            "groups": {
                "major": {
                    "n_items": 300,
                    "item_share": 0.3,
                    "exposure_share": 0.625,
                    "exposure_share_ci": [0.5625, 0.6875],
                    "relevance_share": 0.5,
                    "exposure_ratio": 1.25,
                    "exposure_ratio_ci": [1.125, 1.375],
                    "coverage": 0.875,
                    "gini": 0.5,
                },
                "independent": {
                    "n_items": 700,
                    "item_share": 0.7,
                    "exposure_share": 0.375,
                    "exposure_share_ci": [0.3125, 0.4375],
                    "relevance_share": 0.5,
                    "exposure_ratio": 0.75,
                    "exposure_ratio_ci": [0.625, 0.875],
                    "coverage": 0.25,
                    "gini": 0.8125,
                },
            },
        }
    },
    "popularity": {
        "arp": 125.0,
        "profile_popularity": 100.0,
        "catalog_popularity": 50.0,
        "arp_ratio": 1.25,
        "arp_ratio_ci": [1.125, 1.375],
        "arp_catalog_ratio": 2.5,
        "long_tail_share": 0.0625,
        "long_tail_share_ci": [0.03125, 0.09375],
        "recall_gap": 0.375,
        "recall_gap_ci": [0.25, 0.5],
    },
    "calibration": {"mean_kl": 0.5, "mean_kl_ci": [0.375, 0.625], "n_users": 900},
}


def run(check: str, params: dict[str, Any], fairness: dict[str, Any] | None = FAIRNESS) -> CheckResult:
    """Evaluate ``check`` directly, the way the engine calls it."""
    cls = get_check(check)
    section = PolicyPack.model_fields[cls.section].default_factory()
    facts = AuditFacts.model_validate({"fairness": fairness} if fairness is not None else {})
    return cls().evaluate(cls.Config.model_validate(params), facts, section)


def outcome(result: CheckResult) -> tuple[str, Any]:
    return result.status.value, result.value


def with_figures(**changes: Any) -> dict[str, Any]:
    return {**FAIRNESS, **changes}


# -- consumer_gap -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "value"),
    [
        ({"max_difference": 0.0625}, "pass", 0.0625),  # exactly at the bound; X (10 users) left out
        ({"max_difference": 0.05}, "fail", 0.0625),
        ({"max_difference": 0.05, "judge": "ci"}, "pass", 0.0625),  # the CI [0, 0.125] reaches below the bound
        ({"max_difference": 0.15, "min_group_size": 5}, "fail", 0.1875),  # X counts now: M - X
        # judge: ci is Welch's test of each pair from the groups' standard errors (here from their CIs), adjusted
        # over the pairs: M - X (X has 10 users) is p 0.107 against 0.05, not beyond noise.
        ({"max_difference": 0.05, "min_group_size": 5, "judge": "ci"}, "pass", 0.1875),
        ({"max_difference": 0.0625, "min_group_size": 5, "judge": "ci"}, "pass", 0.1875),
        ({"max_difference": 0.0, "judge": "ci"}, "fail", 0.0625),  # M - F alone: p 0.023
        ({"max_difference": 0.0, "min_group_size": 5, "judge": "ci"}, "pass", 0.1875),  # 3 pairs: Holm 0.070
        ({"max_difference": 0.0, "min_group_size": 5, "judge": "ci", "correction": "bh"}, "pass", 0.1875),  # BH 0.056
        ({"min_ratio": 0.8}, "pass", 0.8),
        ({"min_ratio": 0.8125}, "fail", 0.8),
        ({"min_ratio": 0.95, "judge": "ci"}, "pass", 0.8),  # CI [0.625, 1.0] reaches above
        ({"min_ratio": 0.95, "min_group_size": 5, "judge": "ci"}, "pass", 0.4),  # M/X: p 0.052, Holm 0.156
        ({"min_ratio": 1.0, "judge": "ci"}, "fail", 0.8),  # F/M alone: p 0.023
    ],
)
def test_consumer_gap(params, status, value):
    result = run("consumer_gap", {"attribute": "gender", **params})
    assert outcome(result) == (status, value)


def test_consumer_gap_message_and_evidence():
    result = run("consumer_gap", {"attribute": "gender", "max_difference": 0.05})
    assert result.message == (
        "ndcg@10 by gender: largest gap 0.0625 (M 0.3125 vs F 0.2500, 95% CI [0.0000, 0.1250]); required difference <= "
        "0.05, judged on the point estimate (left out, under 30 users: X)"
    )
    assert result.threshold == 0.05
    assert result.evidence["excluded_groups"] == ["X"]
    assert result.evidence["largest_gap"]["difference_ci"] == (0.0, 0.125)
    assert [p["lower"] for p in result.evidence["failing_pairs"]] == ["F"]
    both = run("consumer_gap", {"attribute": "gender", "max_difference": 0.05, "min_ratio": 0.5})
    assert both.threshold == "difference <= 0.05 and ratio >= 0.5"


def test_consumer_gap_on_facts_written_by_hand_without_pairs():
    """A policy-test fixture may give only the group figures: gaps come from the point values, without intervals;
    the groups' own intervals still give the tests their standard errors, and without them the point decides."""
    groups = FAIRNESS["consumer"]["gender"]["ndcg"]["groups"]
    bare = with_figures(consumer={"gender": {"ndcg": {"groups": groups}}})
    result = run("consumer_gap", {"attribute": "gender", "max_difference": 0.05, "judge": "ci"}, bare)
    assert outcome(result) == ("pass", 0.0625)  # Welch from the groups' CIs: p 0.65
    assert "95% CI n/a" in result.message
    valueless = {g: {"n": v["n"], "value": v["value"]} for g, v in groups.items()}
    bare = with_figures(consumer={"gender": {"ndcg": {"groups": valueless}}})
    result = run("consumer_gap", {"attribute": "gender", "max_difference": 0.05, "judge": "ci"}, bare)
    assert outcome(result) == ("fail", 0.0625)  # no spread at all: the point value decides
    assert "judged on the point estimate (no group has a spread, nor any pair an interval, to test with)" in result.message
    assert outcome(run("consumer_gap", {"attribute": "gender", "min_ratio": 0.8}, bare)) == ("pass", 0.8)


@pytest.mark.parametrize(
    ("params", "fairness", "message"),
    [
        ({"attribute": "gender", "max_difference": 0.1}, None, NO_FAIRNESS),
        ({"attribute": "age_band", "max_difference": 0.1}, FAIRNESS,
         "attribute 'age_band' is not in the fairness facts (audited: gender); list it in fairness.audit_attributes"),
        ({"attribute": "gender", "metric": "recall", "max_difference": 0.1}, FAIRNESS,
         "metric 'recall' is not in the fairness facts for 'gender'"),
        ({"attribute": "gender", "max_difference": 0.1, "min_group_size": 450}, FAIRNESS,
         "ndcg by 'gender' has fewer than two groups with 450+ users (F: 400, M: 500, X: 10)"),
    ],
)  # fmt: skip
def test_consumer_gap_skips_without_its_figures(params, fairness, message):
    result = run("consumer_gap", params, fairness)
    assert (result.status.value, result.message, result.value) == ("skipped", message, None)


def test_consumer_gap_needs_a_bound_and_names_its_attribute():
    cls = get_check("consumer_gap")
    with pytest.raises(ValidationError, match="give at least one of max_difference and min_ratio"):
        cls.Config.model_validate({"attribute": "gender"})
    config = cls.Config.model_validate({"attribute": "gender", "max_difference": 0.1, "min_ratio": 0.5})
    assert cls.attributes(config) == ["gender"]
    assert cls.threshold_bounds(config) == [("max_difference", 0.1, 0.0, 1.0), ("min_ratio", 0.5, 0.0, 1.0)]


# -- disparate_impact --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "value"),
    [
        ({}, "pass", 0.8),  # F: exactly the four-fifths; X too small
        ({"min_ratio": 0.8125}, "fail", 0.8),
        ({"min_group_size": 5}, "fail", 0.4),
        ({"min_group_size": 5, "judge": "ci"}, "pass", 0.4),  # X's CI [0.125, 1.125] reaches above 0.8
        ({"min_ratio": 0.9, "judge": "ci"}, "fail", 0.8),  # F's CI [0.75, 0.875] lies below 0.9
        ({"per_group": False}, "fail", 0.75),  # every other group pooled
        ({"per_group": False, "judge": "ci"}, "pass", 0.75),
        ({"max_parity_difference": 0.125}, "pass", 0.8),
        ({"max_parity_difference": 0.1}, "fail", 0.8),
        ({"max_parity_difference": 0.05, "judge": "ci"}, "fail", 0.8),  # F's SPD CI [-0.1875, -0.0625]
        ({"max_parity_difference": 0.0625, "judge": "ci"}, "pass", 0.8),
    ],
)
def test_disparate_impact(params, status, value):
    result = run("disparate_impact", {"attribute": "gender", "privileged": "M", **params})
    assert outcome(result) == (status, value)


@pytest.mark.parametrize(("ci", "status"), [([0.0, None], "pass"), ([0.0, 0.6], "fail"), (None, "fail")])
def test_disparate_impact_judged_on_an_interval_unbounded_above(ci, status):
    """Regression: an interval stored with no upper end (a ratio whose reference rate may be 0: unbounded)
    was judged on its point value, as if the interval lay wholly below the bound."""
    figures = json.loads(json.dumps(FAIRNESS))
    figures["outcomes"]["gender"]["parity"]["M"]["groups"]["F"] = parity(0.5, ci, -0.05, [-0.2, 0.1])
    result = run("disparate_impact", {"attribute": "gender", "privileged": "M", "judge": "ci"}, figures)
    assert outcome(result) == (status, 0.5)


def test_a_disparate_impact_rule_judged_on_its_interval_fails_near_its_nominal_rate_at_small_hit_rates():
    """Regression: the percentile bootstrap of a group with no hit is the point 0, so with a true ratio of 1,
    hit rates of 5% and 30 users a group, the whole interval lay below 0.8 in 28% of audits (one-sided 2.5%)."""
    from governance.checks._judging import below
    from recommender import fairness as F

    rng = np.random.default_rng(3)
    n, sims, failed = 30, 400, 0
    for _ in range(sims):
        hit = (rng.random(2 * n) < 0.05).astype(float)
        rep = F.parity(hit, ["a"] * n + ["b"] * n, privileged="a")["a"]
        ci = tuple(None if not np.isfinite(v) else float(v) for v in rep.disparate_impact_ci)
        failed += bool(np.isfinite(rep.disparate_impact)) and below(rep.disparate_impact, ci, 0.8, "ci")
    assert failed / sims <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / sims)


def test_disparate_impact_message():
    result = run("disparate_impact", {"attribute": "gender", "privileged": "M"})
    assert result.message == (
        "hit@10 by gender against M (0.6250): lowest disparate impact 0.800 for F (95% CI [0.750, 0.875]), parity "
        "difference -0.1250; required DI >= 0.8, judged on the point estimate (left out: X)"
    )
    assert result.threshold == 0.8
    assert result.evidence["judged"]["F"]["disparate_impact"] == 0.8


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"privileged": "W"}, "privileged group 'W' is not a group of 'gender' (F, M, X)"),
        ({"privileged": "M", "min_group_size": 501}, "privileged group 'M' has 500 users, under min_group_size 501"),
        (
            {"privileged": "M", "attribute": "age_band"},
            "attribute 'age_band' is not in the fairness facts (audited: gender); list it in fairness.audit_attributes",
        ),
    ],
)
def test_disparate_impact_skips(params, message):
    result = run("disparate_impact", {"attribute": "gender", **params})
    assert (result.status.value, result.message) == ("skipped", message)


# -- provider_exposure --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "value"),
    [
        ({"group": "major", "max_ratio": 1.25}, "pass", 1.25),
        ({"group": "major", "max_ratio": 1.2}, "fail", 1.25),
        ({"group": "major", "max_ratio": 1.2, "judge": "ci"}, "pass", 1.25),  # CI [1.125, 1.375]
        ({"group": "major", "max_ratio": 1.1, "judge": "ci"}, "fail", 1.25),
        ({"min_ratio": 0.75}, "pass", 0.75),  # every group: independent is the lowest
        ({"min_ratio": 0.8}, "fail", 0.75),
        ({"min_ratio": 0.5, "max_ratio": 2.0}, "pass", 1.25),
        ({"group": "major", "max_share": 0.625}, "pass", 0.625),
        ({"group": "major", "max_share": 0.5}, "fail", 0.625),
        ({"group": "major", "max_share": 0.5, "judge": "ci"}, "fail", 0.625),  # CI [0.5625, 0.6875]
    ],
)
def test_provider_exposure(params, status, value):
    assert outcome(run("provider_exposure", params)) == (status, value)


def test_provider_exposure_message():
    result = run("provider_exposure", {"group": "major", "max_ratio": 1.2})
    assert result.message == (
        "exposure share / relevance share under log attention at k=10: major 1.250 (exposure 0.6250 vs relevance "
        "0.5000, 95% CI [1.125, 1.375]); required ratio <= 1.2, judged on the point estimate"
    )
    assert result.evidence["relevance"] == "test_positives" and result.evidence["failing"] == ["major"]


@pytest.mark.parametrize(
    ("params", "fairness", "message"),
    [
        ({"max_ratio": 1.2, "attention": "geometric", "patience": 0.9}, FAIRNESS,
         "the fairness facts hold exposure under log only, not 'geometric(0.9)'"),
        ({"max_ratio": 1.2, "group": "indie"}, FAIRNESS, "provider group 'indie' is not in the fairness facts (major, independent)"),
        ({"max_ratio": 1.2}, with_figures(exposure={"log": {"gini": 0.5}}, unavailable={"provider": "fairness.provider_attribute is not set"}),
         "the fairness facts have no provider groups (fairness.provider_attribute is not set)"),
    ],
)  # fmt: skip
def test_provider_exposure_skips(params, fairness, message):
    result = run("provider_exposure", params, fairness)
    assert (result.status.value, result.message) == ("skipped", message)


def test_provider_exposure_config():
    cls = get_check("provider_exposure")
    with pytest.raises(ValidationError, match="give at least one of min_ratio, max_ratio and max_share"):
        cls.Config.model_validate({})
    with pytest.raises(ValidationError, match=r"min_ratio \(2.0\) is greater than max_ratio \(1.5\)"):
        cls.Config.model_validate({"min_ratio": 2.0, "max_ratio": 1.5})


# -- exposure_gini, popularity_bias, calibration ------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "value"),
    [({"max": 0.75}, "pass", 0.75), ({"max": 0.7}, "fail", 0.75), ({"max": 0.5, "group": "major"}, "pass", 0.5),
     ({"max": 0.8, "group": "independent"}, "fail", 0.8125)],
)  # fmt: skip
def test_exposure_gini(params, status, value):
    assert outcome(run("exposure_gini", params)) == (status, value)


@pytest.mark.parametrize(
    ("params", "status", "value"),
    [
        ({"max_arp_ratio": 1.25}, "pass", 1.25),
        ({"max_arp_ratio": 1.2}, "fail", 1.25),
        ({"max_arp_ratio": 1.2, "judge": "ci"}, "pass", 1.25),
        ({"max_arp_ratio": 2.0, "reference": "catalog"}, "fail", 2.5),
        ({"min_long_tail_share": 0.0625}, "pass", 0.0625),
        ({"min_long_tail_share": 0.1}, "fail", 0.0625),
        ({"min_long_tail_share": 0.1, "judge": "ci"}, "fail", 0.0625),  # CI [0.03125, 0.09375]
        ({"max_recall_gap": 0.25}, "fail", 0.375),
        ({"max_recall_gap": 0.25, "judge": "ci"}, "pass", 0.375),
        ({"max_arp_ratio": 1.5, "max_recall_gap": 0.25}, "fail", 1.25),
    ],
)
def test_popularity_bias(params, status, value):
    assert outcome(run("popularity_bias", params)) == (status, value)


def test_popularity_bias_message():
    result = run("popularity_bias", {"max_arp_ratio": 1.5, "max_recall_gap": 0.25})
    assert result.message == (
        "popularity bias at k=10 (profile reference): ARP ratio 1.250 (CI [1.125, 1.375]; required <= 1.5); recall gap "
        "0.375 (CI [0.250, 0.500]; required <= 0.25), judged on the point estimate"
    )
    assert result.threshold == "ARP ratio <= 1.5 and recall gap <= 0.25"
    assert result.evidence["failing"] == ["recall gap"]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"max_kl": 0.5}, "pass"), ({"max_kl": 0.25}, "fail"), ({"max_kl": 0.25, "judge": "ci"}, "fail"),
     ({"max_kl": 0.4, "judge": "ci"}, "pass")],
)  # fmt: skip
def test_calibration(params, status):
    assert outcome(run("calibration", params)) == (status, 0.5)


def test_calibration_skips_with_the_reason():
    result = run(
        "calibration",
        {"max_kl": 1.0},
        with_figures(calibration=None, unavailable={"calibration": "the items table has no 'categories' column"}),
    )
    assert (result.status.value, result.message) == (
        "skipped",
        "the fairness facts have no calibration (the items table has no 'categories' column)",
    )


# -- static analysis of fairness rules ---------------------------------------------------------------
PACK_HEAD = "apiVersion: recgov/v1\nmetadata: {name: fair, version: 0.1.0, owner: tests}\n"


def test_a_rule_grouping_by_a_forbidden_attribute_is_rejected_unless_audit_only():
    rule = "fairness:\n  audit_attributes: [gender]\n  rules:\n    - {id: gap, check: consumer_gap, description: d, params: {attribute: gender, max_difference: 0.1}}\n"
    with pytest.raises(PolicyError) as info:
        parse_pack(PACK_HEAD + "minimization:\n  forbidden_attributes: [gender]\n" + rule, "fair.yaml")
    assert "rule 'gap' groups by 'gender', which is forbidden for every use" in str(info.value)
    loaded = parse_pack(
        PACK_HEAD + "minimization:\n  forbidden_attributes: [gender]\n  audit_only_attributes: [gender]\n" + rule,
        "fair.yaml",
    )
    assert loaded.warnings == []


@pytest.mark.parametrize(
    ("rule", "warning"),
    [
        ("{id: r, check: consumer_gap, description: d, params: {attribute: gender, max_difference: 1.0}}",
         "rule 'r' can never fail: max_difference 1.0 is at or above the highest possible value 1.0"),
        ("{id: r, check: calibration, description: d, params: {max_kl: 5.0}}",
         "rule 'r' can never fail: max_kl 5.0 is at or above the highest possible value 4.605170185988092"),
    ],
)  # fmt: skip
def test_thresholds_outside_the_metric_range_are_reported(rule, warning):
    loaded = parse_pack(PACK_HEAD + f"fairness:\n  rules:\n    - {rule}\n", "fair.yaml")
    assert [i.message for i in loaded.warnings] == [warning]


# -- the whole path on synthetic data with a planted exposure bias ------------------------------------
PACK = (
    PACK_HEAD
    + """
minimization:
  audit_only_attributes: [gender, age_band]
fairness:
  audit_attributes: [gender, age_band]
  provider_attribute: provider_group
  rules:
    - {id: major-exposure, check: provider_exposure, description: d, params: {group: major, max_ratio: 1.05, judge: ci}}
    - {id: major-geometric, check: provider_exposure, description: d, params: {group: major, max_ratio: 1.05, attention: geometric, patience: 0.9}}
    - {id: gender-gap, check: consumer_gap, description: d, params: {attribute: gender, max_difference: 0.1, judge: ci}}
    - {id: gender-di, check: disparate_impact, description: d, params: {attribute: gender, privileged: M}}
    - {id: gini, check: exposure_gini, description: d, params: {max: 0.95}}
    - {id: popularity, check: popularity_bias, description: d, params: {max_arp_ratio: 3.0}}
    - {id: calibration, check: calibration, description: d, params: {max_kl: 2.0}}
"""
)


def audited(exposure_bias: float) -> tuple[Any, Any, Any]:
    dataset = generate(
        SyntheticSpec(n_users=1500, n_items=600, n_interactions=60_000, exposure_bias=exposure_bias, seed=1)
    )
    mats = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2)))
    model = ALSRecommender(factors=32, iterations=10, random_state=0).fit(mats.train)
    return dataset, mats, evaluate_model(model, mats.train, mats.test, 10)


@pytest.fixture(scope="module")
def loaded():
    return parse_pack(PACK, "fair.yaml")


@pytest.fixture(scope="module")
def biased(loaded):
    dataset, mats, ev = audited(3.0)
    return dataset, mats, ev, fairness_facts(dataset, ev, loaded, train=mats.train, test=mats.test)


@pytest.fixture(scope="module")
def unbiased(loaded):
    dataset, mats, ev = audited(1.0)
    return dataset, mats, ev, fairness_facts(dataset, ev, loaded, train=mats.train, test=mats.test)


def test_planted_exposure_bias_is_detected(loaded, biased, unbiased):
    results = {}
    for name, (_, _, _, facts) in (("biased", biased), ("unbiased", unbiased)):
        report = evaluate(loaded, AuditFacts(fairness=facts))
        results[name] = {r.rule_id: r for r in report.results}
    assert results["biased"]["major-exposure"].status.value == "fail"  # the whole CI above 1.05
    assert results["biased"]["major-geometric"].status.value == "fail"
    assert results["unbiased"]["major-exposure"].status.value == "pass"
    assert results["unbiased"]["major-geometric"].status.value == "pass"
    major_biased = biased[3].exposure["log"].groups["major"]
    major_unbiased = unbiased[3].exposure["log"].groups["major"]
    assert major_biased.exposure_ratio_ci[0] > 1.0  # over-exposed beyond noise
    assert major_unbiased.exposure_ratio_ci[0] < 1.0 < major_unbiased.exposure_ratio_ci[1]
    gap_biased, gap_unbiased = major_biased.exposure_ratio - 1, abs(major_unbiased.exposure_ratio - 1)
    assert gap_unbiased < gap_biased / 4
    for name in ("biased", "unbiased"):  # every other rule produced a verdict
        assert {r.status.value for r in results[name].values()} <= {"pass", "fail"}, name


def test_consumer_facts_agree_with_the_evaluation(biased):
    dataset, mats, ev, facts = biased
    gender = dataset.users["gender"].reindex(pd.Index(mats.train.user_ids.astype(str))).to_numpy()[ev.user_index]
    frame = pd.DataFrame({"g": gender.astype(str), **{m: ev.per_user[m] for m in ("ndcg", "recall", "hit_rate")}})
    means, sizes = frame.groupby("g").mean(), frame.groupby("g").size()
    for metric in ("ndcg", "recall", "hit_rate"):
        groups = facts.consumer["gender"][metric].groups
        assert {g: v.value for g, v in groups.items()} == pytest.approx(means[metric].to_dict(), rel=1e-12)
        assert {g: v.n for g, v in groups.items()} == sizes.to_dict()
    rates = facts.outcomes["gender"].positive_rate
    assert {g: v.value for g, v in rates.items()} == pytest.approx(means["hit_rate"].to_dict(), rel=1e-12)
    assert set(facts.consumer) == set(facts.outcomes) == {"gender", "age_band"}
    assert facts.n_users == ev.n_test_users and facts.model == "als" and facts.k == 10
    assert list(facts.exposure) == ["log", "geometric(0.9)"]
    assert facts.unavailable == {}


def test_fairness_facts_round_trip_as_json(biased):
    facts = AuditFacts(fairness=biased[3])
    text = facts.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    assert AuditFacts.model_validate_json(text) == facts
    json.loads(text)


def test_facts_are_seeded(loaded, biased):
    dataset, mats, ev, facts = biased
    again = fairness_facts(dataset, ev, loaded, train=mats.train, test=mats.test)
    assert again == facts


def test_missing_attributes_providers_and_categories_are_reported(biased):
    dataset, mats, ev, _ = biased
    pack = parse_pack(PACK_HEAD + "fairness:\n  audit_attributes: [gender, religion]\n", "fair.yaml")
    bare = dataset.__class__(
        events=dataset.events, users=dataset.users, items=dataset.items.drop(columns=["categories"])
    )
    facts = fairness_facts(bare, ev, pack, train=mats.train, test=mats.test, n_boot=50)
    assert facts.unavailable == {
        "religion": "the users table has no column 'religion'",
        "provider": "fairness.provider_attribute is not set",
        "calibration": "the items table has no 'categories' column",
    }
    assert list(facts.consumer) == ["gender"]
    assert facts.exposure["log"].groups == {} and facts.exposure["log"].gini is not None
    assert facts.calibration is None and facts.provider_attribute is None


def test_matrices_are_required_and_checked(loaded, biased, unbiased):
    dataset, mats, ev, _ = biased
    with pytest.raises(ConfigError) as info:
        fairness_facts(dataset, ev, loaded)
    assert str(info.value) == NO_MATRICES.format(model="als")
    other = unbiased[1]
    with pytest.raises(DataError) as info:
        fairness_facts(dataset, ev, loaded, train=other.train, test=mats.test)
    assert str(info.value).startswith("fairness_facts: the train matrix given is not the one 'als' was evaluated on")
    assert MATRIX_MISMATCH.split("{")[0] in str(info.value)


def test_an_evaluation_run_rebuilds_its_split():
    from recommender.feedback import FeedbackConfig
    from recommender.pipeline import run_evaluation

    dataset = generate(SyntheticSpec(n_users=300, n_items=150, n_interactions=8_000, seed=4))
    run = run_evaluation(
        dataset, split_config=SplitConfig(kind="random", test_fraction=0.2, random_state=3),
        feedback=FeedbackConfig(), k=5, tune=False, als_params={"factors": 8, "iterations": 3},
    )  # fmt: skip
    pack = parse_pack(
        PACK_HEAD + "fairness:\n  audit_attributes: [gender]\n  provider_attribute: provider_group\n", "f.yaml"
    )
    facts = fairness_facts(dataset, run, pack, n_boot=50)
    assert facts.model == "als" and facts.k == 5 and facts.n_users == run.comparison.evaluations["als"].n_test_users
    knn = fairness_facts(dataset, run, pack, subject="item_knn", n_boot=50)
    assert knn.model == "item_knn"
    with pytest.raises(ConfigError) as info:
        fairness_facts(dataset, run, pack, subject="svd")
    assert (
        str(info.value)
        == "fairness_facts: model 'svd' is not in the evaluation run; its models are: 'als', 'item_knn', 'popularity', 'random'."
    )
    assert np.isfinite(facts.exposure["log"].groups["major"].exposure_ratio)
