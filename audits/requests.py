"""Data subject requests (access, erasure, objection), the retrains erasures call for, and their deadlines.

A request moves ``received -> in_progress -> completed`` or ``failed``; the last
two are final. Each change appends a trail event (``subject_request.opened``,
``subject_request.in_progress``, ``subject_request.completed``,
``subject_request.failed``) naming the subject by the pseudonym the request was
opened under, and the row's ``trail_seq`` names the latest one. An erasure that
shreds the subject (:func:`audits.shred_subject`) can still be completed: the
request keeps its (now unlinkable) pseudonym.

A result may hold figures about the person (``personal``: how many of their
interactions an access export found, say). Those are sealed under the subject's
record key (:mod:`audits.sealing`), in the row and in the trail event, and read
back merged into the result while the key exists: once the subject is erased
they are unreadable, and the kept request says what was done, not how much of
the person there was.

The deadline is ``requested_at`` plus the days the caller's policy pack gives
(``consent.requests``: one month under GDPR Art. 12(3), 45 days under CCPA
§1798.130). A ``retrain`` request is opened by an erasure for the model versions
trained on the erased subject's data, under the same (now unlinkable)
pseudonym; it is completed when a full retrain without the subject replaces them.

Example
-------
>>> with store.session() as session:                                     # doctest: +SKIP
...     days = pack.consent.requests.days_for("erasure")
...     req = open_request(session, subject_id="user-42", kind="erasure", deadline_days=days)
>>> with store.session() as session:                                     # doctest: +SKIP
...     update_request(session, req.id, status="in_progress", actor="dpo")
...     update_request(session, req.id, status="completed", actor="dpo",
...                    result={"models_affected": ["3f2a"], "residual_influence": 0.0})
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from audits._common import actor_name, aware, json_object, one_of
from audits.models import REQUEST_KINDS, REQUEST_STATUSES, SubjectRequest
from audits.sealing import seal_request_figures
from audits.subjects import pseudonym
from audits.trail import append_event, format_time, lock_head
from recommender.errors import ConfigError, DataError

__all__ = [
    "open_request", "update_request", "list_requests", "page_requests", "count_requests", "overdue_among",
    "REQUEST_TRANSITIONS", "BAD_REQUEST_TRANSITION", "UNKNOWN_CURSOR", "UnknownCursor",
]  # fmt: skip

REQUEST_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("in_progress",),
    "in_progress": ("in_progress", "completed", "failed"),  # in_progress again: progress recorded (a retrain partly done)
    "completed": (),
    "failed": (),
}
"""Where a request may go from each status."""
OPEN_REQUEST_STATUSES = ("received", "in_progress")

BAD_REQUEST_TRANSITION = "subject request {id} is {current!r}; {allowed}, not to {wanted!r}"
UNKNOWN_REQUEST = "unknown subject request {id!r}; list them with list_requests"
class UnknownCursor(ConfigError):
    """A page's cursor that names no subject request (its message is :data:`UNKNOWN_CURSOR`)."""


UNKNOWN_CURSOR = "there is no subject request {id}: the cursor is the id of the last request of the previous page (its next_after), or 0 for the first page"
MAX_DEADLINE_DAYS = 366


def _allowed(current: str) -> str:
    targets = REQUEST_TRANSITIONS[current]
    if not targets:
        return "that is final: it can move nowhere"
    names = [repr(t) for t in targets]
    return "it can move only to " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1])


def open_request(
    session: Session,
    *,
    subject_id: str | int,
    kind: str,
    deadline_days: int,
    requested_at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> SubjectRequest:
    """Open a request of ``kind`` (access, erasure, objection, retrain) for ``subject_id`` (stored as its pseudonym).

    ``deadline_days`` comes from the policy pack: the deadline is ``requested_at``
    (default now) plus that many days. ``details`` (a JSON object; never a raw
    id), what the request is about from the start (a retrain's model versions,
    the erasure it follows), is stored as its ``result`` and in the trail event.
    """
    kind = one_of(kind, REQUEST_KINDS, "kind")
    if (
        isinstance(deadline_days, bool)
        or not isinstance(deadline_days, int)
        or not 1 <= deadline_days <= MAX_DEADLINE_DAYS
    ):
        raise ConfigError(f"deadline_days must be an integer from 1 to {MAX_DEADLINE_DAYS}; got {deadline_days!r}")
    requested_at = aware(requested_at, "requested_at", not_after_now=True)
    # Numbers in details are ids and counts the code made (a consent record's id may equal a numeric
    # subject id by chance); strings and keys are still checked for the raw id.
    plain = None if details is None else json_object(details, "details", subject_ids=[subject_id], numbers=False)
    deadline = requested_at + timedelta(days=deadline_days)
    who = pseudonym(session, subject_id)
    event = append_event(
        session,
        actor=actor_name(actor),
        action="subject_request.opened",
        subject=who,
        payload={
            "kind": kind,
            "requested_at": format_time(requested_at),
            "deadline": format_time(deadline),
            "deadline_days": deadline_days,
            **({"details": plain} if plain is not None else {}),
        },
    )
    row = SubjectRequest(
        kind=kind,
        subject=who,
        status="received",
        requested_at=requested_at,
        deadline=deadline,
        result=plain,
        trail_seq=event.seq,
    )
    session.add(row)
    session.flush()
    return row


def update_request(
    session: Session,
    request_id: int,
    *,
    status: str,
    result: Mapping[str, Any] | None = None,
    personal: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    actor: str | None = None,
) -> SubjectRequest:
    """Move a request to ``status`` (received -> in_progress -> completed | failed).

    ``result`` (a JSON object: models affected, residual influence, the reason
    for a failure; never a raw id) replaces the stored one when given.
    ``personal`` (a JSON object: figures about the person, such as counts of
    their data) joins it sealed under the subject's record key, readable while
    the subject is not erased (see the module doc). Reaching ``completed`` or
    ``failed`` sets ``completed_at`` (``at``, default now).

    Raises
    ------
    ConfigError
        Unknown request, unknown status, or a transition the workflow does not allow.
    """
    status = one_of(status, REQUEST_STATUSES, "status")
    when = aware(at, "at", not_after_now=True)
    plain = None if result is None else json_object(result, "result")
    lock_head(session)  # serialize with other writers: two updates never both pass the check
    row = session.get(SubjectRequest, request_id, with_for_update=True) if isinstance(request_id, int) else None
    if row is None:
        raise ConfigError(UNKNOWN_REQUEST.format(id=request_id))
    if status not in REQUEST_TRANSITIONS[row.status]:
        raise ConfigError(
            BAD_REQUEST_TRANSITION.format(id=row.id, current=row.status, allowed=_allowed(row.status), wanted=status)
        )
    if when < row.requested_at:
        raise DataError(f"at ({when.isoformat()}) is before the request was made ({row.requested_at.isoformat()})")
    figures = None
    if personal is not None:
        figures = json_object(personal, "personal")
        plain = (plain or {}) | seal_request_figures(session, row.subject, row.id, figures)
    previous = row.status
    event = append_event(
        session,
        actor=actor_name(actor),
        action=f"subject_request.{status}",
        subject=row.subject,
        objects={"subject_request": row.id},
        payload={"kind": row.kind, "previous_status": previous, "at": format_time(when), "result": plain},
    )
    row.status = status
    if plain is not None:
        row.result = plain
    if figures is not None:
        session.flush()
        set_committed_value(row, "result", {k: v for k, v in plain.items() if k != "sealed"} | figures)
    if status not in OPEN_REQUEST_STATUSES:
        row.completed_at = when
    row.trail_seq = event.seq
    session.flush()
    return row


def _as_dict(row: SubjectRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "subject": row.subject,
        "status": row.status,
        "requested_at": row.requested_at,
        "deadline": row.deadline,
        "completed_at": row.completed_at,
        "result": row.result,
        "trail_seq": row.trail_seq,
    }


def _filtered(query: Any, kind: str | None, status: str | None, overdue_at: datetime | None, open_only: bool) -> Any:
    if open_only:
        query = query.where(SubjectRequest.status.in_(OPEN_REQUEST_STATUSES))
    if kind is not None:
        query = query.where(SubjectRequest.kind == one_of(kind, REQUEST_KINDS, "kind"))
    if status is not None:
        query = query.where(SubjectRequest.status == one_of(status, REQUEST_STATUSES, "status"))
    if overdue_at is not None:
        moment = aware(overdue_at, "overdue_at")
        query = query.where(_unanswered(), SubjectRequest.deadline < moment)
    return query


def _unanswered() -> Any:
    """A request still owed an answer: open, or failed with no later request of its kind for its subject completed.

    A failure is final for the request, not for the right it asked to exercise: the subject still waits, and a
    retry opens a new request with a new deadline, so the failed one stays overdue (from its own deadline) until
    a later one of its kind completes for the same pseudonym (an erasure shreds only when it completes, so its
    retry is under the same pseudonym).
    """
    later = aliased(SubjectRequest)
    answered = (
        select(later.id)
        .where(
            later.subject == SubjectRequest.subject,
            later.kind == SubjectRequest.kind,
            later.status == "completed",
            later.id > SubjectRequest.id,
        )
        .exists()
    )
    return or_(SubjectRequest.status.in_(OPEN_REQUEST_STATUSES), and_(SubjectRequest.status == "failed", ~answered))


def list_requests(
    session: Session,
    *,
    kind: str | None = None,
    status: str | None = None,
    overdue_at: datetime | None = None,
    open_only: bool = False,
    ids: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """Requests, oldest first, as dicts (datetimes aware UTC; ``subject`` is the pseudonym).

    ``overdue_at``: only requests still unanswered whose deadline is before that
    moment: open (received or in progress), or failed with no later request of
    their kind completed for the subject (:func:`_unanswered`). ``open_only``: only requests still open.
    ``ids``: only those requests (chosen in the database: the others are never read).
    Every matching request: a reader of a store of any size pages with :func:`page_requests`.
    """
    query = _filtered(select(SubjectRequest), kind, status, overdue_at, open_only)
    if ids is not None:
        wanted = sorted(i for i in {int(i) for i in ids} if 0 < i < 2**31)  # ids are 32-bit integers
        query = query.where(SubjectRequest.id.in_(wanted))
    return [_as_dict(row) for row in session.scalars(query.order_by(SubjectRequest.requested_at, SubjectRequest.id))]


def page_requests(
    session: Session,
    *,
    limit: int,
    after: int = 0,
    kind: str | None = None,
    status: str | None = None,
    overdue_at: datetime | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of :func:`list_requests`'s order (oldest first), and the cursor of the next (None: the last page).

    The cursor is a request's id: ``after`` is the last id of the previous page
    (0: the first page). The order is by the time a request was made, then by
    id, so a page starts right after that request's place in it: one range read
    of the ``(requested_at, id)`` index however many requests the store holds,
    and requests opened meanwhile (made now, so later in the order) never shift
    a page. The filters are those of :func:`list_requests`.

    Raises
    ------
    UnknownCursor
        ``after`` names no request (:data:`UNKNOWN_CURSOR`).
    ConfigError
        ``limit`` is not positive, or a filter is not one of its values.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    query = _filtered(select(SubjectRequest), kind, status, overdue_at, False)
    if after:
        known = isinstance(after, int) and not isinstance(after, bool) and 0 < after < 2**31  # ids are 32-bit integers
        at = session.scalar(select(SubjectRequest.requested_at).where(SubjectRequest.id == after)) if known else None
        if at is None:
            raise UnknownCursor(UNKNOWN_CURSOR.format(id=after))
        query = query.where(
            or_(SubjectRequest.requested_at > at, and_(SubjectRequest.requested_at == at, SubjectRequest.id > after))
        )
    rows = [_as_dict(row) for row in session.scalars(query.order_by(SubjectRequest.requested_at, SubjectRequest.id).limit(limit + 1))]
    return rows[:limit], rows[limit - 1]["id"] if len(rows) > limit else None


def count_requests(
    session: Session, *, kind: str | None = None, status: str | None = None, overdue_at: datetime | None = None
) -> int:
    """How many requests :func:`list_requests` would list with these filters (a count in the database, no row read)."""
    query = _filtered(select(func.count()).select_from(SubjectRequest), kind, status, overdue_at, False)
    return int(session.scalar(query) or 0)


def overdue_among(session: Session, ids: Collection[int], at: datetime) -> set[int]:
    """Which of the requests ``ids`` are overdue at ``at``, as the ``overdue_at`` filter of :func:`list_requests`
    and :func:`count_requests` judges them (still unanswered, :func:`_unanswered`, past their deadline): one query."""
    if not ids:
        return set()
    query = _filtered(select(SubjectRequest.id), None, None, at, False).where(SubjectRequest.id.in_(list(ids)))
    return set(session.scalars(query))
