"""Data subject requests: ``/v1/subjects/{subject_id}/export|erasure`` (admin), ``/v1/requests`` (auditor).

* ``POST /v1/subjects/{subject_id}/export`` (admin): the GDPR Art. 15 access
  export. The answer names the subject (it goes to them); nothing stored does.
* ``POST /v1/subjects/{subject_id}/erasure`` (admin): GDPR Art. 17: lists the
  recorded models that may hold the subject, unlearns them from every recorded
  artifact the service can open that holds them (deployed versions included;
  the new versions are recorded, the old files stay for those who still serve
  from them), writes the suppression record and crypto-shreds the pseudonym.
  From the next request on, every version that read its data before the erasure
  serves the subject the non-profiling list. The report says what it could not
  reach (artifacts it cannot open: retrain and retire them).
* ``GET /v1/requests?kind=&status=`` (auditor): the subject requests (pseudonyms only).

No raw subject id reaches a log line or the trail: the privacy functions keep
it out of stored records and of their error messages, and an unexpected
failure here is logged by its exception type only (the app's generic handler
would log the request path, which holds the id).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from audits import list_requests
from governance import packs as pack_store
from governance.api.deps import AuditKey, GovernKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.subjects import ErasureCreate, ExportCreate
from governance.privacy import erase_subject, export_subject
from recommender.errors import RecgovError

router = APIRouter(tags=["subject requests"], responses=problems(401, 403, 422, 500))
log = logging.getLogger("recgov.api")

INTERNAL = "an internal error occurred; it has been logged (without the subject id)"


SubjectId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id.")]


def _pack(settings, ref: str):
    try:
        return pack_store.load_ref(settings.packs_dir, ref)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None


@router.post(
    "/v1/subjects/{subject_id}/export", responses=problems(404), summary="Everything recgov holds about a subject (GDPR Art. 15; admin)"
)
def export(
    subject_id: SubjectId,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: GovernKey,
    body: ExportCreate | None = None,
) -> dict[str, Any]:
    loaded = _pack(settings, body.pack) if body is not None and body.pack else None
    try:
        document = export_subject(store, subject_id, pack=loaded, actor=actor_of(key))
    except RecgovError:
        raise  # its message names no subject; answered 422
    except Exception as err:  # noqa: BLE001 -- logged by type only: the path and message may hold the id
        log.error("subject export failed: %s", type(err).__name__)
        raise Problem(500, INTERNAL) from None
    record_call(session, key, "subjects.export", objects={"request": document["request"]["id"]})
    return document


@router.post(
    "/v1/subjects/{subject_id}/erasure",
    responses=problems(404),
    summary="Erase a subject from the ledger and crypto-shred them (GDPR Art. 17; admin)",
)
def erasure(
    subject_id: SubjectId,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: GovernKey,
    body: ErasureCreate | None = None,
) -> dict[str, Any]:
    """Unlearns the subject from every recorded artifact that holds them (residual influence is not measured
    here: it retrains each model); ``models`` lists the recorded versions that may still hold them."""
    loaded = _pack(settings, body.pack if body is not None else "baseline")
    try:
        report = erase_subject(store, subject_id, pack=loaded, model_path=None, measure_residual=False, actor=actor_of(key))
    except RecgovError:
        raise
    except Exception as err:  # noqa: BLE001 -- logged by type only: the path and message may hold the id
        log.error("subject erasure failed: %s", type(err).__name__)
        raise Problem(500, INTERNAL) from None
    record_call(
        session,
        key,
        "subjects.erasure",
        objects={"request": report["request"]["id"]},
        payload={"shredded": report["shredded"]},
    )
    return report


@router.get("/v1/requests", summary="Subject requests, oldest first (auditor)")
def requests(
    session: SessionDep,
    key: AuditKey,
    kind: Literal["access", "erasure", "objection", "retrain"] | None = Query(None),
    status: Literal["received", "in_progress", "completed", "failed"] | None = Query(None),
) -> dict[str, Any]:
    return {"requests": list_requests(session, kind=kind, status=status)}
