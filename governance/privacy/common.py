"""What every privacy right shares: the pack, the moment, the subject, the deadline, and the raw-id guard.

Below every module of a right (consent, access, erasure, retrains, the Art. 30
record), so that none of them imports another for these. The pack helpers
(:func:`pack_policy`, :func:`pack_stamp`, :func:`as_moment`,
:data:`UNLISTED_PURPOSE`) are defined in :mod:`governance.privacy_common` and
named here: the training filter (:mod:`governance.training_filter`) shares them,
and it must stay outside this package, since :mod:`governance.training` reads it
and the retrains call :mod:`governance.training` (inside, that would be a cycle).

The raw-id guard: subjects reach the store only as pseudonyms, and nothing a
right writes (a table row, a trail payload, a request result, an exception
message) may name a subject in the clear. :func:`guard` refuses a result that
holds the raw id, :func:`scrubbed` takes it out of an error message, and
:func:`fail_request` marks a request failed with that scrubbed cause. An id
shorter than ``_MIN_CONTAINED`` characters is refused only as a whole string,
so that "4242" inside a hash raises no false alarm.

Deadlines come from the pack's ``consent.requests`` section (defaults: GDPR Art.
12(3)'s one month, as 30 days); each request's answer quotes the days and the
provision (:func:`request_deadline`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import lookup_pseudonyms, update_request
from audits.models import SubjectRequest
from governance.policy import LoadedPack, PolicyPack, RequestDeadlines
from governance.privacy_common import UNLISTED_PURPOSE, as_moment, pack_policy, pack_stamp
from recommender.errors import DataError

_log = logging.getLogger(__name__)

__all__ = [
    "BAD_SUBJECT",
    "RAW_ID_IN_RESULT",
    "REQUEST_DEADLINE_DAYS",
    "UNLISTED_PURPOSE",
    "as_moment",
    "as_subject",
    "erased_since",
    "fail_request",
    "guard",
    "vocabulary_of",
    "iso",
    "pack_policy",
    "pack_stamp",
    "pending_erasure",
    "plain",
    "requested_subject",
    "request_deadline",
    "scrubbed",
]

REQUEST_DEADLINE_DAYS = RequestDeadlines().access_days
"""Days to answer a request when no pack is given: the schema's default, GDPR Art. 12(3)'s one month as 30 days."""
BAD_SUBJECT = "a subject id must be a non-empty string or an integer; got {kind}"


def request_deadline(pack: LoadedPack | PolicyPack | None, kind: str) -> tuple[int, str]:
    """The deadline in days of a request of ``kind``, and the basis quoted with it.

    From the pack's ``consent.requests`` (without a pack: the schema's
    defaults, GDPR Art. 12(3)'s one month as 30 days).
    """
    if pack is None:
        deadlines, source = RequestDeadlines(), "recgov's default (no policy pack given)"
    else:
        policy = pack_policy(pack)
        deadlines, source = policy.consent.requests, f"consent.requests.{kind}_days of pack {policy.metadata.name}"
    days = deadlines.days_for(kind)
    reference = f", {deadlines.legal_reference}" if deadlines.legal_reference else ""
    return days, f"{days} days: {source}{reference}"


def as_subject(subject_id: Any) -> str:
    """The subject id as the store reads it (integers are their decimal string)."""
    if isinstance(subject_id, bool) or not isinstance(subject_id, (str, int)) or subject_id == "":
        raise DataError(BAD_SUBJECT.format(kind=type(subject_id).__name__ if subject_id != "" else "an empty string"))
    return str(subject_id)


def requested_subject(store: Any, subject_id: Any) -> str:
    """The subject of an access or erasure request, as :func:`as_subject` reads it; an id that names no one's data
    (:func:`audits.subjects.subject_id_problem`: whitespace at either end) is refused with a :class:`DataError`
    unless a subject is recorded under exactly that id (then that subject is the one asked about)."""
    from audits.subjects import subject_id_problem, subject_known

    subject = as_subject(subject_id)
    problem = subject_id_problem(subject)
    if problem is not None:
        with store.session() as session:
            known = subject_known(session, subject)
        if not known:
            raise DataError(problem)
    return subject


def iso(value: Any) -> str | None:
    """A moment as ISO 8601 (a naive one read as UTC), or None for a missing one."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def plain(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars unwrapped, NaN and missing as None, times as ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return iso(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


RAW_ID_IN_RESULT = (
    "{field} would carry the subject's raw id at {where}; nothing recgov stores may name a subject "
    "other than by pseudonym (rename the folder or file that holds it)"
)
_MIN_CONTAINED = 6  # shorter ids are refused only as whole strings (no false alarms on "4242" inside a hash)


def _holds(text: str, subject: str) -> bool:
    return text == subject or (len(subject) >= _MIN_CONTAINED and subject in text)


def guard(value: Any, field: str, subject: str, where: str = "$", vocabulary: frozenset[str] = frozenset()) -> Any:
    """Refuse ``value`` if a string (key or value) in it is, or contains, the subject's raw id.

    Only strings are looked at: a result is full of counts, and a numeric id
    such as 1234 would otherwise collide with one of them. A string that is
    exactly a word of ``vocabulary`` (the pack's purposes, its name, the store's
    statuses: :func:`vocabulary_of`) is the system's own word, not the person's,
    even when a subject happens to bear the same id: erasing subject ``"0"``
    under a pack with a purpose ``"0"`` must not fail. A longer string holding
    the id is still refused.
    """
    if isinstance(value, Mapping):
        for key, child in value.items():
            if str(key) not in vocabulary and _holds(str(key), subject):
                raise DataError(RAW_ID_IN_RESULT.format(field=field, where=f"a key of {where}"))
            guard(child, field, subject, f"{where}.{key}", vocabulary)
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            guard(child, field, subject, f"{where}[{index}]", vocabulary)
    elif isinstance(value, str) and value not in vocabulary and _holds(value, subject):
        raise DataError(RAW_ID_IN_RESULT.format(field=field, where=where))
    return value


def vocabulary_of(pack: Any) -> frozenset[str]:
    """The words a privacy result takes from the pack and the store, never from the person.

    The pack's consent purposes, its name, version and content hash, and the
    store's consent statuses, lawful bases and request kinds and statuses.
    """
    from audits.models import CONSENT_STATUSES, LAWFUL_BASES, REQUEST_KINDS, REQUEST_STATUSES

    policy = pack_policy(pack)
    stamp = pack_stamp(pack)
    words = {*policy.consent.purposes, *stamp.values(), *CONSENT_STATUSES, *LAWFUL_BASES, *REQUEST_KINDS, *REQUEST_STATUSES}
    return frozenset(str(w) for w in words)


def scrubbed(err: BaseException, subject: str) -> str:
    """An error's message fit to store and show: no raw id of the subject in it."""
    message = f"{type(err).__name__}: {err}"[:500]
    if len(subject) >= 4:
        message = message.replace(subject, "<subject>")
    if _holds(message, subject) or re.search(rf"(?<![\w-]){re.escape(subject)}(?![\w-])", message):
        return f"{type(err).__name__} (message withheld: it may name the subject)"
    return message


def fail_request(store: Any, request_id: int, err: BaseException, subject: str, actor: str | None) -> str:
    """Mark the request failed with the cause, the subject scrubbed from it; return that cause."""
    cause = scrubbed(err, subject)
    try:
        with store.session() as session:
            update_request(session, request_id, status="failed", result={"cause": cause}, actor=actor)
    except Exception as failure:  # noqa: BLE001 - the original error is what the caller must see
        _log.warning("could not mark subject request %s failed: %s", request_id, type(failure).__name__)
    return cause


def pending_erasure(session: Session, subject: str | int) -> Any:
    """The subject's oldest erasure request still waiting to be carried out (``received``), or None."""
    from audits import lookup_pseudonyms
    from audits.models import SubjectRequest

    who = lookup_pseudonyms(session, [subject]).get(subject)
    if who is None:
        return None
    return session.scalars(
        select(SubjectRequest)
        .where(SubjectRequest.subject == who, SubjectRequest.kind == "erasure", SubjectRequest.status == "received")
        .order_by(SubjectRequest.requested_at, SubjectRequest.id)
        .limit(1)
    ).first()


def erased_since(session: Session, model_version: str, user_ids: Any) -> list[str]:
    """The ids among ``user_ids`` (a model's training rows) erased after ``model_version``'s lineage read its data:
    their latest erasure is later than the erasures its training left out (:func:`governance.suppressed.erasures_seen`;
    every erased one when the store cannot tell). A subject who came back after an erasure and was trained on
    again is not among them."""
    from audits.suppression import suppressions_for
    from governance.suppressed import erasures_seen

    found = suppressions_for(session, np.asarray(user_ids).astype(str).tolist())
    if not found:
        return []
    seen = erasures_seen(session, model_version)
    return sorted(s for s, entry in found.items() if seen is None or entry.trail_seq > seen)

