"""Audit jobs in the store: audits asked for over the API, run in the background.

A job moves ``queued -> running -> succeeded`` or ``failed`` (a queued job may
also fail before it runs). Each change of status is written with its trail
event in the caller's transaction, by the actor that asked for the audit:

================================ ===============================================
``audit_job.queued``             the request was accepted (objects: job, policy, model)
``audit_job.started``            a runner claimed it
``audit_job.succeeded``          the audit was recorded (objects: job, audit)
``audit_job.failed``             it could not be completed (payload: the kind of cause)
================================ ===============================================

The cause's text stays in the job row (where the caller reads it), not in the
trail: a loader's message may quote the data it refused.

Claiming is atomic (``UPDATE ... WHERE status = 'queued'``), so two processes
that both resume the same queued job never both run it.

A running job is held on a lease. The claim sets ``heartbeat_at``; the runner
renews it every few seconds while the audit runs (:func:`renew_leases`, one
``UPDATE ... WHERE status = 'running' AND runner = <runner>``, so a job another
runner has failed in the meantime stays failed). :func:`recover_jobs`, run by
every runner at its start and again periodically, fails as interrupted each
running job whose runner is gone (a process on this host that no longer runs)
or whose lease has expired (no heartbeat for :data:`DEFAULT_LEASE_S`, or the
lease given, whatever host the job ran on: a host that disappeared cannot be
checked, but it stops renewing). Failing is atomic too: a job renewed or
finished in between is left alone. On PostgreSQL every time a job records
(queued, claimed, renewed, finished, and the "now" a recovery judges leases by)
is the database server's clock, so hosts whose clocks disagree still agree on
the leases; on SQLite (one file, one host) it is the process's clock. The runner
renews three times per lease. A job claimed before revision 0009 has no
heartbeat: its start stands for it.

>>> with store.session() as session:                                  # doctest: +SKIP
...     job = create_job(session, request={"pack": "baseline", "data": "synthetic"},
...                      pack_hash=loaded.content_hash, requested_by="key:3:dpo")
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from audits.models import AUDIT_JOB_STATUSES, AuditJob
from audits.trail import append_event
from recommender.errors import ConfigError

__all__ = [
    "DEFAULT_LEASE_S",
    "FINAL_STATUSES",
    "MAX_ERROR_LENGTH",
    "claim_job",
    "create_job",
    "fail_job",
    "finish_job",
    "get_job",
    "list_jobs",
    "one_line",
    "recover_jobs",
    "renew_leases",
]

FINAL_STATUSES = ("succeeded", "failed")
"""Statuses a job never leaves."""
MAX_ERROR_LENGTH = 1000
"""A failure's cause is cut to its first line and at most this many characters."""
INTERRUPTED = "interrupted: the process running the audit stopped before it finished; start a new audit"
DEFAULT_LEASE_S = 60.0
"""How long a running job stays held without a heartbeat from its runner, in seconds."""


def _no_heartbeat(age_s: float, lease_s: float) -> str:
    """The cause of a job failed for an expired lease (no host or runner named: only how long it was silent)."""
    return (
        f"interrupted: no heartbeat from the runner for {age_s:.0f} s (lease {lease_s:g} s); "
        "the process or host running the audit is gone; start a new audit"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def store_clock(session: Session) -> datetime:
    """Now, by the store's clock: the database server's on PostgreSQL (one clock for every host that
    shares the store), this process's on SQLite (an embedded file is used from one host)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(select(func.statement_timestamp())).scalar_one().astimezone(UTC)
    return _now()


def _objects(job: AuditJob, **extra: Any) -> dict[str, Any]:
    objects: dict[str, Any] = {"audit_job": job.id, "policy": str(job.request.get("pack"))}
    if job.model_version_id:
        objects["model"] = job.model_version_id
    return {**objects, **extra}


def _mark(session: Session, job: AuditJob, action: str, *, objects: dict[str, Any] | None = None, payload: dict[str, Any] | None = None) -> AuditJob:
    event = append_event(session, actor=job.requested_by, action=action, objects=objects or _objects(job), payload=payload or {})
    job.trail_seq = event.seq
    session.flush()
    return job


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, cut to :data:`MAX_ERROR_LENGTH` characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "") or "unknown cause"
    return line if len(line) <= MAX_ERROR_LENGTH else line[: MAX_ERROR_LENGTH - 3] + "..."


def create_job(
    session: Session, *, request: dict[str, Any], pack_hash: str, requested_by: str, model_version: str | None = None
) -> AuditJob:
    """Record a queued job for ``request`` (JSON-ready), with its ``audit_job.queued`` event."""
    job = AuditJob(
        id=str(uuid.uuid4()),
        status="queued",
        request=request,
        pack_hash=pack_hash,
        model_version_id=model_version,
        requested_by=requested_by,
        created_at=store_clock(session),
        trail_seq=0,  # set below, once the event exists
    )
    event = append_event(session, actor=requested_by, action="audit_job.queued", objects=_objects(job), payload={"request": request, "pack_hash": pack_hash})
    job.trail_seq = event.seq
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> AuditJob | None:
    """The job ``job_id``, or None."""
    return session.get(AuditJob, job_id)


def _job(session: Session, job_id: str) -> AuditJob:
    job = session.get(AuditJob, job_id, populate_existing=True)
    if job is None:
        raise ConfigError(f"no audit job {job_id!r} in the store")
    return job


def claim_job(session: Session, job_id: str, *, runner: str) -> AuditJob | None:
    """Move ``job_id`` from queued to running for ``runner``, its lease starting now; None when it is not queued (any more)."""
    now = store_clock(session)
    claimed = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.status == "queued")
        .values(status="running", started_at=now, heartbeat_at=now, runner=runner)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    job = _job(session, job_id)
    return _mark(session, job, "audit_job.started", payload={"runner": runner})


def finish_job(session: Session, job_id: str, *, audit_run_id: int, gate: dict[str, Any]) -> AuditJob:
    """Move a running job to succeeded: it names its recorded audit and keeps the gate document."""
    job = _job(session, job_id)
    if job.status != "running":
        raise ConfigError(f"audit job {job_id} is {job.status}, not running; only a running job can succeed")
    job.status, job.finished_at, job.audit_run_id, job.gate = "succeeded", store_clock(session), audit_run_id, gate
    decision = gate.get("decision") or {}
    payload = {"passed": decision.get("passed"), "enforced": decision.get("enforced")}
    return _mark(session, job, "audit_job.succeeded", objects=_objects(job, audit=audit_run_id), payload=payload)


def fail_job(session: Session, job_id: str, *, error: str, kind: str) -> AuditJob:
    """Move a queued or running job to failed with its one-line cause (``kind`` names the cause's class)."""
    job = _job(session, job_id)
    if job.status in FINAL_STATUSES:
        raise ConfigError(f"audit job {job_id} is {job.status} already; a finished job does not change")
    job.status, job.finished_at, job.error = "failed", store_clock(session), one_line(error)
    return _mark(session, job, "audit_job.failed", payload={"cause": kind})


def list_jobs(session: Session, *, status: str | None = None, limit: int = 20, offset: int = 0) -> tuple[list[AuditJob], int]:
    """Jobs, newest first, and how many there are in all (with ``status``, only those)."""
    if status is not None and status not in AUDIT_JOB_STATUSES:
        raise ConfigError(f"status must be one of {', '.join(AUDIT_JOB_STATUSES)}; got {status!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ConfigError(f"limit must be in [1, 1000] and offset at least 0; got limit={limit}, offset={offset}")
    query = select(AuditJob)
    count = select(func.count()).select_from(AuditJob)
    if status is not None:
        query = query.where(AuditJob.status == status)
        count = count.where(AuditJob.status == status)
    rows = session.scalars(query.order_by(AuditJob.created_at.desc(), AuditJob.id).limit(limit).offset(offset))
    return list(rows), int(session.scalar(count) or 0)


def renew_leases(session: Session, *, runner: str, now: datetime | None = None) -> list[str]:
    """Renew the lease of every job ``runner`` is running (its heartbeat is ``now``); the ids renewed.

    One atomic ``UPDATE ... WHERE status = 'running' AND runner = :runner``: a
    job that has finished, or that another runner has failed as interrupted,
    is not touched (and never made running again).
    """
    renewed = session.execute(
        update(AuditJob)
        .where(AuditJob.status == "running", AuditJob.runner == runner)
        .values(heartbeat_at=now or store_clock(session))
        .returning(AuditJob.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(renewed.scalars())


def _last_heartbeat(job: AuditJob) -> datetime:
    """When the job's runner last showed it was alive (the claim, for a job claimed before revision 0009)."""
    return job.heartbeat_at or job.started_at or job.created_at


def _interrupt(session: Session, job: AuditJob, *, error: str, now: datetime, expired_before: datetime | None) -> bool:
    """Fail the running ``job`` as interrupted, unless it changed since it was read; whether it was failed.

    The ``UPDATE`` repeats the conditions: still running, by the same runner,
    and (``expired_before``) still without a heartbeat since then. A runner
    that renewed its lease, or another recovery that failed the job first,
    wins; nothing is written twice.
    """
    conditions: list[ColumnElement[bool]] = [AuditJob.id == job.id, AuditJob.status == "running"]
    conditions.append(AuditJob.runner.is_(None) if job.runner is None else AuditJob.runner == job.runner)
    if expired_before is not None:
        conditions.append(or_(AuditJob.heartbeat_at.is_(None), AuditJob.heartbeat_at < expired_before))
    failed = session.execute(
        update(AuditJob)
        .where(*conditions)
        .values(status="failed", finished_at=now, error=one_line(error))
        .execution_options(synchronize_session=False)
    )
    if failed.rowcount != 1:
        return False
    _mark(session, _job(session, job.id), "audit_job.failed", payload={"cause": "interrupted"})
    return True


def recover_jobs(
    session: Session,
    *,
    is_alive: Callable[[str], bool],
    lease_s: float = DEFAULT_LEASE_S,
    now: datetime | None = None,
    queued_before: datetime | None = None,
    queued_for_s: float | None = None,
    holder: str | None = None,
) -> tuple[list[str], list[str]]:
    """Fail the running jobs whose runner is gone or whose lease expired, and list the queued ones to start.

    Run at every runner's start, and periodically by a live runner (so that a
    crashed peer's jobs are failed without a restart).

    ``is_alive(runner)`` says whether the process named ``runner`` may still be
    running the job (a runner on another host cannot be checked: say True).
    Independently of it, a running job whose last heartbeat is more than
    ``lease_s`` seconds before ``now`` (default: the store's clock, see
    :func:`store_clock`) is failed as interrupted: its runner, on whatever host,
    stopped renewing the lease. ``queued_before`` lists only the queued jobs
    created before it; ``queued_for_s`` only those queued for longer than that
    many seconds by the store's clock. ``holder`` is the runner making the
    recovery: its own running jobs are not judged by their lease (it runs them
    and renews them itself; only a peer judges them by the lease).
    Returns ``(queued job ids, oldest first; ids of the jobs failed as interrupted)``.

    Raises
    ------
    ConfigError
        ``lease_s`` is not a positive number of seconds.
    """
    if not lease_s > 0:
        raise ConfigError(f"the audit job lease must be a positive number of seconds; got {lease_s!r}")
    now = now or store_clock(session)
    expired_before = now - timedelta(seconds=lease_s)
    if queued_for_s is not None:
        cutoff = now - timedelta(seconds=queued_for_s)
        queued_before = cutoff if queued_before is None else min(queued_before, cutoff)
    running = list(session.scalars(select(AuditJob).where(AuditJob.status == "running").order_by(AuditJob.created_at)))
    interrupted = []
    for job in running:
        last = _last_heartbeat(job)
        if holder is not None and job.runner == holder:
            continue
        if not is_alive(job.runner or ""):
            failed = _interrupt(session, job, error=INTERRUPTED, now=now, expired_before=None)
        elif last < expired_before:
            age = (now - last).total_seconds()
            failed = _interrupt(session, job, error=_no_heartbeat(age, lease_s), now=now, expired_before=expired_before)
        else:
            continue
        if failed:
            interrupted.append(job.id)
    query = select(AuditJob.id).where(AuditJob.status == "queued")
    if queued_before is not None:
        query = query.where(AuditJob.created_at < queued_before)
    queued = list(session.scalars(query.order_by(AuditJob.created_at)))
    return queued, interrupted
