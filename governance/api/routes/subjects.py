"""Data subject requests: ``POST /v1/requests/access|erasure`` (admin), ``GET /v1/requests`` (auditor).

* ``POST /v1/requests/access`` (admin): the GDPR Art. 15 access
  export. The answer names the subject (it goes to them); nothing stored does.
* ``POST /v1/requests/erasure`` (admin): GDPR Art. 17: lists the
  recorded models that may hold the subject, unlearns them from every recorded
  artifact the service can open that holds them (deployed versions included;
  the new versions are recorded, the old files stay for those who still serve
  from them), writes the suppression record and crypto-shreds the pseudonym.
  From the next request on, every version that read its data before the erasure
  serves the subject the non-profiling list. The report says what it could not
  reach (artifacts it cannot open: retrain and retire them).
* ``GET /v1/requests?kind=&status=&overdue=&limit=&after=`` (auditor): the subject requests
  (pseudonyms only), oldest first, page by page: ``after`` is the last id of the
  previous page (its ``next_after``), so a page is one range read of an index
  however many requests the store holds (:func:`audits.requests.page_requests`).

Both requests take the subject's id in the body. The older
``POST /v1/subjects/{subject_id}/export|erasure`` do the same with the id in
the URL, where reverse proxies and access logs keep it: they stay for
existing clients and are marked deprecated in the OpenAPI document.

No raw subject id reaches a log line or the trail: the privacy functions keep
it out of stored records and of their error messages, and an unexpected
failure here is logged by its exception type only (the app's generic handler
would log the request path, which holds the id).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from audits import page_requests
from audits.requests import UnknownCursor
from governance import packs as pack_store
from governance.api.deps import AuditKey, GovernKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.schemas import INT4_MAX, REQUESTED_SUBJECT
from governance.api.schemas.subjects import ErasureCreate, ExportCreate, SubjectAccessCreate, SubjectErasureCreate
from governance.privacy import erase_subject, export_subject
from recommender.errors import RecgovError

router = APIRouter(tags=["subject requests"], responses=problems(401, 403, 422, 500))
log = logging.getLogger("recgov.api")

INTERNAL = "an internal error occurred; it has been logged (without the subject id)"


SubjectId = Annotated[str, Path(min_length=1, max_length=200, pattern=REQUESTED_SUBJECT, description="The subject's id.")]


def _pack(settings, ref: str):
    try:
        return pack_store.load_ref(settings.packs_dir, ref)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None


def _export(store, session, settings, key, subject_id: str, pack: str | None) -> dict[str, Any]:
    loaded = _pack(settings, pack) if pack else None
    try:
        document = export_subject(store, subject_id, pack=loaded, actor=actor_of(key))
    except RecgovError:
        raise  # its message names no subject; answered 422
    except Exception as err:  # noqa: BLE001 -- logged by type only: the path and message may hold the id
        log.error("subject export failed: %s", type(err).__name__)
        raise Problem(500, INTERNAL) from None
    record_call(session, key, "subjects.export", objects={"request": document["request"]["id"]})
    return document


def _replaced_versions(report: dict[str, Any]) -> set[str]:
    """The versions the erasure retired because their files listed the subject (now deleted)."""
    out = set()
    for step in report.get("unlearning", []):
        if step.get("replaced_in_serving"):
            out.add(step["previous_version"])
        out.update(older["version"] for older in step.get("older_versions_replaced", []))
    return out


def _erase(
    store, session, settings, key, subject_id: str, pack: str, *, approximate: bool = False, app: Any = None
) -> dict[str, Any]:
    loaded = _pack(settings, pack)
    try:
        report = erase_subject(
            store, subject_id, pack=loaded, model_path=None, measure_residual=False, exact=not approximate, actor=actor_of(key)
        )
    except RecgovError:
        raise
    except Exception as err:  # noqa: BLE001 -- logged by type only: the path and message may hold the id
        log.error("subject erasure failed: %s", type(err).__name__)
        raise Problem(500, INTERNAL) from None
    engines = getattr(app.state, "engines", None) if app is not None else None
    if engines is not None:  # committed: the replaced models leave this process's caches now, not at their next request
        engines.forget_models(_replaced_versions(report))
    record_call(
        session,
        key,
        "subjects.erasure",
        objects={"request": report["request"]["id"]},
        payload={"shredded": report["shredded"]},
    )
    return report


@router.post(
    "/v1/requests/access", responses=problems(404), summary="Everything recgov holds about a subject (GDPR Art. 15; admin)"
)
def access(body: SubjectAccessCreate, store: StoreDep, session: SessionDep, settings: SettingsDep, key: GovernKey) -> dict[str, Any]:
    """The access export of the subject named in the body (never in the URL)."""
    return _export(store, session, settings, key, body.subject, body.pack)


@router.post(
    "/v1/requests/erasure",
    responses=problems(404),
    summary="Erase a subject from the ledger and crypto-shred them (GDPR Art. 17; admin)",
)
def erase(
    body: SubjectErasureCreate, store: StoreDep, session: SessionDep, settings: SettingsDep, key: GovernKey, request: Request
) -> dict[str, Any]:
    """Unlearns the subject named in the body from every recorded artifact that holds them (residual influence
    is not measured here: it retrains each model); ``models`` lists the recorded versions that may still hold them."""
    return _erase(store, session, settings, key, body.subject, body.pack, approximate=body.approximate, app=request.app)


_DEPRECATED = "Deprecated: the subject's id travels in the URL, where proxies and access logs keep it. Use `{instead}` (the id in the body)."


@router.post(
    "/v1/subjects/{subject_id}/export",
    responses=problems(404),
    summary="Everything recgov holds about a subject (GDPR Art. 15; admin)",
    deprecated=True,
    description=_DEPRECATED.format(instead="POST /v1/requests/access"),
)
def export(
    subject_id: SubjectId,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: GovernKey,
    request: Request,
    body: ExportCreate | None = None,
) -> dict[str, Any]:
    _no_query_pack(request)
    return _export(store, session, settings, key, subject_id, body.pack if body is not None else None)


@router.post(
    "/v1/subjects/{subject_id}/erasure",
    responses=problems(404),
    summary="Erase a subject from the ledger and crypto-shred them (GDPR Art. 17; admin)",
    deprecated=True,
    description=_DEPRECATED.format(instead="POST /v1/requests/erasure"),
)
def erasure(
    subject_id: SubjectId,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: GovernKey,
    request: Request,
    body: ErasureCreate | None = None,
) -> dict[str, Any]:
    _no_query_pack(request)
    return _erase(
        store, session, settings, key, subject_id, body.pack if body is not None else "baseline",
        approximate=body is not None and body.approximate, app=request.app,
    )  # fmt: skip


QUERY_PACK = "the pack goes in the body ({\"pack\": NAME}), not in the query: ?pack= would be ignored and the request judged under another pack's deadlines"


def _no_query_pack(request: Request) -> None:
    """A 422 for ``?pack=`` on the routes that read the pack from the body (it would be ignored silently)."""
    if "pack" in request.query_params:
        raise Problem(422, QUERY_PACK, errors=[{"location": "query", "field": "pack", "message": QUERY_PACK}])


@router.get(
    "/v1/requests",
    responses=problems(422),
    summary="Subject requests, oldest first, page by page (auditor)",
    description="Follow `next_after` (as `after`) until it is null. `kind`, `status` and `overdue` (still unanswered past "
    "the deadline) filter every page alike. A 422 names `after` when it is no request's id.",
)
def requests(
    session: SessionDep,
    key: AuditKey,
    kind: Literal["access", "erasure", "objection", "retrain"] | None = Query(None),
    status: Literal["received", "in_progress", "completed", "failed"] | None = Query(None),
    overdue: bool = Query(False, description="Only the requests still unanswered past their deadline: open (received or in progress), or failed with no later request of their kind completed for the subject."),
    limit: int = Query(100, ge=1, le=1000, description="Requests per page."),
    after: int = Query(0, ge=0, le=INT4_MAX, description="The cursor: the last id of the previous page (0: the first page)."),
) -> dict[str, Any]:
    try:
        rows, next_after = page_requests(
            session, limit=limit, after=after, kind=kind, status=status, overdue_at=datetime.now(UTC) if overdue else None
        )
    except UnknownCursor as err:
        session.rollback()
        raise Problem(422, str(err), errors=[{"location": "query", "field": "after", "message": str(err)}]) from None
    session.rollback()
    return {"requests": rows, "next_after": next_after}
