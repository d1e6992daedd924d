"""Red team: an audit cannot hold the service for ever (real threads, a real store, SQLite and PostgreSQL).

Holes pinned (each test fails on the runner without a budget):

* an audit that never ended stayed ``running`` for ever, holding one of the
  runner's two workers: two such audits and no other audit ever ran again;
* shutdown waited for every running audit to finish: one that never ends kept
  the server (and its process's exit) waiting for ever.

Only the audit itself is replaced (it waits for the test), as in the lease tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from audits import Store
from audits import jobs as job_store
from audits.models import AuditJob, TrailEvent
from audits.results import record_audit_results
from governance.api.audit_jobs import AUDIT_OVER_TIME, AUDIT_STOPPED, AuditRunner
from governance.api.settings import ApiSettings

REQUEST = {"pack": "baseline", "data": "synthetic:n_users=50,seed=1", "model_version": None, "slates": None, "baseline": None, "shadow": False}
ACTOR = "key:9:red-team"
BUDGET_S = 0.5
DEADLINE_S = 20.0


class StuckRunner(AuditRunner):
    """A runner whose audits named in ``stuck`` never end (until the test ends); the others record an empty run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck: set[str] = set()
        self.release = threading.Event()

    def _audit(self, job_id: str, request: dict[str, Any], pack_hash: str, actor: str) -> Any:
        if job_id in self.stuck:
            self.release.wait(timeout=120)
        now = datetime.now(UTC)
        with self.store.session() as session:
            run = record_audit_results(
                session, pack="baseline", pack_version="1.0.0", pack_hash=pack_hash, model_version=None, dataset_version=None,
                dataset_hash=None, verdict="pass", results=[], started_at=now, ended_at=now, actor=actor,
            )  # fmt: skip
            audit_id = run.id
        gate = {"decision": {"passed": True, "enforced": True}}
        return SimpleNamespace(audit_id=audit_id, document=SimpleNamespace(model_dump=lambda mode: gate))


def _new(store: Store) -> str:
    with store.session() as session:
        return job_store.create_job(session, request=REQUEST, pack_hash="b" * 64, requested_by=ACTOR).id


def _job(store: Store, job_id: str) -> AuditJob:
    with store.session() as session:
        job = job_store.get_job(session, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def runner(store: Store, db_url: str, recgov_home) -> Iterator[StuckRunner]:
    settings = ApiSettings(home=recgov_home, database_url=db_url, audit_time_budget_s=BUDGET_S, audit_shutdown_grace_s=BUDGET_S)
    stuck = StuckRunner(store, settings, max_workers=1, lease_s=30)
    stuck.start()
    try:
        yield stuck
    finally:
        stuck.release.set()
        stuck.shutdown()


def test_an_audit_over_its_time_budget_fails_with_the_reason_and_frees_its_worker(store: Store, runner: StuckRunner) -> None:
    stuck = _new(store)
    runner.stuck.add(stuck)
    assert runner.submit(stuck)
    _until(lambda: _job(store, stuck).status == "failed", "the audit over its budget was never failed")
    assert _job(store, stuck).error == AUDIT_OVER_TIME.format(budget=BUDGET_S)
    with store.snapshot() as connection:
        payloads = connection.execute(select(TrailEvent.payload).where(TrailEvent.action == "audit_job.failed", TrailEvent.objects.contains(stuck))).scalars().all()
    assert payloads == ['{"cause":"TimeBudgetExceeded"}']
    after = _new(store)  # the only worker is still stuck: a new one must have taken its place
    assert runner.submit(after)
    _until(lambda: _job(store, after).status == "succeeded", "no audit ran after one went over its budget")
    runner.release.set()  # the stuck audit ends at last: its job stays failed
    time.sleep(0.5)
    assert _job(store, stuck).status == "failed" and _job(store, stuck).audit_run_id is None


def test_shutdown_waits_for_a_running_audit_no_longer_than_its_grace(store: Store, db_url: str, recgov_home) -> None:
    settings = ApiSettings(home=recgov_home, database_url=db_url, audit_time_budget_s=3600, audit_shutdown_grace_s=BUDGET_S)
    before = set(threading.enumerate())
    runner = StuckRunner(store, settings, max_workers=1, lease_s=30)
    runner.start()
    job_id = _new(store)
    runner.stuck.add(job_id)
    assert runner.submit(job_id)
    _until(lambda: _job(store, job_id).status == "running", "the audit never started")
    stopping = threading.Thread(target=runner.shutdown, daemon=True)
    began = time.monotonic()
    stopping.start()
    stopping.join(timeout=DEADLINE_S)
    try:
        assert not stopping.is_alive(), "shutdown is still waiting for the audit"
        assert time.monotonic() - began < BUDGET_S + 5
        job = _job(store, job_id)
        assert (job.status, job.error) == ("failed", AUDIT_STOPPED.format(grace=BUDGET_S))
        assert all(t.daemon for t in threading.enumerate() if t.name == "recgov-audit")
    finally:
        runner.release.set()
        # The released audit writes its (unattached) run: let it finish before the database goes away.
        for worker in set(threading.enumerate()) - before:
            if worker.name == "recgov-audit":
                worker.join(timeout=DEADLINE_S)
