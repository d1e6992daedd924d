"""Privacy by construction at training time: a training set holds only what the pack allows.

A model learns from personal data, so every training run is processing that
needs a lawful basis for its purpose (GDPR Art. 6(1)) and must stop where the
subject said no (Art. 7(3), 21) or was erased (Art. 17), and personal data are
kept no longer than needed (Art. 5(1)(e)). :func:`filter_training_events`
applies these rules to a data set before a model sees it, as named steps:

1. **The purpose** (:func:`_purpose_config`): the pack's consent section must
   list it; an unlisted purpose is a configuration error, never a pass.
2. **Consent in force** (:func:`_read_consent`): one transaction reads, in
   bulk, the trail head (:func:`governance.suppressed.suppressions_read_at`,
   so serving can tell whether a model may hold an erasure), the subjects'
   pseudonyms, their consent in force, the suppression records that outlive an
   erasure, and (for an opt-in purpose resting on consent) the basis of each
   grant. It returns a :class:`ConsentReading`.
3. **Per subject** (:func:`_subject_reasons`): the rules of
   :func:`governance.consent.state.may_profile` give each subject a reason
   code (0: kept).
4. **Per event** (:func:`_event_reasons`): the subject's code is broadcast to
   its events with numpy; events naming no subject, an erased subject's events
   from before their erasure, and events older than
   ``minimization.retention_days`` get their own reasons (a :class:`Verdict`).
5. **The data kept** (:func:`_kept_data`) and **the counts**
   (:class:`ExclusionCounts`): how many events and subjects were kept and left
   out, and why (:data:`EXCLUSION_REASONS`).
6. **The record**: a ``privacy.training_filtered`` trail event with the counts
   and the hashes of the data before and after, so an audit can show what a
   model was allowed to learn from.

The report is plain JSON (a dict), as training runs store it in their
parameters and audits read it back (:func:`governance.audit.training_filter_of`).
Nothing here names a subject in the report or the trail: counts only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import (
    consent_states,
    lookup_pseudonyms,
)
from audits._common import actor_name, in_values
from audits.models import (
    CONSENT_RESTRICTIVENESS,
    ConsentRecordRow,
)
from audits.suppression import SuppressionEntry, suppressions_for
from audits.trail import append_event
from governance.policy import ConsentPurpose, LoadedPack, PolicyPack
from governance.privacy_common import UNLISTED_PURPOSE, as_moment, pack_policy, pack_stamp
from governance.suppressed import ERASURES_SEEN, erased_until, suppressions_read_at
from recommender.data import Dataset, event_times, subject_codes
from recommender.errors import ConfigError

__all__ = [
    "EXCLUSION_REASONS",
    "REASON_CODES",
    "ExclusionCounts",
    "SubjectRules",
    "exclusion_report",
    "filter_training_events",
    "record_filtering",
    "subject_rules",
]

EXCLUSION_REASONS: dict[str, str] = {
    "no_consent_record": "no consent record for an opt-in purpose: no record means no (GDPR Art. 6(1)(a), 7(1))",
    "withdrawn": "consent withdrawn: processing stops at once (GDPR Art. 7(3))",
    "denied": "consent refused",
    "objected": "objection to profiling (GDPR Art. 21)",
    "opted_out": "opted out, by request or by a GPC signal (CCPA §1798.120; GDPR Art. 21(5))",
    "wrong_basis": "the record in force was not given as consent, but the purpose rests on consent (GDPR Art. 7(1))",
    "missing_subject_id": "the event names no subject, so no consent can be shown for it",
    "erased": (
        "the subject was erased and the event is from before the erasure, or of unknown time (GDPR Art. 17): "
        "never learned again"
    ),
    "retention": "older than minimization.retention_days (GDPR Art. 5(1)(e)), or of unknown time",
}
"""Why an event or subject is left out of a training set, keyed as in the exclusions report."""
_CONSENT_REASONS = ("withdrawn", "denied", "objected", "opted_out")
_REASONS = list(EXCLUSION_REASONS)
_CODE = {name: index + 1 for index, name in enumerate(_REASONS)}  # 0 is "kept"
_REPORT_IN_TRAIL = ("purpose", "now", "cutoff", "events", "subjects", "dataset", "pack_hash")


@dataclass(frozen=True)
class ConsentReading:
    """What the store says of the data set's subjects for one purpose, read in one transaction."""

    pseudonyms: Mapping[str, str | None]
    """Raw id -> pseudonym (``None``: recgov has no record under this id)."""
    status: list[str | None]
    """Per subject (in the order of the factorized ids), the status in force, suppressions applied."""
    suppressed: Mapping[str, SuppressionEntry]
    """Raw id -> the latest suppression record of an erased subject."""
    bases: Mapping[str, str]
    """Pseudonym -> the lawful basis of the grant in force (read only when the rules need it)."""
    erasures_read_at: int
    """The trail head read before the suppression rows (:data:`governance.suppressed.ERASURES_SEEN`)."""


@dataclass(frozen=True)
class Verdict:
    """Why each subject and each event is left out (reason codes into :data:`EXCLUSION_REASONS`; 0: kept)."""

    subject_reason: np.ndarray
    """int8 per subject: its consent verdict (erasure and retention are per event)."""
    event_reason: np.ndarray
    """int8 per event: the first rule that excludes it."""
    erased_subjects: int
    """Subjects allowed by consent whose every event went for their erasure (none kept, some erased)."""


@dataclass(frozen=True)
class ExclusionCounts:
    """How many events and subjects a training set kept, and how many it left out per reason."""

    events_total: int
    events_kept: int
    events_excluded: dict[str, int]
    subjects_total: int
    subjects_kept: int
    subjects_excluded: dict[str, int]

    @classmethod
    def of(cls, verdict: Verdict, kept_subjects: int) -> ExclusionCounts:
        """Count a verdict: each subject under its consent reason, then the erased and the aged-out ones."""
        event_counts = np.bincount(verdict.event_reason, minlength=len(_REASONS) + 1)
        subject_counts = np.bincount(verdict.subject_reason, minlength=len(_REASONS) + 1)
        subjects_excluded = {name: int(subject_counts[_CODE[name]]) for name in _REASONS}
        subjects_excluded["erased"] = verdict.erased_subjects
        # consented subjects with no event kept and not erased lost them all to retention
        subjects_excluded["retention"] = int(subject_counts[0]) - kept_subjects - verdict.erased_subjects
        return cls(
            events_total=len(verdict.event_reason),
            events_kept=int(event_counts[0]),
            events_excluded={name: int(event_counts[_CODE[name]]) for name in _REASONS},
            subjects_total=len(verdict.subject_reason),
            subjects_kept=kept_subjects,
            subjects_excluded=subjects_excluded,
        )

    def events(self) -> dict[str, Any]:
        """The report's ``events`` section."""
        return {"total": self.events_total, "kept": self.events_kept, "excluded": dict(self.events_excluded)}

    def subjects(self) -> dict[str, Any]:
        """The report's ``subjects`` section."""
        return {"total": self.subjects_total, "kept": self.subjects_kept, "excluded": dict(self.subjects_excluded)}


def filter_training_events(
    dataset: Dataset,
    pack: LoadedPack | PolicyPack,
    store: Any,
    *,
    purpose: str = "personalization",
    now: datetime | None = None,
    record: bool = True,
    actor: str | None = None,
    record_empty: bool = True,
) -> tuple[Dataset, dict[str, Any]]:
    """Keep the events a model may learn from: consented subjects, within retention.

    A subject's events are kept when the pack allows profiling them for
    ``purpose`` under the rules of :func:`governance.consent.state.may_profile`
    (the record in force decides: ``withdrawn``, ``denied``, ``objected`` and
    ``opted_out`` exclude; under ``opt_in`` no record excludes, and for a
    purpose resting on consent so does a grant given under another basis). A GPC
    signal counts once it is recorded (:func:`record_consent_from_request`); a
    training run has no request to read one from. Events older than
    ``pack.minimization.retention_days`` before ``now`` (default: now), or
    without a time, are dropped too. Events naming no subject are dropped.

    Erased subjects are found through their suppression records
    (:mod:`audits.suppression`), which survive crypto-shredding: an opt-out or
    objection kept through the erasure excludes them as a record at the
    erasure time would (a later grant under their new pseudonym outranks it),
    and their events from before the erasure, or of unknown time, are dropped
    (reason ``erased``), whatever their consent today.

    The store is read in bulk: one pseudonym lookup, one suppression lookup and
    one ``consent_states`` query for all subjects (plus one query for the basis
    of grants, for an opt-in purpose resting on consent, and one for the
    records of suppressed subjects); the decision is then broadcast to the
    events with numpy, never row by row. The result is deterministic: the same
    events, store state and ``now`` give the same output, in the input order.

    With ``record`` (default), a ``privacy.training_filtered`` trail event keeps
    the counts and the hashes of the data before and after; without
    ``record_empty``, not when nothing is kept (a training run that is then
    refused writes nothing).

    Returns
    -------
    (Dataset, dict)
        The filtered data (the users table keeps only kept subjects' rows;
        unused categories are dropped, so no excluded id hides in a
        categorical dtype) and the exclusions: counts of events and subjects
        kept and excluded per reason (:data:`EXCLUSION_REASONS`).

    Raises
    ------
    ConfigError
        ``purpose`` is not in the pack's consent section.
    """
    codes, subjects = subject_codes(dataset.events["user_id"])
    rules = subject_rules(pack, store, subjects, purpose=purpose, now=now)
    verdict = _event_reasons(dataset.events, codes, rules.subjects, rules.reason, rules.reading, rules.cutoff)
    keep = verdict.event_reason == 0
    filtered, kept_subjects = _kept_data(dataset, codes, keep)
    report = exclusion_report(pack, rules, ExclusionCounts.of(verdict, kept_subjects))
    if record and (record_empty or len(filtered.events)):
        record_filtering(store, pack, *dataset.content_hashes(keep, filtered), report, actor=actor)
    return filtered, report


@dataclass(frozen=True)
class SubjectRules:
    """The pack's verdict on each subject of a data set for one purpose, and the limits its events are held to.

    What every engine that filters a training set shares (this module's pandas path and the Spark
    path of :mod:`governance.spark`): the store is read once here, and each engine only broadcasts
    these per-subject codes and times to its events, in the order of :func:`_event_reasons`.
    """

    purpose: str
    config: ConsentPurpose
    moment: datetime
    """The ``now`` the retention window is measured from (aware)."""
    cutoff: datetime | None
    """Events before it are out (``minimization.retention_days``); None: no retention limit."""
    subjects: list[str]
    """The subjects, sorted (the order of every array here)."""
    reason: np.ndarray
    """int8 per subject: its consent reason code into :data:`EXCLUSION_REASONS` (0: may be profiled)."""
    erased_until: np.ndarray
    """naive UTC ``datetime64[ns]`` per subject: their latest erasure (NaT: never erased)."""
    reading: ConsentReading


REASON_CODES: dict[str, int] = dict(_CODE)
"""The reason code of each exclusion reason (0 is "kept")."""


def subject_rules(
    pack: LoadedPack | PolicyPack, store: Any, subjects: list[str], *, purpose: str = "personalization", now: datetime | None = None
) -> SubjectRules:
    """Read the store once for ``subjects`` (sorted, distinct) and give each its consent verdict and erasure time.

    Raises
    ------
    ConfigError
        ``purpose`` is not in the pack's consent section.
    """
    policy = pack_policy(pack)
    config = _purpose_config(policy, purpose)
    moment = as_moment(now, "now")
    need_basis = config.model == "opt_in" and config.lawful_basis == "consent"
    reading = _read_consent(store, subjects, purpose, need_basis=need_basis)
    reason = _subject_reasons(subjects, reading, config, need_basis=need_basis)
    cutoff = None
    if policy.minimization.retention_days is not None:
        cutoff = moment - timedelta(days=policy.minimization.retention_days)
    if reading.suppressed:
        until = erased_until(subjects, dict(reading.suppressed))
    else:
        until = np.full(len(subjects), np.datetime64("NaT"), dtype="datetime64[ns]")
    return SubjectRules(purpose, config, moment, cutoff, subjects, reason, until, reading)


def exclusion_report(pack: LoadedPack | PolicyPack, rules: SubjectRules, counts: ExclusionCounts) -> dict[str, Any]:
    """The exclusions report of a filtered training set (plain JSON; see :func:`filter_training_events`)."""
    policy = pack_policy(pack)
    config = rules.config
    return {
        "purpose": rules.purpose,
        "lawful_basis": config.lawful_basis,
        "model": config.model,
        "legal_reference": config.legal_reference,
        **pack_stamp(pack),
        "now": rules.moment.isoformat(),
        "retention_days": policy.minimization.retention_days,
        "cutoff": rules.cutoff.isoformat() if rules.cutoff else None,
        "events": counts.events(),
        "subjects": counts.subjects(),
        "reasons": dict(EXCLUSION_REASONS),
        ERASURES_SEEN: rules.reading.erasures_read_at,
    }


def _purpose_config(policy: PolicyPack, purpose: str) -> ConsentPurpose:
    """The pack's rules for ``purpose``; an unlisted purpose has no lawful basis here, so it is refused."""
    config = policy.consent.purposes.get(purpose)
    if config is None:
        listed = ", ".join(sorted(policy.consent.purposes)) or "none"
        raise ConfigError(UNLISTED_PURPOSE.format(purpose=purpose, pack=policy.metadata.name, listed=listed))
    return config


def _read_consent(store: Any, subjects: list[str], purpose: str, *, need_basis: bool) -> ConsentReading:
    """Read, in one transaction and in bulk, what decides each subject's consent for ``purpose``.

    The trail head is read before the suppression rows (see
    :mod:`governance.suppressed`): every erasure at or below it was seen.
    """
    with store.session() as session:
        erasures_read_at = suppressions_read_at(session)
        names = lookup_pseudonyms(session, subjects)
        known = sorted({p for p in names.values() if p is not None})
        states = consent_states(session, known)
        status = [states.get(names[s], {}).get(purpose) if names[s] else None for s in subjects]
        suppressed = suppressions_for(session, subjects)
        if suppressed:
            status = _with_suppressions(session, subjects, names, status, suppressed, purpose)
        bases: dict[str, str] = {}
        if need_basis:
            granted = [names[s] for s, st in zip(subjects, status) if st == "granted"]
            bases = {p: r.lawful_basis for p, r in _records_in_force(session, granted, purpose).items()}
    return ConsentReading(
        pseudonyms=names, status=status, suppressed=suppressed, bases=bases, erasures_read_at=erasures_read_at
    )


def _subject_reasons(
    subjects: list[str], reading: ConsentReading, config: ConsentPurpose, *, need_basis: bool
) -> np.ndarray:
    """Per subject, the reason code of the consent rules of ``may_profile`` (0: may be profiled)."""
    reasons = np.zeros(len(subjects), dtype=np.int8)
    for index, (subject, status) in enumerate(zip(subjects, reading.status)):
        if status in _CONSENT_REASONS:
            reasons[index] = _CODE[status]
        elif status is None and config.model == "opt_in":
            reasons[index] = _CODE["no_consent_record"]
        elif need_basis and status == "granted" and reading.bases.get(reading.pseudonyms[subject]) != "consent":
            reasons[index] = _CODE["wrong_basis"]
    return reasons


def _event_reasons(
    events: pd.DataFrame,
    codes: np.ndarray,
    subjects: list[str],
    subject_reason: np.ndarray,
    reading: ConsentReading,
    cutoff: datetime | None,
) -> Verdict:
    """Broadcast the subjects' reasons to their events, then apply the per-event rules in order.

    An event keeps the first reason that excludes it: its subject's consent, no
    subject at all, the subject's erasure, then retention.
    """
    # codes of events without a subject are -1: the extra last entry gives them their reason
    event_reason = np.append(subject_reason, np.int8(_CODE["missing_subject_id"]))[codes]
    stamps = None
    erased_subjects = 0
    if reading.suppressed:
        stamps = event_times(events)
        event_reason, erased_subjects = _erased_events(
            stamps, codes, subjects, subject_reason, event_reason, reading.suppressed
        )
    if cutoff is not None:
        stamps = event_times(events) if stamps is None else stamps
        young = stamps >= pd.Timestamp(cutoff).tz_convert("UTC").tz_localize(None).to_datetime64()  # False for NaT
        event_reason = np.where((event_reason == 0) & ~young, _CODE["retention"], event_reason).astype(np.int8)
    return Verdict(subject_reason=subject_reason, event_reason=event_reason, erased_subjects=erased_subjects)


def _erased_events(
    stamps: np.ndarray,
    codes: np.ndarray,
    subjects: list[str],
    subject_reason: np.ndarray,
    event_reason: np.ndarray,
    suppressed: Mapping[str, SuppressionEntry],
) -> tuple[np.ndarray, int]:
    """``event_reason`` with erased subjects' events from up to their erasure marked ``erased``, and how
    many subjects allowed by consent lost every event to it.

    Per subject, the latest erasure time (NaT: none); an event at or before it,
    or of unknown time, goes. Events after it are a new history and stay.
    """
    until = erased_until(subjects, dict(suppressed))
    limit = np.append(until, np.datetime64("NaT", "ns"))[codes]
    fresh = stamps > limit  # False where either is NaT
    gone = (event_reason == 0) & ~np.isnat(limit) & ~fresh
    event_reason = np.where(gone, _CODE["erased"], event_reason).astype(np.int8)
    alive = _subject_mask(codes[event_reason == 0], len(subjects))
    lost = _subject_mask(codes[gone], len(subjects))
    erased_subjects = int(np.count_nonzero(lost & (subject_reason == 0) & ~alive))
    return event_reason, erased_subjects


def _subject_mask(codes: np.ndarray, n_subjects: int) -> np.ndarray:
    """Per subject, whether any of ``codes`` (-1: no subject, ignored) names it: a bincount, not a sort of every event."""
    return np.bincount(codes[codes >= 0], minlength=n_subjects) > 0


def _distinct_subjects(codes: np.ndarray) -> int:
    """How many distinct subjects ``codes`` name (-1: no subject)."""
    named = codes[codes >= 0]
    return int(np.count_nonzero(np.bincount(named))) if len(named) else 0


def _kept_data(dataset: Dataset, codes: np.ndarray, keep: np.ndarray) -> tuple[Dataset, int]:
    """The data set of the kept events (:meth:`~recommender.data.Dataset.subset`: the rating scale and
    column origins stay, unused categories go, so no excluded id hides in a categorical dtype, and the
    users table keeps only the kept subjects' rows), and how many subjects they name."""
    kept_subjects = _distinct_subjects(codes[keep])
    return dataset.subset(keep), kept_subjects


def record_filtering(
    store: Any, pack: LoadedPack | PolicyPack, before: str, after: str, report: dict[str, Any], *, actor: str | None
) -> None:
    """Add the data hashes (``before`` and ``after`` filtering) to ``report`` and append the
    ``privacy.training_filtered`` trail event.

    A second, short transaction: no lock is held while the data is hashed.
    """
    policy = pack_policy(pack)
    policy_name = f"{policy.metadata.name}@{policy.metadata.version}"
    report["dataset"] = {"before": before, "after": after}
    with store.session() as session:
        append_event(
            session,
            actor=actor_name(actor),
            action="privacy.training_filtered",
            objects={"dataset": before, "policy": policy_name},
            payload={k: report[k] for k in _REPORT_IN_TRAIL},
        )


def _with_suppressions(
    session: Session,
    subjects: list[str],
    names: Mapping[str, str | None],
    status: list[str | None],
    suppressed: Mapping[str, SuppressionEntry],
    purpose: str,
) -> list[str | None]:
    """``status`` with the restrictions kept by suppression records applied.

    A suppression acts as a record at its erasure time: it is in force unless
    the subject's own latest record for ``purpose`` is later (or as late and
    at least as restrictive), as :func:`governance.consent.state.effective_state` orders records.
    """
    held = [s for s in subjects if s in suppressed and purpose in suppressed[s].denied]
    if not held:
        return status
    pseudonyms = [names[s] for s in held if names[s]]
    latest = _records_in_force(session, pseudonyms, purpose)
    position = {s: i for i, s in enumerate(subjects)}
    out = list(status)
    for subject in held:
        kept = suppressed[subject]
        kept_status = kept.denied[purpose]["status"]
        own = latest.get(names[subject]) if names[subject] else None
        at_erasure = (kept.erased_at, CONSENT_RESTRICTIVENESS[kept_status])
        if own is None or (own.recorded_at, own.restrictiveness) <= at_erasure:
            out[position[subject]] = kept_status
    return out


class _InForce(NamedTuple):
    """The record in force for a purpose, as :func:`governance.consent.state.effective_state` orders records."""

    recorded_at: datetime
    restrictiveness: int
    status: str
    lawful_basis: str


def _records_in_force(session: Session, pseudonyms: list[str], purpose: str) -> dict[str, _InForce]:
    """The record in force for ``purpose`` per pseudonym, in one query.

    ``consent_states`` gives the status in force but not its time or basis,
    which the suppression and wrong-basis rules need; ties are broken as it
    does (latest time, then most restrictive, then highest id).
    """
    if not pseudonyms:
        return {}
    table = ConsentRecordRow
    query = select(table.subject, table.status, table.lawful_basis, table.recorded_at, table.id).where(
        table.purpose == purpose, in_values(session, table.subject, pseudonyms)
    )
    best: dict[str, tuple[tuple[Any, int, int], _InForce]] = {}
    for subject, status, basis, recorded_at, row_id in session.execute(query):
        restrictiveness = CONSENT_RESTRICTIVENESS.get(status, -1)
        key = (recorded_at, restrictiveness, row_id)
        if subject not in best or key > best[subject][0]:
            best[subject] = (key, _InForce(recorded_at, restrictiveness, status, basis))
    return {subject: record for subject, (_, record) in best.items()}
