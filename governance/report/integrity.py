"""Whether the records the regulator's report shows still say what the trail recorded.

The report reads its figures from the store's tables (the data set, the training run and its carbon figures, the
model, each audit with its verdict and per-rule results, each deployment move), and a signed checkpoint proves only
the trail's chain. A row edited in place (an audit's verdict turned from ``fail`` to ``pass``, a rule's status, the
energy of a run) leaves the chain and its checkpoint intact; a report that read the row and showed the checkpoint
beside it presented the edit as proven. :func:`record_integrity` holds each row the report shows against the trail
event that wrote it (the event's own hash recomputed, then the fields the event recorded), so the report can say
what it covers and what no longer holds. The whole chain and every other table are
``recgov trail verify``'s to check; the report names that scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.models import AuditResult, AuditRun, DatasetVersion, Deployment, ModelVersion, TrailEvent, TrainingRun
from audits.results import RESULT_FIELDS, results_digest
from audits.trail import format_time, hash_event

__all__ = ["SCOPE", "record_integrity"]

SCOPE = (
    "each record this report shows (the data set, the training run and its energy and emissions, the model, every audit "
    "with its verdict and per-rule results, every deployment move) against the trail event that wrote it; the chain "
    "as a whole and the store's other tables are checked by `recgov trail verify`"
)
_CHANGED = "its trail event {seq} no longer matches its own hash (the event was changed)"
_MISSING = "its trail event {seq} is missing"
_DIFFERS = "{field} is {stored} in the store but the trail recorded {recorded}"


def _event(session: Session, seq: int | None) -> tuple[TrailEvent | None, str | None]:
    """The event at ``seq`` and, when it cannot be trusted, why."""
    if seq is None:
        return None, "it names no trail event"
    event = session.get(TrailEvent, seq)
    if event is None:
        return None, _MISSING.format(seq=seq)
    computed = hash_event(
        event.prev_hash, event.seq, event.time, event.actor, event.action, event.subject, event.objects, event.payload
    )
    if computed != event.hash:
        return None, _CHANGED.format(seq=seq)
    return event, None


def _payload(event: TrailEvent) -> dict[str, Any]:
    try:
        doc = orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _compare(stored: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
    """One line per field whose stored value differs from the recorded one (compared as canonical JSON)."""
    out = []
    for field, value in stored.items():
        if canonical_json(value) != canonical_json(recorded.get(field)):
            out.append(_DIFFERS.format(field=field, stored=_short(value), recorded=_short(recorded.get(field))))
    return out


def _row(session: Session, label: str, seq: int | None, stored: Mapping[str, Any], problems: list[dict[str, str]]) -> dict[str, Any] | None:
    event, why = _event(session, seq)
    if why is not None:
        problems.append({"record": label, "problem": why})
        return None
    assert event is not None
    recorded = _payload(event)
    problems += [{"record": label, "problem": p} for p in _compare(stored, recorded)]
    return recorded


def _carbon(session: Session, run: TrainingRun, problems: list[dict[str, str]]) -> None:
    objects = canonical_json({"training_run": run.id}).decode()
    events = session.scalars(
        select(TrailEvent.seq)
        .where(TrailEvent.action == "training_run.carbon_recorded", TrailEvent.objects == objects)
        .order_by(TrailEvent.seq)
    ).all()
    label = f"training run {run.id} (energy and emissions)"
    stored = {"energy_kwh": run.energy_kwh, "emissions_kg": run.emissions_kg, "carbon_method": run.carbon_method}
    if not events:
        if run.carbon_method is not None or run.energy_kwh is not None or run.emissions_kg is not None:
            problems.append({"record": label, "problem": "the store holds figures no trail event recorded"})
        return
    _row(session, label, events[-1], stored, problems)


def _results(session: Session, audit: AuditRun, recorded: Mapping[str, Any], problems: list[dict[str, str]]) -> None:
    summary = recorded.get("summary") or {}
    expected = summary.get("results_sha256") if isinstance(summary, dict) else None
    columns = (
        AuditResult.rule_id, AuditResult.section, AuditResult.check_name, AuditResult.severity, AuditResult.status,
        AuditResult.message, AuditResult.value, AuditResult.threshold, AuditResult.evidence, AuditResult.legal_reference,
        AuditResult.pack_line,
    )  # fmt: skip
    rows = session.execute(select(*columns).where(AuditResult.audit_run_id == audit.id).order_by(AuditResult.id)).all()
    results = [dict(zip(RESULT_FIELDS, row, strict=True)) for row in rows]
    if expected is None:
        if results:
            problems.append({"record": f"audit #{audit.id}", "problem": "it holds per-rule results its trail event recorded no digest of"})
        return
    if len(results) != summary.get("n_results") or results_digest(results) != expected:
        problems.append(
            {"record": f"audit #{audit.id}", "problem": "its per-rule results no longer match the SHA-256 the trail recorded (changed, added or deleted)"}
        )


def record_integrity(session: Session, model_version_id: str) -> dict[str, Any]:
    """``{scope, checked, problems, sound}`` for the records the report of ``model_version_id`` shows.

    ``problems`` lists ``{record, problem}`` (no subject id: these records hold none); ``checked`` counts the
    records held against the trail. The model version must exist (:func:`audits.lineage.lineage_of` says so first).
    """
    model = session.get(ModelVersion, model_version_id)
    assert model is not None
    run = session.get(TrainingRun, model.training_run_id)
    data = session.get(DatasetVersion, model.dataset_version_id)
    assert run is not None and data is not None
    problems: list[dict[str, str]] = []
    checked = 4
    _row(
        session, f"data set {data.content_hash}", data.trail_seq,
        {"name": data.name, "source": data.source, "n_events": data.n_events, "n_users": data.n_users, "n_items": data.n_items},
        problems,
    )  # fmt: skip
    _row(
        session, f"training run {run.id}", run.trail_seq,
        {"params": run.params, "code_version": run.code_version, "library_versions": run.library_versions,
         "started_at": format_time(run.started_at), "ended_at": format_time(run.ended_at)},
        problems,
    )  # fmt: skip
    _carbon(session, run, problems)
    _row(
        session, f"model {model.version_id}", model.trail_seq,
        {"kind": model.kind, "artifact_hash": model.artifact_hash, "artifact_location": model.artifact_location},
        problems,
    )  # fmt: skip
    audits = session.scalars(select(AuditRun).where(AuditRun.model_version_id == model.version_id).order_by(AuditRun.id)).all()
    for audit in audits:
        checked += 1
        recorded = _row(
            session, f"audit #{audit.id}", audit.trail_seq,
            {"policy_pack": audit.policy_pack, "policy_version": audit.policy_version, "policy_hash": audit.policy_hash,
             "verdict": audit.verdict, "started_at": format_time(audit.started_at), "ended_at": format_time(audit.ended_at),
             "summary": audit.summary},
            problems,
        )  # fmt: skip
        if recorded is not None:
            _results(session, audit, recorded, problems)
    deployments = session.scalars(select(Deployment).where(Deployment.model_version_id == model.version_id).order_by(Deployment.id)).all()
    for move in deployments:
        checked += 1
        _row(session, f"deployment move {move.id}", move.trail_seq, {"stage": move.stage, "previous_stage": move.previous_stage}, problems)
    return {"scope": SCOPE, "checked": checked, "problems": problems, "sound": not problems}
