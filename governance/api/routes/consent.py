"""``/v1/consent``: append a consent record, show a subject's consent (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from audits.consent import record_consent
from governance.api.deps import Operator, SessionDep, StoreDep
from governance.api.errors import problems
from governance.api.keys import actor_of
from governance.api.routes._audit import record_call
from governance.api.schemas import IDENTIFIER, ConsentCreate, ConsentPublic
from governance.privacy import show_consent

router = APIRouter(prefix="/v1/consent", tags=["consent"], responses=problems(401, 403, 422, 500))


@router.post("", status_code=201, response_model=ConsentPublic, summary="Append a consent record")
def create(body: ConsentCreate, session: SessionDep, key: Operator) -> dict[str, Any]:
    row = record_consent(
        session, subject_id=body.subject, purpose=body.purpose, status=body.status,
        lawful_basis=body.basis, source=body.source, actor=actor_of(key),
    )  # fmt: skip
    record_call(session, key, "consent.create", subject=row.subject, payload={"purpose": body.purpose, "status": body.status})
    return {"subject": row.subject, "purpose": row.purpose, "status": row.status, "basis": row.lawful_basis, "source": row.source, "recorded_at": row.recorded_at.isoformat()}


@router.get("/{subject}", summary="A subject's consent history and the records in force")
def show(subject: Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id.")], store: StoreDep, key: Operator) -> dict[str, Any]:
    return show_consent(store, subject)
