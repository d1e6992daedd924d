"""``/v1/consent``: append a consent record, show a subject's consent; ``/v1/consent-imports``: import many (operator).

Thin routes: a record goes through :func:`governance.privacy.consent.check_consent_change`
and :func:`~governance.privacy.consent.record_consent_change`, the path ``recgov
consent set`` takes, and its refusals become problem documents (404 for an
unknown pack, 422 naming the field otherwise). An import goes through
:func:`governance.consent.imports.import_consent`, as ``recgov consent import``.

The import has a path of its own, not ``/v1/consent/imports``: under
``/v1/consent/{subject}`` that path is also a subject's history (a subject may be
called "imports"), so its ``OPTIONS`` and 405 answers could not name the methods
the document gives it (a path is one thing or the other, never both).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request

from governance import packs as pack_store
from governance.api.deps import OperateKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.limits import read_body
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.consent import ConsentCreate, ConsentImportPublic, ConsentPublic
from governance.consent.evidence import EvidenceError
from governance.consent.import_table import ConsentImportMapping
from governance.consent.imports import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, import_consent
from governance.privacy import show_consent
from governance.privacy.consent import UnlistedConsentPurpose, check_consent_change, record_consent_change
from recommender.errors import DataError

_PAIR = r" *(?:" + "|".join(ConsentImportMapping.model_fields) + r") *=[^,=\x00-\x1f\x7f]*"
MAP_PATTERN = rf"^{_PAIR}(?:,{_PAIR})*$"
"""``map`` as the document states it: field=column pairs of the known fields.

The handler checks it, saying what is wrong."""

router = APIRouter(tags=["consent"], responses=problems(401, 403, 422, 500))


@router.post("/v1/consent", status_code=201, response_model=ConsentPublic, responses=problems(404), summary="Append a consent record")
def create(body: ConsentCreate, session: SessionDep, settings: SettingsDep, key: OperateKey) -> dict[str, Any]:
    """With ``pack``, the purpose must be the pack's, and what the pack says follows is applied (erase_on_withdrawal).

    A source that claims evidence (``banner``, ``tcf``, ``import``) needs it: 422 naming the field
    otherwise; a ``tcf`` record's TC string must support its status under the pack's ``consent.tcf``.
    """
    loaded = _pack(settings, body.pack)
    try:
        change = check_consent_change(
            loaded, purpose=body.purpose, status=body.status, source=body.source, lawful_basis=body.basis, evidence=body.evidence
        )
    except UnlistedConsentPurpose as err:
        raise Problem(422, str(err)) from None
    except EvidenceError as err:
        raise Problem(422, str(err), kind="consent-evidence", errors=[{"location": "body", "field": err.field, "message": str(err)}]) from None
    done = record_consent_change(session, loaded, change, subject_id=body.subject, actor=actor_of(key))
    row, erasure = done.record, done.erasure_request
    payload = {"purpose": body.purpose, "status": body.status} | ({"erasure_request": erasure.id} if erasure is not None else {})
    record_call(session, key, "consent.create", subject=row.subject, payload=payload)
    return {
        "subject": row.subject, "purpose": row.purpose, "status": row.status, "basis": row.lawful_basis,
        "source": row.source, "recorded_at": row.recorded_at.isoformat(), "erasure_request": done.erasure_json(),
    }  # fmt: skip


def _pack(settings: Any, ref: str | None) -> Any:
    """The pack ``ref`` names (None for none); 404 when there is no such pack."""
    if ref is None:
        return None
    try:
        return pack_store.load_ref(settings.packs_dir, ref)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None


IMPORT_TOO_LARGE = (
    "the consent export is larger than {limit} bytes, the most this installation accepts in one request "
    "(RECGOV_MAX_BODY_BYTES); send it in parts, or import it with `recgov consent import`"
)
IMPORT_FORMAT_UNKNOWN = "say the export's format: ?format=csv or ?format=jsonl, or a Content-Type of text/csv or application/x-ndjson"
_CONTENT_TYPES = {"text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json-lines": "jsonl"}
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string", "minLength": 1},
                "example": "subject,purpose,status,time\nu000012,personalization,granted,2026-03-01T09:30:00Z\n",
            },
            "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
        },
    }
}


def _import_format(request: Request, given: str | None) -> str:
    if given is not None:
        return given
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _CONTENT_TYPES:
        raise Problem(422, IMPORT_FORMAT_UNKNOWN, errors=[{"location": "query", "field": "format", "message": IMPORT_FORMAT_UNKNOWN}])
    return _CONTENT_TYPES[media]


@router.post(
    "/v1/consent-imports",
    response_model=ConsentImportPublic,
    responses=problems(400, 404, 413, 415),
    openapi_extra=IMPORT_BODY,
    summary="Import consent records in bulk (a CSV or JSON Lines body)",
)
async def import_records(
    request: Request,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: OperateKey,
    fmt: Annotated[Literal["csv", "jsonl"] | None, Query(alias="format", description="csv or jsonl (default: from the Content-Type).")] = None,
    pack: Annotated[str | None, Query(min_length=1, max_length=200, pattern=IDENTIFIER, description="The pack in force: each purpose must be its own; the basis defaults to the purpose's.")] = None,
    mapping: Annotated[str | None, Query(
        alias="map", max_length=2000, pattern=IDENTIFIER, json_schema_extra={"pattern": MAP_PATTERN},
        description="The export's column for each field: field=column,... (as recgov consent import --map).")] = None,
    batch_size: Annotated[int, Query(ge=1, le=MAX_BATCH_SIZE, description="Records per transaction, each batch anchored by one trail event.")] = DEFAULT_BATCH_SIZE,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=IDENTIFIER, description="What to call the export in the report.")] = "upload",
) -> dict[str, Any]:
    """Judge every row as ``POST /v1/consent`` judges one record and append the valid ones; a second import adds nothing.

    Refused rows are listed with their line and reason (200). A body that is not
    a table of the format, or lacks a mapped column, is a 422 locating the fault,
    and nothing is written.
    """
    kind = _import_format(request, fmt)
    loaded = _pack(settings, pack)
    body = await read_body(request, settings.max_body_bytes, IMPORT_TOO_LARGE.format(limit=settings.max_body_bytes))
    try:
        parsed = ConsentImportMapping.parse(mapping) if mapping else None
    except DataError as err:
        raise Problem(422, str(err), errors=[{"location": "query", "field": "map", "message": str(err)}]) from None
    run = functools.partial(
        import_consent, store, body, mapping=parsed, fmt=kind, name=name, pack=loaded, batch_size=batch_size, actor=actor_of(key)
    )
    try:
        report = await anyio.to_thread.run_sync(run)
    except DataError as err:
        raise Problem(422, str(err), errors=[{"location": "body", "message": str(err)}]) from None
    doc = report.to_dict()
    counts = {k: doc[k] for k in ("rows", "valid", "invalid", "added", "already_recorded")}
    record_call(session, key, "consent.import", objects={"file_sha256": report.sha256}, payload={"pack": pack, **counts})
    return doc


@router.get(
    "/v1/consent/{subject}",
    summary="A subject's consent history and the records in force",
    deprecated=True,
    description=(
        "Deprecated: the subject's id travels in the URL, where proxies and access logs keep it. "
        "Use `POST /v1/consent-state` (the id in the body)."
    ),
)
def show(subject: Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id.")], store: StoreDep, key: OperateKey) -> dict[str, Any]:
    return show_consent(store, subject)
