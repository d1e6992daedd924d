"""``/v1/audits``: start an audit (auditor), poll it, read its results, evidence and gate (viewer).

* ``POST /v1/audits`` answers ``202 Accepted`` at once with the job id and a
  ``Location: /v1/audits/{id}``; the audit runs in the background, on a
  bounded pool of threads (:class:`AuditRunner`) owned by the app.
* ``GET /v1/audits/{id}`` gives the status (``queued``, ``running``,
  ``succeeded``, ``failed``); once succeeded, every rule's result with its
  evidence, read back from ``audit_results``, and the gate decision; once
  failed, the one-line cause. A failure is a status to read, never a 500.
* ``GET /v1/audits/{id}/gate`` gives the gate document (``recgov.gate/v1``,
  the shape of ``gate.json``); 409 while the job has none.
* ``GET /v1/audits?status=&limit=&offset=`` lists jobs, newest first.

The status lives in SQL (:mod:`audits.jobs`): at startup the runner fails the
jobs a stopped process left running and starts the queued ones again; at
shutdown it lets running audits finish and leaves queued ones for next time.
While it runs, the runner renews the lease of the jobs it holds
(``RECGOV_AUDIT_LEASE_S``, three heartbeats per lease) and, once per lease,
fails the running jobs of any host whose lease has expired and adopts jobs left
queued for longer than a lease.

Files named in a request (``data``, ``slates``, ``baseline``) are read only
from ``$RECGOV_HOME/data``: a loader's error quotes the file it refuses, and an
auditor's key must not be a way to read the server's other files.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audits import jobs as job_store
from audits.db import Store
from audits.models import AuditJob, AuditResult, AuditRun, ModelVersion
from audits.results import results_digest
from governance import packs as pack_store
from governance.api.audit_job import audit_job, resolve_input
from governance.api.audit_limits import SPEC_TOO_LARGE, check_input_size
from governance.api.audit_process import AuditFailed, IsolatedAudit, run_isolated
from governance.api.deps import AuditKey, ReadKey, SessionDep, SettingsDep
from governance.api.disclosure import shown_to
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.routes.recommendations import engines_of
from governance.api.settings import ApiSettings
from governance.gate import GateDecision, GateDocument
from recommender.errors import ConfigError, DataError, RecgovError

__all__ = ["AUDIT_OVER_TIME", "AUDIT_STOPPED", "SPEC_TOO_LARGE", "AuditCreate", "AuditRunner", "router"]

log = logging.getLogger("recgov.api.audits")

router = APIRouter(prefix="/v1/audits", tags=["audits"], responses=problems(401, 500))

MAX_CONCURRENT_AUDITS = 2
"""Audits run at most this many at a time per process; more wait in the queue."""
POLL_AFTER_S = "2"
"""``Retry-After`` of answers about a job still queued or running."""
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"
"""Names, versions and paths are printable text (PostgreSQL refuses NUL in text; paths refuse it too)."""
AUDIT_OVER_TIME = "the audit ran longer than its time budget of {budget:g} s (RECGOV_AUDIT_TIME_BUDGET_S); audit less data, or raise the budget"
AUDIT_STOPPED = "stopped: the server shut down before the audit finished (it waited {grace:g} s for it); start a new audit"
_LIVE_RUNNERS: set[str] = set()
"""The runner ids of this process's live :class:`AuditRunner` instances."""


# -- bodies ------------------------------------------------------------------------------


class AuditCreate(BaseModel):
    """What to audit: a pack, the data, and a recorded model version (or logged slates)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"pack": "baseline", "model_version": "als-75b761bdc3941eead4d61bf7", "data": "synthetic:n_users=300,seed=4"},
                {"pack": "eu-gdpr-dsa", "model_version": "als-75b761bdc3941eead4d61bf7", "data": "events/2026-11.csv", "shadow": True},
            ]
        },
    )

    pack: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS, description="A shipped pack name, or a stored pack as NAME@VERSION.")
    data: str = Field(
        min_length=1,
        max_length=1000,
        pattern=NO_CONTROL_CHARACTERS,
        description="DATA spec, as for 'recgov audit': synthetic[:name=value,...], or a MovieLens-100K folder or "
        "a .csv/.parquet event log under $RECGOV_HOME/data (a relative path is taken from there).",
    )
    model_version: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=NO_CONTROL_CHARACTERS,
        description="Audit this recorded model version (its parameters are refitted on a split of the data for the "
        "offline figures). Without it, the data alone is audited and the model checks are skipped.",
    )
    slates: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        pattern=NO_CONTROL_CHARACTERS,
        description="Audit logged slates instead of a model: a slate log (CSV user_id,item_id[,rank] or JSON lines) "
        "under $RECGOV_HOME/data.",
    )
    baseline: str | None = Field(None, min_length=1, max_length=1000, pattern=NO_CONTROL_CHARACTERS, description="Baseline DATA for the drift checks.")
    shadow: bool = Field(False, description="Evaluate and record without enforcing: the gate passes and keeps its reasons.")

    @model_validator(mode="after")
    def _model_or_slates(self) -> AuditCreate:
        if self.model_version is not None and self.slates is not None:
            raise ValueError("give model_version or slates, not both: a slate audit has no model artifact")
        return self


class RuleOutcome(BaseModel):
    """One rule's recorded result and the evidence behind it."""

    rule_id: str
    section: str
    check: str
    severity: str
    status: Literal["pass", "warn", "fail", "error", "skipped"]
    message: str
    value: float | str | bool | None = None
    threshold: float | str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    legal_reference: str | None = None
    line: int | None = Field(None, description="The rule's line in the pack file.")


class AuditJobPublic(BaseModel):
    """An audit job and where it stands."""

    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    request: dict[str, Any] = Field(description="The request as accepted.")
    pack_hash: str = Field(description="Content hash of the pack when the audit was asked for.")
    requested_by: str = Field(description="The key that asked, as the trail names it (key:<id>:<name>).")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    audit_id: int | None = Field(None, description="The recorded audit run, once succeeded.")
    error: str | None = Field(None, description="Why the job failed, in one line.")
    links: dict[str, str]


class AuditJobDetail(AuditJobPublic):
    """A job; once succeeded, its results with their evidence and the gate decision."""

    verdict: Literal["pass", "fail", "error", "shadow"] | None = None
    decision: GateDecision | None = None
    counts: dict[str, int] | None = None
    results: list[RuleOutcome] | None = None


class AuditJobList(BaseModel):
    """A page of audit jobs, newest first."""

    jobs: list[AuditJobPublic]
    total: int
    limit: int
    offset: int


# -- the runner ----------------------------------------------------------------------------


def _runner_alive(runner: str) -> bool:
    """Whether the process named ``runner`` (``host:pid:token``) may still be running its job.

    A runner on another host cannot be checked from here: it counts as alive.
    """
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname():
        return bool(host)
    if not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        return runner in _LIVE_RUNNERS
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failure_cause(err: BaseException, *, expose: bool = False) -> str:
    """One line saying why an audit failed: recgov's own message, or the kind of an unexpected error."""
    if isinstance(err, AuditFailed):  # from the audit's process: its message is already fit to show
        return job_store.one_line(str(err) if err.expected or not expose else f"internal error ({err.kind})")
    if isinstance(err, RecgovError):
        return job_store.one_line(str(err))
    detail = f": {err}" if expose else "; it has been logged"
    return job_store.one_line(f"internal error ({type(err).__name__}){detail}")


class AuditRunner:
    """Runs audit jobs on a bounded pool of threads; the job's status is kept in the store.

    Created in the app's lifespan (:meth:`start`), stopped at shutdown
    (:meth:`shutdown`). Each job opens its own transactions on the store: the
    claim, the audit (recorded by :func:`governance.audit.run_audit`) and the
    final status.

    A thread of its own (``recgov-audit-lease``) renews the lease of the jobs
    this runner holds every third of ``lease_s`` (default: the setting
    ``audit_lease_s``) and, once per lease, runs the recovery again: running
    jobs of any host whose lease has expired are failed as interrupted, and
    jobs left queued for longer than a lease (their process gone before it
    started them) are started here. A job failed elsewhere while its audit still
    runs here stays failed: the lease is renewed only on running jobs.
    """

    def __init__(
        self, store: Store, settings: ApiSettings, *, max_workers: int = MAX_CONCURRENT_AUDITS, lease_s: float | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.max_workers = max_workers
        self.lease_s = float(settings.audit_lease_s if lease_s is None else lease_s)
        if not self.lease_s > 0:
            raise ConfigError(f"the audit job lease must be a positive number of seconds; got {self.lease_s!r}")
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._accepting = True
        self._started: dict[str, float] = {}
        """Running jobs of this runner and when (monotonic) each started: the time budget is counted from there."""
        self._abandoned: set[str] = set()
        """Jobs failed for their time budget or at shutdown while their audit still runs on its thread."""
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        """Jobs submitted to the pool and not yet started (never submitted twice by the periodic recovery)."""
        self._held = 0
        """How many jobs this runner is running: no renewal is written while it holds none."""
        self._stop = threading.Event()
        self._recovering = True
        self._lease_thread: threading.Thread | None = None
        for _ in range(max_workers):
            self._add_worker()

    def start(self) -> list[str]:
        """Fail the jobs a stopped process left running, start the queued ones, start renewing leases; return the ids started."""
        _LIVE_RUNNERS.add(self.runner_id)
        queued = self.recover()
        self._lease_thread = threading.Thread(target=self._keep_leases, name="recgov-audit-lease", daemon=True)
        self._lease_thread.start()
        return queued

    def recover(self, *, queued_for_s: float | None = None) -> list[str]:
        """Fail the running jobs whose runner is gone or whose lease expired; start the queued jobs; return their ids.

        ``queued_for_s`` starts only the jobs queued for longer than that, by
        the store's clock (the periodic recovery leaves a live peer's fresh
        queue to that peer).
        """
        with self.store.session() as session:
            queued, interrupted = job_store.recover_jobs(
                session, is_alive=_runner_alive, lease_s=self.lease_s, queued_for_s=queued_for_s
            )
        if interrupted:
            log.warning("audit jobs whose runner stopped or lost its lease, now failed: %s", ", ".join(interrupted))
        with self._lock:
            queued = [job_id for job_id in queued if job_id not in self._pending]
        for job_id in queued:
            self.submit(job_id)
        return queued

    def renew(self) -> list[str]:
        """Renew the lease of the jobs this runner holds; the ids renewed (none is written while it holds none)."""
        with self._lock:
            if not self._held:
                return []
        with self.store.session() as session:
            return job_store.renew_leases(session, runner=self.runner_id)

    def submit(self, job_id: str) -> bool:
        """Queue ``job_id`` to run; False when the runner is shutting down (the job stays queued in the store)."""
        with self._lock:
            if not self._accepting:
                return False
            self._pending.add(job_id)
        self._queue.put(job_id)
        return True

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop: queued jobs not yet started stay queued in the store; running audits have ``grace_s`` to finish.

        ``grace_s`` defaults to the setting ``audit_shutdown_grace_s``. Audits that
        finish within it are recorded (their leases renewed meanwhile); those still
        running then are failed as stopped, and their threads (daemon threads) are
        left behind: shutdown, and the process's exit, never wait on them.
        """
        grace = self.settings.audit_shutdown_grace_s if grace_s is None else grace_s
        self._recovering = False
        with self._lock:
            self._accepting = False
            self._pending.clear()
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            stopped = [job_id for job_id in self._started if job_id not in self._abandoned]
        for job_id in stopped:
            self._give_up(job_id, AUDIT_STOPPED.format(grace=grace), kind="ShutDown")
        self._stop.set()
        if self._lease_thread is not None:
            self._lease_thread.join()
        _LIVE_RUNNERS.discard(self.runner_id)

    def _add_worker(self) -> None:
        worker = threading.Thread(target=self._work, name="recgov-audit", daemon=True)
        with self._lock:
            self._workers.append(worker)
        worker.start()

    def _work(self) -> None:
        """A worker thread: run queued jobs until told to stop, or until its job was abandoned (a new worker replaced it)."""
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                if not self._accepting:
                    continue  # shutting down: the job stays queued in the store
            self._run(job_id)
            with self._lock:
                if job_id in self._abandoned:
                    self._abandoned.discard(job_id)
                    self._workers.remove(threading.current_thread())
                    return

    def _give_up(self, job_id: str, cause: str, *, kind: str) -> bool:
        """Fail the running ``job_id`` with ``cause`` while its audit still runs; whether it was failed here."""
        with self._lock:
            if job_id not in self._started or job_id in self._abandoned:
                return False
            self._abandoned.add(job_id)
        try:
            with self.store.session() as session:
                job_store.fail_job(session, job_id, error=cause, kind=kind)
        except (RecgovError, SQLAlchemyError):  # finished meanwhile, or the store is failing (the lease ends it)
            log.warning("audit job %s could not be failed (%s); it finished meanwhile or the store is failing", job_id, kind)
            return False
        log.warning("audit job %s failed: %s", job_id, cause)
        return True

    def enforce_budget(self, now: float | None = None) -> list[str]:
        """Fail the running jobs over the time budget (a new worker takes each one's place); the ids failed."""
        budget = self.settings.audit_time_budget_s
        now = time.monotonic() if now is None else now
        with self._lock:
            over = [job_id for job_id, began in self._started.items() if now - began > budget and job_id not in self._abandoned]
        failed = [job_id for job_id in over if self._give_up(job_id, AUDIT_OVER_TIME.format(budget=budget), kind="TimeBudgetExceeded")]
        for _ in failed:
            self._add_worker()
        return failed

    def _keep_leases(self) -> None:
        """The lease thread: renew every third of a lease, recover once per lease, until :meth:`shutdown`."""
        next_recovery = time.monotonic() + self.lease_s
        while not self._stop.wait(min(self.lease_s / 3, self.settings.audit_time_budget_s / 4)):
            try:
                self.enforce_budget()
                self.renew()
                if self._recovering and time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + self.lease_s
                    self.recover(queued_for_s=self.lease_s)
            except Exception:  # the store is failing: try again at the next beat, never end the thread
                log.exception("could not renew the leases of audit runner %s", self.runner_id)

    def _run(self, job_id: str) -> None:
        """Claim, audit, record; any failure ends the job ``failed`` with its cause."""
        with self._lock:
            self._pending.discard(job_id)
            self._held += 1
            self._started[job_id] = time.monotonic()
        try:
            self._claim_and_audit(job_id)
        finally:
            with self._lock:
                self._held -= 1
                self._started.pop(job_id, None)

    def _claim_and_audit(self, job_id: str) -> None:
        try:
            with self.store.session() as session:
                job = job_store.claim_job(session, job_id, runner=self.runner_id)
                if job is None:
                    return  # another runner has it, or it is finished
                request, pack_hash, actor = dict(job.request), job.pack_hash, job.requested_by
            outcome = self._audit(job_id, request, pack_hash, actor)
            if outcome is None:
                return  # abandoned (time budget, shutdown): the job was failed with that reason
            gate = outcome.gate if isinstance(outcome, IsolatedAudit) else outcome.document.model_dump(mode="json")
            with self.store.session() as session:
                job_store.finish_job(session, job_id, audit_run_id=outcome.audit_id, gate=gate)
        except Exception as err:  # every failure becomes the job's status, never an escaping error
            if self._ended_elsewhere(job_id):
                log.warning("audit job %s was ended by another runner (its lease expired) before its audit finished here", job_id)
                return
            expected = getattr(err, "expected", isinstance(err, RecgovError))
            if not expected:
                log.exception("audit job %s crashed", job_id)
            cause = failure_cause(err, expose=self.settings.api_expose_errors)
            try:
                with self.store.session() as session:
                    job_store.fail_job(session, job_id, error=cause, kind=getattr(err, "kind", type(err).__name__))
            except Exception:  # the store itself is failing: the job is failed as interrupted later (lease or restart)
                log.exception("could not record the failure of audit job %s", job_id)

    def _ended_elsewhere(self, job_id: str) -> bool:
        """Whether ``job_id`` is already finished (failed by a recovery after its lease expired, say)."""
        try:
            with self.store.session() as session:
                job = job_store.get_job(session, job_id)
                return job is not None and job.status in job_store.FINAL_STATUSES
        except (RecgovError, SQLAlchemyError):  # the store is failing: let the caller try to record the failure
            return False

    def _audit(self, job_id: str, request: dict[str, Any], pack_hash: str, actor: str) -> Any:
        """Run and record the job's audit: in a child process with the memory budget (the default), or on this thread.

        Returns the recorded outcome (``audit_id`` and the gate document), or None
        when the job was abandoned meanwhile (its child process is killed).
        """
        if self.settings.audit_isolation == "thread":
            return audit_job(self.store, self.settings, job_id, request, pack_hash, actor)
        return run_isolated(self.settings, job_id, request, pack_hash, actor, abandoned=lambda: self._is_abandoned(job_id))

    def _is_abandoned(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._abandoned


def get_runner(request: Request) -> AuditRunner:
    """The runner the app started in its lifespan."""
    return request.app.state.audit_runner


RunnerDep = Annotated[AuditRunner, Depends(get_runner)]


# -- routes --------------------------------------------------------------------------------


def _public(job: AuditJob, role: str | None = None, home: Path | None = None) -> dict[str, Any]:
    """A job as a key of ``role`` sees it: a failure's server paths and data values only for the roles that run the service."""
    return {
        "id": job.id,
        "status": job.status,
        "request": job.request,
        "pack_hash": job.pack_hash,
        "requested_by": job.requested_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "audit_id": job.audit_run_id,
        "error": shown_to(role, job.error, home),
        "links": {"self": f"/v1/audits/{job.id}", "gate": f"/v1/audits/{job.id}/gate"},
    }


def _outcome(row: AuditResult) -> dict[str, Any]:
    """A recorded result as the API shows it (the names of the gate document's results)."""
    return {
        "rule_id": row.rule_id,
        "section": row.section,
        "check": row.check_name,
        "severity": row.severity,
        "status": row.status,
        "message": row.message,
        "value": row.value,
        "threshold": row.threshold,
        "evidence": row.evidence or {},
        "legal_reference": row.legal_reference,
        "line": row.pack_line,
    }


def _found(session: Session, job_id: UUID) -> AuditJob:
    job = job_store.get_job(session, str(job_id))
    if job is None:
        raise Problem(404, f"no audit job {job_id} in the store; see GET /v1/audits")
    return job


_ACCEPTED = {
    202: {
        "description": "The audit is queued; poll the job at its Location.",
        "headers": {"Location": {"description": "The job: /v1/audits/{id}.", "schema": {"type": "string"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=AuditJobPublic,
    responses={**_ACCEPTED, **problems(403, 404, 422)},
    summary="Start an audit in the background; poll the job at its Location (auditor)",
)
def start_audit(body: AuditCreate, request: Request, response: Response, session: SessionDep, settings: SettingsDep, runner: RunnerDep, key: AuditKey) -> dict[str, Any]:
    """404 for an unknown pack or model version; 422 for an invalid body or a file outside ``$RECGOV_HOME/data``."""
    try:  # through the app's pack cache: parsing a pack for every request would cost each one a parse
        loaded = engines_of(request.app).pack(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    if body.model_version is not None and session.get(ModelVersion, body.model_version) is None:
        raise Problem(404, f"model version {body.model_version!r} is not in the store; train one with 'recgov train'")
    errors = []
    for field in ("data", "slates", "baseline"):
        spec = getattr(body, field)
        if spec is None:
            continue
        try:
            check_input_size(field, spec, resolve_input(spec, settings.home / "data"), settings)
        except DataError as err:
            errors.append({"location": "body", "field": field, "message": str(err), "type": "value_error"})
    if errors:
        raise Problem(422, f"the request is invalid: {', '.join('body.' + e['field'] for e in errors)}", errors=errors)
    request = body.model_dump(mode="json")
    job = job_store.create_job(session, request=request, pack_hash=loaded.content_hash, requested_by=actor_of(key), model_version=body.model_version)
    record_call(session, key, "audits.create", objects={"audit_job": job.id, "policy": body.pack}, payload={"request": request, **loaded.stamp()})
    runner.submit(job.id)  # a runner shutting down leaves it queued: it starts at the next startup
    response.headers["Location"] = f"/v1/audits/{job.id}"
    return _public(job)


@router.get("", response_model=AuditJobList, responses=problems(403, 422), summary="Audit jobs, newest first (viewer)")
def list_audits(
    session: SessionDep,
    settings: SettingsDep,
    key: ReadKey,
    status: Literal["queued", "running", "succeeded", "failed"] | None = Query(None, description="Only jobs with this status."),
    limit: int = Query(20, ge=1, le=100, description="Jobs per page."),
    offset: int = Query(0, ge=0, le=1_000_000, description="Jobs to skip."),
) -> dict[str, Any]:
    rows, total = job_store.list_jobs(session, status=status, limit=limit, offset=offset)
    page = [_public(job, key.role, settings.home) for job in rows]
    session.rollback()
    return {"jobs": page, "total": total, "limit": limit, "offset": offset}


@router.get("/{job_id}", response_model=AuditJobDetail, responses=problems(403, 404, 422), summary="An audit job; once done, its results, evidence and gate decision (viewer)")
def get_audit(job_id: UUID, response: Response, session: SessionDep, settings: SettingsDep, key: ReadKey) -> dict[str, Any]:
    job = _found(session, job_id)
    out = _public(job, key.role, settings.home)
    if job.status in ("queued", "running"):
        response.headers["Retry-After"] = POLL_AFTER_S
    if job.status == "succeeded" and job.audit_run_id is not None:
        run = session.get(AuditRun, job.audit_run_id)
        rows = session.scalars(select(AuditResult).where(AuditResult.audit_run_id == job.audit_run_id).order_by(AuditResult.id))
        out["results"] = [_outcome(r) for r in rows]
        out["verdict"] = run.verdict if run else None
        out["decision"] = (job.gate or {}).get("decision")
        out["counts"] = (job.gate or {}).get("counts")
    session.rollback()
    return out


@router.get(
    "/{job_id}/gate",
    response_model=GateDocument,
    responses=problems(403, 404, 409, 422),
    summary="The gate document of a finished audit (recgov.gate/v1, as gate.json) (viewer)",
)
def get_gate(job_id: UUID, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    """409 while the job is queued or running (poll again), or when it failed (its cause in ``errors``)."""
    job = _found(session, job_id)
    if job.status != "succeeded" or job.gate is None:
        session.rollback()
        pending = job.status in ("queued", "running")
        detail = (
            f"audit job {job.id} is {job.status}: it has no gate decision yet; poll GET /v1/audits/{job.id} until it has succeeded"
            if pending
            else f"audit job {job.id} is {job.status}: it has no gate decision ({job.error}); start a new audit"
        )
        raise Problem(
            409,
            detail,
            kind="audit-not-finished",
            errors=[{"status": job.status, "error": job.error}],
            headers={"Retry-After": POLL_AFTER_S} if pending else None,
        )
    run = session.get(AuditRun, job.audit_run_id)
    expected = ((run.summary or {}) if run else {}).get("results_sha256")
    gate = job.gate
    session.rollback()
    if expected is None or results_digest(gate.get("results") or []) != expected:  # no digest to check: refuse, never answer unverified
        raise Problem(
            409,
            f"the gate document of audit job {job.id} no longer matches the results recorded for audit {job.audit_run_id}; "
            "run 'recgov trail verify' and start a new audit",
            kind="gate-mismatch",
        )
    return gate
