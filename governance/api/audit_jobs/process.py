"""A job in a child process of its own: a memory budget it cannot exceed, a time budget that stops it.

An audit started over the API reads data the caller named and fits models on
it; in a thread of the server it could take the server's memory with it, and a
thread cannot be stopped. Here each audit runs in a spawned child process that
opens the store itself and records the audit as the command line does. Before
it loads anything, the child caps its address space (``RLIMIT_AS``) at what its
imports took plus the installation's budget (``RECGOV_AUDIT_MEMORY_BUDGET_MB``),
so an audit that needs more gets a ``MemoryError`` and fails with that reason,
never the server. When the runner abandons the job (its time budget ran out, or
the server is shutting down), the child is killed: the work stops with the job.

The child answers with one message: the audit run's id and its gate document,
or why it failed (recgov's own message, or the kind of an unexpected error).
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from recommender.errors import ConfigError, DataError, RecgovError

__all__ = ["AUDIT_OVER_MEMORY", "AUDIT_PROCESS_DIED", "AuditFailed", "IsolatedAudit", "run_isolated"]

AUDIT_OVER_MEMORY = (
    "the audit needed more memory than its budget of {budget} MB (RECGOV_AUDIT_MEMORY_BUDGET_MB); audit less data, "
    "or raise the budget"
)
AUDIT_PROCESS_DIED = (
    "the audit's process ended without an answer (exit code {code}), as it does when a native library cannot "
    "allocate within the memory budget of {budget} MB (RECGOV_AUDIT_MEMORY_BUDGET_MB); the server's log may say why"
)
POLL_S = 0.2
log = logging.getLogger("recgov.api")


@dataclass(frozen=True)
class IsolatedAudit:
    """What a child recorded: the audit run's id and its gate document (JSON)."""

    audit_id: int
    gate: dict[str, Any]


class AuditFailed(RecgovError):
    """An audit that failed in its child process; ``kind`` names what failed there."""

    def __init__(self, message: str, *, kind: str, expected: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.expected = expected


def run_isolated(
    settings: Any,
    job_id: str,
    request: dict[str, Any],
    pack_hash: str,
    actor: str,
    *,
    abandoned: Callable[[], bool],
) -> IsolatedAudit | None:
    """Run one audit job in a child process; None when the job was abandoned (the child is killed).

    Raises :class:`AuditFailed` when the audit failed in the child (its
    ``expected`` says whether it is recgov's own error, whose message may be
    shown, or an unexpected one, named by its kind only).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    budget = int(settings.audit_memory_budget_mb)
    child = context.Process(
        target=_child,
        args=(sender, settings.model_dump(mode="json"), job_id, request, pack_hash, actor, budget),
        name=f"recgov-audit-{job_id[:8]}",
        daemon=True,  # never outlives the server
    )
    child.start()
    sender.close()
    try:
        answer = _wait(child, receiver, abandoned, budget)
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=10)
    if answer is None:
        return None
    if answer[0] == "ok":
        return IsolatedAudit(audit_id=answer[1], gate=answer[2])
    _, kind, message, expected = answer
    raise AuditFailed(message, kind=kind, expected=expected)


def _wait(child: Any, receiver: Connection, abandoned: Callable[[], bool], budget: int) -> tuple[Any, ...] | None:
    while True:
        if receiver.poll(POLL_S):
            try:
                return receiver.recv()
            except EOFError:
                break
        if abandoned():
            child.kill()
            return None
        if not child.is_alive() and not receiver.poll(0):
            break
    child.join(timeout=10)
    raise AuditFailed(AUDIT_PROCESS_DIED.format(code=child.exitcode, budget=budget), kind="AuditProcessDied", expected=True)


def _child(
    sender: Connection, settings_json: dict[str, Any], job_id: str, request: dict[str, Any], pack_hash: str, actor: str, budget_mb: int
) -> None:
    """The child: cap the address space, open the store, audit, answer, exit."""
    from audits.db import open_store
    from governance.api.audit_jobs.work import run_job
    from governance.api.settings import ApiSettings

    _cap_address_space(budget_mb)
    try:
        settings = ApiSettings.model_validate(settings_json)
        store = open_store(settings.database_url)
        try:
            outcome = run_job(store, settings, job_id, request, pack_hash, actor)
            answer: tuple[Any, ...] = ("ok", outcome.audit_id, outcome.document.model_dump(mode="json"))
        finally:
            store.close()
    except MemoryError:
        answer = ("failed", "MemoryBudgetExceeded", AUDIT_OVER_MEMORY.format(budget=budget_mb), True)
    except (ConfigError, DataError, RecgovError) as err:
        answer = ("failed", type(err).__name__, str(err), True)
    except Exception as err:  # noqa: BLE001 -- answered by its kind; the message stays in this process's log
        logging.getLogger("recgov.api").exception("audit job %s crashed", job_id)
        answer = ("failed", type(err).__name__, f"internal error ({type(err).__name__})", False)
    sender.send(answer)
    sender.close()


def _cap_address_space(budget_mb: int) -> None:
    """Limit this process's address space to what it holds now plus ``budget_mb``.

    The BLAS libraries (numpy's and scipy's OpenBLAS) allocate their buffers at
    their first call, and abort the process when that fails: they are called
    once first, so that what they hold counts as held, not as the audit's.
    """
    import numpy as np
    import scipy.linalg.blas

    warm = np.ones((256, 256))
    warm @ warm
    scipy.linalg.blas.dgemm(1.0, warm, warm)
    with open("/proc/self/status", encoding="ascii") as status:
        held_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = held_kb * 1024 + budget_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
