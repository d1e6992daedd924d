"""Audits (governance.audit) and the gate, through the CLI, on SQLite and PostgreSQL.

A pack the model satisfies passes (exit 0); tightening one threshold blocks
(exit 1) and names the rule; JUnit parses with a standard parser; every result
in SQL carries the pack, model and dataset stamps; a broken pack stores nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import JUnitXml
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.models import AuditResult, AuditRun, TrailEvent
from audits.results import results_digest
from governance.cli import app

runner = CliRunner()
DATA = "synthetic:n_users=400,n_items=250,n_interactions=20000,seed=3"

PACK = """\
apiVersion: recgov/v1
metadata: {name: test-pack, version: 0.1.0, owner: tests}
data:
  rules:
    - id: data-clean
      check: validation_findings
      description: No finding on more than 5% of events.
      params: {default_max_share: 0.05}
minimization:
  purposes:
    personalization: {allowed_inputs: [user_id, item_id, event_type, value]}
  rules:
    - id: min-inputs
      check: input_allowlist
      description: Only interaction fields.
      legal_reference: GDPR Art. 5(1)(c)
carbon:
  measure: false
quality:
  tune: false
  rules:
    - id: lift-over-popularity
      check: baseline_lift
      description: Beat popularity.
      params: {min_ratio: LIFT}
    - id: ndcg-floor
      check: metric_bound
      description: Some accuracy.
      params: {metric: ndcg, min: 0.01}
"""


def write_pack(tmp_path: Path, lift: float = 1.0, name: str = "pack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(PACK.replace("LIFT", str(lift)))
    return path


def gate(db_url: str, pack: Path, out: Path, *extra: str):
    return runner.invoke(app, ["gate", DATA, "--pack", str(pack), "--out", str(out), "--database-url", db_url, *extra])


def test_gate_passes_then_blocks_on_a_tightened_threshold(db_url: str, tmp_path: Path) -> None:
    ok = gate(db_url, write_pack(tmp_path, 1.0), tmp_path / "ok")
    assert ok.exit_code == 0, ok.output
    assert "gate: PASS" in ok.stdout

    tight = gate(db_url, write_pack(tmp_path, 1000.0, "tight.yaml"), tmp_path / "tight")
    assert tight.exit_code == 1, tight.output
    assert "lift-over-popularity (quality) is fail" in tight.stdout
    doc = json.loads((tmp_path / "tight" / "gate.json").read_text())
    assert doc["decision"]["passed"] is False
    assert [r["rule_id"] for r in doc["results"] if r["status"] == "fail"] == ["lift-over-popularity"]
    # passed checks are in the full result too
    assert {r["rule_id"] for r in doc["results"]} == {"data-clean", "min-inputs", "lift-over-popularity", "ndcg-floor"}

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "tight" / "junit.xml"))))
    cases = {case.name: case for case in suite}
    assert set(cases) == {"data-clean", "min-inputs", "lift-over-popularity", "ndcg-floor"}
    assert suite.tests == 4 and suite.failures == 1 and suite.errors == 0
    assert not cases["lift-over-popularity"].is_passed and cases["ndcg-floor"].is_passed
    sarif = json.loads((tmp_path / "tight" / "gate.sarif").read_text())
    failing = [r for r in sarif["runs"][0]["results"] if r["level"] == "error"]
    assert failing[0]["ruleId"] == "lift-over-popularity"
    assert failing[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == PACK.splitlines().index("    - id: lift-over-popularity") + 1
    assert "BLOCKED" in (tmp_path / "tight" / "summary.md").read_text()


def test_every_result_in_sql_carries_its_stamps_and_the_trail_holds_their_digest(db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", DATA, "--pack", str(write_pack(tmp_path)), "--out", str(tmp_path / "o"), "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            run = connection.execute(select(AuditRun)).one()
            rows = connection.execute(select(AuditResult).order_by(AuditResult.id)).all()
            event = connection.execute(select(TrailEvent).where(TrailEvent.action == "audit.recorded")).one()
    finally:
        store.close()
    assert len(rows) == 4
    for row in rows:
        assert row.pack_name == "test-pack" and row.pack_version == "0.1.0"
        assert row.pack_hash == doc["pack_hash"] and len(row.pack_hash) == 64
        assert row.model_version_id == doc["model_version"] and row.model_version_id.startswith("als-")
        assert row.dataset_hash == doc["dataset_version"] and len(row.dataset_hash) == 64
    assert run.verdict == "pass" and run.policy_hash == doc["pack_hash"]
    payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
    assert payload["summary"]["results_sha256"] == results_digest(doc["results"])
    verify = runner.invoke(app, ["trail", "verify", "--database-url", db_url])
    assert verify.exit_code == 0, verify.output


def test_shadow_mode_records_without_enforcing(db_url: str, tmp_path: Path) -> None:
    result = gate(db_url, write_pack(tmp_path, 1000.0), tmp_path / "s", "--shadow")
    assert result.exit_code == 0, result.output
    assert "shadow mode, not enforced" in result.stdout
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            assert connection.execute(select(AuditRun.verdict)).scalar_one() == "shadow"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("apiVersion: recgov/v1\nmetadata: [1, 2\n", "YAML syntax error"),
        (PACK.replace("min: 0.01", "min: 1.5").replace("LIFT", "1"), "can never pass"),
        (PACK.replace("LIFT", "1").replace("owner: tests", "owner: tests, colour: blue"), "unknown key"),
    ],
)
def test_a_broken_pack_exits_2_and_stores_nothing(db_url: str, tmp_path: Path, text: str, message: str) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(text)
    result = runner.invoke(app, ["gate", DATA, "--pack", str(pack), "--out", str(tmp_path / "b"), "--database-url", db_url])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert str(pack) in result.stderr
    assert not (tmp_path / "b").exists()
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            assert connection.execute(select(func.count()).select_from(AuditRun)).scalar_one() == 0
            assert connection.execute(select(func.count()).select_from(TrailEvent)).scalar_one() == 0
    finally:
        store.close()


def test_slate_audit_runs_output_checks_and_skips_accuracy(db_url: str, tmp_path: Path) -> None:
    slates = tmp_path / "slates.jsonl"
    slates.write_text("\n".join(json.dumps({"user_id": f"u{u:06d}", "items": [f"i{(u * 7 + j) % 250:05d}" for j in range(10)]}) for u in range(100)))
    pack = tmp_path / "slate-pack.yaml"
    pack.write_text(PACK.replace("LIFT", "1").replace("params: {metric: ndcg, min: 0.01}", "params: {metric: coverage, min: 0.5}"))
    result = runner.invoke(app, ["audit", DATA, "--pack", str(pack), "--slates", str(slates), "--out", str(tmp_path / "o"), "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    by_rule = {r["rule_id"]: r for r in json.loads(result.stdout)["results"]}
    assert by_rule["lift-over-popularity"]["status"] == "skipped"
    shown = {(u * 7 + j) % 250 for u in range(100) for j in range(10)}
    assert by_rule["ndcg-floor"]["status"] == "pass"
    # coverage = distinct items shown / the catalog known from the data (250 items, nearly all with events)
    assert by_rule["ndcg-floor"]["value"] == pytest.approx(len(shown) / 250, abs=0.02)


def test_broken_slates_exit_2(db_url: str, tmp_path: Path) -> None:
    slates = tmp_path / "slates.jsonl"
    slates.write_text('{"user_id": "u1", "items": ["a"]}\nnot json\n')
    result = runner.invoke(app, ["audit", DATA, "--pack", str(write_pack(tmp_path)), "--slates", str(slates), "--database-url", db_url])
    assert result.exit_code == 2
    assert f"{slates} line 2: not JSON" in result.stderr


@pytest.mark.parametrize("pack", ["baseline", "eu-gdpr-dsa", "california-ccpa"])
def test_policy_test_runs_the_shipped_packs_fixture_cases(pack: str) -> None:
    result = runner.invoke(app, ["policy", "test", pack, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["failed"] == 0 and doc["passed"] >= 10


def test_a_forbidden_column_mapped_onto_a_model_input_is_refused(db_url: str, tmp_path: Path) -> None:
    """Regression (review): `--map value=gender` fed an audit-only attribute to the model unnoticed."""
    log = tmp_path / "log.csv"
    rows = ["uid,sku,ts,gender"] + [f"u{u},i{(u * 3 + j) % 40},{1700000000 + u * 100 + j},{u % 2}" for u in range(120) for j in range(12)]
    log.write_text("\n".join(rows) + "\n")
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.replace("LIFT", "1").replace("personalization: {allowed_inputs: [user_id, item_id, event_type, value]}", "personalization: {allowed_inputs: [user_id, item_id, event_type, value]}\n  audit_only_attributes: [gender]"))
    base = ["audit", str(log), "--pack", str(pack), "--out", str(tmp_path / "o"), "--database-url", db_url, "--json", "--map"]
    clean = json.loads(runner.invoke(app, [*base, "user_id=uid,item_id=sku,timestamp=ts"]).stdout)
    assert {r["rule_id"]: r["status"] for r in clean["results"]}["min-inputs"] == "pass"
    # the mapped column never reaches a fit: refused before training (a failing rule came after the model was recorded)
    leaked = runner.invoke(app, [*base, "user_id=uid,item_id=sku,timestamp=ts,value=gender"])
    assert leaked.exit_code == 2, leaked.output
    assert "event field value reads column 'gender' (gender)" in leaked.stderr
