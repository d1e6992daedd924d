"""The store's side of monitoring: reading a window of decisions and feedback; keeping passes, profiles and tickets.

Reading
    :func:`window_decisions` opens the decisions served in a window (their
    lists are sealed under each subject's record key, :mod:`audits.sealing`):
    a decision whose subject was erased cannot be opened and is counted, never
    read. :func:`window_outcomes` reads the feedback events of a window (no
    subject: monitoring works on items, positions and decisions), and
    :func:`failed_count` the requests that could not be served.

Writing (each in the caller's transaction, each with its trail event)
    :func:`record_profile` (``model.profiled``), :func:`record_monitor_run`
    (``monitor.run``: a pass retried for the same window end under the same
    pack returns the stored pass), :func:`open_ticket` (``retrain.ticket_opened``:
    the same evidence, or a model with a ticket still in progress, opens
    nothing new) and :func:`advance_ticket` (``retrain.step``).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits._common import actor_name
from audits.canonical import canonical_json
from audits.models import FailedRequest, ModelProfile, MonitorRun, OutcomeEvent, RetrainTicket, TERMINAL_TICKET_STATES, TICKET_STATES
from audits.models import DecisionRecord
from audits.sealing import open_decisions
from audits.trail import append_event, lock_head
from recommender.errors import ConfigError, DataError

__all__ = [
    "DECISION_COLUMNS",
    "OUTCOME_COLUMNS",
    "TICKET_MOVED",
    "UNKNOWN_TICKET",
    "OpenedTicket",
    "WindowDecisions",
    "advance_ticket",
    "evidence_key",
    "failed_count",
    "get_ticket",
    "latest_runs",
    "list_tickets",
    "open_ticket",
    "profiles_of",
    "record_monitor_run",
    "record_profile",
    "ticket_doc",
    "window_decisions",
    "window_outcomes",
]

DECISION_COLUMNS = ("decision_id", "decided_at", "mode", "model_version", "items", "scores", "shadow", "latency_ms")
OUTCOME_COLUMNS = ("kind", "item_id", "decision_id", "position", "attribution", "occurred_at")
UNKNOWN_TICKET = "retrain ticket {id!r} is not recorded; list them with `recgov lifecycle tickets`"
TICKET_MOVED = "retrain ticket {id} moved from {expected} to {state} while this run worked on it; run it again to continue from there"
_KEY_DOMAIN = b"recgov.retrain-evidence.v1\x00"


def _aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise DataError(f"{name} must be an aware datetime (UTC); got {moment!r}")
    return moment.astimezone(UTC)


def _latency(context: Any) -> float:
    """A record context's ``latency_ms`` as a float; NaN when absent or not a finite non-negative number."""
    value = context.get("latency_ms") if isinstance(context, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return math.nan
    return float(value)


@dataclass(frozen=True)
class WindowDecisions:
    """The decisions of a window, opened (columns :data:`DECISION_COLUMNS`), and how many could not be opened."""

    frame: pd.DataFrame
    unreadable: int


def window_decisions(session: Session, start: datetime, end: datetime) -> WindowDecisions:
    """Decisions with ``start <= decided_at < end``, their lists opened; erased subjects' lists stay closed and are counted.

    ``shadow`` marks lists a shadow version made and nobody was served (their context names ``shadow_of``);
    ``latency_ms`` is the serving latency the record's context gives (NaN for a record without one).
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    rows = session.execute(
        select(
            DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context,
            DecisionRecord.decided_at, DecisionRecord.mode, DecisionRecord.model_version,
        ).where(DecisionRecord.decided_at >= start, DecisionRecord.decided_at < end)
    ).all()  # fmt: skip
    opened = open_decisions(session, [(r[0], r[1], r[2], r[3]) for r in rows])
    records, unreadable = [], 0
    for row, both in zip(rows, opened, strict=True):
        if both is None:
            unreadable += 1
            continue
        slate, context = both
        items = [str(i) for i in slate.get("items", [])]
        scores = slate.get("scores") or [None] * len(items)
        shadow = bool(isinstance(context, Mapping) and context.get("shadow_of"))
        records.append((row[0], row[4], row[5], row[6], items, scores, shadow, _latency(context)))
    frame = pd.DataFrame.from_records(records, columns=list(DECISION_COLUMNS))
    if not frame.empty:
        frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    return WindowDecisions(frame, unreadable)


def window_outcomes(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """Feedback events with ``start <= occurred_at < end`` (columns :data:`OUTCOME_COLUMNS`; no subject)."""
    start, end = _aware(start, "start"), _aware(end, "end")
    rows = session.execute(
        select(*(getattr(OutcomeEvent, c) for c in OUTCOME_COLUMNS)).where(OutcomeEvent.occurred_at >= start, OutcomeEvent.occurred_at < end)
    ).all()
    frame = pd.DataFrame.from_records(rows, columns=list(OUTCOME_COLUMNS))
    if not frame.empty:
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def failed_count(session: Session, start: datetime, end: datetime) -> int:
    """Requests that could not be served in the window (``failed_requests``)."""
    return int(session.scalar(select(func.count()).select_from(FailedRequest).where(FailedRequest.at >= start, FailedRequest.at < end)) or 0)


# -- profiles ---------------------------------------------------------------------------------


def record_profile(session: Session, *, model_version: str, dataset_hash: str, profile: Mapping[str, Any], actor: str | None = None) -> ModelProfile:
    """Store (or replace) what monitoring compares ``model_version`` against; a ``model.profiled`` event."""
    who = actor_name(actor)
    event = append_event(
        session, actor=who, action="model.profiled", objects={"model": model_version},
        payload={"dataset": dataset_hash, "k": profile.get("k"), "offline_hit_rate": profile.get("offline_hit_rate"),
                 "left_out": profile.get("left_out", {})},
    )  # fmt: skip
    row = session.get(ModelProfile, model_version)
    if row is None:
        row = ModelProfile(model_version_id=model_version)
        session.add(row)
    row.dataset_hash, row.profile, row.recorded_at, row.trail_seq = dataset_hash, dict(profile), datetime.now(UTC), event.seq
    session.flush()
    return row


def profiles_of(session: Session, versions: list[str]) -> dict[str, dict[str, Any]]:
    """The recorded profiles of ``versions`` (those that have one)."""
    if not versions:
        return {}
    rows = session.scalars(select(ModelProfile).where(ModelProfile.model_version_id.in_(versions)))
    return {r.model_version_id: r.profile for r in rows}


# -- monitoring passes ------------------------------------------------------------------------


def record_monitor_run(
    session: Session, *, window_start: datetime, window_end: datetime, stamp: Mapping[str, str], metrics: Mapping[str, Any], actor: str | None = None
) -> tuple[MonitorRun, bool]:
    """Store a pass; ``(run, created)``. A pass for the same window end under the same pack is returned as stored."""
    lock_head(session)  # serialises passes: two racing crons store one
    end = _aware(window_end, "window_end")
    existing = session.scalars(select(MonitorRun).where(MonitorRun.window_end == end, MonitorRun.pack_hash == stamp["pack_hash"])).first()
    if existing is not None:
        return existing, False
    who = actor_name(actor)
    models = sorted(metrics.get("models", {}))
    event = append_event(
        session, actor=who, action="monitor.run",
        objects={"models": models, "policy": f"{stamp['pack']}@{stamp['pack_version']}"},
        payload={"window_start": _aware(window_start, "window_start").isoformat(), "window_end": end.isoformat(), "pack_hash": stamp["pack_hash"], "metrics": metrics},
    )  # fmt: skip
    row = MonitorRun(
        window_start=window_start, window_end=end, pack_name=stamp["pack"], pack_version=stamp["pack_version"], pack_hash=stamp["pack_hash"],
        metrics=dict(metrics), fired=[], created_at=datetime.now(UTC), actor=who, trail_seq=event.seq,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, True


def latest_runs(session: Session, *, limit: int = 50, offset: int = 0) -> tuple[list[MonitorRun], int]:
    """Passes, latest window first, and how many there are."""
    total = int(session.scalar(select(func.count()).select_from(MonitorRun)) or 0)
    rows = list(session.scalars(select(MonitorRun).order_by(MonitorRun.window_end.desc(), MonitorRun.id.desc()).limit(limit).offset(offset)))
    return rows, total


def run_doc(run: MonitorRun) -> dict[str, Any]:
    """A pass as the CLI and the API show it."""
    return {
        "id": run.id,
        "window_start": run.window_start.isoformat(),
        "window_end": run.window_end.isoformat(),
        "pack": run.pack_name,
        "pack_version": run.pack_version,
        "pack_hash": run.pack_hash,
        "metrics": run.metrics,
        "fired": run.fired,
        "created_at": run.created_at.isoformat(),
        "trail_seq": run.trail_seq,
    }


# -- retrain tickets --------------------------------------------------------------------------


def evidence_key(trigger_id: str, model_version: str | None, evidence_window: Mapping[str, Any]) -> str:
    """SHA-256 over the trigger, the model and what identifies the evidence (its window, or the erasure requests)."""
    document = {"trigger": trigger_id, "model": model_version, "evidence": dict(evidence_window)}
    return hashlib.sha256(_KEY_DOMAIN + canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class OpenedTicket:
    """The answer of :func:`open_ticket`: the ticket, and whether this call opened it (else why not)."""

    ticket: RetrainTicket
    opened: bool
    reason: str | None = None


def open_ticket(
    session: Session,
    *,
    trigger_id: str,
    trigger_kind: str,
    model_version: str | None,
    evidence: Mapping[str, Any],
    key: str,
    stamp: Mapping[str, str],
    now: datetime,
    monitor_run_id: int | None = None,
    actor: str | None = None,
) -> OpenedTicket:
    """Open a retrain ticket, unless the same evidence opened one, or the model already has one in progress."""
    lock_head(session)
    same = session.scalars(select(RetrainTicket).where(RetrainTicket.evidence_key == key)).first()
    if same is not None:
        return OpenedTicket(same, False, "the same evidence opened this ticket before")
    busy = session.scalars(
        select(RetrainTicket)
        .where(RetrainTicket.model_version_id == model_version, RetrainTicket.state.not_in(TERMINAL_TICKET_STATES))
        .order_by(RetrainTicket.opened_at)
    ).first() if model_version is not None else None  # fmt: skip
    if busy is not None:
        return OpenedTicket(busy, False, f"a retrain of {model_version} is already in progress (ticket {busy.id})")
    who = actor_name(actor)
    ticket_id = str(uuid.uuid4())
    moment = _aware(now, "now")
    event = append_event(
        session, actor=who, action="retrain.ticket_opened",
        objects={"ticket": ticket_id, **({"model": model_version} if model_version else {}), **({"monitor_run": monitor_run_id} if monitor_run_id else {})},
        payload={"trigger": trigger_id, "kind": trigger_kind, "evidence": dict(evidence), "evidence_key": key, "policy": f"{stamp['pack']}@{stamp['pack_version']}"},
    )  # fmt: skip
    row = RetrainTicket(
        id=ticket_id, evidence_key=key, trigger_id=trigger_id, trigger_kind=trigger_kind, model_version_id=model_version,
        evidence=dict(evidence), monitor_run_id=monitor_run_id, pack_name=stamp["pack"], pack_version=stamp["pack_version"],
        pack_hash=stamp["pack_hash"], state="open", steps=[], new_model_version=None, opened_at=moment, updated_at=moment,
        trail_seq=event.seq,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return OpenedTicket(row, True)


def get_ticket(session: Session, ticket_id: str) -> RetrainTicket:
    """The ticket ``ticket_id``, or a :class:`ConfigError` that says how to list them."""
    row = session.get(RetrainTicket, str(ticket_id))
    if row is None:
        raise ConfigError(UNKNOWN_TICKET.format(id=ticket_id))
    return row


def list_tickets(session: Session, *, state: str | None = None) -> list[RetrainTicket]:
    """Tickets, latest first (``state``: only those in it)."""
    query = select(RetrainTicket).order_by(RetrainTicket.opened_at.desc())
    if state is not None:
        if state not in TICKET_STATES:
            raise ConfigError(f"state must be one of {', '.join(TICKET_STATES)}; got {state!r}")
        query = query.where(RetrainTicket.state == state)
    return list(session.scalars(query))


def advance_ticket(
    session: Session, ticket_id: str, *, step: str, state: str, report: Mapping[str, Any], now: datetime,
    new_model_version: str | None = None, expect: str | None = None, actor: str | None = None,
) -> RetrainTicket:  # fmt: skip
    """Record a step of the ticket's pipeline and its new state, with a ``retrain.step`` trail event.

    ``expect``: the state the caller read; if another run moved the ticket on meanwhile, :class:`ConfigError`
    (under the trail's lock, so two runs of one ticket never both record a step).
    """
    if state not in TICKET_STATES:
        raise ConfigError(f"state must be one of {', '.join(TICKET_STATES)}; got {state!r}")
    lock_head(session)
    row = get_ticket(session, ticket_id)
    if expect is not None and row.state != expect:
        raise ConfigError(TICKET_MOVED.format(id=row.id, expected=expect, state=row.state))
    if new_model_version is not None:
        row.new_model_version = new_model_version
    moment = _aware(now, "now")
    event = append_event(
        session, actor=actor_name(actor), action="retrain.step",
        objects={"ticket": row.id, **({"model": row.new_model_version} if row.new_model_version else {})},
        payload={"step": step, "from": row.state, "to": state, "at": moment.isoformat(), "report": dict(report)},
    )  # fmt: skip
    row.steps = [*row.steps, {"step": step, "from": row.state, "to": state, "at": moment.isoformat(), "report": dict(report), "trail_seq": event.seq}]
    row.state, row.updated_at, row.trail_seq = state, moment, event.seq
    session.flush()
    return row


def ticket_doc(row: RetrainTicket) -> dict[str, Any]:
    """A ticket as the CLI and the API show it."""
    return {
        "id": row.id,
        "trigger": row.trigger_id,
        "kind": row.trigger_kind,
        "model_version": row.model_version_id,
        "evidence": row.evidence,
        "evidence_key": row.evidence_key,
        "monitor_run": row.monitor_run_id,
        "pack": row.pack_name,
        "pack_version": row.pack_version,
        "state": row.state,
        "steps": row.steps,
        "new_model_version": row.new_model_version,
        "opened_at": row.opened_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
