"""The gate decision of an audit job, shown only when its stored document still matches the audit it decided.

``GET /v1/audits/{id}/gate`` (409 ``gate-mismatch``), ``GET /v1/audits/{id}``
(no decision, and ``gate_problem`` says why) and the console's audit pages (no
verdict, the mismatch said) all ask :func:`checked_gate`, which asks
:func:`audits.results.gate_mismatch`: one check, one wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.models import AuditRun
from audits.results import gate_mismatch

__all__ = ["GATE_MISMATCH", "CheckedGate", "checked_gate", "checked_gates"]

GATE_MISMATCH = (
    "the gate document of audit job {job} no longer matches the results recorded for audit {audit} ({why}); "
    "run 'recgov trail verify' and start a new audit"
)


@dataclass(frozen=True)
class CheckedGate:
    """A finished job's gate document, its audit run, and why the document cannot be trusted (None: it can)."""

    gate: dict[str, Any] | None
    run: AuditRun | None
    problem: str | None


def _checked(job: Any, run: AuditRun | None) -> CheckedGate:
    why = gate_mismatch(job.gate, run)
    problem = None if why is None else GATE_MISMATCH.format(job=job.id, audit=job.audit_run_id, why=why)
    return CheckedGate(gate=job.gate, run=run, problem=problem)


def checked_gate(session: Session, job: Any) -> CheckedGate:
    """The gate of a succeeded ``job`` checked against its audit run (call only for a job with a gate and an audit)."""
    return _checked(job, session.get(AuditRun, job.audit_run_id) if job.audit_run_id is not None else None)


def checked_gates(session: Session, jobs: list[Any]) -> dict[str, CheckedGate]:
    """:func:`checked_gate` for every job of a page that has a gate, with one query for their runs."""
    with_gate = [job for job in jobs if job.gate is not None]
    ids = {job.audit_run_id for job in with_gate if job.audit_run_id is not None}
    runs = {run.id: run for run in session.scalars(select(AuditRun).where(AuditRun.id.in_(ids)))} if ids else {}
    return {str(job.id): _checked(job, runs.get(job.audit_run_id)) for job in with_gate}
