"""``/v1/consent``: append a consent record, show a subject's consent (operator).

A record whose source claims evidence brings it (:mod:`governance.consent.evidence`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from audits.consent import record_consent
from governance import packs as pack_store
from governance.api.deps import OperateKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.call_record import record_call
from governance.api.schemas import IDENTIFIER, ConsentCreate, ConsentPublic
from governance.consent.evidence import EvidenceError, check_consent_evidence
from governance.privacy import record_consent_under_pack, show_consent

router = APIRouter(prefix="/v1/consent", tags=["consent"], responses=problems(401, 403, 422, 500))


@router.post("", status_code=201, response_model=ConsentPublic, responses=problems(404), summary="Append a consent record")
def create(body: ConsentCreate, session: SessionDep, settings: SettingsDep, key: OperateKey) -> dict[str, Any]:
    """With ``pack``, the purpose must be the pack's, and what the pack says follows is applied (erase_on_withdrawal).

    A source that claims evidence (``banner``, ``tcf``, ``import``) needs it: 422 naming the field
    otherwise; a ``tcf`` record's TC string must support its status under the pack's ``consent.tcf``.
    """
    erasure = None
    loaded = None
    if body.pack is not None:
        try:
            loaded = pack_store.load_ref(settings.packs_dir, body.pack)
        except pack_store.PackNotFound as err:
            raise Problem(404, str(err)) from None
        if body.purpose not in loaded.pack.consent.purposes:
            listed = ", ".join(sorted(loaded.pack.consent.purposes)) or "none"
            raise Problem(422, f"purpose {body.purpose!r} is not one of pack {loaded.name}'s consent purposes ({listed})")
    try:
        evidence = check_consent_evidence(
            source=body.source, status=body.status, lawful_basis=body.basis, purpose=body.purpose,
            evidence=body.evidence, section=None if loaded is None else loaded.pack.consent,
        )  # fmt: skip
    except EvidenceError as err:
        raise Problem(422, str(err), kind="consent-evidence", errors=[{"location": "body", "field": err.field, "message": str(err)}]) from None
    if loaded is None:
        row = record_consent(
            session, subject_id=body.subject, purpose=body.purpose, status=body.status,
            lawful_basis=body.basis, source=body.source, evidence=evidence, actor=actor_of(key),
        )  # fmt: skip
    else:
        row, erasure = record_consent_under_pack(
            session, loaded, subject_id=body.subject, purpose=body.purpose, status=body.status,
            lawful_basis=body.basis, source=body.source, evidence=evidence, actor=actor_of(key),
        )  # fmt: skip
    payload = {"purpose": body.purpose, "status": body.status} | ({"erasure_request": erasure.id} if erasure is not None else {})
    record_call(session, key, "consent.create", subject=row.subject, payload=payload)
    return {
        "subject": row.subject, "purpose": row.purpose, "status": row.status, "basis": row.lawful_basis,
        "source": row.source, "recorded_at": row.recorded_at.isoformat(),
        "erasure_request": None if erasure is None else {"id": erasure.id, "status": erasure.status, "deadline": erasure.deadline.isoformat()},
    }  # fmt: skip


@router.get("/{subject}", summary="A subject's consent history and the records in force")
def show(subject: Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id.")], store: StoreDep, key: OperateKey) -> dict[str, Any]:
    return show_consent(store, subject)
