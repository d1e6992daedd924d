"""``/v1/audits`` over real HTTP, on both engines: background audits, their results, evidence and gate.

Audits really run (on a small synthetic data set and the model the ``server``
fixture trained); each test polls its jobs until they finish, with a deadline.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select

from audits import jobs as job_store
from audits.models import AuditJob, TrailEvent
from governance import audit as audit_module
from governance.api import ApiSettings
from governance.api.errors import PROBLEM_JSON
from governance.api.audit_jobs import AuditRunner
from governance.cli.policy import SHIPPED
from governance.gate import GateDocument, gate_json_schema
from governance.policy import load_pack

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
SMALL = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=2"
UNREACHABLE = (SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: unreachable").replace("min_ratio: 2.0", "min_ratio: 1000.0")
BASELINE_RULES = {rule.id for _, rule in load_pack(SHIPPED / "baseline.yaml").pack.rules()}
POLL_DEADLINE_S = 180


def _wait(server, job_id: str, *, until: tuple[str, ...] = ("succeeded", "failed")) -> dict[str, Any]:
    """Poll GET /v1/audits/{id} (as a viewer) until the job's status is one of ``until``."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    with server.client("viewer") as client:
        while True:
            response = client.get(f"/v1/audits/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            if job["status"] in until:
                return job
            assert time.monotonic() < deadline, f"audit job {job_id} still {job['status']} after {POLL_DEADLINE_S} s"
            time.sleep(0.2)


def _start(server, body: dict[str, Any], role: str = "auditor") -> str:
    with server.client(role) as client:
        response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/audits/{job['id']}" == job["links"]["self"]
    assert job["status"] in ("queued", "running") and job["audit_id"] is None
    return job["id"]


@pytest.fixture(scope="module")
def unreachable_pack(server) -> str:
    """A stored pack whose quality rule no model can meet (random x 1000)."""
    with server.client("admin", **{"Content-Type": "application/yaml"}) as client:
        assert client.post("/v1/packs", content=UNREACHABLE).status_code in (200, 201)
    return "unreachable@1.0.0"


@pytest.fixture(scope="module")
def passed_job(server) -> dict[str, Any]:
    """An audit of the fixture's model under the baseline pack, finished."""
    job_id = _start(server, {"pack": "baseline", "model_version": server.model_version, "data": DATA})
    return _wait(server, job_id)


def test_an_audit_runs_in_the_background_and_gives_every_rule_with_its_evidence(server, passed_job) -> None:
    job = passed_job
    assert job["status"] == "succeeded", job["error"]
    assert job["requested_by"] == f"key:{server.key_ids['auditor']}:test-auditor"
    assert job["request"] == {"pack": "baseline", "data": DATA, "model_version": server.model_version, "slates": None, "baseline": None, "shadow": False}
    assert job["verdict"] == "pass" and job["decision"] == {"passed": True, "enforced": True, "reasons": []}
    assert isinstance(job["audit_id"], int) and job["started_at"] and job["finished_at"] >= job["started_at"]
    by_rule = {r["rule_id"]: r for r in job["results"]}
    assert set(by_rule) == BASELINE_RULES
    assert sum(job["counts"].values()) == len(BASELINE_RULES)
    quality = by_rule["quality-beats-random"]
    assert quality["status"] == "pass" and quality["check"] and quality["threshold"] == 2.0
    assert isinstance(quality["value"], float) and quality["value"] >= 2.0
    assert quality["evidence"], "a passed rule keeps its evidence too"
    assert by_rule["data-validation"]["evidence"] == {"over_limit": {}, "findings": {}}


def test_the_gate_document_is_the_one_gate_json_holds(server, passed_job) -> None:
    with server.client("viewer") as client:
        response = client.get(f"/v1/audits/{passed_job['id']}/gate")
    assert response.status_code == 200, response.text
    gate = response.json()
    jsonschema.validate(gate, gate_json_schema())
    doc = GateDocument.model_validate(gate)
    assert doc.audit_id == str(passed_job["audit_id"]) and doc.model_version == server.model_version
    assert doc.decision.passed and [r.rule_id for r in doc.results] == [r["rule_id"] for r in passed_job["results"]]
    written = (server.home / "audits" / passed_job["id"] / "gate.json").read_text()
    assert GateDocument.model_validate_json(written) == doc


def test_a_pack_that_cannot_pass_blocks_the_gate_and_shadow_mode_only_reports(server, unreachable_pack) -> None:
    body = {"pack": unreachable_pack, "model_version": server.model_version, "data": DATA}
    enforced_id = _start(server, body)
    shadow_id = _start(server, {**body, "shadow": True})  # both run at once on the runner's pool
    enforced, shadow = _wait(server, enforced_id), _wait(server, shadow_id)
    assert enforced["status"] == shadow["status"] == "succeeded", (enforced["error"], shadow["error"])
    assert enforced["verdict"] == "fail" and enforced["decision"]["passed"] is False and enforced["decision"]["enforced"] is True
    assert any(reason.startswith("quality-beats-random (quality) is fail") for reason in enforced["decision"]["reasons"])
    failed_rule = next(r for r in enforced["results"] if r["rule_id"] == "quality-beats-random")
    assert failed_rule["status"] == "fail" and failed_rule["threshold"] == 1000.0 and failed_rule["value"] < 1000.0
    assert shadow["verdict"] == "shadow" and shadow["decision"]["passed"] is True and shadow["decision"]["enforced"] is False
    assert shadow["decision"]["reasons"] and all(r.startswith("shadow mode, not enforced: ") for r in shadow["decision"]["reasons"])
    with server.client("viewer") as client:
        gate = client.get(f"/v1/audits/{enforced_id}/gate").json()
    assert gate["decision"]["passed"] is False and gate["pack"] == "unreachable" and gate["counts"]["fail"] >= 1


def test_the_data_alone_can_be_audited(server) -> None:
    job = _wait(server, _start(server, {"pack": "baseline", "data": SMALL}))
    assert job["status"] == "succeeded", job["error"]
    with server.client("viewer") as client:
        gate = client.get(f"/v1/audits/{job['id']}/gate").json()
    assert gate["model_version"] is None and gate["decision"]["passed"] is True
    assert {r["rule_id"] for r in job["results"]} == BASELINE_RULES


def test_logged_slates_can_be_audited_without_a_model(server) -> None:
    from recommender.loaders import load_data

    events = load_data(SMALL).events
    items = sorted(map(str, events["item_id"].unique()))
    users = sorted(map(str, events["user_id"].unique()))[:40]
    rows = [f"{user},{items[(u * 7 + rank) % len(items)]},{rank + 1}" for u, user in enumerate(users) for rank in range(5)]
    data_dir = server.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "slates.csv").write_text("user_id,item_id,rank\n" + "\n".join(rows) + "\n", encoding="utf-8")
    job = _wait(server, _start(server, {"pack": "baseline", "data": SMALL, "slates": "slates.csv"}))
    assert job["status"] == "succeeded", job["error"]
    by_rule = {r["rule_id"]: r for r in job["results"]}
    assert by_rule["quality-beats-random"]["status"] == "skipped"
    assert by_rule["quality-beats-random"]["message"] == "metric 'ndcg' of model 'logged' is not in the evaluation"
    with server.client("viewer") as client:
        assert client.get(f"/v1/audits/{job['id']}/gate").json()["model_version"] is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"pack": "no-such-pack", "data": DATA}, "no shipped pack 'no-such-pack'"),
        ({"pack": "unreachable@9.9.9", "data": DATA}, "no stored pack 'unreachable' at version '9.9.9'; stored versions: 1.0.0"),
        ({"pack": "baseline", "data": DATA, "model_version": "als-nope"}, "model version 'als-nope' is not in the store"),
    ],
)
def test_an_unknown_pack_or_model_is_a_404_problem(server, unreachable_pack, body, detail) -> None:
    with server.client("auditor") as client:
        response = client.post("/v1/audits", json=body)
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"].startswith(detail), response.json()
    with server.client("viewer") as client:
        unknown = client.get("/v1/audits/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and unknown.json()["instance"] == "/v1/audits/00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"pack": "baseline"}, "data", "Field required"),
        ({"pack": "baseline", "data": DATA, "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"pack": "baseline", "data": DATA, "shadow": "maybe"}, "shadow", "valid boolean"),
        ({"pack": "baseline", "data": DATA, "shadow": 1}, "shadow", "valid boolean"),  # a JSON boolean only
        ({"pack": "baseline", "data": DATA, "shadow": "true"}, "shadow", "valid boolean"),
        ({"pack": "", "data": DATA}, "pack", "at least 1 character"),
        ({"pack": "baseline", "data": DATA, "model_version": "m", "slates": "s.csv"}, "", "give model_version or slates, not both"),
        ({"pack": "baseline", "data": "../../etc/passwd"}, "data", "is outside $RECGOV_HOME/data"),
        ({"pack": "baseline", "data": "/etc/passwd"}, "data", "is outside $RECGOV_HOME/data"),
        ({"pack": "baseline", "data": "missing.csv"}, "data", "'missing.csv': no such file or folder under $RECGOV_HOME/data"),
        ({"pack": "baseline", "data": DATA, "baseline": "nope.parquet"}, "baseline", "no such file or folder"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_field(server, body, field, message) -> None:
    with server.client("auditor") as client:
        response = client.post("/v1/audits", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and e["location"] == "body" and message in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:n_users=abc", "n_users: Input should be a valid integer"),
        ("synthetic:n_users=-5", "n_users: Input should be greater than or equal to 1"),
        ("synthetic:colour=red", "colour: Extra inputs are not permitted"),
        ("synthetic:n_users=10,n_users=20", "'n_users' is given twice"),
        ("synthetic:start=2024-13-01", "start: Input should be a valid datetime"),
        ("synthetic:protected_groups=x", "is not of the form name:number"),
    ],
)
def test_a_synthetic_spec_that_does_not_parse_is_a_422_and_queues_nothing(server, spec, message) -> None:
    """Refused before a job exists, as a spec over the limits is: no job row, no trail event, nothing to fail later."""
    with server.client("auditor") as client:
        before = client.get("/v1/audits", params={"limit": 1}).json()["total"], server_trail_head(server)
        response = client.post("/v1/audits", json={"pack": "baseline", "data": spec})
        after = client.get("/v1/audits", params={"limit": 1}).json()["total"], server_trail_head(server)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON, response.text
    errors = response.json()["errors"]
    assert [(e["location"], e["field"]) for e in errors] == [("body", "data")] and message in errors[0]["message"], errors
    assert after == before


def server_trail_head(server) -> int:
    with server.client("admin") as client:
        return client.get("/v1/trail/events", params={"limit": 1}).json()["head_seq"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "status=done"])
def test_bad_paging_is_a_422(server, query) -> None:
    with server.client("viewer") as client:
        response = client.get(f"/v1/audits?{query}")
        not_an_id = client.get("/v1/audits/42/gate")
    assert response.status_code == 422 and response.json()["errors"][0]["location"] == "query"
    assert not_an_id.status_code == 422 and not_an_id.json()["errors"][0]["field"] == "job_id"


def test_data_that_cannot_be_loaded_fails_the_job_with_its_cause(server) -> None:
    data_dir = server.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "no-ids.csv").write_text("when,what\n1,2\n", encoding="utf-8")
    job = _wait(server, _start(server, {"pack": "baseline", "data": "no-ids.csv"}))
    assert job["status"] == "failed" and job["audit_id"] is None and job["results"] is None
    assert "no-ids.csv" in job["error"] and "\n" not in job["error"]
    with server.client("viewer") as client:
        gate = client.get(f"/v1/audits/{job['id']}/gate")
    assert gate.status_code == 409 and gate.headers["content-type"] == PROBLEM_JSON
    assert gate.json()["errors"] == [{"status": "failed", "error": job["error"]}]
    assert gate.json()["detail"].startswith(f"audit job {job['id']} is failed: it has no gate decision")


def test_a_crashing_audit_ends_failed_without_leaking_its_message(server, monkeypatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("kaboom with a secret inside")

    # The audit function is replaced in this process, so the audit runs on a thread of it, not in a child.
    monkeypatch.setattr(server.app.state.settings, "audit_isolation", "thread")
    monkeypatch.setattr(audit_module, "run_audit", crash)
    job = _wait(server, _start(server, {"pack": "baseline", "data": SMALL}))
    assert job["status"] == "failed"
    assert job["error"] == "internal error (RuntimeError); it has been logged"
    with server.store.snapshot() as connection:
        failed = connection.execute(select(TrailEvent.payload).where(TrailEvent.action == "audit_job.failed", TrailEvent.objects.contains(job["id"]))).scalars().all()
    assert failed and all("kaboom" not in p for p in failed) and '"cause":"RuntimeError"' in failed[0]


def test_a_long_audit_blocks_no_request_and_its_gate_is_a_409_until_done(server, monkeypatch) -> None:
    release = threading.Event()
    original = audit_module.run_audit

    def slow(*args: Any, **kwargs: Any):
        assert release.wait(timeout=POLL_DEADLINE_S), "never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(server.app.state.settings, "audit_isolation", "thread")  # see the test above
    monkeypatch.setattr(audit_module, "run_audit", slow)
    job_id = _start(server, {"pack": "baseline", "model_version": server.model_version, "data": SMALL})
    try:
        running = _wait(server, job_id, until=("running",))
        assert running["started_at"] and running["finished_at"] is None
        with server.client("viewer") as client:
            began = time.monotonic()
            assert client.get("/health").status_code == 200
            assert client.get("/v1/audits", params={"status": "running"}).json()["total"] >= 1
            pending = client.get(f"/v1/audits/{job_id}/gate")
            polled = client.get(f"/v1/audits/{job_id}")
            assert time.monotonic() - began < 5, "requests waited for the audit"
    finally:
        release.set()
    assert pending.status_code == 409 and pending.headers["retry-after"] == "2"
    assert pending.json()["type"] == "https://recgov.dev/problems/audit-not-finished"
    assert pending.json()["errors"] == [{"status": "running", "error": None}]
    assert polled.headers["retry-after"] == "2"
    assert _wait(server, job_id)["status"] == "succeeded"


def test_roles_viewers_read_auditors_start(server, passed_job) -> None:
    body = {"pack": "baseline", "data": SMALL}
    for role, expected in ((None, 401), ("revoked", 401), ("viewer", 403)):
        with server.client(role) as client:
            response = client.post("/v1/audits", json=body)
        assert response.status_code == expected and response.headers["content-type"] == PROBLEM_JSON, role
    with server.client() as client:
        assert client.get("/v1/audits").status_code == 401
        assert client.get(f"/v1/audits/{passed_job['id']}/gate").status_code == 401
    with server.client("viewer") as client:
        assert client.get(f"/v1/audits/{passed_job['id']}").status_code == 200
    with server.client("viewer") as client:
        forbidden = client.post("/v1/audits", json=body)
    assert "this endpoint needs the role auditor or above" in forbidden.json()["detail"]


def test_every_step_is_on_the_trail_attributed_to_the_key(server, passed_job) -> None:
    job_id = passed_job["id"]
    with server.store.snapshot() as connection:
        rows = connection.execute(select(TrailEvent.actor, TrailEvent.action, TrailEvent.objects).order_by(TrailEvent.seq)).all()
    mine = [(actor, action) for actor, action, objects in rows if job_id in objects or f'"audit":{passed_job["audit_id"]},' in objects]
    actor = f"key:{server.key_ids['auditor']}:test-auditor"
    assert [a for _, a in mine] == ["audit_job.queued", "api.audits.create", "audit_job.started", "audit.recorded", "audit_job.succeeded"]
    assert {who for who, _ in mine} == {actor}
    with server.client("auditor") as client:
        assert client.get("/v1/trail/verify").json()["intact"] is True


def test_jobs_are_listed_newest_first_and_paginated(server, passed_job) -> None:
    with server.client("viewer") as client:
        everything = client.get("/v1/audits", params={"limit": 100}).json()
        first = client.get("/v1/audits", params={"limit": 1}).json()
        second = client.get("/v1/audits", params={"limit": 1, "offset": 1}).json()
        beyond = client.get("/v1/audits", params={"offset": everything["total"]}).json()
        succeeded = client.get("/v1/audits", params={"status": "succeeded", "limit": 100}).json()
    assert everything["total"] == len(everything["jobs"]) >= 2
    created = [j["created_at"] for j in everything["jobs"]]
    assert created == sorted(created, reverse=True)
    assert first["jobs"][0]["id"] == everything["jobs"][0]["id"] and second["jobs"][0]["id"] == everything["jobs"][1]["id"]
    assert first["total"] == everything["total"] and (first["limit"], second["offset"]) == (1, 1)
    assert beyond["jobs"] == []
    assert passed_job["id"] in {j["id"] for j in succeeded["jobs"]} and {j["status"] for j in succeeded["jobs"]} == {"succeeded"}


def test_a_gate_document_changed_in_the_store_is_refused(server, passed_job) -> None:
    with server.store.session() as session:
        job = session.get(AuditJob, passed_job["id"])
        original = job.gate
        tampered = {**original, "results": [{**r, "status": "pass"} for r in original["results"]]}
        tampered["results"][0] = {**tampered["results"][0], "message": "all good, trust me"}
        job.gate = tampered
    try:
        with server.client("viewer") as client:
            response = client.get(f"/v1/audits/{passed_job['id']}/gate")
            detail = client.get(f"/v1/audits/{passed_job['id']}").json()
        assert response.status_code == 409 and response.json()["type"] == "https://recgov.dev/problems/gate-mismatch"
        assert f"no longer matches the results recorded for audit {passed_job['audit_id']}" in response.json()["detail"]
        assert detail["decision"] is None and detail["counts"] is None and detail["gate_problem"] == response.json()["detail"]
        assert [r["status"] for r in detail["results"]] == [r["status"] for r in original["results"]]  # the recorded rows, shown
    finally:
        with server.store.session() as session:
            session.get(AuditJob, passed_job["id"]).gate = original


def test_a_gate_decision_changed_in_the_store_is_refused_though_its_results_are_intact(server, passed_job) -> None:
    with server.store.session() as session:
        job = session.get(AuditJob, passed_job["id"])
        original = job.gate
        job.gate = {**original, "decision": {**original["decision"], "passed": not original["decision"]["passed"], "reasons": []}}
    try:
        with server.client("viewer") as client:
            response = client.get(f"/v1/audits/{passed_job['id']}/gate")
            detail = client.get(f"/v1/audits/{passed_job['id']}").json()
    finally:
        with server.store.session() as session:
            session.get(AuditJob, passed_job["id"]).gate = original
    assert response.status_code == 409 and response.json()["type"] == "https://recgov.dev/problems/gate-mismatch"
    assert "its decision differs from the recorded verdict" in response.json()["detail"]
    assert detail["decision"] is None and "its decision differs" in detail["gate_problem"]


def test_an_intact_gate_document_is_shown_with_no_problem(server, passed_job) -> None:
    with server.client("viewer") as client:
        detail = client.get(f"/v1/audits/{passed_job['id']}").json()
        gate = client.get(f"/v1/audits/{passed_job['id']}/gate").json()
    assert detail["gate_problem"] is None and detail["decision"] == gate["decision"] and detail["counts"] == gate["counts"]


def test_after_a_restart_queued_jobs_run_and_interrupted_ones_fail(server) -> None:
    """A second runner on the same store stands for the next process: the status lived in SQL."""
    with server.store.session() as session:
        request = {"pack": "baseline", "data": SMALL, "model_version": server.model_version, "slates": None, "baseline": None, "shadow": False}
        baseline_hash = load_pack(SHIPPED / "baseline.yaml").content_hash
        queued = job_store.create_job(session, request=request, pack_hash=baseline_hash, requested_by="key:0:restart-test", model_version=server.model_version)
        stale = job_store.create_job(session, request={"pack": "baseline", "data": SMALL}, pack_hash="0" * 64, requested_by="key:0:restart-test")
        assert job_store.claim_job(session, stale.id, runner="gone-host-never-seen:1:x") is not None
        dead = job_store.create_job(session, request={"pack": "baseline", "data": SMALL}, pack_hash="0" * 64, requested_by="key:0:restart-test")
        assert job_store.claim_job(session, dead.id, runner=f"{socket.gethostname()}:{os.getpid()}:not-a-live-runner") is not None
    runner = AuditRunner(server.store, ApiSettings(home=server.home, database_url=server.db_url), max_workers=1)
    try:
        started = runner.start()
        # The audit it started runs to its end before this process "stops" (a shutdown at once could
        # come before the worker takes the job, which then rightly stays queued for the next start).
        deadline = time.monotonic() + POLL_DEADLINE_S
        while time.monotonic() < deadline:
            with server.store.session() as session:
                if session.get(AuditJob, queued.id).status in job_store.FINAL_STATUSES:
                    break
            time.sleep(0.2)
    finally:
        runner.shutdown()
    assert queued.id in started
    with server.store.session() as session:
        by_id = {j.id: j for j in session.scalars(select(AuditJob).where(AuditJob.id.in_([queued.id, stale.id, dead.id])))}
        assert by_id[queued.id].status == "succeeded" and by_id[queued.id].audit_run_id is not None
        assert by_id[dead.id].status == "failed" and by_id[dead.id].error.startswith("interrupted: ")
        assert by_id[stale.id].status == "running", "a runner on another host is not presumed dead"
        job_store.fail_job(session, stale.id, error="cleaned up by the test", kind="test")


def test_openapi_documents_the_audit_routes_with_examples(server) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    assert {"/v1/audits", "/v1/audits/{job_id}", "/v1/audits/{job_id}/gate"} <= set(spec["paths"])
    post = spec["paths"]["/v1/audits"]["post"]
    assert "Location" in post["responses"]["202"]["headers"]
    assert {"403", "404", "422"} <= set(post["responses"]) and "409" in spec["paths"]["/v1/audits/{job_id}/gate"]["get"]["responses"]
    examples = spec["components"]["schemas"]["AuditCreate"]["examples"]
    assert examples and all({"pack", "data"} <= set(example) for example in examples)
