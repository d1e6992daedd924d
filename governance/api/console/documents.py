"""The console's compliance documents: the Art. 30 record, the Art. 27 disclosure, and the data sets an audit may use.

Each document page reads what the matching API route reads, through the same
library function, under the same scope, and offers the same document as a JSON
download (its ``.json`` twin, ``Content-Disposition: attachment``):

* ``/console/records/processing`` -- the record of processing activities,
  GDPR Art. 30(1), as ``GET /v1/records/processing``
  (:func:`governance.privacy.processing_record`; scope ``audit``). Recipients
  are named one a line (at most 50, as the API takes them).
* ``/console/records/disclosure`` -- the recommender's main parameters, DSA
  Art. 27, as ``GET /v1/records/disclosure``
  (:func:`governance.disclosure.disclosure`, with a recorded model version's
  parameters when one is chosen; scope ``read``: it is written for the public).
* ``/console/datasets`` -- what the ``data``, ``slates`` and ``baseline`` of an
  audit asked for over the API may name (:func:`governance.api.services.datasets.audit_inputs`;
  scope ``audit``, the scope that starts an audit).

Both records are pure reads that name no subject; like their API routes they
write nothing to the trail. The pack is chosen in a GET form: a pack's name is
no personal data, and the address of a record can then be shared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from audits.models import ModelVersion
from governance.api.console.consent import DEFAULT_PACK, load_choice, pack_choices
from governance.api.services.datasets import audit_inputs
from governance.api.console.pages import AuditingKey, ReadingKey
from governance.api.console.web import ConsoleRoute, Refusal, Reviewer, render
from governance.api.deps import SessionDep, SettingsDep, StoreDep
from governance.api.download import attachment
from governance.api.schemas import IDENTIFIER
from governance.audit import recorded_model
from governance.disclosure import disclosure
from governance.policy import LoadedPack
from governance.privacy import processing_record
from recommender.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

MAX_RECIPIENTS = 50
MAX_RECIPIENT_CHARS = 500
MODEL_CHOICES = 200
"""The model versions the disclosure's form offers (newest first)."""
PackRef = Annotated[str | None, Query(min_length=1, max_length=200, pattern=IDENTIFIER)]
ModelRef = Annotated[str | None, Query(min_length=1, max_length=128, pattern=IDENTIFIER)]
Recipients = Annotated[str | None, Query(max_length=MAX_RECIPIENTS * (MAX_RECIPIENT_CHARS + 2))]
BAD_RECIPIENTS = f"name at most {MAX_RECIPIENTS} recipients, one a line, each 1 to {MAX_RECIPIENT_CHARS} characters"
NO_SUCH_MODEL = "there is no model version {version!r} in the store; choose one from the list"


def _pack(request: Request, reviewer: Reviewer, settings: Any, ref: str | None) -> tuple[LoadedPack, str, list[str]]:
    """The pack ``ref`` names (by default the EU pack, or the first there is), its ref, and the packs to choose from; 404 or 422 pages."""
    choices = pack_choices(settings.packs_dir)
    chosen = ref or (DEFAULT_PACK if DEFAULT_PACK in choices else choices[0])
    return load_choice(request, reviewer, settings.packs_dir, chosen), chosen, choices


def _recipients(text: str | None) -> list[str] | None:
    """The recipients named one a line (blank lines skipped), None for none; 422 past the API's limits."""
    names = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(names) > MAX_RECIPIENTS or any(len(name) > MAX_RECIPIENT_CHARS or "\x00" in name for name in names):
        raise Refusal(422, BAD_RECIPIENTS)
    return names or None


def _download(document: dict[str, Any], filename: str) -> Response:
    """The document as the API sends it, to be saved: JSON, UTF-8, ``attachment``."""
    body = json.dumps(document, indent=2, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
    headers = {"Content-Disposition": attachment(filename), "Cache-Control": "no-store"}
    return Response(body, media_type="application/json", headers=headers)


def _stamp_name(loaded: LoadedPack) -> str:
    """A file-name-safe ``pack-version`` (a stored pack's name may hold any printable character)."""
    raw = f"{loaded.name}-{loaded.version}"
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in raw)[:120]


@router.get("/records/processing", summary="The record of processing activities (GDPR Art. 30)")
def processing(request: Request, store: StoreDep, settings: SettingsDep, reviewer: AuditingKey, pack: PackRef = None, recipients: Recipients = None) -> Response:
    loaded, ref, choices = _pack(request, reviewer, settings, pack)
    record = processing_record(loaded, store, recipients=_recipients(recipients))
    query = {"pack": ref} | ({"recipients": recipients} if recipients and recipients.strip() else {})
    return render(
        request, "processing.html", title="Record of processing activities", reviewer=reviewer, record=record, packs=choices,
        pack=ref, recipients=recipients or "", download=f"/console/records/processing.json?{urlencode(query)}",
    )  # fmt: skip


@router.get("/records/processing.json", summary="The Art. 30 record as JSON, to keep")
def processing_json(request: Request, store: StoreDep, settings: SettingsDep, reviewer: AuditingKey, pack: PackRef = None, recipients: Recipients = None) -> Response:
    loaded, _, _ = _pack(request, reviewer, settings, pack)
    record = processing_record(loaded, store, recipients=_recipients(recipients))
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return _download(record, f"processing-record-{_stamp_name(loaded)}-{day}.json")


def _models(session: Any) -> list[str]:
    rows = session.scalars(select(ModelVersion.version_id).order_by(ModelVersion.created_at.desc(), ModelVersion.version_id).limit(MODEL_CHOICES))
    found = list(rows)
    session.rollback()
    return found


def _disclosure(request: Request, reviewer: Reviewer, settings: Any, store: Any, pack: str | None, model_version: str | None) -> tuple[dict[str, Any], LoadedPack, str, list[str]]:
    """The disclosure under the pack (with the model version's recorded parameters), the pack, its ref, the choices; 404s."""
    loaded, ref, choices = _pack(request, reviewer, settings, pack)
    params = None
    if model_version is not None:
        try:
            params, _, _ = recorded_model(store, model_version)
        except ConfigError:
            raise Refusal(404, NO_SUCH_MODEL.format(version=model_version)) from None
    return disclosure(loaded.pack, params), loaded, ref, choices


@router.get("/records/disclosure", summary="The main parameters of the recommender (DSA Art. 27)")
def disclosure_page(
    request: Request, store: StoreDep, session: SessionDep, settings: SettingsDep, reviewer: ReadingKey, pack: PackRef = None, model_version: ModelRef = None
) -> Response:
    document, _, ref, choices = _disclosure(request, reviewer, settings, store, pack, model_version)
    query = {"pack": ref} | ({"model_version": model_version} if model_version else {})
    return render(
        request, "disclosure.html", title="Main parameters of the recommender", reviewer=reviewer, document=document, packs=choices,
        pack=ref, models=_models(session), model_version=model_version, download=f"/console/records/disclosure.json?{urlencode(query)}",
    )  # fmt: skip


@router.get("/records/disclosure.json", summary="The Art. 27 disclosure as JSON, to keep")
def disclosure_json(request: Request, store: StoreDep, settings: SettingsDep, reviewer: ReadingKey, pack: PackRef = None, model_version: ModelRef = None) -> Response:
    document, loaded, _, _ = _disclosure(request, reviewer, settings, store, pack, model_version)
    suffix = f"-{model_version}" if model_version else ""
    name = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"disclosure-{_stamp_name(loaded)}{suffix}")[:160]
    return _download(document, f"{name}.json")


@router.get("/datasets", summary="The data sets an audit may use")
def datasets(request: Request, session: SessionDep, settings: SettingsDep, reviewer: AuditingKey) -> Response:
    inputs = audit_inputs(session, settings, role=reviewer.key.role)
    session.rollback()
    return render(request, "datasets.html", title="Data sets an audit may use", reviewer=reviewer, inputs=inputs)
