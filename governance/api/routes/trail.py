"""``/v1/trail``: verify the audit trail (auditor) and sign its head (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from audits.keys import load_signing_key
from audits.verify import verify_and_checkpoint, verify_trail
from governance.api.deps import AuditKey, GovernKey, SessionDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.call_record import record_call

router = APIRouter(prefix="/v1/trail", tags=["trail"], responses=problems(401, 403, 500))


@router.get("/verify", summary="Verify the whole trail and its signed checkpoints")
def verify(store: StoreDep, key: AuditKey) -> dict[str, Any]:
    with store.snapshot() as connection:
        return verify_trail(connection).to_dict()


@router.post("/checkpoint", status_code=201, responses=problems(409), summary="Verify the trail, then sign its head")
def checkpoint(store: StoreDep, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    record_call(session, key, "trail.checkpoint")  # the request is in the trail, so the head is never empty
    report, signed = verify_and_checkpoint(store, load_signing_key(settings=store.settings))
    if signed is None:
        raise Problem(409, f"refusing to sign a broken trail: first bad event {report.first_bad_seq} ({report.reason})", kind="broken-trail")
    return signed.to_dict()
