"""Audit jobs in the store (revision 0007), on both engines: the status workflow, its trail, paging, recovery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from audits import jobs as job_store
from audits.db import create_store_engine
from audits.migrate import current_revision, downgrade, upgrade
from audits.models import AuditJob, TrailEvent
from audits.results import record_audit_results
from audits.verify import verify_trail
from recommender.errors import ConfigError

REQUEST = {"pack": "baseline", "data": "synthetic:n_users=50,seed=1", "model_version": None, "slates": None, "baseline": None, "shadow": False}
ACTOR = "key:7:dpo-review"


def _new(store, **request) -> str:
    with store.session() as session:
        return job_store.create_job(session, request={**REQUEST, **request}, pack_hash="a" * 64, requested_by=ACTOR).id


def test_a_job_moves_queued_running_succeeded_and_each_step_is_on_the_trail(store) -> None:
    job_id = _new(store)
    with store.session() as session:
        assert job_store.claim_job(session, job_id, runner="host:1:a").status == "running"
    with store.session() as session:
        assert job_store.claim_job(session, job_id, runner="host:2:b") is None, "a running job cannot be claimed twice"
        now = datetime.now(UTC)
        run = record_audit_results(
            session, pack="baseline", pack_version="1.0.0", pack_hash="a" * 64, model_version=None, dataset_version=None,
            dataset_hash=None, verdict="fail", results=[], started_at=now, ended_at=now, actor=ACTOR,
        )  # fmt: skip
        job = job_store.finish_job(session, job_id, audit_run_id=run.id, gate={"decision": {"passed": False, "enforced": True}})
        assert (job.status, job.runner, job.error, job.audit_run_id) == ("succeeded", "host:1:a", None, run.id)
        assert job.started_at <= job.finished_at
    with store.session() as session, pytest.raises(ConfigError, match=f"audit job {job_id} is succeeded already; a finished job does not change"):
        job_store.fail_job(session, job_id, error="late", kind="x")
    with store.snapshot() as connection:
        events = connection.execute(select(TrailEvent.seq, TrailEvent.actor, TrailEvent.action, TrailEvent.payload).order_by(TrailEvent.seq)).all()
        last_seq = connection.execute(select(AuditJob.trail_seq).where(AuditJob.id == job_id)).scalar_one()
        assert verify_trail(connection).intact
    assert [(e.actor, e.action) for e in events] == [
        (ACTOR, "audit_job.queued"), (ACTOR, "audit_job.started"), (ACTOR, "audit.recorded"), (ACTOR, "audit_job.succeeded"),
    ]  # fmt: skip
    assert last_seq == events[-1].seq and '"passed":false' in events[-1].payload


def test_a_failure_keeps_one_line_of_cause_and_only_its_kind_goes_on_the_trail(store) -> None:
    job_id = _new(store)
    with store.session() as session:
        job = job_store.fail_job(session, job_id, error="\n  events.csv line 3: user_id 'u000042' is empty\nmore detail\n", kind="DataError")
        assert job.status == "failed" and job.error == "events.csv line 3: user_id 'u000042' is empty"
        with pytest.raises(ConfigError, match="only a running job can succeed"):
            job_store.finish_job(session, job_id, audit_run_id=1, gate={})
    with store.snapshot() as connection:
        payload = connection.execute(select(TrailEvent.payload).where(TrailEvent.action == "audit_job.failed")).scalar_one()
    assert payload == '{"cause":"DataError"}'
    assert len(job_store.one_line("x" * 5000)) == job_store.MAX_ERROR_LENGTH


def test_jobs_are_listed_newest_first_with_a_total(store) -> None:
    ids = [_new(store, data=f"synthetic:seed={i}") for i in range(5)]
    with store.session() as session:
        job_store.fail_job(session, ids[0], error="no", kind="x")
    with store.session() as session:
        page, total = job_store.list_jobs(session, limit=2, offset=1)
        failed, n_failed = job_store.list_jobs(session, status="failed")
        assert total == 5 and [j.id for j in page] == [ids[3], ids[2]]
        assert n_failed == 1 and [j.id for j in failed] == [ids[0]]
        with pytest.raises(ConfigError, match="status must be one of queued, running, succeeded, failed; got 'done'"):
            job_store.list_jobs(session, status="done")
        with pytest.raises(ConfigError, match="limit must be in"):
            job_store.list_jobs(session, limit=0)


def test_recovery_fails_the_jobs_of_dead_runners_and_lists_the_queued(store) -> None:
    queued, alive, dead = _new(store), _new(store), _new(store)
    with store.session() as session:
        job_store.claim_job(session, alive, runner="alive")
        job_store.claim_job(session, dead, runner="dead")
    with store.session() as session:
        to_start, interrupted = job_store.recover_jobs(session, is_alive=lambda runner: runner == "alive")
    assert (to_start, interrupted) == ([queued], [dead])
    with store.session() as session:
        assert session.get(AuditJob, dead).error.startswith("interrupted: the process running the audit stopped")
        assert session.get(AuditJob, alive).status == "running"


def test_the_status_is_checked_by_the_database(store) -> None:
    job_id = _new(store)
    with pytest.raises(IntegrityError, match="(?i)check"), store.session() as session:
        session.execute(text("UPDATE audit_jobs SET status = 'done' WHERE id = :id"), {"id": job_id})


def test_revision_0007_adds_and_removes_audit_jobs(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        upgrade(engine, "0007")
        assert current_revision(engine) == "0007"
        columns = {c["name"] for c in inspect(engine).get_columns("audit_jobs")}
        assert {"id", "status", "request", "requested_by", "created_at", "started_at", "finished_at", "audit_run_id", "error", "gate"} <= columns
        downgrade(engine, "0006")
        assert "audit_jobs" not in inspect(engine).get_table_names() and current_revision(engine) == "0006"
        assert "audit_results" in inspect(engine).get_table_names()
        upgrade(engine, "0007")
        assert "audit_jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
