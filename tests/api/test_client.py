"""A whole compliance review with the Python client only, from keys made by the command line.

Over real HTTP on SQLite and PostgreSQL (``tests/api/conftest.py``): the
reviewer's key and the admin's are created with ``recgov keys create``; then
packs, an audit and its gate, a promotion, the trail's events, a signed export
verified offline, the report, models, lineage and the records, all through
:class:`recgov.client.Client`. Refusals come back as :class:`ClientError` with
the API's problem document.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app as cli
from recgov.client import AuditTimeout, Client, ClientError

AUDIT_DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
PACK = "apiVersion: recgov/v1\nmetadata:\n  name: client-review\n  version: 1.0.0\n  owner: compliance team\n"


def _cli_key(server, role: str) -> str:
    """A key made the way an admin makes one: ``recgov keys create``."""
    made = CliRunner().invoke(cli, ["keys", "create", f"client-{role}", "--role", role, "--database-url", server.db_url, "--json"])
    assert made.exit_code == 0, made.output
    return json.loads(made.stdout)["token"]


def test_a_whole_review_with_the_client(server, tmp_path: Path) -> None:
    auditor_token, admin_token = _cli_key(server, "auditor"), _cli_key(server, "admin")
    mv = server.model_version
    with Client(server.url, auditor_token) as reviewer, Client(server.url, admin_token) as admin:
        assert admin.store_pack(PACK)["created"] in (True, False)
        refs = {p["ref"] for p in reviewer.packs()}
        assert {"baseline", "client-review@1.0.0"} <= refs
        assert reviewer.pack_text("client-review", "1.0.0") == PACK
        assert reviewer.validate_pack(PACK)["pack"] == "client-review"

        job = reviewer.start_audit("baseline", data=AUDIT_DATA, model_version=mv)
        done = reviewer.wait_for_audit(job["id"], timeout=300, poll_s=0.5)
        assert done["status"] == "succeeded", done
        gate = reviewer.gate(job["id"])
        assert isinstance(gate["decision"]["passed"], bool) and gate["results"]
        promoted = admin.promote(mv, "shadow")
        assert promoted
        assert any(d["model_version"] == mv for d in reviewer.deployments()["shadow"])

        events = list(reviewer.trail_events(page_size=7))
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        audits = list(reviewer.trail_events(action="audit", page_size=2))
        assert audits and all(e["action"].startswith("audit") for e in audits)
        assert reviewer.verify_trail()["intact"]

        admin.checkpoint()
        export = reviewer.download_trail_export(tmp_path / "trail.jsonl")
        report = reviewer.verify_export(export)  # offline, with the keys the API publishes
        assert report.intact and report.checkpoints_verified >= 1
        pem = reviewer.trail_keys()[0]["public_key_pem"]
        assert reviewer.verify_export(export, pem).intact

        page = reviewer.download_report(mv, tmp_path / "report.html").read_text(encoding="utf-8")
        assert mv in page and gate["pack_hash"] in page  # the audited pack is the one in force: its disclosure is in
        summary = reviewer.model(mv)
        assert summary["pack"]["pack"] == "baseline" and summary["current_stage"] == "shadow"
        assert any(m["version_id"] == mv for m in reviewer.models(limit=100)["models"])
        assert reviewer.lineage(mv)["model_version"]["version_id"] == mv
        assert reviewer.processing_record("baseline", recipients=["hosting provider"])["recipients"] == ["hosting provider"]
        assert reviewer.disclosure("baseline", model_version=mv)["model"]["params"]
        inputs = reviewer.datasets()  # the audit above read synthetic data: the generator is offered, within its limits
        assert inputs["synthetic"]["max_interactions"] > 0 and any(r["audit_data"] for r in inputs["recorded"])
        state = admin.consent_state("client-review-subject", "eu-gdpr-dsa")  # nobody on record: opt-in needs a grant
        assert state["subject"] is None and {v["purpose"]: v["allowed"] for v in state["verdicts"]}["personalization"] is False

        with pytest.raises(ClientError) as refused:
            reviewer.model("no-such-model")
        assert refused.value.status == 404 and "'no-such-model' is not in the store" in refused.value.detail
        assert refused.value.problem["instance"] == "/v1/models/no-such-model"
        with pytest.raises(ClientError) as forbidden:
            reviewer.checkpoint()
        assert forbidden.value.status == 403 and forbidden.value.problem["type"].endswith("/forbidden")
        assert not (tmp_path / "missing.html").exists()
        with pytest.raises(ClientError):
            reviewer.download_report("no-such-model", tmp_path / "missing.html")
        assert not (tmp_path / "missing.html").exists() and not (tmp_path / ".missing.html.partial").exists()


def test_wait_gives_up_at_its_timeout(server) -> None:
    with Client(server.url, server.tokens["auditor"]) as reviewer:
        job = reviewer.start_audit("baseline", data=AUDIT_DATA, model_version=server.model_version)
        with pytest.raises(AuditTimeout) as waited:
            reviewer.wait_for_audit(job["id"], timeout=0)
        assert waited.value.job["id"] == job["id"]
        reviewer.wait_for_audit(job["id"], timeout=300, poll_s=0.5)  # let it finish before the server stops


def test_a_client_needs_a_key() -> None:
    with pytest.raises(ValueError, match="recgov keys create"):
        Client("http://127.0.0.1:1", "")


def test_consent_imports_and_a_refused_rollback_with_the_client(server) -> None:
    """The client's import reads the same report as the CLI's; a rollback with nothing in production is a 409 it carries."""
    export = "user,purpose,status,time,source,banner_version\nclient-import-dana-4,personalization,granted,2026-01-05T09:30:00Z,banner,2025-11\n"
    with Client(server.url, server.tokens["admin"]) as admin:
        report = admin.import_consent(export, fmt="csv", pack="eu-gdpr-dsa", mapping="subject=user", name="cmp.csv")
        assert (report["file"], report["format"], report["rows"], report["invalid"]) == ("cmp.csv", "csv", 1, 0)
        assert report["added"] + report["already_recorded"] == 1
        with pytest.raises(ClientError) as broken:
            admin.import_consent("[1, 2]\n", fmt="jsonl", pack="eu-gdpr-dsa")
        assert broken.value.status == 422 and broken.value.problem["errors"][0]["location"] == "body"
        assert admin.deployments()["production"] == []  # this module promotes to shadow only
        with pytest.raises(ClientError) as refused:
            admin.rollback()
        assert refused.value.status == 409 and refused.value.problem["type"].endswith("/deployment-state")


def test_the_client_follows_the_subject_requests_cursor(server) -> None:
    """Every request once, oldest first, whatever the page size; the filters hold on every page."""
    from datetime import UTC, datetime, timedelta

    from audits import list_requests, open_request

    now = datetime.now(UTC)
    with server.store.session() as session:
        for n in range(5):
            open_request(session, subject_id=f"client-subject-{n}", kind=("access", "erasure")[n % 2], deadline_days=30, requested_at=now - timedelta(days=40 - 9 * n))
        expected = [r["id"] for r in list_requests(session)]
        erasures = [r["id"] for r in list_requests(session, kind="erasure")]
        overdue = [r["id"] for r in list_requests(session, overdue_at=now)]
    with Client(server.url, _cli_key(server, "auditor")) as reviewer:
        assert [r["id"] for r in reviewer.subject_requests(page_size=2)] == expected
        assert [r["id"] for r in reviewer.subject_requests(kind="erasure", page_size=1)] == erasures
        assert [r["id"] for r in reviewer.subject_requests(overdue=True, page_size=1)] == overdue and overdue
        assert all("client-subject" not in r["subject"] for r in reviewer.subject_requests())
