"""Each check on tiny facts where the answer is obvious, then the engine around them.

Figures are chosen so that every boundary is exact in binary floating point
(0.25 / 0.125 is exactly 2.0), so "exactly at the threshold" really is.
"""

from __future__ import annotations

from typing import Any

import pytest

from governance.checks.quality import NO_EVALUATION, MetricBound
from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import MinimizationSection, PolicyPack, parse_pack
from governance.registry import CheckResult, Status, get_check

EVALUATION = {
    "k": 10,
    "subject": "als",
    "models": {
        "als": {
            "metrics": {"ndcg": 0.25, "precision": 0.2, "map": None},
            "beyond": {"coverage": 0.2},
            "segments": {
                "activity": {
                    "light": {"n_users": 300, "ndcg": 0.15},
                    "medium": {"n_users": 300, "ndcg": 0.25},
                    "heavy": {"n_users": 300, "ndcg": 0.35},
                    "tiny": {"n_users": 5, "ndcg": 0.01},
                }
            },
            "n_test_users": 905,
        },
        "popularity": {"metrics": {"ndcg": 0.125, "precision": 0.1}},
        "random": {"metrics": {"ndcg": 0.0, "precision": 0.0}},
    },
}


def run(check: str, params: dict[str, Any], facts: dict[str, Any], section: Any = None) -> CheckResult:
    """Evaluate ``check`` directly, the way the engine calls it."""
    cls = get_check(check)
    if section is None:
        section = PolicyPack.model_fields[cls.section].default_factory()
    return cls().evaluate(cls.Config.model_validate(params), AuditFacts.model_validate(facts), section)


def outcome(result: CheckResult) -> tuple[str, str]:
    return result.status.value, result.message


# -- metric_bound ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"metric": "ndcg", "min": 0.2}, "pass", "ndcg@10 of als is 0.2500; required >= 0.2"),
        ({"metric": "ndcg", "min": 0.25}, "pass", "ndcg@10 of als is 0.2500; required >= 0.25"),
        ({"metric": "ndcg", "max": 0.25}, "pass", "ndcg@10 of als is 0.2500; required <= 0.25"),
        ({"metric": "ndcg", "min": 0.2500001}, "fail", "ndcg@10 of als is 0.2500; required >= 0.2500001"),
        ({"metric": "ndcg", "min": 0.1, "max": 0.2}, "fail", "ndcg@10 of als is 0.2500; required >= 0.1 and <= 0.2"),
        ({"metric": "coverage", "min": 0.05}, "pass", "coverage of als is 0.2000; required >= 0.05"),
        ({"metric": "ndcg", "min": 0.2, "model": "popularity"}, "fail", "ndcg@10 of popularity is 0.1250; required >= 0.2"),
    ],
)
def test_metric_bound(params, status, message):
    result = run("metric_bound", params, {"evaluation": EVALUATION})
    assert outcome(result) == (status, message)
    assert result.evidence["metric"] == params["metric"]


def test_metric_bound_reports_value_and_threshold():
    result = run("metric_bound", {"metric": "ndcg", "min": 0.1, "max": 0.3}, {"evaluation": EVALUATION})
    assert (result.value, result.threshold) == (0.25, ">= 0.1 and <= 0.3")
    assert result.evidence == {"model": "als", "metric": "ndcg", "k": 10}


@pytest.mark.parametrize(
    ("params", "facts", "message"),
    [
        ({"metric": "ndcg", "min": 0.1}, {}, NO_EVALUATION),
        ({"metric": "mrr", "min": 0.1}, {"evaluation": EVALUATION}, "metric 'mrr' of model 'als' is not in the evaluation"),
        ({"metric": "map", "min": 0.1}, {"evaluation": EVALUATION}, "metric 'map' of model 'als' is not in the evaluation"),
        ({"metric": "ndcg", "min": 0.1, "model": "item_knn"}, {"evaluation": EVALUATION}, "metric 'ndcg' of model 'item_knn' is not in the evaluation"),
    ],
)
def test_metric_bound_skips_without_the_figure(params, facts, message):
    assert outcome(run("metric_bound", params, facts)) == ("skipped", message)


# -- baseline_lift --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("min_ratio", "status"),
    [(1.2, "pass"), (2.0, "pass"), (2.0000001, "fail")],
)
def test_baseline_lift(min_ratio, status):
    result = run("baseline_lift", {"min_ratio": min_ratio}, {"evaluation": EVALUATION})
    assert outcome(result) == (status, f"ndcg@10 of als is 2.000x popularity's (0.2500 vs 0.1250); required >= {min_ratio}x")
    assert (result.value, result.threshold) == (2.0, min_ratio)


def test_baseline_lift_over_a_zero_baseline_passes_any_positive_score():
    result = run("baseline_lift", {"baseline": "random", "min_ratio": 2.0}, {"evaluation": EVALUATION})
    assert outcome(result) == ("pass", "random scores 0 on ndcg; als scores 0.2500")
    assert result.value is None


def test_baseline_lift_of_zero_over_zero_fails():
    facts = {"evaluation": {"models": {"als": {"metrics": {"ndcg": 0.0}}, "random": {"metrics": {"ndcg": 0.0}}}}}
    assert outcome(run("baseline_lift", {"baseline": "random"}, facts)) == ("fail", "random scores 0 on ndcg; als scores 0.0000")


@pytest.mark.parametrize(
    ("params", "facts", "message"),
    [
        ({}, {}, NO_EVALUATION),
        ({"baseline": "item_knn"}, {"evaluation": EVALUATION}, "metric 'ndcg' of model 'item_knn' is not in the evaluation"),
        ({"metric": "recall"}, {"evaluation": EVALUATION}, "metric 'recall' of model 'als' is not in the evaluation"),
    ],
)
def test_baseline_lift_skips_without_the_figures(params, facts, message):
    assert outcome(run("baseline_lift", params, facts)) == ("skipped", message)


# -- segment_consistency ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "status", "required"),
    [
        ({"min_ratio": 0.4}, "pass", "ratio >= 0.4"),
        ({"min_ratio": 0.5}, "fail", "ratio >= 0.5"),
        ({"min_ratio": 0.4, "max_gap": 0.1}, "fail", "ratio >= 0.4 and gap <= 0.1"),
    ],
)
def test_segment_consistency_leaves_out_small_groups(params, status, required):
    result = run("segment_consistency", params, {"evaluation": EVALUATION})
    assert outcome(result) == (
        status,
        f"ndcg@10 by activity: worst light 0.1500, best heavy 0.3500 (ratio 0.429, gap 0.2000); required {required}",
    )
    assert result.evidence["groups"] == {"light": 0.15, "medium": 0.25, "heavy": 0.35}  # "tiny" (5 users) is left out


def _two_groups(light: float, heavy: float) -> dict[str, Any]:
    segments = {"activity": {"light": {"n_users": 40, "ndcg": light}, "heavy": {"n_users": 40, "ndcg": heavy}}}
    return {"evaluation": {"models": {"als": {"metrics": {"ndcg": heavy}, "segments": segments}}}}


@pytest.mark.parametrize(
    ("params", "light", "status", "value"),
    [
        ({"min_ratio": 0.25}, 0.09375, "pass", 0.25),  # 0.09375 / 0.375 == 0.25 exactly
        ({"min_ratio": 0.25}, 0.09374, "fail", 0.09374 / 0.375),
        ({"max_gap": 0.25}, 0.125, "pass", 0.25),  # 0.375 - 0.125 == 0.25 exactly
        ({"max_gap": 0.25}, 0.12499, "fail", 0.375 - 0.12499),
    ],
)
def test_segment_consistency_boundaries(params, light, status, value):
    result = run("segment_consistency", params, _two_groups(light, 0.375))
    assert result.status.value == status
    assert result.value == value


@pytest.mark.parametrize(
    ("params", "facts", "message"),
    [
        ({"min_ratio": 0.5}, {}, NO_EVALUATION),
        ({"min_ratio": 0.5, "segment": "gender"}, {"evaluation": EVALUATION}, "segment 'gender' is not in the evaluation of 'als'"),
        ({"min_ratio": 0.5, "min_group_size": 301}, {"evaluation": EVALUATION}, "segment 'activity' has fewer than two groups with 301+ users"),
        ({"min_ratio": 0.5, "metric": "recall"}, {"evaluation": EVALUATION}, "segment 'activity' has fewer than two groups with 20+ users"),
    ],
)
def test_segment_consistency_skips(params, facts, message):
    assert outcome(run("segment_consistency", params, facts)) == ("skipped", message)


# -- validation_findings -------------------------------------------------------------------
VALIDATION = {
    "n_rows": 100_000,
    "findings": {
        "duplicate_events": {"count": 1000, "share": 0.01},
        "bot_users": {"count": 2500, "share": 0.025},
    },
}


def test_validation_findings_within_limits_at_the_boundary():
    result = run("validation_findings", {"max_share": {"duplicate_events": 0.01, "bot_users": 0.025}}, {"validation": VALIDATION})
    assert outcome(result) == ("pass", "all 2 finding(s) within their limits over 100,000 rows")
    assert result.value == 0.0


def test_validation_findings_over_a_limit():
    result = run("validation_findings", {"max_share": {"duplicate_events": 0.01, "bot_users": 0.02}}, {"validation": VALIDATION})
    assert outcome(result) == ("fail", "1 finding(s) over their limit: bot_users 2.5000% > 2.0000%")
    assert result.evidence["over_limit"] == {"bot_users": {"share": 0.025, "limit": 0.02, "count": 2500}}
    assert result.value == pytest.approx(0.005)


def test_validation_findings_default_limit_covers_unlisted_codes():
    result = run("validation_findings", {"max_share": {"duplicate_events": 0.01}, "default_max_share": 0.02}, {"validation": VALIDATION})
    assert outcome(result) == ("fail", "1 finding(s) over their limit: bot_users 2.5000% > 2.0000%")
    result = run("validation_findings", {}, {"validation": VALIDATION})
    assert outcome(result) == ("fail", "2 finding(s) over their limit: duplicate_events 1.0000% > 0.0000%, bot_users 2.5000% > 0.0000%")


def test_validation_findings_clean_log_passes():
    result = run("validation_findings", {}, {"validation": {"n_rows": 100_000}})
    assert outcome(result) == ("pass", "all 0 finding(s) within their limits over 100,000 rows")


def test_validation_findings_skip_without_a_report():
    assert outcome(run("validation_findings", {}, {})) == ("skipped", "no validation report in the audit facts")


# -- data_drift --------------------------------------------------------------------------
DRIFT = {
    "baseline": "ml-100k@2a4f9c1e",
    "features": {"user_activity": {"psi": 0.125, "ks": 0.0625}, "item_popularity": {"psi": 0.25, "ks": 0.3}},
}


@pytest.mark.parametrize(
    ("params", "status", "message", "value"),
    [
        ({"max": 0.25}, "pass", "psi against ml-100k@2a4f9c1e: user_activity 0.1250, item_popularity 0.2500; required <= 0.25", 0.25),
        ({"max": 0.2499}, "fail", "psi against ml-100k@2a4f9c1e: user_activity 0.1250, item_popularity 0.2500; required <= 0.2499", 0.25),
        ({"statistic": "ks", "max": 0.25}, "fail", "ks against ml-100k@2a4f9c1e: user_activity 0.0625, item_popularity 0.3000; required <= 0.25", 0.3),
        ({"statistic": "ks", "max": 0.1, "features": ["user_activity"]}, "pass", "ks against ml-100k@2a4f9c1e: user_activity 0.0625; required <= 0.1", 0.0625),
    ],
)
def test_data_drift(params, status, message, value):
    result = run("data_drift", params, {"drift": DRIFT})
    assert outcome(result) == (status, message)
    assert result.value == value


def test_data_drift_without_a_baseline_name():
    result = run("data_drift", {"features": ["user_activity"]}, {"drift": {"features": DRIFT["features"]}})
    assert result.message == "psi against the baseline: user_activity 0.1250; required <= 0.25"


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({}, "no baseline dataset to compare with (pass --baseline to the audit)"),
        ({"drift": {"features": {"user_activity": {"psi": 0.1}}}}, "drift statistic 'psi' of 'item_popularity' is not in the facts"),
        ({"drift": {"features": {"user_activity": {"ks": 0.1}, "item_popularity": {"ks": 0.1}}}}, "drift statistic 'psi' of 'user_activity' is not in the facts"),
    ],
)
def test_data_drift_skips(facts, message):
    assert outcome(run("data_drift", {}, facts)) == ("skipped", message)


# -- input_allowlist ------------------------------------------------------------------------
MINIMIZATION = MinimizationSection.model_validate(
    {
        "purposes": {"personalization": {"allowed_inputs": ["user_id", "item_id", "value", "timestamp"]}},
        "forbidden_attributes": ["religion"],
        "audit_only_attributes": ["gender"],
    }
)


def inputs(*names: str) -> dict[str, Any]:
    return {"minimization": {"model_inputs": list(names), "dataset_columns": ["user_id", "item_id", "value", "timestamp", "gender", "religion", "zip_code"]}}


@pytest.mark.parametrize(
    ("model_inputs", "status", "message", "value"),
    [
        (("user_id", "item_id", "value"), "pass", "all 3 model input(s) are allowed for personalization: user_id, item_id, value", 0),
        (("user_id", "item_id", "zip_code"), "fail", "input(s) not on the personalization allow-list: zip_code", 1),
        ((), "pass", "all 0 model input(s) are allowed for personalization: none", 0),
        (
            ("user_id", "item_id", "religion"),
            "fail",
            "forbidden or audit-only attribute(s) reached the model: religion",
            1,
        ),
        (
            ("user_id", "gender", "item_id"),
            "fail",
            "forbidden or audit-only attribute(s) reached the model: gender",
            1,
        ),
    ],
)
def test_input_allowlist(model_inputs, status, message, value):
    result = run("input_allowlist", {}, inputs(*model_inputs), MINIMIZATION)
    assert outcome(result) == (status, message)
    assert (result.value, result.threshold) == (value, 0)


def test_input_allowlist_skips():
    assert outcome(run("input_allowlist", {}, {}, MINIMIZATION)) == ("skipped", "no record of the model's inputs in the audit facts")
    assert outcome(run("input_allowlist", {"purpose": "marketing"}, inputs("user_id"), MINIMIZATION)) == (
        "skipped",
        "purpose 'marketing' has no allow-list in minimization.purposes",
    )


# -- carbon_budget ---------------------------------------------------------------------------
CARBON = {"energy_kwh": 0.5, "emissions_kg": 0.1875, "duration_s": 12.34, "country_iso_code": "DEU", "method": "codecarbon offline"}


@pytest.mark.parametrize(
    ("params", "status", "budget", "value"),
    [
        ({"max_energy_kwh": 0.5}, "pass", "energy <= 0.5 kWh", 0.5),
        ({"max_energy_kwh": 0.4999}, "fail", "energy <= 0.4999 kWh", 0.5),
        ({"max_emissions_kg": 0.1875}, "pass", "emissions <= 0.1875 kg", 0.1875),
        ({"max_energy_kwh": 1.0, "max_emissions_kg": 0.1}, "fail", "energy <= 1.0 kWh, emissions <= 0.1 kg", 0.1875),
    ],
)
def test_carbon_budget(params, status, budget, value):
    result = run("carbon_budget", params, {"carbon": CARBON})
    assert outcome(result) == (status, f"training used 0.500000 kWh and emitted 0.187500 kg CO2e in 12.3 s (DEU grid); budget {budget}")
    assert (result.value, result.threshold) == (value, budget)
    assert result.evidence == CARBON


def test_carbon_budget_skips_without_a_measurement():
    assert outcome(run("carbon_budget", {"max_energy_kwh": 1.0}, {})) == (
        "skipped",
        "no carbon measurement in the audit facts (carbon.measure is off, nothing was trained, or codecarbon measured nothing)",
    )


# -- the engine ------------------------------------------------------------------------------
ENGINE_PACK = """\
apiVersion: recgov/v1
metadata: {name: engine-test, version: 2.0.1, owner: tests}
carbon:
  rules:
    - id: carbon-budget
      check: carbon_budget
      description: At most 0.4 kWh.
      severity: warn
      params: {max_energy_kwh: 0.4}
quality:
  rules:
    - id: ndcg-floor
      check: metric_bound
      description: NDCG@10 at least 0.1.
      legal_reference: DSA Art. 34(1)
      params: {metric: ndcg, min: 0.1}
    - id: lift
      check: baseline_lift
      description: Beat popularity by 3x.
      severity: warn
      params: {min_ratio: 3.0}
    - id: segments
      check: segment_consistency
      description: Light users get half of what heavy users get.
      params: {min_ratio: 0.5}
"""


@pytest.fixture(scope="module")
def loaded():
    return parse_pack(ENGINE_PACK, "engine-test.yaml")


def test_engine_runs_every_rule_in_pack_order_and_stamps_the_report(loaded):
    report = evaluate(loaded, AuditFacts.model_validate({"evaluation": EVALUATION, "carbon": CARBON}), model_version="als-7", dataset_version="abc123")
    assert (report.pack, report.pack_version, report.pack_hash, report.pack_source) == ("engine-test", "2.0.1", loaded.content_hash, "engine-test.yaml")
    assert (report.model_version, report.dataset_version, report.shadow) == ("als-7", "abc123", False)
    assert [(r.rule_id, r.section, r.check, r.severity, r.status.value) for r in report.results] == [
        ("carbon-budget", "carbon", "carbon_budget", "warn", "warn"),  # a failed warn-rule is a warning
        ("ndcg-floor", "quality", "metric_bound", "block", "pass"),
        ("lift", "quality", "baseline_lift", "warn", "warn"),
        ("segments", "quality", "segment_consistency", "block", "fail"),
    ]
    assert report.counts() == {"pass": 1, "warn": 2, "fail": 1, "error": 0, "skipped": 0}
    floor = report.result("ndcg-floor")
    assert (floor.description, floor.legal_reference, floor.value, floor.threshold) == ("NDCG@10 at least 0.1.", "DSA Art. 34(1)", 0.25, ">= 0.1")
    lines = ENGINE_PACK.splitlines()
    for r in report.results:
        assert lines[r.line - 1].strip() == f"- id: {r.rule_id}"


def test_severity_warn_only_softens_fail(loaded):
    report = evaluate(loaded, AuditFacts())
    assert report.result("carbon-budget").status == Status.skipped
    assert report.result("lift").status == Status.skipped
    report = evaluate(loaded, AuditFacts.model_validate({"carbon": {**CARBON, "energy_kwh": 0.25}}))
    assert report.result("carbon-budget").status == Status.passed


def test_missing_facts_skip_every_rule(loaded):
    report = evaluate(loaded, AuditFacts())
    assert report.counts() == {"pass": 0, "warn": 0, "fail": 0, "error": 0, "skipped": 4}


def test_unknown_rule_id_is_a_key_error(loaded):
    with pytest.raises(KeyError):
        evaluate(loaded, AuditFacts()).result("no-such-rule")


def test_a_check_that_raises_is_an_error_never_a_pass(loaded, monkeypatch):
    def boom(self, config, facts, section):
        raise RuntimeError("boom")

    monkeypatch.setattr(MetricBound, "evaluate", boom)
    report = evaluate(loaded, AuditFacts.model_validate({"evaluation": EVALUATION}))
    broken = report.result("ndcg-floor")
    assert (broken.status, broken.message, broken.value) == (Status.error, "check 'metric_bound' crashed: RuntimeError: boom", None)
    assert report.result("segments").status == Status.fail  # the other rules still ran


def test_a_crash_in_a_warn_rule_stays_an_error(loaded, monkeypatch):
    def boom(self, config, facts, section):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(get_check("baseline_lift"), "evaluate", boom)
    result = evaluate(loaded, AuditFacts.model_validate({"evaluation": EVALUATION})).result("lift")
    assert (result.severity, result.status) == ("warn", Status.error)
    assert result.message == "check 'baseline_lift' crashed: ZeroDivisionError: division by zero"


def test_a_verdict_without_its_facts_is_an_error(loaded, monkeypatch):
    monkeypatch.setattr(MetricBound, "evaluate", lambda self, config, facts, section: CheckResult(status=Status.passed, message="fine"))
    result = evaluate(loaded, AuditFacts()).result("ndcg-floor")
    assert (result.status, result.message) == (Status.error, "check 'metric_bound' returned pass without its facts ['evaluation']")


def test_evaluate_is_pure(loaded):
    facts = AuditFacts.model_validate({"evaluation": EVALUATION, "carbon": CARBON})
    before = facts.model_dump()
    first, second = evaluate(loaded, facts), evaluate(loaded, facts)
    assert first == second
    assert facts.model_dump() == before


def test_shadow_is_recorded_on_the_report(loaded):
    assert evaluate(loaded, AuditFacts(), shadow=True).shadow is True


def test_segment_consistency_never_judges_the_users_without_the_attribute():
    """The users whose attribute is missing were named 'unknown' in the segments, merged with a real value of that
    name and judged as a group; they are the group 'missing' now, reported and never judged."""
    import numpy as np
    import pandas as pd

    from recommender.data import Dataset
    from recommender.pipeline import user_segments

    segments = {"gender": {"F": {"n_users": 40, "ndcg": 0.30}, "M": {"n_users": 40, "ndcg": 0.32},
                           "missing": {"n_users": 40, "ndcg": 0.01}}}  # fmt: skip
    facts = {"evaluation": {"models": {"als": {"metrics": {"ndcg": 0.3}, "segments": segments}}}}
    result = run("segment_consistency", {"segment": "gender", "min_ratio": 0.8}, facts)
    assert result.status.value == "pass" and result.evidence["groups"] == {"F": 0.30, "M": 0.32}

    class Train:
        user_ids = np.array(["u1", "u2", "u3"])

    users = pd.DataFrame({"gender": ["F", None, "unknown"]}, index=["u1", "u2", "u3"])
    events = pd.DataFrame({"user_id": ["u1"], "item_id": ["i"], "timestamp": [pd.Timestamp("2024-01-01", tz="UTC")]})
    got = user_segments(Dataset(events=events, users=users), Train())["gender"].tolist()
    assert got == ["F", None, "unknown"]  # the missing value stays missing, apart from the value 'unknown'
