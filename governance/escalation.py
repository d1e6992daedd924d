"""Harmful-content escalation: when the pack's rules fire, cases open; blocks take effect at once.

Three rules, from the pack's ``harmful_content`` section:

* a flag of a blocked category at or above ``block_confidence`` blocks the item
  outright; below it, the item goes to review (a case) and stays out of lists
  while under review;
* ``reports_to_escalate`` user reports on one item open a case;
* flagged items taking more than ``max_flagged_share`` of the places served
  (from the decision log) open a case per flagged item served.

Cases move through open -> triaged -> resolved or dismissed; an action (block,
unblock) changes what is served at the next request. Everything is on the trail.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

__all__ = ["evaluate_escalations", "items_out_of_lists"]


def items_out_of_lists(session: Any, pack: Any = None) -> set[str]:
    """Items that must not be served now: blocked, under review in an open case, and
    (with a ``pack``) every item with an active flag of one of its blocked categories."""
    from audits.harm import blocked_items, list_cases
    from audits.models import ItemFlag

    under_review = {c["item_id"] for c in list_cases(session, status="open")} | {c["item_id"] for c in list_cases(session, status="triaged")}
    out = set(blocked_items(session)) | under_review
    if pack is not None and pack.harmful_content.blocked_categories:
        query = select(ItemFlag.item_id).where(
            ItemFlag.active.is_(True), ItemFlag.category.in_(list(pack.harmful_content.blocked_categories))
        )
        out |= set(session.scalars(query))
    return out


def _closed_cases(session: Any) -> dict[tuple[str, str], datetime]:
    """(item, rule) -> when its latest resolved or dismissed case was closed."""
    from audits.models import EscalationCase

    closed: dict[tuple[str, str], datetime] = {}
    query = select(EscalationCase.item_id, EscalationCase.rule_id, EscalationCase.updated_at).where(
        EscalationCase.status.in_(("resolved", "dismissed"))
    )
    for item, rule, updated in session.execute(query):
        key = (item, rule)
        if key not in closed or updated > closed[key]:
            closed[key] = updated
    return closed


def evaluate_escalations(session: Any, pack: Any, *, since: datetime | None = None, actor: str = "recgov-escalation") -> list[dict[str, Any]]:
    """Apply the pack's harmful-content rules to flags, reports and served decisions; return the cases newly opened."""
    from audits.harm import block_item, blocked_items, flags_for, open_case
    from audits.models import DecisionRecord, ItemFlag, ItemReport
    from audits.sealing import open_decisions

    from audits.harm import list_cases

    section = pack.harmful_content
    blocked_categories = set(section.blocked_categories)
    known = {c["id"] for status in ("open", "triaged") for c in list_cases(session, status=status)}
    # A reviewer's decision stands: a closed case reopens only on evidence newer than it.
    closed = _closed_cases(session)
    opened: list[dict[str, Any]] = []
    flagged_items = sorted(set(session.scalars(select(ItemFlag.item_id).where(ItemFlag.active.is_(True)))))
    flags = flags_for(session, flagged_items) if flagged_items else {}
    already = blocked_items(session)
    for item, item_flags in flags.items():
        for flag in item_flags:
            category, confidence = flag["category"], float(flag["confidence"])
            if category not in blocked_categories:
                continue
            if confidence >= section.block_confidence:
                if item not in already and (item, "harm.block") not in closed:
                    block_item(session, item_id=item, blocked=True, reason=f"flagged {category} at confidence {confidence:.2f}", actor=actor)
                    already.add(item)
            else:
                if (item, "harm.review") in closed and closed[(item, "harm.review")] >= flag["created_at"]:
                    continue
                case = open_case(
                    session, item_id=item, rule_id="harm.review", severity="medium", sla_hours=section.sla_hours,
                    reason=f"flagged {category} at confidence {confidence:.2f}, below {section.block_confidence}: review",
                    actor=actor,
                )  # fmt: skip
                opened.append({"case_id": case.id, "item_id": item, "rule": "harm.review"})
    reports: Counter[str] = Counter()
    for item, created in session.execute(select(ItemReport.item_id, ItemReport.created_at)):
        if since is not None and created < since:
            continue
        if (item, "harm.reports") in closed and created <= closed[(item, "harm.reports")]:
            continue  # counted already when the closed case was decided
        reports[item] += 1
    for item, n in reports.items():
        if n >= section.reports_to_escalate:
            case = open_case(
                session, item_id=item, rule_id="harm.reports", severity="high", sla_hours=section.sla_hours,
                reason=f"{n} user reports (threshold {section.reports_to_escalate})", actor=actor,
            )  # fmt: skip
            opened.append({"case_id": case.id, "item_id": item, "rule": "harm.reports"})
    window = since or datetime.now(timezone.utc) - timedelta(days=1)
    places: Counter[str] = Counter()
    total = 0
    served = select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context)
    for content in open_decisions(session, session.execute(served.where(DecisionRecord.decided_at >= window)).all()):
        items = ((content[0] if content else None) or {}).get("items", [])  # None: sealed, its subject erased
        total += len(items)
        places.update(items)
    if total and flagged_items:
        flagged_served = {i: places[i] for i in flagged_items if places[i]}
        share = sum(flagged_served.values()) / total
        if share > section.max_flagged_share:
            for item in sorted(i for i in flagged_served if (i, "harm.exposure") not in closed):
                case = open_case(
                    session, item_id=item, rule_id="harm.exposure", severity="high", sla_hours=section.sla_hours,
                    reason=f"flagged items took {share:.1%} of {total} places served (limit {section.max_flagged_share:.0%})",
                    actor=actor,
                )  # fmt: skip
                opened.append({"case_id": case.id, "item_id": item, "rule": "harm.exposure"})
    # open_case returns a case already open for the same item and rule: report only new ones.
    return [c for c in opened if c["case_id"] not in known]
