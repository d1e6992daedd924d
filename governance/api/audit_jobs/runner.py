"""The runner: audit jobs on a bounded pool of threads, their status kept in the store.

The app starts one :class:`AuditRunner` in its lifespan. A job is queued by
:meth:`AuditRunner.submit`; a worker thread claims it in the store
(:func:`audits.jobs.claim_job`: one runner only, even with several servers on
one database), runs its work (:mod:`governance.api.audit_jobs.process`, or
:mod:`~governance.api.audit_jobs.work` on the thread) and records how it ended.

The status lives in SQL (:mod:`audits.jobs`): at startup the runner fails the
jobs a stopped process left running and starts the queued ones again; at
shutdown it lets running audits finish and leaves queued ones for next time.
While it runs, the runner renews the lease of the jobs it holds
(``RECGOV_AUDIT_LEASE_S``, three heartbeats per lease) and, once per lease,
fails the running jobs of any host whose lease has expired and adopts jobs left
queued for longer than a lease.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from audits import jobs as job_store
from audits.db import Store
from governance.api.audit_jobs.process import AuditFailed, IsolatedAudit, run_isolated
from governance.api.audit_jobs.work import run_job
from governance.api.settings import ApiSettings
from recommender.errors import ConfigError, RecgovError

__all__ = ["AUDIT_OVER_TIME", "AUDIT_STOPPED", "MAX_CONCURRENT_AUDITS", "AuditRunner", "failure_cause"]

log = logging.getLogger("recgov.api.audits")

MAX_CONCURRENT_AUDITS = 2
"""Audits run at most this many at a time per process; more wait in the queue."""
AUDIT_OVER_TIME = "the audit ran longer than its time budget of {budget:g} s (RECGOV_AUDIT_TIME_BUDGET_S); audit less data, or raise the budget"
AUDIT_STOPPED = "stopped: the server shut down before the audit finished (it waited {grace:g} s for it); start a new audit"
_LIVE_RUNNERS: set[str] = set()
"""The runner ids of this process's live :class:`AuditRunner` instances."""


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
        queue to that peer). The jobs this runner runs are not judged by their
        lease here: a late beat of its own lease thread (a busy host) is no sign
        that it stopped (a peer judges them by the lease).
        """
        with self.store.session() as session:
            queued, interrupted = job_store.recover_jobs(
                session, is_alive=_runner_alive, lease_s=self.lease_s, queued_for_s=queued_for_s, holder=self.runner_id
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
            return run_job(self.store, self.settings, job_id, request, pack_hash, actor)
        return run_isolated(self.settings, job_id, request, pack_hash, actor, abandoned=lambda: self._is_abandoned(job_id))

    def _is_abandoned(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._abandoned
