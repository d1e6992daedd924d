"""``/v1/recommendations``: one governed list (operator), honouring ``Sec-GPC: 1``."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from audits.consent import consent_history
from audits.models import ModelVersion
from governance.api import packs as pack_store
from governance.api.deps import Operator, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem
from governance.api.keys import actor_of
from governance.api.routes._audit import record_call
from governance.api.schemas import RecommendationCreate
from governance.cli.serve import open_engine
from governance.consent.gpc import gpc_opt_out
from governance.consent.state import ConsentRecord
from governance.privacy import record_consent_from_request
from governance.serving import ServeRequest

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])


@router.post("", summary="Serve one governed list")
def recommend(
    body: RecommendationCreate,
    request: Request,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    key: Operator,
    # Declared so that OpenAPI documents the header; it is read from the raw headers below.
    sec_gpc: Annotated[str | None, Header(alias="Sec-GPC", description="Global Privacy Control: '1' opts the subject out.")] = None,
) -> dict[str, Any]:
    """A ``Sec-GPC: 1`` header is recorded as an opt-out (under a pack that honours GPC) before serving."""
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    if session.get(ModelVersion, body.model_version) is None:
        raise Problem(404, f"model version {body.model_version!r} is not in the store; train one with 'recgov train'")
    session.rollback()
    gpc = gpc_opt_out(request.headers.raw)  # any Sec-GPC: 1, even beside a conflicting duplicate
    signals = record_consent_from_request(store, body.subject, pack=loaded, headers=request.headers.raw, actor=actor_of(key))
    engine, log = open_engine(store, loaded, body.model_version)
    try:
        with store.session() as history_session:
            history = consent_history(history_session, body.subject)
        records = tuple(
            ConsentRecord(purpose=r["purpose"], status=r["status"], lawful_basis=r["lawful_basis"], source=r["source"], time=r["recorded_at"].astimezone(UTC))
            for r in history
        )
        served = engine.serve(ServeRequest(body.subject, k=body.k, consent=records, gpc=gpc))
        request.app.state.metrics.decisions.labels(outcome=served.mode).inc()
    finally:
        log.close()
    record_call(session, key, "recommendations.create", objects={"decision": served.decision_id, "model": body.model_version}, payload={"mode": served.mode, "gpc": gpc, **loaded.stamp()})
    return {**served.to_dict(), "signals": signals}
