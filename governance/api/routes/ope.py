"""``/v1/ope``: off-policy evaluation from the decision log, as ``recgov ope`` makes it.

* ``POST /v1/ope`` (auditor) estimates what a candidate pack would have earned on
  the lists served under the logged pack (:func:`governance.ope.evaluate_from_log`,
  the CLI's function, so the same consent rule: only the lists of subjects whose
  consent covers the ``analytics`` purpose are read, and the report counts every
  exclusion). The report is stored as the payload of the trail event
  ``api.ope.evaluate`` (tamper-evident, with its SHA-256), whose sequence number
  is the report's id; the answer is ``201`` with a ``Location``.
* ``GET /v1/ope/{id}`` (viewer) reads a stored report back from the trail.

Synchronous, not a job: the work is bounded by the request
(:mod:`governance.api.schemas.ope`: at most 5,000 decisions, 2,000 bootstrap
resamples), so an answer comes in seconds; it runs on the server's thread pool,
never on the event loop. A job queue would add a table and a runner for work
that fits a request; ``recgov ope`` has no bound for larger logs.

Refusals are located 422s (``ope-refused``), and on the trail with ``refused: true``:

* the logged pack declares no ``analytics`` purpose (``body.logged_pack``);
* the target re-ranks differently from the logged pack (``body.target_pack``);
* every estimate of an outcome kind is refused: a deterministic log (no
  logging policy, so no overlap with another policy), poor overlap or too few
  effective samples; each refused estimator is located at
  ``report.metrics.<kind>.<estimator>`` with its reason. When some estimates
  stand, the answer is the report, its refused estimates in it with their reasons.

When the target pack has off-policy rules (``off_policy_non_inferiority``,
``off_policy_exposure``), the report holds their results and the gate's decision on
them (``report.gate``): a refused estimate fails its rule there (missing evidence).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select

from audits.canonical import canonical_json
from audits.models import TrailEvent
from audits.trail import append_event
from governance import packs as pack_store
from governance.api.deps import AuditKey, ReadKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas.ope import OpeCreate, OpeReportPublic
from governance.api.services.engines import engines_of
from governance.ope import ALL_REFUSED, NO_ANALYTICS_PURPOSE, RERANKING_DIFFERS, LoggedPackMismatch, OpeSettings, evaluate_from_log, refused_estimates
from recommender.errors import ConfigError

__all__ = ["ACTION", "REFUSED_KIND", "router"]

router = APIRouter(prefix="/v1/ope", tags=["ope"], responses=problems(401, 403, 413, 422, 500))

ACTION = "api.ope.evaluate"
"""The trail action whose payload holds a report (and of refused calls, with ``refused: true``)."""
REFUSED_KIND = "ope-refused"
SINGLE_ACTION = ("ips", "snips", "dm", "dr")


def finite(value: Any) -> Any:
    """``value`` with every non-finite float as None: the trail's canonical JSON holds finite numbers only."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _refuse(session: Any, key: Any, body: OpeCreate, errors: list[dict[str, Any]], detail: str) -> Problem:
    append_event(
        session, actor=actor_of(key), action=ACTION,
        objects={"policy": body.logged_pack, "target_policy": body.target_pack},
        payload={"refused": True, "request": body.model_dump(mode="json", exclude={"segment_items", "provider_groups"}), "fields": [f"{e['location']}.{e['field']}" for e in errors]},
    )  # fmt: skip
    session.commit()
    return Problem(422, detail, kind=REFUSED_KIND, errors=errors)


def _public(seq: int, time: str, actor: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": seq, "requested_by": actor, "time": time, "request": payload["request"], "report": payload["report"],
        "report_sha256": payload["report_sha256"], "links": {"self": f"/v1/ope/{seq}"},
    }  # fmt: skip


@router.post(
    "",
    status_code=201,
    response_model=OpeReportPublic,
    responses={201: {"headers": {"Location": {"description": "The stored report: /v1/ope/{id}.", "schema": {"type": "string"}}}}, **problems(404)},
    summary="Estimate a candidate pack on the logged lists (off-policy); the report is stored on the trail (auditor)",
)
def evaluate(body: OpeCreate, request: Request, response: Response, session: SessionDep, settings: SettingsDep, store: StoreDep, key: AuditKey) -> dict[str, Any]:
    """404 for an unknown pack; 422 for an invalid body or a refused evaluation (located, see the module docstring)."""
    packs = {}
    for field in ("logged_pack", "target_pack"):
        try:
            packs[field] = engines_of(request.app).pack(settings.packs_dir, getattr(body, field))
        except pack_store.PackNotFound as err:
            raise Problem(404, f"body.{field}: {err}") from None
    if len(set(body.kinds)) != len(body.kinds):
        raise Problem(422, "the request is invalid: body.kinds", errors=[{"location": "body", "field": "kinds", "message": "name each outcome kind once", "type": "value_error"}])
    opts = OpeSettings(
        kinds=tuple(body.kinds), min_ess=body.min_ess, n_bootstrap=body.n_bootstrap, seed=body.seed, confidence=body.confidence,
        limit=body.limit, segment=None if body.segment_items is None else frozenset(body.segment_items),
        provider_groups=None if body.provider_groups is None else {name: frozenset(items) for name, items in body.provider_groups.items()},
    )  # fmt: skip
    logged, target = packs["logged_pack"], packs["target_pack"]
    try:
        report = finite(evaluate_from_log(store, logged, target, opts))
    except ConfigError as err:
        text = str(err)
        located = {
            NO_ANALYTICS_PURPOSE.format(pack=logged.name, purpose="analytics"): "logged_pack",
            RERANKING_DIFFERS.format(logged=f"{logged.name} {logged.version}", target=f"{target.name} {target.version}"): "target_pack",
        }
        field = "logged_pack" if isinstance(err, LoggedPackMismatch) else located.get(text, "")
        raise _refuse(session, key, body, [{"location": "body", "field": field, "message": text, "type": "value_error"}], text) from None
    if errors := refused_estimates(report):
        kinds = sorted({e["field"].split(".")[1] for e in errors})
        raise _refuse(
            session, key, body, errors,
            ALL_REFUSED.format(kinds=", ".join(kinds)) + "; each estimator's reason is in errors",
        )  # fmt: skip
    digest = hashlib.sha256(canonical_json(report)).hexdigest()
    payload = {"request": body.model_dump(mode="json"), "report": report, "report_sha256": digest}
    event = append_event(
        session, actor=actor_of(key), action=ACTION,
        objects={"policy": logged.stamp(), "target_policy": target.stamp()}, payload=payload,
    )  # fmt: skip
    session.commit()
    response.headers["Location"] = f"/v1/ope/{event.seq}"
    return _public(event.seq, event.time, event.actor, payload)


@router.get("/{report_id}", response_model=OpeReportPublic, responses=problems(404, 409), summary="A stored off-policy report (viewer)")
def get_report(session: SessionDep, key: ReadKey, report_id: int = Path(ge=1, le=2**53 - 1, description="The report's id.")) -> dict[str, Any]:
    """404 when no report has that id (a refused evaluation stores none)."""
    import json

    row = session.execute(select(TrailEvent).where(TrailEvent.seq == report_id, TrailEvent.action == ACTION)).scalar_one_or_none()
    payload = None if row is None else json.loads(row.payload)
    session.rollback()
    if row is None or "report" not in payload:
        raise Problem(404, f"no off-policy report {report_id}; POST /v1/ope makes one")
    if hashlib.sha256(canonical_json(payload["report"])).hexdigest() != payload.get("report_sha256"):
        raise Problem(409, f"off-policy report {report_id} no longer matches its digest; run 'recgov trail verify'", kind="report-mismatch")
    return _public(row.seq, row.time, row.actor, payload)
