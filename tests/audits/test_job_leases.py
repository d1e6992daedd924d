"""Audit job leases (revision 0009), on both engines: heartbeats, expiry on any host, renewal, the runner's thread.

The runner tests use real threads and a real store with a lease of a fraction
of a second; only the audit itself is replaced (it waits for the test, then
records an empty audit run), so that a job stays running as long as the test
needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import inspect, select, text, update

from audits import Store, open_store
from audits import jobs as job_store
from audits.db import create_store_engine
from audits.migrate import current_revision, downgrade, head_revision, upgrade
from audits.models import AuditJob, TrailEvent
from audits.results import record_audit_results
from audits.verify import verify_trail
from governance.api.audit_jobs.runner import AuditRunner, _runner_alive
from governance.api.settings import ApiSettings
from recommender.errors import ConfigError

REQUEST = {
    "pack": "baseline",
    "data": "synthetic:n_users=50,seed=1",
    "model_version": None,
    "slates": None,
    "baseline": None,
    "shadow": False,
}
ACTOR = "key:7:dpo-review"
OTHER_HOST = "vanished-pod-5d8f7c:1:0badcafe"
"""A runner on a host that is not this one (and no longer exists): its liveness cannot be checked from here."""
SHORT_LEASE_S = 1.5
"""Short enough for a test, long enough that a busy two-core host's late heartbeat (a beat every 0.5 s) is no expiry."""
DEADLINE_S = 15.0


def _new(store: Store, **columns: Any) -> str:
    with store.session() as session:
        job = job_store.create_job(session, request=REQUEST, pack_hash="a" * 64, requested_by=ACTOR)
        for name, value in columns.items():
            setattr(job, name, value)
        return job.id


def _claimed(store: Store, runner: str, *, heartbeat_age_s: float | None = None) -> str:
    job_id = _new(store)
    with store.session() as session:
        assert job_store.claim_job(session, job_id, runner=runner) is not None
    if heartbeat_age_s is not None:
        with store.session() as session:
            then = datetime.now(UTC) - timedelta(seconds=heartbeat_age_s)
            session.execute(update(AuditJob).where(AuditJob.id == job_id).values(heartbeat_at=then, started_at=then))
    return job_id


def _job(store: Store, job_id: str) -> AuditJob:
    with store.session() as session:
        job = session.get(AuditJob, job_id)
        session.expunge(job)
        return job


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s"
        time.sleep(0.05)


# -- the store -------------------------------------------------------------------------------


def test_revision_0009_adds_and_removes_the_heartbeat_and_keeps_the_jobs(db_url: str) -> None:
    store = open_store(db_url)
    try:
        job_id = _claimed(store, OTHER_HOST)
        started = _job(store, job_id).started_at
    finally:
        store.close()
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert "heartbeat_at" in {c["name"] for c in inspect(engine).get_columns("audit_jobs")}
        downgrade(engine, "0008")
        assert current_revision(engine) == "0008"
        assert "heartbeat_at" not in {c["name"] for c in inspect(engine).get_columns("audit_jobs")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT status, runner FROM audit_jobs")).all() == [("running", OTHER_HOST)]
        upgrade(engine, "0009")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT status, heartbeat_at FROM audit_jobs")).all() == [("running", None)]
    finally:
        engine.dispose()
    store = open_store(db_url)
    try:
        # A job claimed before 0009 has no heartbeat: its start stands for it.
        with store.session() as session:
            assert job_store.recover_jobs(
                session, is_alive=lambda runner: True, lease_s=60, now=started + timedelta(seconds=59)
            ) == ([], [])
        with store.session() as session:
            assert job_store.recover_jobs(
                session, is_alive=lambda runner: True, lease_s=60, now=started + timedelta(seconds=61)
            ) == ([], [job_id])
        assert _job(store, job_id).error.startswith("interrupted: no heartbeat from the runner for 61 s (lease 60 s)")
    finally:
        store.close()


def test_the_claim_starts_the_lease(store: Store) -> None:
    before = datetime.now(UTC)
    job = _job(store, _claimed(store, OTHER_HOST))
    assert (
        job.status == "running"
        and job.heartbeat_at == job.started_at
        and before <= job.heartbeat_at <= datetime.now(UTC)
    )
    assert _job(store, _new(store)).heartbeat_at is None, "a queued job holds no lease"


def test_an_expired_lease_on_another_host_is_failed_as_interrupted(store: Store) -> None:
    expired = _claimed(store, OTHER_HOST, heartbeat_age_s=125)
    assert _runner_alive(OTHER_HOST), "another host cannot be checked: it counts as alive"
    with store.session() as session:
        queued, interrupted = job_store.recover_jobs(session, is_alive=_runner_alive, lease_s=60)
    assert (queued, interrupted) == ([], [expired])
    job = _job(store, expired)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("interrupted: no heartbeat from the runner for 125 s (lease 60 s);"), job.error
    assert "vanished" not in job.error and "0badcafe" not in job.error, "the cause names no host or runner"
    with store.snapshot() as connection:
        event = connection.execute(
            select(TrailEvent.actor, TrailEvent.action, TrailEvent.payload).where(TrailEvent.seq == job.trail_seq)
        ).one()
        assert verify_trail(connection).intact
    assert tuple(event) == (ACTOR, "audit_job.failed", '{"cause":"interrupted"}')


def test_a_fresh_heartbeat_from_another_host_is_left_alone(store: Store) -> None:
    fresh = _claimed(store, OTHER_HOST, heartbeat_age_s=10)
    with store.session() as session:
        assert job_store.recover_jobs(session, is_alive=_runner_alive, lease_s=60) == ([], [])
    job = _job(store, fresh)
    assert (job.status, job.error, job.finished_at) == ("running", None, None)


def test_a_dead_runner_on_this_host_is_failed_whatever_its_lease(store: Store) -> None:
    dead = _claimed(store, "dead", heartbeat_age_s=0)
    with store.session() as session:
        assert job_store.recover_jobs(session, is_alive=lambda runner: runner != "dead", lease_s=60) == ([], [dead])
    assert _job(store, dead).error == job_store.INTERRUPTED


def test_renewal_moves_the_heartbeat_of_the_runners_running_jobs_only(store: Store) -> None:
    mine, theirs = _claimed(store, "host:1:me", heartbeat_age_s=30), _claimed(store, "host:2:them", heartbeat_age_s=30)
    failed = _claimed(store, "host:1:me", heartbeat_age_s=30)
    with store.session() as session:
        job_store.fail_job(session, failed, error="cleaned up", kind="test")
    before = {job_id: _job(store, job_id) for job_id in (theirs, failed)}
    now = datetime.now(UTC)
    with store.session() as session:
        assert job_store.renew_leases(session, runner="host:1:me", now=now) == [mine]
    assert _job(store, mine).heartbeat_at == now
    assert _job(store, theirs).heartbeat_at == before[theirs].heartbeat_at
    after = _job(store, failed)
    assert (after.status, after.heartbeat_at, after.trail_seq) == (
        "failed",
        before[failed].heartbeat_at,
        before[failed].trail_seq,
    )


def test_renewal_does_not_resurrect_a_job_failed_for_its_expired_lease(store: Store) -> None:
    job_id = _claimed(store, "host:1:slow", heartbeat_age_s=90)
    with store.session() as session:
        assert job_store.recover_jobs(session, is_alive=lambda runner: True, lease_s=60)[1] == [job_id]
    failed = _job(store, job_id)
    with store.session() as session:
        assert job_store.renew_leases(session, runner="host:1:slow") == []
    again = _job(store, job_id)
    assert (again.status, again.error, again.heartbeat_at) == ("failed", failed.error, failed.heartbeat_at)
    with store.session() as session, pytest.raises(ConfigError, match="only a running job can succeed"):
        job_store.finish_job(session, job_id, audit_run_id=1, gate={})


def test_a_lease_renewed_after_it_was_read_is_not_failed(store: Store) -> None:
    """Failing repeats its conditions in the UPDATE: a heartbeat between the read and the write wins."""
    job_id = _claimed(store, OTHER_HOST, heartbeat_age_s=300)
    with store.session() as session:

        def renewed_meanwhile(runner: str) -> bool:
            job_store.renew_leases(session, runner=runner)
            return True

        assert job_store.recover_jobs(session, is_alive=renewed_meanwhile, lease_s=60) == ([], [])
    assert _job(store, job_id).status == "running"


def test_queued_jobs_can_be_listed_by_age_and_the_lease_must_be_positive(store: Store) -> None:
    old = _new(store, created_at=datetime.now(UTC) - timedelta(minutes=5))
    new = _new(store)
    with store.session() as session:
        assert job_store.recover_jobs(session, is_alive=lambda runner: True)[0] == [old, new]
        cutoff = datetime.now(UTC) - timedelta(minutes=1)
        assert job_store.recover_jobs(session, is_alive=lambda runner: True, queued_before=cutoff)[0] == [old]
        with pytest.raises(ConfigError, match="lease must be a positive number of seconds; got 0"):
            job_store.recover_jobs(session, is_alive=lambda runner: True, lease_s=0)


# -- the runner (real threads) ---------------------------------------------------------------


class HeldRunner(AuditRunner):
    """A runner whose audit waits for the test, then records an empty audit run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def _audit(self, job_id: str, request: dict[str, Any], pack_hash: str, actor: str) -> Any:
        assert self.release.wait(timeout=DEADLINE_S), "the test never released the audit"
        now = datetime.now(UTC)
        with self.store.session() as session:
            run = record_audit_results(
                session, pack="baseline", pack_version="1.0.0", pack_hash=pack_hash, model_version=None, dataset_version=None,
                dataset_hash=None, verdict="pass", results=[], started_at=now, ended_at=now, actor=actor,
            )  # fmt: skip
            audit_id = run.id
        gate = {"decision": {"passed": True, "enforced": True}}
        return SimpleNamespace(audit_id=audit_id, document=SimpleNamespace(model_dump=lambda mode: gate))


@pytest.fixture
def runner(store: Store, db_url: str, recgov_home) -> Iterator[HeldRunner]:
    held = HeldRunner(store, ApiSettings(home=recgov_home, database_url=db_url), max_workers=1, lease_s=SHORT_LEASE_S)
    try:
        yield held
    finally:
        held.release.set()
        held.shutdown()


def test_the_runner_renews_its_lease_past_several_lease_periods(store: Store, runner: HeldRunner) -> None:
    assert runner.lease_s == SHORT_LEASE_S
    runner.start()
    job_id = _new(store)
    assert runner.submit(job_id)
    _until(lambda: _job(store, job_id).status == "running", "the job never started")
    first = _job(store, job_id).heartbeat_at
    time.sleep(SHORT_LEASE_S * 3)
    # A peer on another host (which cannot check this runner's process) sees a live lease.
    with store.session() as session:
        assert job_store.recover_jobs(session, is_alive=lambda runner: True, lease_s=SHORT_LEASE_S) == ([], [])
    held = _job(store, job_id)
    assert held.status == "running" and held.heartbeat_at > first
    assert datetime.now(UTC) - held.heartbeat_at < timedelta(seconds=SHORT_LEASE_S)
    runner.release.set()
    _until(lambda: _job(store, job_id).status in job_store.FINAL_STATUSES, "the job never finished")
    done = _job(store, job_id)
    assert (done.status, done.error) == ("succeeded", None) and done.audit_run_id is not None


def test_a_runners_own_recovery_never_fails_the_audit_it_is_running(store: Store, runner: HeldRunner) -> None:
    """Its lease thread's beat came late (a busy host): its own recovery leaves its job; a peer's does not."""
    runner.renew = lambda: []  # type: ignore[method-assign]  # its beats never land, as on a host far too busy
    runner.start()
    job_id = _new(store)
    assert runner.submit(job_id)
    _until(lambda: _job(store, job_id).status == "running", "the job never started")
    stale = datetime.now(UTC) - timedelta(seconds=SHORT_LEASE_S * 20)
    with store.session() as session:
        session.execute(update(AuditJob).where(AuditJob.id == job_id).values(heartbeat_at=stale))
    assert runner.recover() == []
    assert _job(store, job_id).status == "running"
    with store.session() as session:  # a peer's view of the same row: the lease expired
        assert job_store.recover_jobs(session, is_alive=lambda runner: True, lease_s=SHORT_LEASE_S, holder="peer:1:x")[1] == [job_id]


def test_a_live_runner_fails_a_vanished_peers_job_without_a_restart(store: Store, runner: HeldRunner) -> None:
    runner.start()
    orphan = _claimed(store, OTHER_HOST)  # fresh at the start: the startup recovery leaves it alone
    assert _job(store, orphan).status == "running"
    _until(lambda: _job(store, orphan).status == "failed", "the periodic recovery never failed the orphan")
    assert _job(store, orphan).error.startswith("interrupted: no heartbeat from the runner for ")


def test_a_live_runner_starts_a_job_left_queued_for_longer_than_a_lease(store: Store, runner: HeldRunner) -> None:
    runner.start()  # nothing queued yet: the job below is queued as by a process that vanished before starting it
    stale = _new(store, created_at=datetime.now(UTC) - timedelta(seconds=SHORT_LEASE_S * 10))
    runner.release.set()
    _until(lambda: _job(store, stale).status == "succeeded", "the stale queued job was never started")


def test_a_job_failed_elsewhere_stays_failed_when_its_audit_completes(store: Store, runner: HeldRunner) -> None:
    runner.start()
    job_id = _new(store)
    runner.submit(job_id)
    _until(lambda: _job(store, job_id).status == "running", "the job never started")
    with store.session() as session:  # a peer that thought the lease expired (a clock far ahead, say)
        ahead = datetime.now(UTC) + timedelta(seconds=60)
        assert job_store.recover_jobs(session, is_alive=lambda runner: True, lease_s=SHORT_LEASE_S, now=ahead)[1] == [
            job_id
        ]
    failed = _job(store, job_id)
    runner.release.set()
    runner.shutdown()  # waits for the audit
    after = _job(store, job_id)
    assert (after.status, after.error, after.trail_seq) == ("failed", failed.error, failed.trail_seq)


def test_on_postgresql_the_leases_follow_the_database_clock_not_the_hosts(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner on a host whose clock is an hour behind claims and renews; a peer with a right clock
    recovers: the lease is live by the one clock both share (the database server's), so it stays."""
    store = open_store(postgres_url)
    try:
        job_id = _new(store)
        behind = datetime.now(UTC) - timedelta(hours=1)
        with monkeypatch.context() as patch:  # only the clock is undone after: the test's private RECGOV_HOME stays
            patch.setattr(job_store, "_now", lambda: behind)  # this process's clock, for every job time it would write
            with store.session() as session:
                assert job_store.claim_job(session, job_id, runner=OTHER_HOST) is not None
            with store.session() as session:
                assert job_store.renew_leases(session, runner=OTHER_HOST) == [job_id]
        with store.session() as session:
            assert job_store.recover_jobs(session, is_alive=_runner_alive, lease_s=60) == ([], [])
            database_now = job_store.store_clock(session)
        job = _job(store, job_id)
        assert job.status == "running" and abs((database_now - job.heartbeat_at).total_seconds()) < 60
    finally:
        store.close()


def test_on_sqlite_the_store_clock_is_the_process_clock(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with store.session() as session:
            before = datetime.now(UTC)
            assert before <= job_store.store_clock(session) <= datetime.now(UTC)
    finally:
        store.close()
