"""The record of processing activities (GDPR Art. 30(1)) of the recommender.

Art. 30(1) asks a controller to keep, for each processing activity, its
purposes, the categories of subjects and of personal data, the recipients, the
transfers to third countries, the time limits for erasure and a description of
the safeguards. recgov can write most of it itself: the policy pack declares
the purposes, their lawful bases and the minimization rules, and the store
knows what it keeps and how much. :func:`processing_record` assembles it one
section at a time:

* **purposes** (:func:`_purposes`): every purpose of the pack's consent and
  minimization sections, with its lawful basis (a purpose without one is shown,
  with the note that recgov never profiles for it);
* **categories of data** (:func:`_categories_of_data`): model inputs, the
  attributes kept for audits only and those forbidden, and what the store keeps
  in the clear and sealed (from :mod:`audits.sealing`, so the record cannot
  drift from what is stored);
* **retention** (:func:`_retention`) and **safeguards** (:func:`_safeguards`);
* **counts** (:func:`_store_counts`, a :class:`ProcessingCounts` read in one
  transaction): consent records per purpose and status (every row, erased
  subjects' included: they are the proof of lawful processing), subjects per
  purpose and status in force (erased subjects left out: their records no
  longer describe anyone), subject requests per kind and status, the open and
  overdue ones, and served decisions per mode.

The record is a read: it names no subject and records nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits import count_requests
from audits.consent import consent_state_counts
from audits.models import ConsentRecordRow, DecisionRecord, SubjectRequest, TrailEvent
from audits.sealing import KEPT_IN_THE_CLEAR, SEALED_CONTENT, SEALING_SAFEGUARD
from governance.policy import ConsentSection, LoadedPack, MinimizationSection, PolicyPack
from governance.privacy.common import as_moment, pack_policy, pack_stamp
from recommender.feedback import MODEL_INPUT_COLUMNS

__all__ = ["DEFAULT_RECIPIENTS", "ProcessingCounts", "processing_record"]

DEFAULT_RECIPIENTS = ("none outside the controller",)
"""The recipients the record names when none are given."""
_OPEN_STATUSES = ("received", "in_progress")


class PurposeEntry(TypedDict):
    """One purpose of processing, as the record lists it."""

    purpose: str
    description: str | None
    lawful_basis: str | None
    consent_model: str | None
    legal_reference: str | None
    allowed_inputs: list[str] | None
    note: str | None


class ProcessingCounts(TypedDict):
    """What the store holds, in numbers: the record's ``counts`` section."""

    consent_records: dict[str, dict[str, int]]
    subjects_in_force: dict[str, dict[str, int]]
    erased_subjects: int
    erased_subjects_with_consent_records: int
    subject_requests: dict[str, dict[str, int]]
    open_requests: int
    overdue_requests: int
    decisions: dict[str, int]


def processing_record(
    pack: LoadedPack | PolicyPack,
    store: Any,
    *,
    recipients: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record of processing activities (GDPR Art. 30(1)) of the recommender, from the pack and the store.

    Purposes with their lawful bases and legal references (the pack's consent
    and minimization sections), categories of data (model inputs, audit-only
    and forbidden attributes, what the store keeps), recipients (``recipients``;
    default: none outside the controller), retention, safeguards, and counts
    from the store: consent records per purpose and status (every row, erased
    subjects' included), subjects per purpose and status in force (erased
    subjects left out), subject requests per kind and status (open and overdue
    ones), served decisions.

    The controller is the one the pack declares (``controller``: name, address and contact, with its
    ``dpo``), as Art. 30(1)(a) asks; a pack that declares none is named by its ``metadata.owner``, and
    ``controller_details`` and ``dpo`` are then null.
    """
    policy = pack_policy(pack)
    moment = as_moment(now, "now")
    purposes = _purposes(policy.consent, policy.minimization)
    with store.session() as session:
        counts = _store_counts(session, moment)
    return {
        "legal_reference": "GDPR Art. 30(1)",
        **pack_stamp(pack),
        "generated_at": moment.isoformat(),
        "controller": policy.controller.name if policy.controller else policy.metadata.owner,
        "controller_details": policy.controller.model_dump() if policy.controller else None,
        "dpo": policy.dpo.model_dump() if policy.dpo else None,
        "jurisdictions": list(policy.metadata.jurisdictions),
        "processing": "recommendations of items to users from their interactions, governed by recgov",
        "purposes": purposes,
        "categories_of_subjects": ["users of the service whose interactions are recorded"],
        "categories_of_data": _categories_of_data(policy.minimization),
        "recipients": list(recipients) if recipients else list(DEFAULT_RECIPIENTS),
        "transfers_to_third_countries": "none declared in the pack",
        "retention": _retention(policy.minimization.retention_days),
        "safeguards": _safeguards(policy.consent),
        "counts": counts,
    }


def _purposes(consent: ConsentSection, minimization: MinimizationSection) -> list[PurposeEntry]:
    """Every purpose either section names, sorted, with its basis, model, reference and allowed inputs."""
    entries = []
    for name in sorted(set(consent.purposes) | set(minimization.purposes)):
        c, m = consent.purposes.get(name), minimization.purposes.get(name)
        entries.append(
            PurposeEntry(
                purpose=name,
                description=(m.description if m and m.description else None),
                lawful_basis=c.lawful_basis if c else None,
                consent_model=c.model if c else None,
                legal_reference=(c.legal_reference if c else None) or (m.legal_reference if m else None),
                allowed_inputs=list(m.allowed_inputs) if m else None,
                note=None
                if c
                else "no lawful basis in the pack's consent section: recgov never profiles for it (fail closed)",
            )
        )
    return entries


def _categories_of_data(minimization: MinimizationSection) -> dict[str, list[str] | dict[str, list[str]]]:
    """The categories of personal data: what models read, what they may not, and what the store keeps."""
    return {
        "model_inputs": list(MODEL_INPUT_COLUMNS),
        "allowed_inputs_by_purpose": {p: list(m.allowed_inputs) for p, m in sorted(minimization.purposes.items())},
        "audit_only_attributes": list(minimization.audit_only_attributes),
        "forbidden_attributes": list(minimization.forbidden_attributes),
        "kept_by_recgov": [
            f"consent records (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['consent_records']}; "
            f"sealed under the subject's record key: {SEALED_CONTENT['consent_records']})",
            f"subject requests (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['subject_requests']}; "
            f"sealed under the subject's record key: {SEALED_CONTENT['subject_requests']})",
            f"item reports (the reporter pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['item_reports']}; "
            f"sealed under the reporter's record key when signed: {SEALED_CONTENT['item_reports']})",
            f"served decisions (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['decisions']}; "
            f"sealed under the subject's record key: {SEALED_CONTENT['decisions']})",
            "outcome events after served lists: impressions, clicks, conversions, dwell, ratings (pseudonymised; in the "
            "clear: the item, the kind, its value and time, the decision it was joined to; deleted at the subject's "
            "erasure and by the retention purge)",
            "the audit trail (pseudonymised events; consent evidence in them sealed as in the consent records)",
            "model artifacts (the training interactions as a matrix, with user ids) and their lineage",
        ],
    }


def _retention(days: int | None) -> dict[str, Any]:
    """The time limits: training events by the pack's retention, the proof of lawfulness and the trail kept."""
    return {
        "training_events_days": days,
        "training_events": (
            f"events older than {days} days are excluded from training (filter_training_events)"
            if days
            else "the pack sets no retention period (minimization.retention_days)"
        ),
        "consent_and_requests": (
            "kept as the proof of lawful processing (GDPR Art. 7(1), 17(3)(e)); unlinkable after erasure"
        ),
        "outcome_events": (
            f"outcome events older than {days} days are deleted by recgov data purge; a subject's at their erasure"
            if days
            else "deleted at the subject's erasure; the pack sets no retention period for the rest"
        ),
        "trail": "append-only, kept for the life of the system (EU AI Act Art. 12)",
    }


def _safeguards(consent: ConsentSection) -> list[str]:
    """The technical and organisational measures (Art. 30(1)(g), 32) recgov applies, as sentences."""
    return [
        "pseudonymisation: subjects appear in the store only as HMAC-SHA256 pseudonyms under per-subject secrets; "
        "no raw id is stored in the database (model artifacts, files, list user ids: see categories of data)",
        "crypto-shredding on erasure: the subject's pseudonym secret and record key are deleted; every record under "
        "the pseudonym becomes unlinkable, and what was sealed under the key unreadable",
        SEALING_SAFEGUARD,
        "machine unlearning of model artifacts on erasure (forget_users), with residual influence measured on "
        "small models",
        "a full retrain without the erased subject within consent.requests.retrain_days "
        f"({consent.requests.retrain_days} days) of the erasure, tracked as a retrain request",
        "suppression records on erasure: the restrictions in force and the erasure time, kept under a keyed hash of "
        "the id, so a returning subject is neither profiled nor trained on against them",
        "a hash-chained, append-only audit trail with signed checkpoints; the database refuses UPDATE and DELETE of "
        "the trail, the consent records, audit results and suppression records; served decisions are covered by "
        "per-batch digests on the trail, so a changed decision is found by recgov trail verify",
        "consent checked at serving and at training (filter_training_events); GPC honoured"
        + ("" if consent.honour_gpc else " (disabled in this pack)"),
        "data minimization: models read only " + ", ".join(MODEL_INPUT_COLUMNS),
    ]


def _store_counts(session: Session, moment: datetime) -> ProcessingCounts:
    """The store's figures, in one transaction (see the module doc for what erased subjects count in)."""
    per_record = session.execute(
        select(ConsentRecordRow.purpose, ConsentRecordRow.status, func.count())
        .group_by(ConsentRecordRow.purpose, ConsentRecordRow.status)
        .order_by(ConsentRecordRow.purpose, ConsentRecordRow.status)
    ).all()
    # counted in the database, no subject read: an erased subject's records stay, unlinkable; they no longer
    # describe anyone, so they are counted apart
    shredded = select(TrailEvent.subject).where(TrailEvent.action == "subject.shredded", TrailEvent.subject.is_not(None))
    in_force, erased_with_records = consent_state_counts(session, shredded)
    n_shredded = session.scalar(select(func.count(func.distinct(shredded.subquery().c.subject)))) or 0
    requests = session.execute(
        select(SubjectRequest.kind, SubjectRequest.status, func.count())
        .group_by(SubjectRequest.kind, SubjectRequest.status)
        .order_by(SubjectRequest.kind, SubjectRequest.status)
    ).all()
    overdue = count_requests(session, overdue_at=moment)  # a count in the database: no request is read
    decisions = session.execute(
        select(DecisionRecord.mode, func.count()).group_by(DecisionRecord.mode).order_by(DecisionRecord.mode)
    ).all()
    by_request = _nested(requests)
    return ProcessingCounts(
        consent_records=_nested(per_record),
        subjects_in_force={p: dict(sorted(v.items())) for p, v in sorted(in_force.items())},
        erased_subjects=int(n_shredded),
        erased_subjects_with_consent_records=erased_with_records,
        subject_requests=by_request,
        open_requests=sum(n for k in by_request.values() for s, n in k.items() if s in _OPEN_STATUSES),
        overdue_requests=overdue,
        decisions={mode: int(n) for mode, n in decisions},
    )


def _nested(rows: Sequence[Any]) -> dict[str, dict[str, int]]:
    """``(outer, inner, count)`` rows as ``{outer: {inner: count}}``, in row order."""
    nested: dict[str, dict[str, int]] = {}
    for outer, inner, n in rows:
        nested.setdefault(outer, {})[inner] = int(n)
    return nested
