"""The gate: the decision from a report, and its JSON, JUnit, Markdown and SARIF forms.

JUnit is read back with ``junitparser`` (what CI systems use), the JSON
validated with ``jsonschema`` against the published ``schemas/gate-result.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from governance.checks.data import ValidationFindings
from governance.engine import AuditReport, RuleResult, evaluate
from governance.facts import AuditFacts
from governance.gate import GateDecision, decide, document, to_junit, to_markdown, to_sarif, write_outputs
from governance.policy import GateSection, parse_pack

GATE_SCHEMA = Path(__file__).parents[2] / "schemas" / "gate-result.schema.json"

PACK = """\
apiVersion: recgov/v1
metadata: {name: gate-test, version: 1.4.0, owner: tests}
data:
  rules:
    - id: data-validation
      check: validation_findings
      description: Duplicates under 1%.
      params: {max_share: {duplicate_events: 0.01}}
minimization:
  purposes:
    personalization: {allowed_inputs: [user_id, item_id, value]}
  rules:
    - id: min-inputs
      check: input_allowlist
      description: Only interaction fields reach the model.
      legal_reference: GDPR Art. 5(1)(c)
carbon:
  rules:
    - id: carbon-budget
      check: carbon_budget
      description: At most 0.5 kWh.
      params: {max_energy_kwh: 0.5}
quality:
  rules:
    - id: lift
      check: baseline_lift
      description: Beat popularity by 20%.
      params: {min_ratio: 1.2}
    - id: coverage
      check: metric_bound
      description: "Coverage <at least> 5% & more | say."
      severity: warn
      params: {metric: coverage, min: 0.05}
gate:
  block_on: [fail, error]
  required_rules: [min-inputs]
"""

# One of each: pass (lift), warn (coverage), fail (min-inputs), error (data-validation), skipped (carbon).
FACTS = {
    "evaluation": {
        "models": {
            "als": {"metrics": {"ndcg": 0.2534}, "beyond": {"coverage": 0.0412}},
            "popularity": {"metrics": {"ndcg": 0.1307}},
        }
    },
    "minimization": {"model_inputs": ["user_id", "item_id", "value", "gender"]},
    "validation": {"n_rows": 100_000, "findings": {"duplicate_events": {"count": 212, "share": 0.00212}}},
}


@pytest.fixture(scope="module")
def loaded():
    return parse_pack(PACK, "policies/gate-test.yaml")


@pytest.fixture()
def report(loaded, monkeypatch):
    def boom(self, config, facts, section):
        raise RuntimeError("the validation report is corrupt")

    monkeypatch.setattr(ValidationFindings, "evaluate", boom)
    return evaluate(loaded, AuditFacts.model_validate(FACTS), model_version="als-20240611", dataset_version="9f2c" * 16)


def make_report(*statuses: tuple[str, str], shadow: bool = False) -> AuditReport:
    """A report whose rules ``(rule_id, status)`` ended as given."""
    results = [
        RuleResult(rule_id=rule_id, section="quality", check="metric_bound", description="d", severity="block", status=status, message=f"{rule_id} message")
        for rule_id, status in statuses
    ]
    return AuditReport(pack="p", pack_version="1.0.0", pack_hash="0" * 64, pack_source="p.yaml", shadow=shadow, results=results)


def gate(**kwargs: Any) -> GateSection:
    return GateSection.model_validate(kwargs)


# -- decide -----------------------------------------------------------------------------
def test_statuses_of_the_sample_report(report):
    assert {r.rule_id: r.status.value for r in report.results} == {
        "data-validation": "error",
        "min-inputs": "fail",
        "carbon-budget": "skipped",
        "lift": "pass",
        "coverage": "warn",
    }


def test_default_gate_blocks_on_fail_and_error():
    decision = decide(make_report(("a", "pass"), ("b", "fail"), ("c", "error"), ("d", "warn"), ("e", "skipped")), gate())
    assert decision == GateDecision(
        passed=False,
        enforced=True,
        reasons=["b (quality) is fail: b message", "c (quality) is error: c message"],
    )


def test_warnings_and_skips_pass_the_default_gate():
    assert decide(make_report(("a", "pass"), ("d", "warn"), ("e", "skipped")), gate()) == GateDecision(passed=True, reasons=[])


@pytest.mark.parametrize(
    ("block_on", "reasons"),
    [
        # an error always blocks: a crashed check is never a pass, whatever block_on says
        (["fail"], ["b (quality) is fail: b message", "c (quality) is error: c message"]),
        (["warn"], ["c (quality) is error: c message", "d (quality) is warn: d message"]),
        (["skipped", "error"], ["c (quality) is error: c message", "e (quality) is skipped: e message"]),
        ([], ["c (quality) is error: c message"]),
    ],
)
def test_block_on_chooses_the_blocking_statuses(block_on, reasons):
    decision = decide(make_report(("a", "pass"), ("b", "fail"), ("c", "error"), ("d", "warn"), ("e", "skipped")), gate(block_on=block_on))
    assert (decision.passed, decision.reasons) == (not reasons, reasons)


@pytest.mark.parametrize(
    ("status", "reasons"),
    [
        ("pass", []),
        ("skipped", ["required rule r is skipped: r message"]),
        ("warn", ["required rule r is warn: r message"]),
        ("fail", ["r (quality) is fail: r message"]),  # already blocking: said once
    ],
)
def test_a_required_rule_must_pass(status, reasons):
    decision = decide(make_report(("a", "pass"), ("r", status)), gate(required_rules=["r"]))
    assert (decision.passed, decision.reasons) == (not reasons, reasons)


def test_a_required_rule_that_did_not_run_blocks():
    decision = decide(make_report(("a", "pass")), gate(required_rules=["a", "gone"]))
    assert (decision.passed, decision.reasons) == (False, ["required rule gone did not run"])


@pytest.mark.parametrize(("max_warnings", "passed"), [(None, True), (3, True), (2, True), (1, False), (0, False)])
def test_max_warnings(max_warnings, passed):
    decision = decide(make_report(("a", "warn"), ("b", "warn"), ("c", "pass")), gate(max_warnings=max_warnings))
    assert decision.passed is passed
    assert decision.reasons == ([] if passed else [f"2 warnings exceed the gate's limit of {max_warnings}"])


def test_shadow_mode_passes_unenforced_and_keeps_the_reasons():
    report = make_report(("b", "fail"), ("d", "warn"), shadow=True)
    decision = decide(report, gate(required_rules=["d"], max_warnings=0))
    assert decision == GateDecision(
        passed=True,
        enforced=False,
        reasons=[
            "shadow mode, not enforced: b (quality) is fail: b message",
            "shadow mode, not enforced: required rule d is warn: d message",
            "shadow mode, not enforced: 1 warnings exceed the gate's limit of 0",
        ],
    )


REASONS = [
    "data-validation (data) is error: check 'validation_findings' crashed: RuntimeError: the validation report is corrupt",
    "min-inputs (minimization) is fail: input(s) not on the personalization allow-list: gender",
]


def test_sample_report_is_blocked_for_its_failure_and_its_error(loaded, report):
    assert decide(report, loaded.pack.gate) == GateDecision(passed=False, enforced=True, reasons=REASONS)


# -- JSON ---------------------------------------------------------------------------------
def test_gate_json_validates_against_the_published_schema(loaded, report, tmp_path):
    schema = json.loads(GATE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = document(report, decide(report, loaded.pack.gate), audit_id="aud-0001")
    paths = write_outputs(doc, tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {"json": "gate.json", "junit": "junit.xml", "markdown": "summary.md", "sarif": "gate.sarif"}
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(written, schema, cls=jsonschema.Draft202012Validator)
    assert written["schema_version"] == "recgov.gate/v1"
    assert written["decision"]["passed"] is False
    assert written["counts"] == {"pass": 1, "warn": 1, "fail": 1, "error": 1, "skipped": 1}
    assert (written["pack"], written["pack_version"], written["pack_hash"], written["audit_id"]) == ("gate-test", "1.4.0", loaded.content_hash, "aud-0001")
    assert [r["rule_id"] for r in written["results"]] == ["data-validation", "min-inputs", "carbon-budget", "lift", "coverage"]
    assert paths["junit"].read_text(encoding="utf-8") == to_junit(doc)
    assert paths["markdown"].read_text(encoding="utf-8") == to_markdown(doc)
    assert json.loads(paths["sarif"].read_text(encoding="utf-8")) == json.loads(json.dumps(to_sarif(doc)))


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["decision"].pop("passed"), "decision"),
        (lambda d: d["results"][0].update(status="ok"), "results/0/status"),
        (lambda d: d.update(schema_version="recgov.gate/v2"), "schema_version"),
        (lambda d: d.update(surprise=True), ""),
    ],
)
def test_the_schema_rejects_a_broken_gate_document(loaded, report, mutate, where):
    schema = json.loads(GATE_SCHEMA.read_text(encoding="utf-8"))
    data = document(report, decide(report, loaded.pack.gate)).model_dump(mode="json")
    mutate(data)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert ["/".join(map(str, e.absolute_path)) for e in errors] == [where]


# -- JUnit --------------------------------------------------------------------------------
def test_junit_has_one_case_per_rule_and_counts_right(loaded, report):
    doc = document(report, decide(report, loaded.pack.gate))
    xml = JUnitXml.fromstring(to_junit(doc))
    (suite,) = list(xml)
    assert suite.name == "recgov:gate-test"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 1)
    cases = {case.name: case for case in suite}
    assert list(cases) == ["data-validation", "min-inputs", "carbon-budget", "lift", "coverage"]
    assert {name: case.classname for name, case in cases.items()} == {
        "data-validation": "gate-test.data",
        "min-inputs": "gate-test.minimization",
        "carbon-budget": "gate-test.carbon",
        "lift": "gate-test.quality",
        "coverage": "gate-test.quality",
    }
    kinds = {name: [type(r) for r in case.result] for name, case in cases.items()}
    assert kinds == {"data-validation": [Error], "min-inputs": [Failure], "carbon-budget": [Skipped], "lift": [], "coverage": []}
    failure = cases["min-inputs"].result[0]
    assert (failure.type, failure.message) == ("input_allowlist", "input(s) not on the personalization allow-list: gender")
    assert failure.text == (
        "Only interaction fields reach the model.\ninput(s) not on the personalization allow-list: gender\nlegal reference: GDPR Art. 5(1)(c)"
    )
    assert cases["coverage"].system_out.startswith("WARN: Coverage <at least> 5% & more | say.\ncoverage of als is 0.0412")
    assert cases["lift"].system_out.startswith("PASS: Beat popularity by 20%.")
    # The suite's declared counts agree with its cases.
    assert sum(isinstance(r, Failure) for c in suite for r in c.result) == suite.failures
    assert sum(isinstance(r, Error) for c in suite for r in c.result) == suite.errors
    assert sum(c.is_skipped for c in suite) == suite.skipped


def test_junit_properties_stamp_the_pack_and_decision(loaded, report):
    doc = document(report, decide(report, loaded.pack.gate), audit_id="aud-0001")
    (suite,) = list(JUnitXml.fromstring(to_junit(doc)))
    props = {p.name: p.value for p in suite.properties()}
    assert props == {
        "pack": "gate-test",
        "pack_version": "1.4.0",
        "pack_hash": loaded.content_hash,
        "model_version": "als-20240611",
        "dataset_version": "9f2c" * 16,
        "audit_id": "aud-0001",
        "decision": "block",
    }


def test_junit_of_an_all_pass_report():
    report = make_report(("a", "pass"), ("b", "pass"))
    (suite,) = list(JUnitXml.fromstring(to_junit(document(report, decide(report, gate())))))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (2, 0, 0, 0)
    assert all(case.is_passed for case in suite)


# -- SARIF --------------------------------------------------------------------------------
def test_sarif_has_one_located_result_per_rule(loaded, report):
    sarif = to_sarif(document(report, decide(report, loaded.pack.gate)))
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "recgov"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [r.rule_id for r in report.results]
    assert [r["ruleId"] for r in run["results"]] == [r.rule_id for r in report.results]
    lines = PACK.splitlines()
    for result in run["results"]:
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "policies/gate-test.yaml"
        line = physical["region"]["startLine"]
        assert line == loaded.rule_position(result["ruleId"])[0]
        assert lines[line - 1].strip() == f"- id: {result['ruleId']}"
    assert run["properties"]["pack_hash"] == loaded.content_hash


def test_sarif_kind_and_level_agree_with_the_spec(loaded, report):
    """SARIF 2.1.0 §3.27.10: a result whose kind is not "fail" must have level "none"."""
    (run,) = to_sarif(document(report, decide(report, loaded.pack.gate)))["runs"]
    got = {r["ruleId"]: (r["kind"], r["level"], r["properties"]["status"]) for r in run["results"]}
    assert got == {
        "data-validation": ("fail", "error", "error"),
        "min-inputs": ("fail", "error", "fail"),
        "carbon-budget": ("notApplicable", "none", "skipped"),
        "lift": ("pass", "none", "pass"),
        "coverage": ("fail", "warning", "warn"),
    }


def test_sarif_without_a_rule_line_has_no_region():
    report = make_report(("a", "fail"))
    (run,) = to_sarif(document(report, decide(report, gate())))["runs"]
    assert run["results"][0]["locations"] == [{"physicalLocation": {"artifactLocation": {"uri": "p.yaml"}}}]


# -- Markdown -----------------------------------------------------------------------------
def test_markdown_summary(loaded, report):
    text = to_markdown(document(report, decide(report, loaded.pack.gate)))
    lines = text.splitlines()
    assert lines[0] == "## recgov gate: BLOCKED"
    assert lines[2] == f"Pack `gate-test` 1.4.0 (`{loaded.content_hash[:12]}`), model `als-20240611`, dataset `9f2c9f2c9f2c`."
    assert lines[4] == "pass: 1 · warn: 1 · fail: 1 · error: 1 · skipped: 1"
    rows = [line for line in lines if line.startswith("| ") and "`" in line]
    assert [row.split(" | ")[0:2] for row in rows] == [
        ["| ERROR", "`data-validation`"],
        ["| FAIL", "`min-inputs`"],
        ["| SKIP", "`carbon-budget`"],
        ["| PASS", "`lift`"],
        ["| WARN", "`coverage`"],
    ]
    assert "| WARN | `coverage` | quality | 0.0412 | >= 0.05 | coverage of als is 0.0412; required >= 0.05 |" in lines
    assert lines[-5:] == ["", "**Why:**", ""] + [f"- {reason}" for reason in REASONS]


def test_markdown_escapes_pipes_and_marks_shadow_mode():
    report = make_report(("a|b", "pass"), shadow=True)
    text = to_markdown(document(report, decide(report, gate())))
    assert text.startswith("## recgov gate: passed (shadow mode, not enforced)\n")
    assert "| a\\|b message |" in text
