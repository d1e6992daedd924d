"""``/v1/feedback``: outcome events after served lists, joined to their decisions.

``POST /v1/feedback`` (the serving side: ``lists``, as the lists it reports on)
takes a JSON list of events and stores it whole or not at all
(:func:`governance.feedback.record_feedback`): a list with any event the store
refuses (a decision id that did not serve the item to that subject, a time in
the future, a dwell without seconds) is a 422 naming each such event by its
index, and nothing is stored. ``POST /v1/feedback/imports`` (``operate``, as
consent imports) takes a file as its body and stores its valid rows, listing
the refused ones (:func:`governance.feedback.import_feedback`, as ``recgov
feedback import``). Sending the same events twice stores them once.

Every call is on the trail, refused ones too (``api.feedback.record`` /
``api.feedback.import`` with ``refused: true``, the counts and the fields at
fault, never a value). An erased subject's event from before the erasure is
refused in the same neutral words for every role ("this event cannot be stored
for this subject"), which say neither that nor when anyone was erased.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Query, Request

from governance.api.call_record import record_call
from governance.api.deps import ListsKey, OperateKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.limits import read_body
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.feedback import WINDOW, FeedbackList, FeedbackReportPublic
from governance.feedback import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    FeedbackMapping,
    FeedbackRefused,
    import_feedback,
    parse_window,
    record_feedback,
    table_of_events,
)
from recommender.errors import DataError

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], responses=problems(401, 403, 422, 500))

REFUSED_KIND = "feedback-refused"
_PAIR = r" *(?:" + "|".join(FeedbackMapping.model_fields) + r") *=[^,=\x00-\x1f\x7f]*"
MAP_PATTERN = rf"^{_PAIR}(?:,{_PAIR})*$"
IMPORT_TOO_LARGE = (
    "the upload is larger than {limit} bytes, the most this installation accepts in one request "
    "(RECGOV_MAX_BODY_BYTES); send it in parts, or import it with `recgov feedback import`"
)
FORMAT_UNKNOWN = (
    "say the upload's format: ?format=csv, jsonl or parquet, or a Content-Type of text/csv, application/x-ndjson "
    "or application/vnd.apache.parquet"
)
_CONTENT_TYPES = {
    "text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json-lines": "jsonl",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
}  # fmt: skip
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string", "minLength": 1},
                "example": "subject,item,kind,time,value\nu000012,i0042,click,2026-03-01T09:30:05Z,\nu000012,i0042,dwell,2026-03-01T09:31:10Z,65\n",
            },
            "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
WindowQuery = Annotated[
    str,
    Query(pattern=WINDOW, description="Attribution window for events without a decision_id: 90s, 30m, 24h, 7d (at most 365d)."),
]


def _window(text: str) -> Any:
    try:
        return parse_window(text)
    except DataError as err:
        raise Problem(422, str(err), errors=[{"location": "query", "field": "window", "message": str(err)}]) from None


def _refused(err: FeedbackRefused) -> Problem:
    errors = [{"location": "body", "field": f"[{p.position}].{p.field}", "message": p.reason} for p in err.problems]
    return Problem(422, str(err), kind=REFUSED_KIND, errors=errors)


def _refusal(events: int, err: FeedbackRefused) -> dict[str, Any]:
    """A refused list's call record: counts and the fields at fault, never a value (the reasons name no subject)."""
    fields = sorted({p.field for p in err.problems})
    return {"refused": True, "events": events, "invalid": len(err.problems), "fields": fields}


def _counts(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("rows", "valid", "invalid", "added", "already_recorded", "by_attribution", "window_seconds")}


@router.post("", response_model=FeedbackReportPublic, responses=problems(413), summary="Store outcome events (a JSON list), joined to their decisions")
async def record(
    events: Annotated[FeedbackList, Body(description="1 to 1,000 outcome events; stored whole or not at all.")],
    store: StoreDep,
    session: SessionDep,
    key: ListsKey,
    window: WindowQuery = "24h",
) -> dict[str, Any]:
    """Each event is joined to the decision that served the item: by its decision_id, or by subject, item and window.

    An event the store refuses makes the whole list a 422 (``feedback-refused``) naming each such event by its index
    (``[3].decision_id``); nothing is stored, and the corrected list can be sent again: events already stored are
    counted in ``already_recorded``, never stored twice. Events joined to no decision are stored and listed in
    ``unattributed`` with why.
    """
    span = _window(window)
    plain = [e.model_dump(exclude_none=True) for e in events]
    run = functools.partial(record_feedback, store, plain, window=span, actor=actor_of(key))
    try:
        report = await anyio.to_thread.run_sync(run)
    except FeedbackRefused as err:
        # A refused call is on the trail too (who tried to store what, and how much was refused), naming no one.
        record_call(session, key, "feedback.record", objects={"events_sha256": table_of_events(plain).sha256}, payload=_refusal(len(plain), err))
        raise _refused(err) from None
    doc = report.to_dict()
    record_call(session, key, "feedback.record", objects={"events_sha256": report.sha256}, payload=_counts(doc))
    return doc


def _upload_format(request: Request, given: str | None) -> str:
    if given is not None:
        return given
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _CONTENT_TYPES:
        raise Problem(422, FORMAT_UNKNOWN, errors=[{"location": "query", "field": "format", "message": FORMAT_UNKNOWN}])
    return _CONTENT_TYPES[media]


@router.post(
    "/imports",
    response_model=FeedbackReportPublic,
    responses=problems(400, 413, 415),
    openapi_extra=IMPORT_BODY,
    summary="Import outcome events from a file (CSV, JSON Lines or Parquet body)",
)
async def import_events(
    request: Request,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: OperateKey,
    fmt: Annotated[Literal["csv", "jsonl", "parquet"] | None, Query(alias="format", description="csv, jsonl or parquet (default: from the Content-Type).")] = None,
    mapping: Annotated[str | None, Query(
        alias="map", max_length=2000, pattern=IDENTIFIER, json_schema_extra={"pattern": MAP_PATTERN},
        description="The file's column for each field: field=column,... (as recgov feedback import --map).")] = None,
    window: WindowQuery = "24h",
    batch_size: Annotated[int, Query(ge=1, le=MAX_BATCH_SIZE, description="Events per transaction, each batch anchored by one trail event.")] = DEFAULT_BATCH_SIZE,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=IDENTIFIER, description="What to call the upload in the report.")] = "upload",
) -> dict[str, Any]:
    """Judge every row and store the valid ones, as ``recgov feedback import``; a second import adds nothing.

    Refused rows are listed with their line (Parquet: row) and reason (200). A body that is not a table of the format,
    or lacks a mapped column, is a 422 locating the fault, and nothing is stored.
    """
    kind = _upload_format(request, fmt)
    span = _window(window)
    try:
        parsed = FeedbackMapping.parse(mapping) if mapping else None
    except DataError as err:
        raise Problem(422, str(err), errors=[{"location": "query", "field": "map", "message": str(err)}]) from None
    body = await read_body(request, settings.max_body_bytes, IMPORT_TOO_LARGE.format(limit=settings.max_body_bytes))
    run = functools.partial(
        import_feedback, store, body, mapping=parsed, fmt=kind, name=name, window=span, batch_size=batch_size, actor=actor_of(key)
    )
    try:
        report = await anyio.to_thread.run_sync(run)
    except DataError as err:
        digest = hashlib.sha256(body).hexdigest()
        record_call(session, key, "feedback.import", objects={"file_sha256": digest}, payload={"refused": True, "reason": "not a table of its format"})
        raise Problem(422, str(err), errors=[{"location": "body", "message": str(err)}]) from None
    doc = report.to_dict()
    record_call(session, key, "feedback.import", objects={"file_sha256": report.sha256}, payload=_counts(doc))
    return doc
