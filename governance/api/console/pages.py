"""The console's pages: audit runs, the escalation queue, the trail's state and the deployments.

Each page reads what the matching API route reads, through the same library
functions, under the same scope: ``GET /v1/audits`` and ``GET /v1/audits/{id}``
(read), ``GET /v1/escalations`` (audit), ``POST /v1/escalations/{case_id}``
(govern), ``GET /v1/trail/verify`` (audit) and ``GET /v1/deployments`` (read).
A case moved from the console writes the trail records the API writes
(``case.<status>``, ``item.blocked`` or ``item.unblocked`` by
:func:`audits.harm.transition_case`), then the call record
``api.console.escalations.transition``, all by ``key:<id>:<name>``.
The pages answer after a POST with a redirect (post/redirect/get), so a reload
never sends a form twice.

Verifying the trail walks all of it and checks every record it anchors
(:func:`audits.verify.verify_store`), as ``GET /v1/trail/verify`` does: the
trail page costs what that call costs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from audits import jobs as job_store
from audits.checkpoints import list_checkpoints
from audits.harm import CASE_ACTIONS, CASE_TRANSITIONS, OPEN_CASE_STATUSES, list_cases, other_holds, transition_case
from audits.keys import installation_public_keys
from audits.models import AuditResult, TrailEvent
from audits.verify import verify_store
from governance import deploy
from governance.api.call_record import record_call
from governance.api.console.web import ConsoleRoute, FormDep, Refusal, Reviewer, acting_for, first_values, render, reviewer_for
from governance.api.services.audit_gates import CheckedGate, checked_gate, checked_gates
from governance.api.deps import SessionDep, SettingsDep, StoreDep
from governance.api.disclosure import shown_to
from governance.api.heavy import run_heavy
from governance.api.keys import actor_of
from governance.api.schemas import INT4_MAX
from governance.api.schemas.harm import CaseTransition
from recommender.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

ReadingKey = Annotated[Reviewer, Depends(reviewer_for("read"))]
AuditingKey = Annotated[Reviewer, Depends(reviewer_for("audit"))]
GoverningKey = Annotated[Reviewer, Depends(acting_for("govern"))]
CaseId = Annotated[int, Path(ge=1, le=INT4_MAX)]

RECENT_EVENTS = 25
"""How many of the trail's latest events the trail page lists."""
STAGES = ("production", "canary", "shadow", "retired")
CASE_VERBS = {"triaged": "Triage", "resolved": "Resolve", "dismissed": "Dismiss"}
BAD_NOTE = "the note must be text of at most {limit} characters, not blank and without a NUL character (got {length} characters{nul})"
BAD_MOVE = "a case moves to one of {statuses} (got {status!r}), and its item's action is one of {actions} or none (got {action!r})"
NO_SUCH_JOB = "there is no audit job {job_id}; see the list of audit runs"
NOTE_MAX = next(m.max_length for m in CaseTransition.model_fields["note"].metadata if getattr(m, "max_length", None))
"""The longest note ``POST /v1/escalations/{case_id}`` takes (its schema's bound, read from it)."""
_STYLESHEET = files("governance.api.console").joinpath("static", "console.css").read_bytes()


@router.get("/static/console.css", summary="The console's stylesheet")
def stylesheet() -> Response:
    return Response(_STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/audits", summary="Audit jobs, newest first")
def audits(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    reviewer: ReadingKey,
    status: Literal["queued", "running", "succeeded", "failed"] | None = None,
    offset: int = Query(0, ge=0, le=1_000_000),
) -> Response:
    limit = 25
    rows, total = job_store.list_jobs(session, status=status, limit=limit, offset=offset)
    gates = checked_gates(session, list(rows))
    jobs = [_job_view(job, reviewer, settings.home, gates.get(str(job.id))) for job in rows]
    session.rollback()
    return render(
        request, "audits.html", title="Audit runs", reviewer=reviewer, jobs=jobs, total=total, status=status,
        statuses=("queued", "running", "succeeded", "failed"), offset=offset, limit=limit,
    )  # fmt: skip


def _job_view(job: Any, reviewer: Reviewer, home: Any, checked: CheckedGate | None) -> dict[str, Any]:
    """A job as a key of the reviewer's role may see it (a failure's server details only for the roles that run the service).

    Its gate decision is given in words only when the stored document still matches its audit (``checked``); else
    the decision is "not to be trusted", as ``GET /v1/audits/{id}/gate`` refuses it.
    """
    trusted = checked is not None and checked.problem is None
    request = job.request or {}
    return {
        "id": job.id,
        "status": job.status,
        "pack": request.get("pack"),
        "model_version": request.get("model_version"),
        "requested_by": job.requested_by,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "audit_id": job.audit_run_id,
        "error": shown_to(reviewer.key.role, job.error, home),
        "decision": _decision_words((job.gate or {}).get("decision")) if trusted else None,
        "gate_problem": checked.problem if checked is not None else None,
    }


def _decision_words(decision: dict[str, Any] | None) -> str | None:
    """A gate decision in a word or two: 'passes', 'blocks', or either 'in shadow mode (not enforced)'."""
    if not decision:
        return None
    words = "passes" if decision.get("passed") else "blocks"
    return words if decision.get("enforced", True) else f"{words} in shadow mode (not enforced)"


@router.get("/audits/{job_id}", summary="One audit: every rule with its outcome and evidence, and the gate decision")
def audit(job_id: UUID, request: Request, session: SessionDep, settings: SettingsDep, reviewer: ReadingKey) -> Response:
    job = job_store.get_job(session, str(job_id))
    if job is None:
        raise Refusal(404, NO_SUCH_JOB.format(job_id=job_id))
    checked = checked_gate(session, job) if job.status == "succeeded" and job.gate is not None else None
    view = _job_view(job, reviewer, settings.home, checked)
    results: list[AuditResult] = []
    gate: dict[str, Any] = {}
    if job.status == "succeeded" and job.audit_run_id is not None:
        results = list(session.scalars(select(AuditResult).where(AuditResult.audit_run_id == job.audit_run_id).order_by(AuditResult.id)))
        # As GET /v1/audits/{id}/gate: a gate document that no longer matches its audit decides nothing here either.
        trusted = checked is not None and checked.problem is None
        gate = dict(job.gate or {}) if trusted else {"pack": None, "counts": None}
        gate["verdict"] = checked.run.verdict if checked is not None and checked.run is not None else None
        gate["words"] = view["decision"]
        gate["reasons"] = (gate.get("decision") or {}).get("reasons") or []
        gate["matches_results"] = trusted
        gate["problem"] = view["gate_problem"] if checked is not None else "the audit has no gate document"
    session.rollback()
    return render(request, "audit.html", title=f"Audit job {job.id}", reviewer=reviewer, job=view, results=results, gate=gate)


@router.get("/escalations", summary="The escalation queue")
def escalations(
    request: Request,
    session: SessionDep,
    reviewer: AuditingKey,
    status: Literal["open", "triaged", "resolved", "dismissed"] | None = None,
    moved: int | None = Query(None, ge=1, le=INT4_MAX),
) -> Response:
    return _queue(request, session, reviewer, status=status, moved=moved)


def _queue(request: Request, session: Any, reviewer: Reviewer, *, status: str | None, moved: int | None = None, error: str | None = None, http_status: int = 200) -> Response:
    """The queue page: open and triaged cases by due time (or the cases of ``status``), with the moves each allows."""
    cases = list_cases(session, status=status) if status else [c for c in list_cases(session) if c["status"] in OPEN_CASE_STATUSES]
    session.rollback()
    now = datetime.now(UTC)
    for case in cases:
        case["overdue"] = case["status"] in OPEN_CASE_STATUSES and case["sla_due"] is not None and _aware(case["sla_due"]) < now
        case["moves"] = [(target, CASE_VERBS[target]) for target in CASE_TRANSITIONS[case["status"]]]
    notice, still_held = _moved_notice(session, moved) if moved else (None, [])
    session.rollback()
    return render(
        request, "escalations.html", status_code=http_status, title="Escalation queue", reviewer=reviewer, cases=cases,
        status_filter=status, statuses=("open", "triaged", "resolved", "dismissed"), can_act=reviewer.can("govern"),
        actions=CASE_ACTIONS, notice=notice, still_held=still_held, error=error,
    )  # fmt: skip


def _moved_notice(session: Any, moved: int) -> tuple[str | None, list[str]]:
    """What the queue says after a move: the case's new status and, when the move unblocked its item, what keeps the
    item out of lists all the same (:func:`audits.harm.other_holds`, as the API's ``still_held`` and the CLI say it)."""
    case = next((c for c in list_cases(session) if c["id"] == moved), None)
    if case is None:
        return None, []
    notice = f"Case {case['id']} is now {case['status']}."
    if case["action"] != "unblock":
        return notice, []
    held = other_holds(session, case["item_id"])
    if held:
        notice += f" Item {case['item_id']} is unblocked, but it stays out of lists meanwhile:"
    return notice, held


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.post("/escalations/{case_id}", summary="Move a case through the workflow; block or unblock its item")
def move_case(case_id: CaseId, request: Request, form: FormDep, session: SessionDep, reviewer: GoverningKey) -> Response:
    """As ``POST /v1/escalations/{case_id}``: 404 for an unknown case, 409 for a move the workflow refuses; nothing changes then."""
    status, action, note = first_values(form, "status", "action", "note")
    if status not in CASE_VERBS or (action is not None and action not in CASE_ACTIONS):
        message = BAD_MOVE.format(status=status, action=action, statuses=", ".join(CASE_VERBS), actions=", ".join(CASE_ACTIONS))
        return _queue(request, session, reviewer, status=None, error=message, http_status=422)
    try:  # the note the API's schema takes, no other: the store refuses a NUL, the library a longer note
        CaseTransition.model_validate({"status": status, "action": action, "note": note})
    except ValidationError:
        message = BAD_NOTE.format(limit=NOTE_MAX, length=len(note or ""), nul=", one a NUL" if "\x00" in (note or "") else "")
        return _queue(request, session, reviewer, status=None, error=message, http_status=422)
    try:
        row = transition_case(session, case_id, status=status, action=action, note=note, actor=actor_of(reviewer.key))
    except ConfigError as err:
        session.rollback()
        code = 404 if str(err).startswith("unknown escalation case") else 409
        return _queue(request, session, reviewer, status=None, error=str(err), http_status=code)
    record_call(
        session, reviewer.key, "console.escalations.transition", objects={"case": row.id, "item": row.item_id},
        payload={"status": row.status, "action": action},
    )  # fmt: skip
    return RedirectResponse(f"/console/escalations?moved={row.id}", status_code=303)


@router.get("/trail", summary="The trail's state: verification and signed checkpoints")
async def trail(request: Request, store: StoreDep, settings: SettingsDep, reviewer: AuditingKey) -> Response:
    checked, checkpoints, events = await run_heavy(request, _trail_state, store)  # as GET /v1/trail/verify: a few at a time
    return render(
        request, "trail.html", title="Audit trail", reviewer=reviewer, report=checked.trail, summary=checked.trail.summary(),
        checked=checked, anchored=[shown_to(reviewer.key.role, line, settings.home) for line in checked.lines()[1:]],
        checkpoints=list(reversed(checkpoints)), events=[_event_view(row) for row in events],
    )  # fmt: skip


def _trail_state(store: Any) -> tuple[Any, list[Any], list[Any]]:
    """The whole verification, the checkpoints and the latest events, in one snapshot."""
    latest = select(TrailEvent.seq, TrailEvent.time, TrailEvent.actor, TrailEvent.action, TrailEvent.objects)
    trusted = installation_public_keys(store.settings)  # not the database's own keys: see audits.verify
    with store.snapshot() as connection:
        checked = verify_store(connection, trusted_keys=trusted)
        checkpoints = list_checkpoints(connection)
        events = connection.execute(latest.order_by(TrailEvent.seq.desc()).limit(RECENT_EVENTS)).all()
    return checked, checkpoints, events


def _event_view(row: Any) -> dict[str, Any]:
    """An event as the page lists it: no subject column (the trail names subjects by pseudonym only, and a page needs none)."""
    seq, time, actor, action, objects = row
    shown = objects if isinstance(objects, str) else str(objects)
    return {"seq": seq, "time": time, "actor": actor, "action": action, "objects": shown}


@router.get("/deployments", summary="Deployed model versions by stage, with their gate")
def deployments(request: Request, store: StoreDep, reviewer: ReadingKey) -> Response:
    stages = deploy.status(store)
    return render(request, "deployments.html", title="Deployments", reviewer=reviewer, stages=[(stage, stages.get(stage, [])) for stage in STAGES])
