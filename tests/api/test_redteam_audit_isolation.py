"""Red team: an audit started over the API cannot take the server's memory, and its time budget stops it.

Holes pinned (before, audits ran on threads of the server):
- an audit that needs more memory than the installation allows grew the server
  itself (a two-billion-event audit took it past 20 GB); now it runs in a child
  process whose address space is capped at its imports plus
  ``RECGOV_AUDIT_MEMORY_BUDGET_MB``, and fails with that reason;
- an audit over its time budget was failed but its thread ran on, computing for
  nobody; now its process is killed with the job (a guard: the old thread could
  not be seen from the test, so that test passes on the old code too).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audits import jobs as job_store
from audits.db import Store
from audits.models import AuditJob
from governance.api import ApiSettings
from governance.api.audit_jobs import AUDIT_OVER_MEMORY, AUDIT_OVER_TIME, AUDIT_PROCESS_DIED, AuditRunner
from governance.packs import load_ref

ACTOR = "key:7:dpo-review"
DEADLINE_S = 120.0
BIG = "synthetic:n_users=20000,n_items=5000,n_interactions=3000000,seed=3"
"""Within the default input limits (5 M events), but far more than 64 MB of arrays to generate."""


def _job(store: Store, data: str, home: Path) -> str:
    pack = load_ref(home / "packs", "baseline")
    request = {"pack": "baseline", "data": data, "model_version": None, "slates": None, "baseline": None, "shadow": False}
    with store.session() as session:
        return job_store.create_job(session, request=request, pack_hash=pack.content_hash, requested_by=ACTOR).id


def _wait_final(store: Store, job_id: str) -> AuditJob:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        with store.session() as session:
            job = session.get(AuditJob, job_id)
            if job.status in job_store.FINAL_STATUSES:
                session.expunge(job)
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {DEADLINE_S} s")


def _audit_children() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("recgov-audit-")]


@pytest.fixture
def runner_for(store: Store, db_url: str, recgov_home: Path) -> Iterator[Any]:
    runners: list[AuditRunner] = []

    def make(**settings: Any) -> AuditRunner:
        made = AuditRunner(store, ApiSettings(home=recgov_home, database_url=db_url, **settings), max_workers=1, lease_s=2.0)
        made.start()
        runners.append(made)
        return made

    yield make
    for made in runners:
        made.shutdown(grace_s=0)


def test_an_audit_over_its_memory_budget_fails_with_the_reason_and_the_server_keeps_its_memory(store: Store, runner_for, recgov_home: Path) -> None:
    runner = runner_for(audit_memory_budget_mb=64)
    job_id = _job(store, BIG, recgov_home)
    runner.submit(job_id)
    job = _wait_final(store, job_id)
    assert job.status == "failed"
    # Python's allocations fail with MemoryError (AUDIT_OVER_MEMORY); a native library (OpenBLAS) that
    # cannot allocate ends the process instead (AUDIT_PROCESS_DIED): either way the reason names the budget.
    assert job.error in (AUDIT_OVER_MEMORY.format(budget=64), AUDIT_PROCESS_DIED.format(code=1, budget=64)), job.error
    assert not _audit_children(), "the audit's process is gone"


def test_an_audit_within_its_budgets_is_recorded_from_its_process(store: Store, runner_for, recgov_home: Path) -> None:
    runner = runner_for()
    job_id = _job(store, "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=2", recgov_home)
    runner.submit(job_id)
    job = _wait_final(store, job_id)
    assert job.status == "succeeded", job.error
    assert job.audit_run_id is not None and job.gate["decision"] is not None


def test_an_audit_over_its_time_budget_is_stopped_not_left_running(store: Store, runner_for, recgov_home: Path) -> None:
    runner = runner_for(audit_time_budget_s=4.0)
    job_id = _job(store, BIG, recgov_home)
    runner.submit(job_id)
    job = _wait_final(store, job_id)
    assert job.status == "failed"
    assert job.error == AUDIT_OVER_TIME.format(budget=4.0)
    deadline = time.monotonic() + 10
    while _audit_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _audit_children(), "the audit's process was killed with its job"
