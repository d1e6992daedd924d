"""Subject access and portability (GDPR Art. 15 and 20): what recgov holds about a subject.

:func:`export_subject` gathers the subject's consent history, requests,
decision records, the models that may hold them and, when a data set is given,
their events, in a portable JSON document (:data:`EXPORT_FORMAT`). This is the
one place a raw subject id appears in an output, because it goes to the subject
who asked; the request recorded in the store names them only by pseudonym.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from audits import consent_history, effective_consent, open_request, update_request
from audits.models import DecisionRecord, SubjectRequest, TrailEvent
from governance.consent.state import may_profile
from governance.policy import LoadedPack, PolicyPack
from governance.privacy.common import as_subject, fail_request, iso, pack_policy, plain, request_deadline
from governance.privacy.consent import consent_records, history_json
from governance.privacy.erasure import models_for
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = [
    "EXPORT_FAILED",
    "EXPORT_FORMAT",
    "export_subject",
]

EXPORT_FORMAT = "recgov.subject-export.v1"
EXPORT_FAILED = "the access request {id} failed: {cause}"


def _subject_events(dataset: Dataset | None, subject: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if dataset is None:
        return [], None
    events = dataset.events
    mine = events.loc[np.asarray(events["user_id"].astype("string") == subject, dtype=bool)]
    columns = [c for c in events.columns if c != "user_id"]
    rows = [plain(dict(zip(columns, values))) for values in mine[columns].itertuples(index=False, name=None)]
    attributes = None
    users = dataset.users
    if users is not None and len(users):
        match = np.flatnonzero(np.asarray(users.index.astype(str) == subject))
        if match.size:
            attributes = plain(users.iloc[int(match[0])].to_dict())
    return rows, attributes


def export_subject(
    store: Any,
    subject_id: str | int,
    *,
    dataset: Dataset | None = None,
    pack: LoadedPack | PolicyPack | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Everything recgov holds about a subject, for an access request (GDPR Art. 15).

    Opens an ``access`` request (deadline: the pack's ``consent.requests.access_days``,
    without a pack :data:`REQUEST_DEADLINE_DAYS`), gathers,
    and completes it with counts only; a failure marks it failed (with a
    message that names no subject) and re-raises. The export holds:

    * ``consent``: the whole history and the record in force per purpose;
    * ``profiling`` (with a pack): whether each purpose may profile them now, and why;
    * ``requests``: their subject requests;
    * ``interactions``: their events in ``dataset`` (and their attribute row),
      when a data set is given: the store itself holds no raw interactions;
    * ``decisions``: the lists served to them, with items, scores and explanation tags;
    * ``trail``: the audit events that name them (time, actor, action);
    * ``models``: the recorded model versions whose training data includes or
      may include them (see :func:`models_for` for how that is known);
    * ``logic`` (with a pack): the DSA Art. 27 disclosure
      (:func:`governance.disclosure.disclosure`), the meaningful information
      about the logic that Art. 15(1)(h) asks for.

    The export names the subject by ``subject_id`` (it goes to them); nothing
    stored carries it.
    """
    from governance.disclosure import disclosure

    subject = as_subject(subject_id)
    policy = pack_policy(pack) if pack is not None else None
    events, attributes = _subject_events(dataset, subject)
    dataset_hash = dataset.content_hash() if dataset is not None else None
    deadline_days, deadline_basis = request_deadline(pack, "access")

    with store.session() as session:
        request = open_request(session, subject_id=subject, kind="access", deadline_days=deadline_days, actor=actor)
        update_request(session, request.id, status="in_progress", actor=actor)
        request_id, who = request.id, request.subject
        deadline = request.deadline
    try:
        models = [
            m
            for m in models_for(store, subject, dataset_hash=dataset_hash, subject_in_dataset=bool(events))
            if m["membership"] != "does_not_include"
        ]
        with store.session() as session:
            history = consent_history(session, subject)
            in_force = effective_consent(session, subject)
            decisions = session.scalars(
                select(DecisionRecord)
                .where(DecisionRecord.subject == who)
                .order_by(DecisionRecord.decided_at, DecisionRecord.decision_id)
            ).all()
            trail = session.execute(
                select(TrailEvent.seq, TrailEvent.time, TrailEvent.actor, TrailEvent.action)
                .where(TrailEvent.subject == who)
                .order_by(TrailEvent.seq)
            ).all()
            counts = {
                "consent_records": len(history),
                "interactions": len(events),
                "decisions": len(decisions),
                "trail_events": len(trail),
                "models": len(models),
            }
            update_request(session, request_id, status="completed", personal={"counts": counts}, actor=actor)
            requests = session.scalars(
                select(SubjectRequest)
                .where(SubjectRequest.subject == who)
                .order_by(SubjectRequest.requested_at, SubjectRequest.id)
            ).all()
            document: dict[str, Any] = {
                "format": EXPORT_FORMAT,
                "subject": {"id": subject},
                "generated_at": datetime.now(UTC).isoformat(),
                "request": {
                    "id": request_id,
                    "kind": "access",
                    "deadline": iso(deadline),
                    "deadline_basis": deadline_basis,
                    "legal_reference": "GDPR Art. 15",
                },
                "controller": policy.metadata.owner if policy else None,
                "consent": {
                    "history": history_json(history),
                    "in_force": {p: history_json([r])[0] for p, r in in_force.items()},
                },
                "profiling": None,
                "requests": [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "status": r.status,
                        "requested_at": iso(r.requested_at),
                        "deadline": iso(r.deadline),
                        "completed_at": iso(r.completed_at),
                    }
                    for r in requests
                ],
                "interactions": {
                    "source": None if dataset is None else (dataset.source or dataset.name),
                    "held": dataset is not None,
                    "note": (
                        "the interactions recgov was given for this export"
                        if dataset is not None
                        else "no data set was given: recgov's store keeps no raw interactions, only the records below"
                    ),
                    "count": len(events),
                    "events": events,
                    "attributes": attributes,
                },
                "decisions": [
                    {
                        "decision_id": d.decision_id,
                        "decided_at": iso(d.decided_at),
                        "mode": d.mode,
                        "policy": f"{d.pack_name}@{d.pack_version}",
                        "model_version": d.model_version,
                        "items": plain(d.slate.get("items", [])),
                        "scores": plain(d.slate.get("scores")),
                        "tags": plain(d.slate.get("tags")),
                        "context": plain(d.context),
                    }
                    for d in decisions
                ],
                "trail": [{"seq": seq, "time": t, "actor": a, "action": action} for seq, t, a, action in trail],
                "models": models,
                "logic": None,
                "retention_days": policy.minimization.retention_days if policy else None,
            }
    except BaseException as err:
        cause = fail_request(store, request_id, err, subject, actor)
        if not isinstance(err, (ConfigError, DataError)):
            raise
        raise type(err)(EXPORT_FAILED.format(id=request_id, cause=cause)) from err

    if policy is not None:
        records = consent_records(history)
        document["profiling"] = {
            purpose: {
                "allowed": (d := may_profile(policy.consent, records, purpose=purpose)).allowed,
                "reason": d.reason,
            }
            for purpose in sorted(policy.consent.purposes)
        }
        document["logic"] = disclosure(policy)
    return document
