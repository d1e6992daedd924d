"""Harmful content: flags, user reports, escalation cases and the items blocked (DSA Art. 34, 35).

* :func:`flag_item` records a flag (category, confidence, source);
  :func:`set_flag_active` switches one off or on again.
* :func:`report_item` records a user's report; the reporter appears only as a pseudonym.
* :func:`open_case` opens an escalation case for human review, at most one per
  (item, rule) while it is open or triaged (asking again returns that case).
* :func:`transition_case` moves a case through ``open -> triaged -> resolved |
  dismissed`` (``open -> resolved | dismissed`` too; ``resolved`` and
  ``dismissed`` are final). Its ``action`` (``block`` / ``unblock``) changes the
  item's block state in the same transaction, so the serving path sees it at
  once through :func:`blocked_items`.
* :func:`block_item` sets the block state directly (e.g. a metadata rule), with
  or without a case.

An item id given to :func:`flag_item` or :func:`report_item` is checked against the catalogue recgov knows
first (:func:`audits.catalogue.check_item`): one no catalogue holds but spelt like one that a catalogue does
(``I00573`` for ``i00573``) is refused, nothing written, since lists are filtered by the exact id.

Every write appends a trail event (``item.flagged``, ``item.flag_deactivated``,
``item.flag_activated``, ``item.reported``, ``case.opened``, ``case.triaged``,
``case.resolved``, ``case.dismissed``, ``item.blocked``, ``item.unblocked``) in
the caller's transaction, and the row names the event of its latest change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audits._common import actor_name, aware, in_values, one_of, refuse_raw_ids, text
from audits._common import item_id as _item
from audits.catalogue import CatalogueCheck, check_item
from audits.models import (
    CASE_ACTIONS,
    CASE_SEVERITIES,
    CASE_STATUSES,
    FLAG_SOURCES,
    EscalationCase,
    ItemBlock,
    ItemFlag,
    ItemReport,
)
from audits.sealing import seal_report_reason
from audits.subjects import subject_record_key
from audits.online_store import invalidate_everyone_after_commit
from audits.trail import append_event, format_time, lock_head
from recommender.errors import ConfigError, DataError

__all__ = [
    "flag_item",
    "set_flag_active",
    "report_item",
    "open_case",
    "transition_case",
    "block_item",
    "blocked_items",
    "flags_for",
    "other_holds",
    "report_counts",
    "list_cases",
    "CASE_TRANSITIONS",
    "BAD_CASE_TRANSITION",
]

CASE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("triaged", "resolved", "dismissed"),
    "triaged": ("resolved", "dismissed"),
    "resolved": (),
    "dismissed": (),
}
"""Where a case may go from each status."""
OPEN_CASE_STATUSES = ("open", "triaged")

BAD_CASE_TRANSITION = "escalation case {id} is {current!r}; {allowed}, not to {wanted!r}"
UNKNOWN_CASE = "unknown escalation case {id!r}; the cases are listed by 'recgov harm cases' and GET /v1/escalations"
UNKNOWN_FLAG = "unknown item flag {id!r}; the flags are listed by 'recgov harm flags --all' and GET /v1/flags with include_inactive=true"
DISMISS_AND_BLOCK = (
    "escalation case {id}: a dismissed case found no harm, so it cannot block item {item!r}; "
    "resolve it with action='block' instead"
)
MAX_SLA_HOURS = 24 * 366


def _confidence(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DataError(f"confidence must be a number from 0 to 1, got {value!r}")
    return float(value)


def flag_item(
    session: Session,
    *,
    item_id: str | int,
    category: str,
    confidence: float,
    source: str,
    at: datetime | None = None,
    actor: str | None = None,
    new_item: bool = False,
) -> ItemFlag:
    """Flag an item as possibly harmful: ``category`` (e.g. ``self_harm``) with ``confidence`` in [0, 1].

    ``source``: ``metadata``, ``api``, ``model`` or ``report``. The flag starts active. ``new_item``: the id names
    an item no catalogue holds yet, though one holds a near spelling of it (recorded on the trail with them).
    """
    item = _item(item_id)
    found = check_item(session, item, new_item=new_item)  # a near spelling is refused before anything is written
    category = text(category, "category", 100)
    confidence = _confidence(confidence)
    source = one_of(source, FLAG_SOURCES, "source")
    created_at = aware(at, "at", not_after_now=True)
    event = append_event(
        session,
        actor=actor_name(actor),
        action="item.flagged",
        objects={"item": item},
        payload={"category": category, "confidence": confidence, "source": source, "at": format_time(created_at)} | _claimed_new(found, new_item),
    )
    row = ItemFlag(
        item_id=item,
        category=category,
        confidence=confidence,
        source=source,
        created_at=created_at,
        active=True,
        trail_seq=event.seq,
    )
    session.add(row)
    session.flush()
    invalidate_everyone_after_commit(session)  # what is kept out of lists may have changed
    return row


def set_flag_active(
    session: Session, flag_id: int, *, active: bool, note: str | None = None, actor: str | None = None
) -> ItemFlag:
    """Switch a flag off (a false positive, the item was fixed) or on again."""
    if not isinstance(active, bool):
        raise ConfigError(f"active must be True or False; got {active!r}")
    lock_head(session)
    row = session.get(ItemFlag, flag_id, with_for_update=True) if isinstance(flag_id, int) else None
    if row is None:
        raise ConfigError(UNKNOWN_FLAG.format(id=flag_id))
    if row.active == active:
        raise ConfigError(f"item flag {row.id} is already {'active' if active else 'inactive'}")
    event = append_event(
        session,
        actor=actor_name(actor),
        action="item.flag_activated" if active else "item.flag_deactivated",
        objects={"item": row.item_id, "flag": row.id},
        payload={"note": note},
    )
    row.active = active
    row.trail_seq = event.seq
    session.flush()
    invalidate_everyone_after_commit(session)  # what is kept out of lists may have changed
    return row


def report_item(
    session: Session,
    *,
    item_id: str | int,
    reason: str,
    reporter_id: str | int | None = None,
    at: datetime | None = None,
    actor: str | None = None,
    new_item: bool = False,
) -> ItemReport:
    """Record a report of an item; the reporter (optional) is stored only as a pseudonym. ``new_item``: as for
    :func:`flag_item`."""
    item = _item(item_id)
    reason = text(reason, "reason", 10_000)
    if reporter_id is not None:  # both are kept with the reporter's pseudonym; the item id in clear, on the trail
        refuse_raw_ids(item, field="item_id", subject_ids=[reporter_id])
        refuse_raw_ids(reason, field="reason", subject_ids=[reporter_id])
    found = check_item(session, item, new_item=new_item)  # a near spelling is refused before anything is written
    created_at = aware(at, "at", not_after_now=True)
    who, stored = None, reason
    if reporter_id is not None:  # a signed report's free text is sealed under the reporter's record key
        who, key = subject_record_key(session, reporter_id)
        stored = seal_report_reason(key, who, reason)
    event = append_event(
        session,
        actor=actor_name(actor),
        action="item.reported",
        subject=who,
        objects={"item": item},
        payload={"reason": stored, "at": format_time(created_at)} | _claimed_new(found, new_item),
    )
    row = ItemReport(item_id=item, reporter=who, reason=stored, created_at=created_at, trail_seq=event.seq)
    session.add(row)
    session.flush()
    set_committed_value(row, "reason", reason)  # the caller reads what it wrote
    return row


def open_case(
    session: Session,
    *,
    item_id: str | int,
    rule_id: str,
    reason: str,
    severity: str,
    sla_hours: float,
    at: datetime | None = None,
    actor: str | None = None,
) -> EscalationCase:
    """Open an escalation case for ``item_id`` under the pack's rule ``rule_id``.

    Idempotent while a case for the same (item, rule) is open or triaged: that
    case is returned unchanged and no event is appended. ``sla_due`` is ``at``
    (default now) plus ``sla_hours``.
    """
    item = _item(item_id)
    rule_id = text(rule_id, "rule_id", 64)
    reason = text(reason, "reason", 10_000)
    severity = one_of(severity, CASE_SEVERITIES, "severity")
    if isinstance(sla_hours, bool) or not isinstance(sla_hours, (int, float)) or not 0 < sla_hours <= MAX_SLA_HOURS:
        raise ConfigError(f"sla_hours must be a number above 0 and at most {MAX_SLA_HOURS}; got {sla_hours!r}")
    created_at = aware(at, "at", not_after_now=True)
    lock_head(session)  # serialize: two callers never both find no open case
    existing = session.scalar(
        select(EscalationCase).where(
            EscalationCase.item_id == item,
            EscalationCase.rule_id == rule_id,
            EscalationCase.status.in_(OPEN_CASE_STATUSES),
        )
    )
    if existing is not None:
        return existing
    sla_due = created_at + timedelta(hours=sla_hours)
    event = append_event(
        session,
        actor=actor_name(actor),
        action="case.opened",
        objects={"item": item, "rule": rule_id},
        payload={
            "reason": reason,
            "severity": severity,
            "sla_due": format_time(sla_due),
            "at": format_time(created_at),
        },
    )
    row = EscalationCase(
        item_id=item,
        rule_id=rule_id,
        reason=reason,
        severity=severity,
        status="open",
        sla_due=sla_due,
        created_at=created_at,
        updated_at=created_at,
        trail_seq=event.seq,
    )
    session.add(row)
    session.flush()
    invalidate_everyone_after_commit(session)  # what is kept out of lists may have changed
    return row


def _allowed(current: str) -> str:
    targets = CASE_TRANSITIONS[current]
    if not targets:
        return "that is final: it can move nowhere"
    return "it can move only to " + " or ".join(repr(t) for t in targets)


def transition_case(
    session: Session,
    case_id: int,
    *,
    status: str,
    action: str | None = None,
    note: str | None = None,
    actor: str,
) -> EscalationCase:
    """Move a case to ``status``; ``action`` (``block`` or ``unblock``) changes the item's block state now.

    ``note`` goes into the trail event, and becomes the case's ``resolution``
    when the case is resolved or dismissed. ``actor`` (the reviewer) is required.

    Raises
    ------
    ConfigError
        Unknown case, status or action; a transition the workflow does not
        allow; or ``dismissed`` with ``block``.
    """
    status = one_of(status, CASE_STATUSES, "status")
    if action is not None:
        action = one_of(action, CASE_ACTIONS, "action")
    actor = text(actor, "actor", 200)
    note = None if note is None else text(note, "note", 10_000)
    lock_head(session)
    row = session.get(EscalationCase, case_id, with_for_update=True) if isinstance(case_id, int) else None
    if row is None:
        raise ConfigError(UNKNOWN_CASE.format(id=case_id))
    if status not in CASE_TRANSITIONS[row.status]:
        raise ConfigError(
            BAD_CASE_TRANSITION.format(id=row.id, current=row.status, allowed=_allowed(row.status), wanted=status)
        )
    if status == "dismissed" and action == "block":
        raise ConfigError(DISMISS_AND_BLOCK.format(id=row.id, item=row.item_id))
    now = aware(None, "at")
    event = append_event(
        session,
        actor=actor,
        action=f"case.{status}",
        objects={"item": row.item_id, "rule": row.rule_id, "case": row.id},
        payload={"previous_status": row.status, "action": action, "note": note},
    )
    row.status = status
    row.updated_at = now
    if status not in OPEN_CASE_STATUSES:
        row.resolution = note
    if action is not None:
        row.action = action
    row.trail_seq = event.seq
    session.flush()
    invalidate_everyone_after_commit(session)  # a case under review keeps its item out; a closed one may not
    if action is not None:
        reason = note or f"escalation case {row.id} ({row.rule_id}): {row.reason}"
        block_item(session, item_id=row.item_id, blocked=action == "block", reason=reason, case_id=row.id, actor=actor, check=False)
    return row


def block_item(
    session: Session,
    *,
    item_id: str | int,
    blocked: bool,
    reason: str,
    case_id: int | None = None,
    actor: str | None = None,
    check: bool = True,
    new_item: bool = False,
) -> ItemBlock:
    """Set an item's block state (``item.blocked`` / ``item.unblocked``); the latest call wins.

    The id is checked against the catalogue first, as for :func:`flag_item` (a near spelling is refused, nothing
    written; ``new_item`` as there), unless ``check`` is False: for an id read from the store (a flag's, a
    case's), which blocks what was stored under it, whatever its spelling.
    """
    item = _item(item_id)
    if not isinstance(blocked, bool):
        raise ConfigError(f"blocked must be True or False; got {blocked!r}")
    reason = text(reason, "reason", 10_000)
    found = check_item(session, item, new_item=new_item) if check else None
    lock_head(session)
    if case_id is not None and session.get(EscalationCase, case_id) is None:
        raise ConfigError(UNKNOWN_CASE.format(id=case_id))
    now = aware(None, "at")
    event = append_event(
        session,
        actor=actor_name(actor),
        action="item.blocked" if blocked else "item.unblocked",
        objects={"item": item} | ({"case": case_id} if case_id is not None else {}),
        payload={"reason": reason} | (_claimed_new(found, new_item) if found is not None else {}),
    )
    row = session.get(ItemBlock, item, with_for_update=True)
    if row is None:
        row = ItemBlock(item_id=item)
        session.add(row)
    row.blocked, row.reason, row.case_id, row.changed_at, row.trail_seq = blocked, reason, case_id, now, event.seq
    session.flush()
    invalidate_everyone_after_commit(session)  # the online store's cached lists were made under the old blocks
    return row


def other_holds(session: Session, item_id: str) -> list[str]:
    """What keeps ``item_id`` out of lists besides its block, in words: its active flags (under a pack that blocks
    their category) and its open or triaged cases. An unblocked item stays out while any holds."""
    item = _item(item_id)
    flags = session.execute(
        select(ItemFlag.id, ItemFlag.category).where(ItemFlag.item_id == item, ItemFlag.active.is_(True)).order_by(ItemFlag.id)
    ).all()
    cases = session.execute(
        select(EscalationCase.id, EscalationCase.rule_id, EscalationCase.status)
        .where(EscalationCase.item_id == item, EscalationCase.status.in_(OPEN_CASE_STATUSES))
        .order_by(EscalationCase.id)
    ).all()
    return [
        *(f"flag {i} ({category}) is active: under a pack that blocks {category!r} it keeps the item out" for i, category in flags),
        *(f"case {i} ({rule}) is {status}: the item stays out while it is under review" for i, rule, status in cases),
    ]


def _claimed_new(found: CatalogueCheck, new_item: bool) -> dict[str, Any]:
    """What the trail event records of a new-item claim: the claim, and the near spellings it overrode."""
    if not new_item:
        return {}
    return {"new_item": {"near": list(found.near), "near_in": found.near_in}}


def blocked_items(session: Session) -> set[str]:
    """The ids of every item blocked now (for the serving path's filter)."""
    return set(session.scalars(select(ItemBlock.item_id).where(ItemBlock.blocked.is_(True))))


def flags_for(
    session: Session, item_ids: Iterable[str | int], *, active_only: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """The flags of the given items (active ones unless ``active_only=False``), in one query.

    ``{item_id: [{"id", "category", "confidence", "source", "created_at", "active"}, ...]}``,
    oldest first; items without flags are left out.
    """
    items = list(dict.fromkeys(_item(i) for i in item_ids))
    if not items:
        return {}
    query = select(ItemFlag).where(in_values(session, ItemFlag.item_id, items)).order_by(ItemFlag.id)
    if active_only:
        query = query.where(ItemFlag.active.is_(True))
    found: dict[str, list[dict[str, Any]]] = {}
    for row in session.scalars(query):
        found.setdefault(row.item_id, []).append(
            {
                "id": row.id,
                "category": row.category,
                "confidence": row.confidence,
                "source": row.source,
                "created_at": row.created_at,
                "active": row.active,
            }
        )
    return found


def report_counts(session: Session, since: datetime | None = None) -> dict[str, int]:
    """How many reports each item has (since ``since``, when given)."""
    query = select(ItemReport.item_id, func.count()).group_by(ItemReport.item_id)
    if since is not None:
        query = query.where(ItemReport.created_at >= aware(since, "since"))
    return dict(session.execute(query).all())


def _as_dict(row: EscalationCase) -> dict[str, Any]:
    return {
        "id": row.id,
        "item_id": row.item_id,
        "rule_id": row.rule_id,
        "reason": row.reason,
        "severity": row.severity,
        "status": row.status,
        "sla_due": row.sla_due,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "resolution": row.resolution,
        "action": row.action,
        "trail_seq": row.trail_seq,
    }


def list_cases(session: Session, status: str | None = None, overdue_at: datetime | None = None) -> list[dict[str, Any]]:
    """Cases, by due time, as dicts; ``overdue_at``: only open or triaged cases whose SLA ended before it."""
    query = select(EscalationCase).order_by(EscalationCase.sla_due, EscalationCase.id)
    if status is not None:
        query = query.where(EscalationCase.status == one_of(status, CASE_STATUSES, "status"))
    if overdue_at is not None:
        query = query.where(
            EscalationCase.status.in_(OPEN_CASE_STATUSES), EscalationCase.sla_due < aware(overdue_at, "overdue_at")
        )
    return [_as_dict(row) for row in session.scalars(query)]
