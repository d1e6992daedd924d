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
* ``PUT /v1/items/{item_id}/block`` (admin): block an item (or lift its block) without a case; its id is
  checked as for a flag.
* ``PUT /v1/flags/{flag_id}/active`` (admin): switch a flag off (or on again), on the trail as ``recgov harm
  unflag`` records it; 404 for an unknown flag, 409 for a flag already so.
* ``GET /v1/flags`` (auditor): the stored flags, each marked with whether the catalogue holds its item (a flag
  stored under a near spelling keeps nothing out of any list).

Each write whose body says ``new_item`` (the id names an item no catalogue holds yet, though one holds a near
spelling: ``I9`` beside ``i9``) is not refused for the spelling; its trail event records the claim and the
spellings it overrode; ``new_item`` on an id a catalogue holds is a 422 (``not-a-new-item``, at ``body.new_item``).
* ``POST /v1/escalations/evaluate`` (admin): apply a pack's harmful-content rules;
  answers with the cases newly opened (items may be blocked outright too).
* ``GET /v1/escalations?status=`` (auditor): cases, by due time.
* ``POST /v1/escalations/{case_id}`` (admin): move a case (triaged, resolved,
  dismissed), optionally blocking or unblocking its item; 404 for an unknown
  case, 409 for a move the workflow does not allow. An unblock says what keeps the item out of lists all the
  same (``still_held``), as ``PUT /v1/items/{item_id}/block`` does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from audits._common import item_id as stored_item_id
from audits.catalogue import CatalogueCheck, NearItemId, NotANewItem, check_item
from audits.harm import block_item, list_cases, other_holds, report_item, set_flag_active, transition_case
from governance import packs as pack_store
from governance.api.deps import AuditKey, GovernKey, OperateKey, SessionDep, SettingsDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.schemas import IDENTIFIER, INT4_MAX
from governance.api.schemas.harm import (
    BlockPublic, BlockSet, CaseList, CaseMoved, CaseTransition, EvaluationCreate, FlagActivePublic, FlagActiveSet, FlagCreate,
    FlagList, FlagPublic, ReportCreate, ReportPublic,
)  # fmt: skip
from governance.escalation import UnknownHarmCategory, evaluate_escalations, flag_listing, flag_under_pack
from recommender.errors import ConfigError, DataError

router = APIRouter(tags=["harmful content"], responses=problems(401, 403, 422, 500))

ItemId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The item's id.")]
INVALID_ITEM = "invalid-item"
ITEM_ID_SPELLING = "item-id-spelling"
NOT_A_NEW_ITEM = "not-a-new-item"


def _item(item_id: str) -> str:
    """The path's item id as the store keeps it: a 422 (``invalid-item``, at ``path.item_id``) for one that is not
    printable text (format, private-use or unassigned characters make ids that look alike differ, and name no item
    of any list): Unicode categories have no pattern in the document's regex dialect."""
    try:
        return stored_item_id(item_id)
    except DataError as err:
        raise Problem(422, str(err), kind=INVALID_ITEM, errors=[{"location": "path", "field": "item_id", "message": str(err)}]) from None


def _in_catalogue(session: Any, item_id: str, new_item: bool = False) -> CatalogueCheck:
    """Where the catalogue recgov knows holds ``item_id``: a 422 (``item-id-spelling``, at ``path.item_id``) for an
    id no catalogue holds but spelt like one that does, unless ``new_item``; lists are filtered by the exact id.
    With ``new_item``, a 422 (``not-a-new-item``, at ``body.new_item``) for an id a catalogue holds."""
    try:
        return check_item(session, item_id, new_item=new_item)
    except NearItemId as err:
        session.rollback()
        raise Problem(422, str(err), kind=ITEM_ID_SPELLING, errors=[{"location": "path", "field": "item_id", "message": str(err)}]) from None
    except NotANewItem as err:
        session.rollback()
        raise Problem(422, str(err), kind=NOT_A_NEW_ITEM, errors=[{"location": "body", "field": "new_item", "message": str(err)}]) from None


CaseId = Annotated[int, Path(ge=1, le=INT4_MAX, description="The case's id.")]
FlagId = Annotated[int, Path(ge=1, le=INT4_MAX, description="The flag's id (see GET /v1/flags).")]


@router.post("/v1/items/{item_id}/reports", status_code=201, response_model=ReportPublic, responses=problems(422), summary="Record a user's report of an item (operator)")
def report(item_id: ItemId, body: ReportCreate, session: SessionDep, key: OperateKey) -> dict[str, Any]:
    """422 for an item id that is not printable text, or that no catalogue holds but one holds a near spelling of
    (``item-id-spelling``, naming it); nothing stored."""
    item_id = _item(item_id)
    found = _in_catalogue(session, item_id, body.new_item)
    row = report_item(session, item_id=item_id, reason=body.reason, reporter_id=body.reporter, actor=actor_of(key), new_item=body.new_item)
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
    found = _in_catalogue(session, item_id, body.new_item)
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    try:
        row, effect = flag_under_pack(
            session, loaded.pack, item_id=item_id, category=body.category, confidence=body.confidence,
            source=body.source, actor=actor_of(key), new_item=body.new_item,
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


@router.put("/v1/items/{item_id}/block", response_model=BlockPublic, responses=problems(422), summary="Block an item, or lift its block, without a case (admin)")
def block(item_id: ItemId, body: BlockSet, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    """Out of every list from the next request (``blocked: false`` lets it back). 422 for an item id that is not
    printable text, or that no catalogue holds but one holds a near spelling of (``item-id-spelling``, naming it;
    unless ``new_item``), or with ``new_item`` one a catalogue holds (``not-a-new-item``); nothing stored."""
    item_id = _item(item_id)
    found = _in_catalogue(session, item_id, body.new_item)
    row = block_item(session, item_id=item_id, blocked=body.blocked, reason=body.reason, actor=actor_of(key), new_item=body.new_item)
    record_call(session, key, "items.block", objects={"item": row.item_id}, payload={"blocked": row.blocked, "new_item": body.new_item})
    return {
        "item_id": row.item_id, "blocked": row.blocked, "reason": row.reason, "trail_seq": row.trail_seq,
        "in_catalogue": found.in_catalogue, "catalogue": found.describe(), "new_item": body.new_item, "near": list(found.near),
        "still_held": [] if row.blocked else other_holds(session, row.item_id),
    }  # fmt: skip


@router.put("/v1/flags/{flag_id}/active", response_model=FlagActivePublic, responses=problems(404, 409), summary="Switch a flag off, or on again (admin)")
def flag_active(flag_id: FlagId, body: FlagActiveSet, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    """What the flag kept out of lists is served again from the next request (``active: false``). 404 for an unknown
    flag; 409 for a flag already active (or inactive); nothing changed on either."""
    try:
        row = set_flag_active(session, flag_id, active=body.active, note=body.note, actor=actor_of(key))
    except ConfigError as err:
        session.rollback()
        if str(err).startswith("unknown item flag"):
            raise Problem(404, str(err)) from None
        raise Problem(409, str(err), kind="flag-state") from None
    record_call(session, key, "flags.active", objects={"item": row.item_id, "flag": row.id}, payload={"active": row.active})
    return {"id": row.id, "item_id": row.item_id, "category": row.category, "active": row.active, "trail_seq": row.trail_seq}


@router.get("/v1/flags", response_model=FlagList, summary="Stored harm flags, each marked with whether the catalogue holds its item (auditor)")
def flags(
    session: SessionDep,
    key: AuditKey,
    include_inactive: bool = Query(False, description="Inactive flags too."),
) -> dict[str, Any]:
    """A flag whose item id no catalogue holds but one holds a near spelling of (stored before ids were checked)
    keeps nothing out of any list: ``near`` names the catalogue's spelling and ``misspelt`` lists it."""
    listed = flag_listing(session, active_only=not include_inactive)
    return {"flags": listed, "misspelt": [f["id"] for f in listed if f["near"] and not f["claimed_new"] and f["active"]]}


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


@router.post("/v1/escalations/{case_id}", response_model=CaseMoved, responses=problems(404, 409), summary="Move a case through the workflow; block or unblock its item (admin)")
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
    moved = next(c for c in list_cases(session) if c["id"] == row.id)
    return moved | {"still_held": other_holds(session, row.item_id) if body.action == "unblock" else []}
