"""Privacy by construction at training time: a training set holds only what the pack allows.

:func:`filter_training_events` keeps the events of subjects the pack allows to
be profiled for its purpose (the rules of ``may_profile``, read from the store in
bulk, with the suppression records that outlive an erasure), drops an erased
subject's events from before their erasure, and events older than
``minimization.retention_days``; it reports how many events and subjects it left
out and why (:data:`EXCLUSION_REASONS`), and the trail position its suppression
reads saw (so serving can tell whether a model may hold an erasure).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

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
from audits.suppression import suppressions_for
from audits.trail import append_event
from governance.policy import LoadedPack, PolicyPack
from governance.privacy_common import UNLISTED_PURPOSE, as_moment, pack_policy, pack_stamp
from governance.suppressed import ERASURES_SEEN, erased_until, suppressions_read_at
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = ["EXCLUSION_REASONS", "filter_training_events"]

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


def _latest_bases(session: Session, pseudonyms: list[str], purpose: str) -> dict[str, str]:
    """The lawful basis of the record in force for ``purpose``, per pseudonym, in one query.

    ``consent_states`` gives the status in force but not its basis, which the
    wrong-basis rule of ``may_profile`` needs; ties are broken as it does
    (latest time, then most restrictive, then highest id).
    """
    if not pseudonyms:
        return {}
    table = ConsentRecordRow
    query = select(table.subject, table.status, table.lawful_basis, table.recorded_at, table.id).where(
        table.purpose == purpose, in_values(session, table.subject, pseudonyms)
    )
    best: dict[str, tuple[Any, ...]] = {}
    for subject, status, basis, recorded_at, row_id in session.execute(query):
        key = (recorded_at, CONSENT_RESTRICTIVENESS.get(status, -1), row_id)
        if subject not in best or key > best[subject][0]:
            best[subject] = (key, basis)
    return {subject: basis for subject, (_, basis) in best.items()}


def filter_training_events(
    dataset: Dataset,
    pack: LoadedPack | PolicyPack,
    store: Any,
    *,
    purpose: str = "personalization",
    now: datetime | None = None,
    record: bool = True,
    actor: str | None = None,
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
    the counts and the hashes of the data before and after.

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
    policy = pack_policy(pack)
    config = policy.consent.purposes.get(purpose)
    if config is None:
        listed = ", ".join(sorted(policy.consent.purposes)) or "none"
        raise ConfigError(UNLISTED_PURPOSE.format(purpose=purpose, pack=policy.metadata.name, listed=listed))
    moment = as_moment(now, "now")
    reasons = list(EXCLUSION_REASONS)
    code_of = {name: index + 1 for index, name in enumerate(reasons)}  # 0 is "kept"

    events = dataset.events
    codes, uniques = pd.factorize(events["user_id"].astype("string"), sort=True)
    subjects = [str(u) for u in uniques]
    need_basis = config.model == "opt_in" and config.lawful_basis == "consent"

    with store.session() as session:
        erasures_read_at = suppressions_read_at(session)  # before the suppression rows (see governance.suppressed)
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
            bases = _latest_bases(session, granted, purpose)

    subject_reason = np.zeros(len(subjects), dtype=np.int8)
    for index, (subject, st) in enumerate(zip(subjects, status)):
        if st in _CONSENT_REASONS:
            subject_reason[index] = code_of[st]
        elif st is None and config.model == "opt_in":
            subject_reason[index] = code_of["no_consent_record"]
        elif need_basis and st == "granted" and bases.get(names[subject]) != "consent":
            subject_reason[index] = code_of["wrong_basis"]

    # codes of events without a subject are -1: the extra last entry gives them their reason
    event_reason = np.append(subject_reason, np.int8(code_of["missing_subject_id"]))[codes]
    stamps = None
    erased_subjects = 0
    if suppressed:
        # Per subject, the latest erasure time (NaT: none); an event at or before it, or of unknown time, goes.
        until = erased_until(subjects, suppressed)
        stamps = pd.to_datetime(events["timestamp"], utc=True)
        limit = np.append(until, np.datetime64("NaT", "ns"))[codes]
        fresh = stamps.to_numpy(dtype="datetime64[ns]") > limit  # False where either is NaT
        gone = (event_reason == 0) & ~np.isnat(limit) & ~fresh
        event_reason = np.where(gone, code_of["erased"], event_reason).astype(np.int8)
        alive = set(np.unique(codes[(event_reason == 0) & (codes >= 0)]).tolist())
        erased_subjects = sum(
            1 for c in np.unique(codes[gone]).tolist() if c >= 0 and subject_reason[c] == 0 and c not in alive
        )
    cutoff = None
    if policy.minimization.retention_days is not None:
        cutoff = moment - timedelta(days=policy.minimization.retention_days)
        stamps = pd.to_datetime(events["timestamp"], utc=True) if stamps is None else stamps
        young = np.asarray(stamps >= pd.Timestamp(cutoff), dtype=bool)
        event_reason = np.where((event_reason == 0) & ~young, code_of["retention"], event_reason).astype(np.int8)

    keep = event_reason == 0
    kept_events = events.loc[keep].reset_index(drop=True)
    for column in ("user_id", "item_id"):
        if isinstance(kept_events[column].dtype, pd.CategoricalDtype):
            kept_events[column] = kept_events[column].cat.remove_unused_categories()
    kept_codes = np.unique(codes[keep])
    kept_subjects = {subjects[c] for c in kept_codes if c >= 0}
    users = dataset.users
    if users is not None and len(users):
        users = users.loc[np.asarray(users.index.astype(str).isin(list(kept_subjects)), dtype=bool)]
    filtered = Dataset(events=kept_events, users=users, items=dataset.items, name=dataset.name, source=dataset.source)

    event_counts = np.bincount(event_reason, minlength=len(reasons) + 1)
    subject_counts = np.bincount(subject_reason, minlength=len(reasons) + 1)
    consented = int(subject_counts[0])
    aged_out = consented - len(kept_subjects) - erased_subjects
    subjects_excluded = {name: int(subject_counts[code_of[name]]) for name in reasons}
    subjects_excluded["erased"] = erased_subjects
    subjects_excluded["retention"] = aged_out
    report: dict[str, Any] = {
        "purpose": purpose,
        "lawful_basis": config.lawful_basis,
        "model": config.model,
        "legal_reference": config.legal_reference,
        **pack_stamp(pack),
        "now": moment.isoformat(),
        "retention_days": policy.minimization.retention_days,
        "cutoff": cutoff.isoformat() if cutoff else None,
        "events": {
            "total": len(events),
            "kept": int(keep.sum()),
            "excluded": {name: int(event_counts[code_of[name]]) for name in reasons},
        },
        "subjects": {
            "total": len(subjects),
            "kept": len(kept_subjects),
            "excluded": subjects_excluded,
        },
        "reasons": dict(EXCLUSION_REASONS),
        ERASURES_SEEN: erasures_read_at,
    }
    if record:  # a second, short transaction: no lock is held while the data is hashed
        before, after = dataset.content_hash(), filtered.content_hash()
        report["dataset"] = {"before": before, "after": after}
        with store.session() as session:
            append_event(
                session,
                actor=actor_name(actor),
                action="privacy.training_filtered",
                objects={"dataset": before, "policy": f"{policy.metadata.name}@{policy.metadata.version}"},
                payload={
                    k: report[k] for k in ("purpose", "now", "cutoff", "events", "subjects", "dataset", "pack_hash")
                },
            )
    return filtered, report


def _with_suppressions(
    session: Session,
    subjects: list[str],
    names: Mapping[str, str | None],
    status: list[str | None],
    suppressed: Mapping[str, Any],
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
    latest = _latest_records(session, pseudonyms, purpose) if pseudonyms else {}
    position = {s: i for i, s in enumerate(subjects)}
    out = list(status)
    for subject in held:
        kept = suppressed[subject]
        kept_status = kept.denied[purpose]["status"]
        own = latest.get(names[subject]) if names[subject] else None
        if own is None or (own[0], own[1]) <= (kept.erased_at, CONSENT_RESTRICTIVENESS[kept_status]):
            out[position[subject]] = kept_status
    return out


def _latest_records(session: Session, pseudonyms: list[str], purpose: str) -> dict[str, tuple[Any, int, str]]:
    """The record in force for ``purpose`` per pseudonym: (time, restrictiveness, status), in one query."""
    table = ConsentRecordRow
    query = select(table.subject, table.status, table.recorded_at, table.id).where(
        table.purpose == purpose, in_values(session, table.subject, pseudonyms)
    )
    best: dict[str, tuple[Any, int, int, str]] = {}
    for subject, status, recorded_at, row_id in session.execute(query):
        key = (recorded_at, CONSENT_RESTRICTIVENESS.get(status, -1), row_id, status)
        if subject not in best or key[:3] > best[subject][:3]:
            best[subject] = key
    return {subject: (k[0], k[1], k[3]) for subject, k in best.items()}


# -- models that may hold a subject ----------------------------------------------------------
