"""``/v1/audits``: start an audit (auditor), poll it, read its results, evidence and gate (viewer).

* ``POST /v1/audits`` answers ``202 Accepted`` at once with the job id and a
  ``Location: /v1/audits/{id}``; the audit runs in the background, on the
  app's :class:`~governance.api.audit_jobs.AuditRunner` (see
  :mod:`governance.api.audit_jobs` for a job's states, where it runs and what
  ends it).
* ``GET /v1/audits/{id}`` gives the status (``queued``, ``running``,
  ``succeeded``, ``failed``); once succeeded, every rule's result with its
  evidence, read back from ``audit_results``, and the gate decision; once
  failed, the one-line cause. A failure is a status to read, never a 500.
* ``GET /v1/audits/{id}/gate`` gives the gate document (``recgov.gate/v1``,
  the shape of ``gate.json``); 409 while the job has none.
* ``GET /v1/audits?status=&limit=&offset=`` lists jobs, newest first.

Files named in a request (``data``, ``slates``, ``baseline``) are read only
from ``$RECGOV_HOME/data``: a loader's error quotes the file it refuses, and an
auditor's key must not be a way to read the server's other files.

``ope_logged_pack`` (and ``ope_provider_groups``) judge the pack's off-policy
rules on the store's decision log, as ``recgov gate --ope-logged-pack`` does
(:class:`governance.audit.OffPolicyInput`). What the command line refuses with
exit 2 is a located 422 here, before a job is queued: groups without a logged
pack, a pack with no off-policy rule, a logged pack without an analytics purpose,
a target that re-ranks differently, and a logged pack whose content is not that
of the decisions recorded under its name and version. The logged pack's content
hash is kept with the job (``request.ope_logged_pack_hash``): a pack changed
before the job runs fails the job, as a changed ``pack`` does. Estimates refused
for poor overlap are missing evidence: their rules fail, as on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import jobs as job_store
from audits.models import AuditJob, AuditResult, ModelVersion
from governance import packs as pack_store
from governance.api.audit_jobs import AuditRunner, check_input_size, resolve_input
from governance.api.call_record import record_call
from governance.api.deps import AuditKey, ReadKey, SessionDep, SettingsDep
from governance.api.disclosure import shown_to
from governance.api.services.audit_gates import checked_gate
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.services.engines import engines_of
from governance.api.schemas.audits import AuditCreate, AuditJobDetail, AuditJobList, AuditJobPublic
from governance.gate import GateDocument
from governance.ope import ANALYTICS, NO_ANALYTICS_PURPOSE, NO_OFF_POLICY_RULE, OFF_POLICY_CHECKS, RERANKING_DIFFERS, LoggedPackMismatch, check_logged_hash
from governance.policy import LoadedPack
from recommender.errors import DataError

__all__ = ["AuditRunner", "router"]  # AuditRunner: the app starts it from here

router = APIRouter(prefix="/v1/audits", tags=["audits"], responses=problems(401, 500))

POLL_AFTER_S = "2"
"""``Retry-After`` of answers about a job still queued or running."""


def get_runner(request: Request) -> AuditRunner:
    """The runner the app started in its lifespan."""
    return request.app.state.audit_runner


RunnerDep = Annotated[AuditRunner, Depends(get_runner)]


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
    """404 for an unknown pack (``ope_logged_pack`` too) or model version; 422 for an invalid body, a file outside
    ``$RECGOV_HOME/data`` or off-policy options the pack cannot be judged with (see the module docstring)."""
    try:  # through the app's pack cache: parsing a pack for every request would cost each one a parse
        loaded = engines_of(request.app).pack(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    if body.model_version is not None and session.get(ModelVersion, body.model_version) is None:
        raise Problem(404, f"model version {body.model_version!r} is not in the store; train one with 'recgov train'")
    logged = _logged_pack(request, settings, body)
    errors = []
    for field in ("data", "slates", "baseline"):
        spec = getattr(body, field)
        if spec is None:
            continue
        try:
            check_input_size(field, spec, resolve_input(spec, settings.home / "data"), settings)
        except DataError as err:
            errors.append({"location": "body", "field": field, "message": str(err), "type": "value_error"})
    if logged is not None or body.ope_provider_groups is not None:
        errors += _off_policy_errors(session, loaded, logged)
    if errors:
        raise Problem(422, f"the request is invalid: {', '.join('body.' + e['field'] for e in errors)}", errors=errors)
    # the off-policy fields only when given: a request without them is stored as before they existed
    asked = body.model_dump(mode="json", exclude=None if logged is not None else {"ope_logged_pack", "ope_provider_groups"})
    payload: dict[str, Any] = {"request": asked, **loaded.stamp()}
    if logged is not None:
        asked["ope_logged_pack_hash"] = logged.content_hash  # the job refuses a logged pack changed before it runs
        groups = {name: len(items) for name, items in (body.ope_provider_groups or {}).items()} or None  # the trail: sizes, not the lists
        payload = {"request": {**asked, "ope_provider_groups": groups}, **loaded.stamp(), "ope_logged_policy": logged.stamp()}
    job = job_store.create_job(session, request=asked, pack_hash=loaded.content_hash, requested_by=actor_of(key), model_version=body.model_version)
    record_call(session, key, "audits.create", objects={"audit_job": job.id, "policy": body.pack}, payload=payload)
    runner.submit(job.id)  # a runner shutting down leaves it queued: it starts at the next startup
    response.headers["Location"] = f"/v1/audits/{job.id}"
    return _public(job)


def _logged_pack(request: Request, settings: Any, body: AuditCreate) -> LoadedPack | None:
    """The pack the logged lists were served under (``ope_logged_pack``), through the app's pack cache; 404 when unknown."""
    if body.ope_logged_pack is None:
        return None
    try:
        return engines_of(request.app).pack(settings.packs_dir, body.ope_logged_pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, f"body.ope_logged_pack: {err}") from None


def _off_policy_errors(session: Session, target: LoadedPack, logged: LoadedPack | None) -> list[dict[str, Any]]:
    """Why the off-policy options cannot be used, located (what ``recgov gate --ope-logged-pack`` refuses with exit 2)."""

    def error(field: str, message: str) -> dict[str, Any]:
        return {"location": "body", "field": field, "message": message, "type": "value_error"}

    if logged is None:
        return [error("ope_provider_groups", "ope_provider_groups needs ope_logged_pack (the pack the logged lists were served under)")]
    errors = []
    if not any(rule.check in OFF_POLICY_CHECKS for _, rule in target.pack.rules()):
        errors.append(error("ope_logged_pack", NO_OFF_POLICY_RULE.format(pack=f"{target.name} {target.version}", checks=", ".join(OFF_POLICY_CHECKS))))
    if logged.pack.reranking.model_dump(mode="json") != target.pack.reranking.model_dump(mode="json"):
        errors.append(error("pack", RERANKING_DIFFERS.format(logged=f"{logged.name} {logged.version}", target=f"{target.name} {target.version}")))
    if ANALYTICS not in logged.pack.consent.purposes:
        errors.append(error("ope_logged_pack", NO_ANALYTICS_PURPOSE.format(pack=logged.name, purpose=ANALYTICS)))
    try:
        check_logged_hash(session, logged)
    except LoggedPackMismatch as err:
        errors.append(error("ope_logged_pack", str(err)))
    return errors


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
        checked = checked_gate(session, job)
        rows = session.scalars(select(AuditResult).where(AuditResult.audit_run_id == job.audit_run_id).order_by(AuditResult.id))
        out["results"] = [_outcome(r) for r in rows]
        out["verdict"] = checked.run.verdict if checked.run else None
        if checked.problem is None:  # as GET .../gate: a document that no longer matches its audit decides nothing
            out["decision"] = (job.gate or {}).get("decision")
            out["counts"] = (job.gate or {}).get("counts")
        out["gate_problem"] = checked.problem
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
    checked = checked_gate(session, job)
    session.rollback()
    if checked.problem is not None:  # nothing to check against, or a difference: refuse, never answer unverified
        raise Problem(409, checked.problem, kind="gate-mismatch")
    gate = checked.gate
    return gate
