"""Consent: what a subject has agreed to, and recording it under the pack (GDPR Art. 6(1)(a), 7, 21).

* :func:`show_consent` -- a subject's consent history and what the pack lets
  recgov do with their data now.
* :func:`check_consent_change` then :func:`record_consent_change` -- the one
  path of a consent record given by a person or an operator (``recgov consent
  set``, ``POST /v1/consent``): the purpose is the pack's, the basis comes from
  the pack or is given, the evidence backs the source, and the record is
  appended with what the pack says follows (a withdrawal of a purpose with
  ``erase_on_withdrawal`` opens an erasure request). The callers only say the
  errors their way (:class:`UnlistedConsentPurpose`, :class:`BasisRequired`,
  :class:`~governance.consent.evidence.EvidenceError`).
  :func:`record_consent_under_pack` is the recording step for a record
  checked elsewhere.
* :func:`record_consent_from_request` -- record the ``Sec-GPC: 1`` signal and a
  TCF string carried by a request as consent records (:func:`_tcf_plan` decides
  what a TC string may say under the pack).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audits import consent_history, lookup_pseudonyms, open_request, record_consent
from audits.consent_write import ConsentWrite
from audits.models import CONSENT_RESTRICTIVENESS, LAWFUL_BASES
from governance.consent.evidence import check_consent_evidence
from governance.consent.gpc import gpc_opt_out
from governance.consent.state import MSG_VENDOR_REQUIRED, ConsentRecord, may_profile
from governance.consent.tcf import decode_tc_string, tc_evidence, tcf_allows_profiling
from governance.policy import LoadedPack, PolicyPack
from governance.privacy.common import (
    UNLISTED_PURPOSE,
    as_moment,
    as_subject,
    iso,
    pack_policy,
    pending_erasure,
    plain,
    request_deadline,
)
from recommender.errors import ConfigError

__all__ = [
    "BASIS_REQUIRED",
    "UNLISTED_CONSENT_PURPOSE",
    "BasisRequired",
    "CheckedConsent",
    "ConsentChange",
    "UnlistedConsentPurpose",
    "check_consent_change",
    "record_consent_change",
    "TCF_NOT_A_SOURCE",
    "TCF_OLDER_THAN_RECORD",
    "TCF_STRING_UNUSABLE",
    "WITHDRAWAL_STATUSES",
    "consent_records",
    "history_json",
    "record_consent_from_request",
    "plan_request_signals",
    "record_request_signals",
    "request_signals_unchanged",
    "record_consent_under_pack",
    "show_consent",
]

def consent_records(history: Iterable[Mapping[str, Any]]) -> list[ConsentRecord]:
    return [
        ConsentRecord(
            purpose=r["purpose"],
            status=r["status"],
            lawful_basis=r["lawful_basis"],
            source=r["source"],
            time=r["recorded_at"],
            evidence=r["evidence"] or {},
        )
        for r in history
    ]


def history_json(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "recorded_at": iso(r["recorded_at"]),
            "purpose": r["purpose"],
            "status": r["status"],
            "lawful_basis": r["lawful_basis"],
            "source": r["source"],
            "jurisdiction": r["jurisdiction"],
            "evidence": plain(r["evidence"]),
            "trail_seq": r["trail_seq"],
        }
        for r in history
    ]


def show_consent(store: Any, subject_id: str | int, *, pack: LoadedPack | PolicyPack | None = None) -> dict[str, Any]:
    """A subject's consent as the DPO sees it: pseudonym, history, record in force per purpose, and
    (with a pack) whether each purpose may profile them now, with the reason.

    A read: it creates no pseudonym secret and records nothing. The subject is
    named by pseudonym only (``None`` when recgov has no record under this id).
    """
    subject = as_subject(subject_id)
    policy = pack_policy(pack) if pack is not None else None
    with store.session() as session:
        who = lookup_pseudonyms(session, [subject])[subject]
        history = consent_history(session, subject)
    entries = history_json(history)
    in_force: dict[str, Any] = {}
    for entry in entries:  # oldest first: later ones replace
        in_force[entry["purpose"]] = entry
    profiling = None
    if policy is not None:
        records = consent_records(history)
        profiling = {}
        for purpose in sorted(policy.consent.purposes):
            decision = may_profile(policy.consent, records, purpose=purpose)
            profiling[purpose] = {"allowed": decision.allowed, "reason": decision.reason}
    return {"subject": who, "history": entries, "in_force": dict(sorted(in_force.items())), "profiling": profiling}


WITHDRAWAL_STATUSES = ("withdrawn", "objected", "opted_out")
"""Consent statuses that end a purpose's processing (and may ask for erasure, see ``erase_on_withdrawal``)."""


UNLISTED_CONSENT_PURPOSE = "purpose {purpose!r} is not one of pack {pack}'s consent purposes ({listed})"
BASIS_REQUIRED = "a lawful basis is needed without a pack (one of {allowed}); with a pack it defaults to the purpose's"


class UnlistedConsentPurpose(ConfigError):
    """A consent record for a purpose the pack does not list; ``purpose``, ``pack`` and ``listed`` let a caller say it its way."""

    def __init__(self, purpose: str, pack: str, listed: str) -> None:
        super().__init__(UNLISTED_CONSENT_PURPOSE.format(purpose=purpose, pack=pack, listed=listed))
        self.purpose, self.pack, self.listed = purpose, pack, listed


class BasisRequired(ConfigError):
    """A consent record without a lawful basis, and no pack to take the purpose's from."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(BASIS_REQUIRED.format(allowed=", ".join(allowed)))
        self.allowed = allowed


@dataclass(frozen=True, slots=True)
class CheckedConsent:
    """A consent record ready to append: its purpose is the pack's, its basis settled, its evidence checked."""

    purpose: str
    status: str
    lawful_basis: str
    source: str
    evidence: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """What recording a consent record did: the record, and the erasure request the pack opened or found (or None)."""

    record: Any
    erasure_request: Any = None

    def erasure_json(self) -> dict[str, Any] | None:
        """The erasure request as the CLI and the API show it: id, status, deadline."""
        e = self.erasure_request
        return None if e is None else {"id": e.id, "status": e.status, "deadline": e.deadline.isoformat()}


def check_consent_change(
    pack: LoadedPack | None,
    *,
    purpose: str,
    status: str,
    source: str,
    lawful_basis: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> CheckedConsent:
    """Check one consent record against the pack in force (or none), before anything is written.

    With a pack, the purpose must be one of its own (:class:`UnlistedConsentPurpose`)
    and the basis defaults to the purpose's; without one the basis is required
    (:class:`BasisRequired`). The evidence must back the source and status
    (:func:`governance.consent.evidence.check_consent_evidence`, raising
    :class:`~governance.consent.evidence.EvidenceError`); the evidence returned
    is what to store.
    """
    section = None
    if pack is not None:
        purposes = pack.pack.consent.purposes
        if purpose not in purposes:
            raise UnlistedConsentPurpose(purpose, pack.name, ", ".join(sorted(purposes)) or "none")
        lawful_basis = lawful_basis or purposes[purpose].lawful_basis
        section = pack.pack.consent
    elif lawful_basis is None:
        raise BasisRequired(LAWFUL_BASES)
    checked = check_consent_evidence(
        source=source, status=status, lawful_basis=lawful_basis, purpose=purpose, evidence=evidence, section=section
    )
    return CheckedConsent(purpose=purpose, status=status, lawful_basis=lawful_basis, source=source, evidence=checked)


def record_consent_change(
    session: Session,
    pack: LoadedPack | None,
    change: CheckedConsent,
    *,
    subject_id: str | int,
    jurisdiction: str | None = None,
    actor: str | None = None,
) -> ConsentChange:
    """Append ``change`` for the subject and apply what ``pack`` says follows from it, in the caller's transaction.

    A withdrawal, objection or opt-out of a purpose with ``erase_on_withdrawal``
    opens an erasure request due within the pack's ``requests.erasure_days``
    (unless one is already waiting, which is returned instead).
    """
    row = record_consent(
        session, subject_id=subject_id, purpose=change.purpose, status=change.status, lawful_basis=change.lawful_basis,
        source=change.source, evidence=change.evidence, jurisdiction=jurisdiction, actor=actor,
        vocabulary=() if pack is None else pack_policy(pack).consent.purposes,
    )  # fmt: skip
    if pack is None:
        return ConsentChange(record=row)
    return ConsentChange(record=row, erasure_request=_erasure_on_withdrawal(session, pack, row, subject_id, actor))


def _erasure_on_withdrawal(session: Session, pack: Any, row: Any, subject_id: str | int, actor: str | None) -> Any:
    """The erasure request a withdrawal under ``pack`` opens (or the one already waiting); None when none follows."""
    policy = pack.pack.consent.purposes.get(row.purpose)
    if policy is None or not policy.erase_on_withdrawal or row.status not in WITHDRAWAL_STATUSES:
        return None
    pending = pending_erasure(session, subject_id)
    if pending is not None:
        return pending
    days, basis = request_deadline(pack, "erasure")
    return open_request(
        session, subject_id=subject_id, kind="erasure", deadline_days=days, actor=actor,
        details={"trigger": row.status, "purpose": row.purpose, "consent_record": row.id, "pack": pack.name, "deadline_basis": basis},
    )  # fmt: skip


def record_consent_under_pack(
    session: Session,
    loaded: Any,
    *,
    subject_id: str | int,
    purpose: str,
    status: str,
    lawful_basis: str,
    source: str,
    evidence: dict[str, Any] | None = None,
    jurisdiction: str | None = None,
    actor: str | None = None,
) -> tuple[Any, Any]:
    """:func:`record_consent_change` for a record checked elsewhere; returns ``(record, erasure request or None)``."""
    change = CheckedConsent(purpose=purpose, status=status, lawful_basis=lawful_basis, source=source, evidence=evidence)
    done = record_consent_change(session, loaded, change, subject_id=subject_id, jurisdiction=jurisdiction, actor=actor)
    return done.record, done.erasure_request


# -- consent from a request's signals -----------------------------------------------------------
TCF_NOT_A_SOURCE = "the pack does not let a TC string grant (consent.tcf.grants is false): a TC string can only refuse"
TCF_OLDER_THAN_RECORD = (
    "the TC string was last updated {updated}, before the record in force ({record} at {recorded}): "
    "it cannot undo a later choice"
)
TCF_STRING_UNUSABLE = "the TC string cannot be used: {failures}"


def _tcf_plan(
    tc: Any, text: str, vendor_id: int, requirements: Any, previous: Mapping[str, Any] | None, moment: datetime
) -> tuple[dict[str, Any], tuple[str, str, str, str, dict[str, Any]] | None, dict[str, Any] | None]:
    """What a TC string leads to: ``(outcome["tcf"], the record to write or None, an "ignored" entry or None)``.

    A string that meets the pack's ``consent.tcf`` requirements grants (where the pack lets TCF
    grant, and unless a later choice is on record); one that does not, for a reason about the
    user's choices (a purpose, the vendor, a publisher restriction), refuses: ``withdrawn`` over
    a grant, else ``denied``. A string unusable in itself (policy version, age) records nothing.
    """
    decision = tcf_allows_profiling(tc, vendor_id, requirements, now=moment)
    outcome = {"allowed": decision.allowed, "reason": decision.reason}
    evidence = {"tc_string": text, **tc_evidence(tc, vendor_id, decision)}
    if decision.string_failures:
        return outcome, None, {"signal": "tcf", "reason": TCF_STRING_UNUSABLE.format(failures="; ".join(decision.string_failures))}
    if not decision.allowed:
        status = "withdrawn" if previous is not None and previous["status"] == "granted" else "denied"
        return outcome, (requirements.purpose, status, "consent", "tcf", evidence), None
    if not requirements.grants:
        return outcome, None, {"signal": "tcf", "reason": TCF_NOT_A_SOURCE}
    if previous is not None and previous["status"] != "granted" and previous["recorded_at"] > tc.last_updated:
        reason = TCF_OLDER_THAN_RECORD.format(
            updated=tc.last_updated.isoformat(), record=f"{previous['status']} via {previous['source']}",
            recorded=previous["recorded_at"].isoformat(),
        )  # fmt: skip
        return outcome, None, {"signal": "tcf", "reason": reason}
    return outcome, (requirements.purpose, "granted", "consent", "tcf", evidence), None


def record_consent_from_request(
    store: Any,
    subject_id: str | int,
    *,
    pack: LoadedPack | PolicyPack,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tcf: str | None = None,
    vendor_id: int | None = None,
    jurisdiction: str | None = None,
    at: datetime | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Record the consent signals a request carries: GPC and a TCF string.

    * ``Sec-GPC: 1`` in ``headers`` (when the pack honours GPC): an
      ``opted_out`` record, source ``gpc``, for every ``opt_out`` purpose of the
      pack (CCPA regs §7025; GDPR Art. 21(5)). Opt-in purposes already need a grant.
    * ``tcf``, a TC string, judged for ``vendor_id`` (default: the pack's
      ``consent.tcf.vendor_id``) under the pack's ``consent.tcf`` requirements
      (IAB TCF v2.2: purpose 1 and the mapped purposes, vendor consent or the
      allowed legitimate interest, publisher restrictions, policy version, age),
      for the pack purpose ``consent.tcf.purpose``, source ``tcf``, basis
      ``consent``, the string as evidence: ``granted`` when it meets them and
      the pack lets TCF grant (``consent.tcf.grants``) and no later choice is on
      record; when it does not meet them for a reason about the user's choices,
      ``withdrawn`` over a grant, else ``denied``; nothing (an ``ignored`` entry
      saying why) when the string is unusable in itself (made under an older
      policy, too old, dated in the future) or may not grant.

    A signal that only repeats the record in force (same status and source;
    for TCF, the same string) is not recorded again, so a request path can call
    this on every request (and :func:`request_signals_unchanged` tells, from a
    history already read, whether there is anything to record at all). All
    records of one call share one time.

    Returns ``{"gpc", "tcf", "recorded", "unchanged", "ignored"}`` (no raw id).
    """
    outcome, _ = record_request_signals(
        store, subject_id, pack=pack, headers=headers, tcf=tcf, vendor_id=vendor_id, jurisdiction=jurisdiction, at=at, actor=actor
    )
    return outcome


def record_request_signals(
    store: Any,
    subject_id: str | int,
    *,
    pack: LoadedPack | PolicyPack,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tcf: str | None = None,
    vendor_id: int | None = None,
    jurisdiction: str | None = None,
    at: datetime | None = None,
    actor: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`record_consent_from_request`, and the subject's consent history with what it recorded.

    The history is :func:`audits.consent_history`'s (suppressions included) as of
    the recording transaction: what it read before writing, with the rows it
    wrote, in the same order a read after the commit gives (a test holds them
    equal). A serving path decides the request on it without reading the
    history a second time.
    """
    subject = as_subject(subject_id)
    moment = as_moment(at, "at")
    signals = _RequestSignals.of(pack, headers, tcf, vendor_id)
    with store.session() as session:
        history = consent_history(session, subject)
        in_force: dict[str, dict[str, Any]] = {}
        for record in history:  # oldest first: later ones replace (as audits.effective_consent)
            in_force[record["purpose"]] = record
        outcome, writes = signals.plan(in_force if signals.any else {}, moment)
        for purpose, status, basis, source, evidence in writes:
            row = record_consent(
                session,
                subject_id=subject,
                purpose=purpose,
                status=status,
                lawful_basis=basis,
                source=source,
                evidence=evidence,
                jurisdiction=jurisdiction,
                at=moment,
                actor=actor,
                vocabulary=pack_policy(pack).consent.purposes,
            )
            outcome["recorded"].append(
                {"id": row.id, "purpose": purpose, "status": status, "source": source, "trail_seq": row.trail_seq}
            )
            history.append(
                {
                    "id": row.id, "purpose": purpose, "status": status, "lawful_basis": basis, "source": source,
                    "evidence": row.evidence, "jurisdiction": jurisdiction, "recorded_at": row.recorded_at, "trail_seq": row.trail_seq,
                }
            )  # fmt: skip
    history.sort(key=lambda r: (r["recorded_at"], CONSENT_RESTRICTIVENESS[r["status"]], r["id"]))
    return outcome, history


def request_signals_unchanged(
    history: Iterable[Mapping[str, Any]],
    *,
    pack: LoadedPack | PolicyPack,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tcf: str | None = None,
    vendor_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any] | None:
    """What :func:`record_consent_from_request` would answer, when it would record nothing; else None.

    ``history``: the subject's consent history as read now (oldest first, with
    the suppressions an erasure kept: :func:`audits.consent.read_consent_history`).
    A browser that sends ``Sec-GPC: 1`` sends it on every request, and a CMP's
    TC string repeats until the user chooses again: once the signal is on
    record, a request that carries it again only reads. A serving path can then
    decide the request without a write (and so without waiting for one), on
    the same judgement the recording path makes. None when the signal would
    record something (the caller records it with
    :func:`record_consent_from_request`, which judges again under its own
    transaction). Raises as that function does for a pack that cannot judge a
    TC string.
    """
    signals = _RequestSignals.of(pack, headers, tcf, vendor_id)
    in_force: dict[str, dict[str, Any]] = {}
    for record in history:  # oldest first: later ones replace (as audits.consent.effective_consent)
        in_force[record["purpose"]] = dict(record)
    outcome, writes = signals.plan(in_force, as_moment(at, "at"))
    return None if writes else outcome


def plan_request_signals(
    history: Iterable[Mapping[str, Any]],
    *,
    pack: LoadedPack | PolicyPack,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tcf: str | None = None,
    at: datetime | None = None,
    actor: str | None = None,
) -> tuple[dict[str, Any], tuple[ConsentWrite, ...], list[dict[str, Any]]]:
    """What :func:`record_request_signals` would record over ``history`` (read now), without writing it.

    Returns the outcome (its ``recorded`` entries without ``id`` and
    ``trail_seq``, known once written), the records to write
    (:class:`audits.consent_write.ConsentWrite`, all at one time), and the
    history with them in it, in the order a read after the write gives. A
    serving path decides the list on that history and gives the records to the
    decision log with the decision (one transaction, :mod:`audits.consent_write`);
    it fills ``id`` and ``trail_seq`` from the decision's receipt.
    """
    signals = _RequestSignals.of(pack, headers, tcf, None)
    moment = as_moment(at, "at")
    after = [dict(record) for record in history]
    in_force: dict[str, dict[str, Any]] = {}
    for record in after:  # oldest first: later ones replace (as audits.consent.effective_consent)
        in_force[record["purpose"]] = record
    outcome, planned = signals.plan(in_force if signals.any else {}, moment)
    vocabulary = frozenset(pack_policy(pack).consent.purposes)
    writes = tuple(
        ConsentWrite(purpose, status, basis, source, evidence, moment, actor=actor, vocabulary=vocabulary)
        for purpose, status, basis, source, evidence in planned
    )
    for write in writes:
        outcome["recorded"].append({"id": None, "purpose": write.purpose, "status": write.status, "source": write.source, "trail_seq": None})
        after.append(
            {
                "id": None, "purpose": write.purpose, "status": write.status, "lawful_basis": write.lawful_basis, "source": write.source,
                "evidence": write.evidence, "jurisdiction": None, "recorded_at": moment, "trail_seq": None,
            }
        )  # fmt: skip
    after.sort(key=lambda r: (r["recorded_at"], CONSENT_RESTRICTIVENESS[r["status"]]))  # stable: new records last at ties, as their ids
    return outcome, writes, after


@dataclass(frozen=True)
class _RequestSignals:
    """A request's consent signals under a pack, checked; :meth:`plan` says what they record over a state in force."""

    policy: PolicyPack
    gpc: bool
    tc: Any
    tcf: str | None
    vendor_id: int | None
    requirements: Any

    @classmethod
    def of(
        cls,
        pack: LoadedPack | PolicyPack,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        tcf: str | None,
        vendor_id: int | None,
    ) -> _RequestSignals:
        policy = pack_policy(pack)
        gpc = gpc_opt_out(headers) if headers is not None else False
        tc = decode_tc_string(tcf) if tcf is not None else None
        requirements = policy.consent.tcf_requirements()
        vendor_id = vendor_id if vendor_id is not None else requirements.vendor_id
        if tc is not None:
            if vendor_id is None:
                raise ConfigError(MSG_VENDOR_REQUIRED)
            if requirements.purpose not in policy.consent.purposes:
                listed = ", ".join(sorted(policy.consent.purposes)) or "none"
                raise ConfigError(UNLISTED_PURPOSE.format(purpose=requirements.purpose, pack=policy.metadata.name, listed=listed))
        return cls(policy, gpc, tc, tcf, vendor_id, requirements)

    @property
    def any(self) -> bool:
        """Whether the request carries a signal to judge at all."""
        return self.gpc or self.tc is not None

    def plan(
        self, in_force: Mapping[str, Mapping[str, Any]], moment: datetime
    ) -> tuple[dict[str, Any], list[tuple[str, str, str, str, dict[str, Any]]]]:
        """The outcome (without ``recorded``) and the records to write, given the records in force per purpose."""
        policy, requirements = self.policy, self.requirements
        outcome: dict[str, Any] = {"gpc": self.gpc, "tcf": None, "recorded": [], "unchanged": [], "ignored": []}
        planned: list[tuple[str, str, str, str, dict[str, Any]]] = []
        if self.gpc:
            opt_out = sorted(p for p, c in policy.consent.purposes.items() if c.model == "opt_out")
            if not policy.consent.honour_gpc:
                outcome["ignored"].append(
                    {"signal": "gpc", "reason": "the pack does not honour GPC (consent.honour_gpc: false)"}
                )
            elif not opt_out:
                outcome["ignored"].append(
                    {"signal": "gpc", "reason": "the pack has no opt-out purpose; opt-in purposes already need a grant"}
                )
            for purpose in opt_out if policy.consent.honour_gpc else []:
                basis = policy.consent.purposes[purpose].lawful_basis
                planned.append(
                    (purpose, "opted_out", basis, "gpc", {"signal": "Sec-GPC: 1", "spec": "Global Privacy Control"})
                )
        if self.tc is not None:
            previous = in_force.get(requirements.purpose)
            outcome["tcf"], write, ignored = _tcf_plan(self.tc, self.tcf, self.vendor_id, requirements, previous, moment)  # type: ignore[arg-type]
            planned.extend([write] if write is not None else [])
            outcome["ignored"].extend([ignored] if ignored is not None else [])
        writes = []
        for purpose, status, basis, source, evidence in planned:
            current = in_force.get(purpose)
            same = (
                current is not None
                and current["status"] == status
                and current["source"] == source
                and (source != "tcf" or (current["evidence"] or {}).get("tc_string") == evidence.get("tc_string"))
            )
            if same:
                outcome["unchanged"].append({"purpose": purpose, "status": status, "source": source})
            else:
                writes.append((purpose, status, basis, source, evidence))
        return outcome, writes
