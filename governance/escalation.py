"""Harmful-content escalation: when the pack's rules fire, cases open; blocks take effect at once.

Three rules, from the pack's ``harmful_content`` section:

* a flag of a blocked category at or above ``block_confidence`` blocks the item
  outright; below it, the item goes to review (a case) and stays out of lists
  while under review;
* ``reports_to_escalate`` user reports on one item open a case (a reporter counts once);
* flagged items taking more than ``max_flagged_share`` of the places served
  (from the decision log) open a case per flagged item served.

Cases move through open -> triaged -> resolved or dismissed; an action (block,
unblock) changes what is served at the next request. Everything is on the trail.

Harm categories are a vocabulary: the pack's ``harmful_content.categories`` and
``blocked_categories``. :func:`flag_under_pack` refuses a flag whose category the
pack does not know, naming the known ones, and says what the flag will do under
the pack; a flag already stored with a category the evaluating pack does not know
(written under another pack, or straight to the store) is not ignored either: it
opens a ``harm.unknown_category`` review case, and the item stays out of lists
until a reviewer decides. A misspelt category never blocks nothing in silence.

The item id is checked against the catalogue recgov knows (:func:`audits.catalogue.check_item`) before the
flag is written: a near spelling of a catalogue's id is refused ("did you mean i00573?"), and a flag on an id
no catalogue holds is kept, but its effect says that no list holds the item now rather than that it was kept
out of them.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import select

from recommender.errors import ConfigError

__all__ = [
    "NO_HARM_CATEGORIES",
    "UNKNOWN_HARM_CATEGORY",
    "UnknownHarmCategory",
    "evaluate_escalations",
    "flag_effect",
    "flag_listing",
    "flag_under_pack",
    "items_out_of_lists",
]

UNKNOWN_HARM_CATEGORY = (
    "harm category {category!r} is not one pack {pack} knows; known: {known} "
    "(harmful_content.categories and blocked_categories)"
)
NO_HARM_CATEGORIES = (
    "pack {pack} knows no harm category, so a flag would do nothing under it; "
    "list the categories in its harmful_content.categories (or blocked_categories)"
)
EFFECT_BLOCK = "keeps the item out of lists under pack {pack} (a blocked category); at confidence {confidence:.2f} (>= {threshold}) 'evaluate' blocks it"
EFFECT_REVIEW = "keeps the item out of lists under pack {pack} (a blocked category); at confidence {confidence:.2f} (< {threshold}) 'evaluate' opens a review case"
EFFECT_COUNTED = "pack {pack} does not block {category!r}: the flag counts towards harmful_content.max_flagged_share ({share:.0%} of the places served)"
UNSERVED = "no list holds the item now: it is {where}; "
EFFECT_BLOCK_UNSERVED = UNSERVED + "if a model serves it, pack {pack} keeps it out of lists (a blocked category); at confidence {confidence:.2f} (>= {threshold}) 'evaluate' blocks it"
EFFECT_REVIEW_UNSERVED = UNSERVED + "if a model serves it, pack {pack} keeps it out of lists (a blocked category); at confidence {confidence:.2f} (< {threshold}) 'evaluate' opens a review case"
EFFECT_COUNTED_UNSERVED = UNSERVED + "pack {pack} does not block {category!r}: once served, the flag counts towards harmful_content.max_flagged_share ({share:.0%} of the places served)"
REASON_REPORTS = "{n} user reports (threshold {threshold}; a reporter counts once)"
REASON_UNKNOWN = "flagged {category!r}, a category pack {pack} does not know (known: {known}): review"


class UnknownHarmCategory(ConfigError):
    """A flag's category is not in the pack's harm vocabulary (a bad input: CLI exit 2, API 422)."""


def _pack_name(pack: Any) -> str:
    return getattr(getattr(pack, "metadata", None), "name", "?")


def flag_effect(pack: Any, category: str, confidence: float, unserved: str | None = None) -> str:
    """What a flag of a known ``category`` at ``confidence`` does under ``pack``, in one sentence.

    ``unserved``: where the item was looked for in vain (:meth:`audits.catalogue.CatalogueCheck.describe`) when no
    catalogue holds it; the sentence then says that no list holds it now, not that the flag keeps it out."""
    section, name = pack.harmful_content, _pack_name(pack)
    if category in section.blocked_categories:
        above = confidence >= section.block_confidence
        if unserved is None:
            template = EFFECT_BLOCK if above else EFFECT_REVIEW
        else:
            template = EFFECT_BLOCK_UNSERVED if above else EFFECT_REVIEW_UNSERVED
        return template.format(pack=name, confidence=confidence, threshold=section.block_confidence, where=unserved)
    template = EFFECT_COUNTED if unserved is None else EFFECT_COUNTED_UNSERVED
    return template.format(pack=name, category=category, share=section.max_flagged_share, where=unserved)


def flag_under_pack(
    session: Any, pack: Any, *, item_id: str | int, category: str, confidence: float, source: str, actor: str | None = None,
    new_item: bool = False,
) -> tuple[Any, str]:
    """Record a flag whose ``category`` ``pack`` knows; return ``(the flag row, what it does under the pack)``.

    Raises :class:`UnknownHarmCategory` (nothing written) when the pack does not know the category, and
    :class:`audits.catalogue.NearItemId` (nothing written) when no catalogue holds the item id but one holds a
    near spelling of it (unless ``new_item``: the caller says it names a new item, recorded on the trail). Where the item was found is :func:`audits.catalogue.check_item` of the row's id (kept
    in the session: asking again costs nothing).
    """
    from audits.catalogue import check_item
    from audits.harm import flag_item

    known = pack.harmful_content.known_categories()
    if category not in known:
        if not known:
            raise UnknownHarmCategory(NO_HARM_CATEGORIES.format(pack=_pack_name(pack)))
        raise UnknownHarmCategory(UNKNOWN_HARM_CATEGORY.format(category=category, pack=_pack_name(pack), known=", ".join(known)))
    row = flag_item(session, item_id=item_id, category=category, confidence=confidence, source=source, actor=actor, new_item=new_item)
    found = check_item(session, row.item_id, new_item=new_item)
    return row, flag_effect(pack, category, float(row.confidence), None if found.in_catalogue else found.describe())


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


class _Opened(NamedTuple):
    """A case a rule opened (or found already open: :func:`audits.harm.open_case` returns that one)."""

    case_id: int
    item_id: str
    rule: str


def evaluate_escalations(session: Any, pack: Any, *, since: datetime | None = None, actor: str = "recgov-escalation") -> list[dict[str, Any]]:
    """Apply the pack's harmful-content rules to flags, reports and served decisions; return the cases newly opened.

    Each returned case is ``{"case_id", "item_id", "rule"}``, once, in the order the rules opened them.
    """
    from audits.harm import list_cases

    known = {c["id"] for status in ("open", "triaged") for c in list_cases(session, status=status)}
    # A reviewer's decision stands: a closed case reopens only on evidence newer than it.
    closed = _closed_cases(session)
    flagged_items, flag_cases = _apply_flags(session, pack, closed, actor)
    opened = [
        *flag_cases,
        *_report_cases(session, pack.harmful_content, closed, since, actor),
        *_exposure_cases(session, pack.harmful_content, flagged_items, closed, since, actor),
    ]
    # open_case returns a case already open for the same item and rule: report only new ones, once.
    fresh: list[dict[str, Any]] = []
    seen = set(known)
    for case in opened:
        if case.case_id not in seen:
            seen.add(case.case_id)
            fresh.append(case._asdict())
    return fresh


def _apply_flags(
    session: Any, pack: Any, closed: dict[tuple[str, str], datetime], actor: str
) -> tuple[list[str], list[_Opened]]:
    """Act on every active flag of a blocked category: block at or above ``block_confidence``, else open a
    review case; a flag of a category the pack does not know opens a ``harm.unknown_category`` case.
    Return the flagged items and the cases."""
    from audits.harm import block_item, blocked_items, flags_for
    from audits.models import ItemFlag

    section = pack.harmful_content
    blocked_categories = set(section.blocked_categories)
    known_categories = section.known_categories()
    opened: list[_Opened] = []
    flagged_items = sorted(set(session.scalars(select(ItemFlag.item_id).where(ItemFlag.active.is_(True)))))
    flags = flags_for(session, flagged_items) if flagged_items else {}
    already = blocked_items(session)
    for item, item_flags in flags.items():
        for flag in item_flags:
            category, confidence = flag["category"], float(flag["confidence"])
            if category not in known_categories:
                if _decided_since(closed, item, "harm.unknown_category", flag["created_at"]):
                    continue
                listed = ", ".join(known_categories) or "none"
                reason = REASON_UNKNOWN.format(category=category, pack=_pack_name(pack), known=listed)
                opened.append(_open(session, item, "harm.unknown_category", "medium", reason, section, actor))
            elif category not in blocked_categories:
                continue
            elif confidence >= section.block_confidence:
                if item not in already and (item, "harm.block") not in closed:
                    reason = f"flagged {category} at confidence {confidence:.2f}"
                    block_item(session, item_id=item, blocked=True, reason=reason, actor=actor, check=False)
                    already.add(item)
            elif not _decided_since(closed, item, "harm.review", flag["created_at"]):
                reason = f"flagged {category} at confidence {confidence:.2f}, below {section.block_confidence}: review"
                opened.append(_open(session, item, "harm.review", "medium", reason, section, actor))
    return flagged_items, opened


def _decided_since(closed: dict[tuple[str, str], datetime], item: str, rule: str, evidence_at: datetime) -> bool:
    """Whether a reviewer closed the item's case under ``rule`` at or after the evidence's time."""
    return (item, rule) in closed and closed[(item, rule)] >= evidence_at


def _open(session: Any, item: str, rule: str, severity: str, reason: str, section: Any, actor: str) -> _Opened:
    from audits.harm import open_case

    case = open_case(
        session, item_id=item, rule_id=rule, severity=severity, sla_hours=section.sla_hours, reason=reason, actor=actor
    )
    return _Opened(case.id, item, rule)


def _report_cases(
    session: Any, section: Any, closed: dict[tuple[str, str], datetime], since: datetime | None, actor: str
) -> list[_Opened]:
    """A case per item with ``reports_to_escalate`` user reports (since ``since``, and since its last closed case).

    A reporter counts once per item, however many reports they made (a double click, a retry, a grudge):
    otherwise one person could keep any item out of lists by reporting it ``reports_to_escalate`` times. A
    report without a reporter counts as one."""
    from audits.models import ItemReport

    reporters: dict[str, set[object]] = {}
    query = select(ItemReport.id, ItemReport.item_id, ItemReport.reporter, ItemReport.created_at)
    for report_id, item, reporter, created in session.execute(query):
        if since is not None and created < since:
            continue
        if (item, "harm.reports") in closed and created <= closed[(item, "harm.reports")]:
            continue  # counted already when the closed case was decided
        reporters.setdefault(item, set()).add(("reporter", reporter) if reporter is not None else ("report", report_id))
    threshold = section.reports_to_escalate
    return [
        _open(session, item, "harm.reports", "high", REASON_REPORTS.format(n=len(who), threshold=threshold), section, actor)
        for item, who in reporters.items()
        if len(who) >= threshold
    ]


def _exposure_cases(
    session: Any,
    section: Any,
    flagged_items: list[str],
    closed: dict[tuple[str, str], datetime],
    since: datetime | None,
    actor: str,
) -> list[_Opened]:
    """A case per flagged item served when flagged items took more than ``max_flagged_share`` of the places
    served since ``since`` (else the last day), from the decision log."""
    from audits.models import DecisionRecord
    from audits.sealing import open_decisions

    window = since or datetime.now(timezone.utc) - timedelta(days=1)
    places: Counter[str] = Counter()
    total = 0
    served = select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context)
    for content in open_decisions(session, session.execute(served.where(DecisionRecord.decided_at >= window)).all()):
        items = ((content[0] if content else None) or {}).get("items", [])  # None: sealed, its subject erased
        total += len(items)
        places.update(items)
    if not (total and flagged_items):
        return []
    flagged_served = {i: places[i] for i in flagged_items if places[i]}
    share = sum(flagged_served.values()) / total
    if share <= section.max_flagged_share:
        return []
    reason = f"flagged items took {share:.1%} of {total} places served (limit {section.max_flagged_share:.0%})"
    return [
        _open(session, item, "harm.exposure", "high", reason, section, actor)
        for item in sorted(i for i in flagged_served if (i, "harm.exposure") not in closed)
    ]


def flag_listing(session: Any, *, active_only: bool = True) -> list[dict[str, Any]]:
    """Every stored flag (active ones unless ``active_only`` is False), oldest first, each with where the catalogue
    recgov knows holds its item (:func:`audits.catalogue.look_up_item`): ``in_catalogue``, and ``near``, the
    catalogue's spellings of an id it does not hold. A flag stored before the catalogue check, or under another
    spelling (``I00573`` for ``i00573``), keeps nothing out of any list: lists are filtered by the exact id.
    ``claimed_new``: a write on the trail said the id names a new item (``new_item``), though spelt like one a
    catalogue holds: such a flag is not a misspelling."""
    from audits.catalogue import look_up_item
    from audits.models import ItemFlag

    query = select(ItemFlag).order_by(ItemFlag.id)
    if active_only:
        query = query.where(ItemFlag.active.is_(True))
    out = []
    for row in session.scalars(query):
        found = look_up_item(session, row.item_id)
        out.append({
            "id": row.id, "item_id": row.item_id, "category": row.category, "confidence": row.confidence, "source": row.source,
            "active": row.active, "created_at": row.created_at.isoformat(), "in_catalogue": found.in_catalogue,
            "catalogue": found.describe(), "near": list(found.near), "near_in": found.near_in, "claimed_new": False,
        })  # fmt: skip
    near = {f["item_id"] for f in out if f["near"]}
    if near:
        claimed = _claimed_new_items(session, near)
        for entry in out:
            entry["claimed_new"] = entry["item_id"] in claimed
    return out


def _claimed_new_items(session: Any, items: set[str]) -> set[str]:
    """Which of ``items`` a write on the trail (a flag, report or block with ``new_item``) said names a new item."""
    import json

    from audits.models import TrailEvent

    rows = session.execute(
        select(TrailEvent.objects, TrailEvent.payload).where(
            TrailEvent.action.in_(("item.flagged", "item.reported", "item.blocked")), TrailEvent.payload.like('%"new_item"%')
        )
    )
    claimed = set()
    for objects, payload in rows:
        item = json.loads(objects).get("item")
        if item in items and isinstance(json.loads(payload).get("new_item"), dict):
            claimed.add(item)
    return claimed
