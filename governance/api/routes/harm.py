"""Harmful content: ``/v1/items/{item_id}/reports|flags`` (operator) and ``/v1/escalations`` (auditor reads, admin acts).

* ``POST /v1/items/{item_id}/reports`` (operator): a user's report, relayed by
  the service; the reporter, when given, is stored only as a pseudonym (a report whose item id is the
  reporter's own id is a 422: it would store the raw id beside the pseudonym).

Both item routes check the id against the catalogue recgov knows (:mod:`audits.catalogue`) before anything is
stored: an id no catalogue holds but spelt like one that does (``I00573`` or ``573`` for ``i00573``) is a 422
(``item-id-spelling``, at ``path.item_id``, naming the catalogue's spelling); an id no catalogue holds at all is
recorded, and the answer says so (``in_catalogue: false``).
* ``POST /v1/items/{item_id}/flags`` (operator): a flag (category, confidence, source)
  whose category the named pack knows (else 422, naming the known ones), answered
  with what the flag does under that pack.
* ``POST /v1/escalations/evaluate`` (admin): apply a pack's harmful-content rules;
  answers with the cases newly opened (items may be blocked outright too).
* ``GET /v1/escalations?status=`` (auditor): cases, by due time.
* ``POST /v1/escalations/{case_id}`` (admin): move a case (triaged, resolved,
  dismissed), optionally blocking or unblocking its item; 404 for an unknown
  case, 409 for a move the workflow does not allow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from audits._common import item_id as stored_item_id
from audits.catalogue import CatalogueCheck, NearItemId, check_item
from audits.harm import list_cases, report_item, transition_case
from governance import packs as pack_store
from governance.api.deps import AuditKey, GovernKey, OperateKey, SessionDep, SettingsDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.schemas import IDENTIFIER, INT4_MAX
from governance.api.schemas.harm import Case, CaseList, CaseTransition, EvaluationCreate, FlagCreate, FlagPublic, ReportCreate, ReportPublic
from governance.escalation import UnknownHarmCategory, evaluate_escalations, flag_under_pack
from recommender.errors import ConfigError, DataError

router = APIRouter(tags=["harmful content"], responses=problems(401, 403, 422, 500))

ItemId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The item's id.")]
INVALID_ITEM = "invalid-item"
ITEM_ID_SPELLING = "item-id-spelling"


def _item(item_id: str) -> str:
    """The path's item id as the store keeps it: a 422 (``invalid-item``, at ``path.item_id``) for one that is not
    printable text (format, private-use or unassigned characters make ids that look alike differ, and name no item
    of any list): Unicode categories have no pattern in the document's regex dialect."""
    try:
        return stored_item_id(item_id)
    except DataError as err:
        raise Problem(422, str(err), kind=INVALID_ITEM, errors=[{"location": "path", "field": "item_id", "message": str(err)}]) from None


def _in_catalogue(session: Any, item_id: str) -> CatalogueCheck:
    """Where the catalogue recgov knows holds ``item_id``: a 422 (``item-id-spelling``, at ``path.item_id``) for an
    id no catalogue holds but spelt like one that does; lists are filtered by the exact id."""
    try:
        return check_item(session, item_id)
    except NearItemId as err:
        session.rollback()
        raise Problem(422, str(err), kind=ITEM_ID_SPELLING, errors=[{"location": "path", "field": "item_id", "message": str(err)}]) from None


CaseId = Annotated[int, Path(ge=1, le=INT4_MAX, description="The case's id.")]


@router.post("/v1/items/{item_id}/reports", status_code=201, response_model=ReportPublic, responses=problems(422), summary="Record a user's report of an item (operator)")
def report(item_id: ItemId, body: ReportCreate, session: SessionDep, key: OperateKey) -> dict[str, Any]:
    """422 for an item id that is not printable text, or that no catalogue holds but one holds a near spelling of
    (``item-id-spelling``, naming it); nothing stored."""
    item_id = _item(item_id)
    found = _in_catalogue(session, item_id)
    row = report_item(session, item_id=item_id, reason=body.reason, reporter_id=body.reporter, actor=actor_of(key))
    record_call(session, key, "items.report", subject=row.reporter, objects={"item": row.item_id, "report": row.id})
    return {
        "id": row.id,
        "item_id": row.item_id,
        "reporter": row.reporter,
        "reason": row.reason,
        "created_at": row.created_at.isoformat(),
        "in_catalogue": found.in_catalogue,
        "catalogue": found.describe(),
    }


@router.post("/v1/items/{item_id}/flags", status_code=201, response_model=FlagPublic, responses=problems(404, 422), summary="Flag an item as possibly harmful (operator)")
def flag(item_id: ItemId, body: FlagCreate, session: SessionDep, settings: SettingsDep, key: OperateKey) -> dict[str, Any]:
    """422 (naming the known categories) for a category the pack does not know; 422 (``item-id-spelling``, naming
    the catalogue's spelling) for an item id no catalogue holds but spelt like one that does; 404 for an unknown
    pack. Nothing stored on any of them."""
    item_id = _item(item_id)
    found = _in_catalogue(session, item_id)
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    try:
        row, effect = flag_under_pack(
            session, loaded.pack, item_id=item_id, category=body.category, confidence=body.confidence,
            source=body.source, actor=actor_of(key),
        )  # fmt: skip
    except UnknownHarmCategory as err:
        session.rollback()
        problem = [{"location": "body", "field": "category", "message": str(err)}]
        raise Problem(422, str(err), kind="unknown-harm-category", errors=problem) from None
    record_call(
        session,
        key,
        "items.flag",
        objects={"item": row.item_id, "flag": row.id},
        payload={"category": row.category, "source": row.source},
    )
    return {
        "id": row.id,
        "item_id": row.item_id,
        "category": row.category,
        "confidence": row.confidence,
        "source": row.source,
        "active": row.active,
        "created_at": row.created_at.isoformat(),
        "effect": effect,
        "in_catalogue": found.in_catalogue,
        "catalogue": found.describe(),
        **loaded.stamp(),
    }


@router.post("/v1/escalations/evaluate", responses=problems(404), summary="Apply a pack's harmful-content rules; the cases newly opened (admin)")
def evaluate(body: EvaluationCreate, session: SessionDep, settings: SettingsDep, key: GovernKey) -> dict[str, Any]:
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    opened = evaluate_escalations(session, loaded.pack, since=body.since, actor=actor_of(key))
    record_call(
        session, key, "escalations.evaluate", objects={"cases": [c["case_id"] for c in opened]}, payload=loaded.stamp()
    )
    return {"opened": opened, **loaded.stamp()}


@router.get("/v1/escalations", response_model=CaseList, summary="Escalation cases, by due time (auditor)")
def cases(
    session: SessionDep,
    key: AuditKey,
    status: Literal["open", "triaged", "resolved", "dismissed"] | None = Query(
        None, description="Only cases with this status."
    ),
) -> dict[str, Any]:
    return {"cases": list_cases(session, status=status)}


@router.post("/v1/escalations/{case_id}", response_model=Case, responses=problems(404, 409), summary="Move a case through the workflow; block or unblock its item (admin)")
def transition(case_id: CaseId, body: CaseTransition, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    """404 for an unknown case; 409 for a move the workflow refuses (e.g. out of a final status, or dismiss with block)."""
    try:
        row = transition_case(
            session, case_id, status=body.status, action=body.action, note=body.note, actor=actor_of(key)
        )
    except ConfigError as err:
        session.rollback()
        if str(err).startswith("unknown escalation case"):
            raise Problem(404, str(err)) from None
        raise Problem(409, str(err), kind="case-workflow") from None
    record_call(
        session,
        key,
        "escalations.transition",
        objects={"case": row.id, "item": row.item_id},
        payload={"status": row.status, "action": body.action},
    )
    return next(c for c in list_cases(session) if c["id"] == row.id)
