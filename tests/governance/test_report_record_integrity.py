"""The regulator's report says when a record it shows no longer matches the trail event that wrote it; on SQLite and
PostgreSQL.

Regression: the report read the audits, their verdicts and rule results, the training run and the deployments from
their tables and showed the signed checkpoint beside them. A row edited in place (an audit's ``fail`` turned into
``pass``) leaves the chain and its checkpoint intact, so the report presented the edit as proven.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from audits import Store
from audits.models import AuditResult, AuditRun, TrailEvent
from governance.report.integrity import SCOPE
from tests.governance.cli_helpers import invoke, ok
from tests.tamper import switch_off_append_only

DATA = "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=5"


def _built(db_url: str, tmp_path: Path) -> str:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url)["model_version"]
    done = invoke("audit", DATA, "--pack", "baseline", "--model", version, "--no-train", "--out", tmp_path / "gate", "--database-url", db_url, "--json")
    assert done.exit_code in (0, 1), done.output
    ok("trail", "checkpoint", "--database-url", db_url)
    return version


def _report(db_url: str, tmp_path: Path, version: str) -> tuple[dict, str]:
    html = tmp_path / "report.html"
    summary = ok("report", version, "--out", html, "--database-url", db_url)
    return summary, html.read_text(encoding="utf-8")


def test_an_untouched_store_is_reported_sound(store: Store, db_url: str, tmp_path: Path) -> None:
    version = _built(db_url, tmp_path)
    summary, html = _report(db_url, tmp_path, version)
    records = summary["records"]
    assert records["sound"] is True and records["problems"] == [] and records["scope"] == SCOPE
    with store.session() as session:
        audits = session.scalars(select(AuditRun.id).where(AuditRun.model_version_id == version)).all()
    assert audits and records["checked"] == 4 + len(audits)  # data set, run, its carbon, model, each audit
    assert 'data-integrity="sound"' in html and 'data-integrity="broken"' not in html


def test_an_audit_verdict_edited_in_place_is_reported(store: Store, db_url: str, tmp_path: Path) -> None:
    version = _built(db_url, tmp_path)
    with store.session() as session:
        audit = session.scalars(select(AuditRun).where(AuditRun.model_version_id == version)).first()
        recorded = audit.verdict
        forged = "fail" if recorded == "pass" else "pass"
        session.execute(update(AuditRun).where(AuditRun.id == audit.id).values(verdict=forged))
        audit_id = audit.id
    summary, html = _report(db_url, tmp_path, version)
    assert summary["checkpoint"] is not None  # the chain and its signature still hold
    problems = summary["records"]["problems"]
    assert summary["records"]["sound"] is False
    assert {"record": f"audit #{audit_id}", "problem": f"verdict is {forged!r} in the store but the trail recorded {recorded!r}"} in problems
    banner = html[: html.index('id="system"')]
    assert 'data-integrity="broken"' in banner and f"audit #{audit_id}: verdict is" in banner


def test_a_rule_result_edited_in_place_is_reported(store: Store, db_url: str, tmp_path: Path) -> None:
    version = _built(db_url, tmp_path)
    with store.session() as session:
        audit_id = session.scalars(select(AuditRun.id).where(AuditRun.model_version_id == version)).first()
        first = session.scalars(select(AuditResult.id).where(AuditResult.audit_run_id == audit_id).order_by(AuditResult.id)).first()
        switch_off_append_only(session, "audit_results")
        session.execute(update(AuditResult).where(AuditResult.id == first).values(status="pass", message="all good"))
    summary, _ = _report(db_url, tmp_path, version)
    assert [p["record"] for p in summary["records"]["problems"]] == [f"audit #{audit_id}"]
    assert "per-rule results no longer match" in summary["records"]["problems"][0]["problem"]


def test_a_trail_event_changed_without_rehashing_is_reported(store: Store, db_url: str, tmp_path: Path) -> None:
    version = _built(db_url, tmp_path)
    with store.session() as session:
        audit = session.scalars(select(AuditRun).where(AuditRun.model_version_id == version)).first()
        payload = session.scalar(select(TrailEvent.payload).where(TrailEvent.seq == audit.trail_seq))
        switch_off_append_only(session, "trail_events")
        session.execute(update(TrailEvent).where(TrailEvent.seq == audit.trail_seq).values(payload=payload.replace('"verdict":"', '"verdict":"x')))
        seq, audit_id = audit.trail_seq, audit.id
    summary, _ = _report(db_url, tmp_path, version)
    assert {"record": f"audit #{audit_id}", "problem": f"its trail event {seq} no longer matches its own hash (the event was changed)"} in summary["records"]["problems"]


def test_carbon_figures_edited_in_place_are_reported(store: Store, db_url: str, tmp_path: Path) -> None:
    from audits.lineage import record_carbon
    from audits.models import ModelVersion, TrainingRun

    version = _built(db_url, tmp_path)
    with store.session() as session:
        run_id = session.get(ModelVersion, version).training_run_id
        record_carbon(session, training_run=run_id, energy_kwh=0.5, emissions_kg=0.2, carbon_method="test method")
    with store.session() as session:
        session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(energy_kwh=0.001))
    summary, html = _report(db_url, tmp_path, version)
    assert {"record": f"training run {run_id} (energy and emissions)", "problem": "energy_kwh is 0.001 in the store but the trail recorded 0.5"} in summary["records"]["problems"]


def test_measured_carbon_goes_to_openlineage_with_units_and_method(store: Store, db_url: str, tmp_path: Path) -> None:
    import json

    from audits.lineage import record_carbon
    from audits.models import ModelVersion

    version = _built(db_url, tmp_path)
    with store.session() as session:
        run_id = session.get(ModelVersion, version).training_run_id
        record_carbon(session, training_run=run_id, energy_kwh=0.25, emissions_kg=0.1, carbon_method="test method")
    events = tmp_path / "events.jsonl"
    ok("report", version, "--out", tmp_path / "r.html", "--openlineage", events, "--database-url", db_url)
    train_done = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()][1]
    carbon = train_done["run"]["facets"]["recgov_carbon"]
    assert {k: carbon[k] for k in ("measured", "energyKwh", "emissionsKg", "energyUnit", "emissionsUnit", "method", "note")} == {
        "measured": True, "energyKwh": 0.25, "emissionsKg": 0.1, "energyUnit": "kWh", "emissionsUnit": "kg CO2eq", "method": "test method", "note": None,
    }


def test_the_dsa_audit_export_says_a_record_no_longer_matches(store: Store, db_url: str, tmp_path: Path) -> None:
    import json

    version = _built(db_url, tmp_path)
    with store.session() as session:
        audit = session.scalars(select(AuditRun).where(AuditRun.model_version_id == version)).first()
        forged = "fail" if audit.verdict == "pass" else "pass"
        session.execute(update(AuditRun).where(AuditRun.id == audit.id).values(verdict=forged))
        audit_id = audit.id
    export = tmp_path / "audit.json"
    ok("report", version, "--out", tmp_path / "r.html", "--dsa-audit-export", export, "--database-url", db_url)
    records = json.loads(export.read_text(encoding="utf-8"))["trail"]["records"]
    assert records["sound"] is False and [p["record"] for p in records["problems"]] == [f"audit #{audit_id}"]
    markdown = export.with_suffix(".md").read_text(encoding="utf-8")
    assert "- Records that NO LONGER MATCH the trail (1 of" in markdown and f"  - audit \\#{audit_id}: verdict is" in markdown


def test_the_reports_audit_counts_are_the_stored_results(store: Store, db_url: str, tmp_path: Path) -> None:
    """Cross-check by hand: each audit's counts by status and the rows of its results table are the store's rows."""
    import re

    from sqlalchemy import func

    version = _built(db_url, tmp_path)
    _, html = _report(db_url, tmp_path, version)
    with store.session() as session:
        for audit_id in session.scalars(select(AuditRun.id).where(AuditRun.model_version_id == version)).all():
            stored = dict(session.execute(select(AuditResult.status, func.count()).where(AuditResult.audit_run_id == audit_id).group_by(AuditResult.status)).all())
            n_rows = sum(stored.values())
            section = html[html.index(f"<h3>Audit #{audit_id}:") :]
            section = section[: section.index("</table>")]
            shown = {status: int(n) for status, n in re.findall(r"\b(pass|warn|fail|error|skipped) (\d+)\b", section.split("</p>")[0])}
            assert stored and {k: v for k, v in shown.items() if v} == stored
            assert section.count("<tr>") - 1 == n_rows  # one row per stored result, under the header
