"""Whether a subject may be profiled for a purpose (pure, no I/O).

The inputs are the pack's ``consent`` section and the subject's consent records;
the signals of the current request (GPC, a TCF string) can only take permission
away, never give it (a TC string grants through a record, see below). The rules, in the order they are applied:

1. A purpose the pack does not list is never allowed (fail closed).
2. The latest record for the purpose decides first: ``withdrawn`` and ``denied``
   stop processing at once (GDPR Art. 7(3)), ``objected`` and ``opted_out`` too
   (GDPR Art. 21; CCPA §1798.120), whatever the model.
3. ``Sec-GPC: 1``, when the pack honours it, opts the subject out of every purpose
   whose model is ``opt_out`` (CCPA regs §7025). It does not touch ``opt_in``
   purposes, which already need a grant. A later explicit grant does not override
   it: the §7025(c)(3) path (notify the conflict, then ask for consent) is not
   modelled.
4. ``opt_in``: no record means no; only a latest ``granted`` record allows, and
   for a purpose whose basis is ``consent`` it must have been given as consent.
   ``opt_out``: allowed unless step 2 or 3 said no.
5. For the purpose the pack's ``consent.tcf`` maps TCF to (``personalization``
   by default), when its basis is ``consent``, a TCF string (when given) must
   also meet the pack's TCF requirements for the vendor (purpose 1 and the
   mapped purposes with a legal basis, no publisher veto, policy version and
   age: :func:`governance.consent.tcf.tcf_allows_profiling`).
6. A grant recorded from a TC string (source ``tcf``) lapses when the string it
   rests on is older than ``consent.tcf.max_age_days``: the user must be asked
   again (under opt-in, a lapsed grant is no grant).

A TC string in the request never grants here: a string that meets the
requirements grants only through a record (source ``tcf``, the string as
evidence), written by :func:`governance.privacy.record_consent_from_request`
where the pack lets TCF grant (``consent.tcf.grants``).

Among records of one purpose, the latest ``time`` wins; records with the same
time are ordered by a fixed total order in which the most restrictive status wins
(``withdrawn`` > ``denied`` > ``objected`` > ``opted_out`` > ``granted``), so the
effective state never depends on the order records were read in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from governance.consent.tcf import TcfDecision, TCString, tcf_allows_profiling
from governance.policy import ConsentPurpose, ConsentSection, TcfRequirements
from recommender.errors import ConfigError, DataError

__all__ = ["ConsentRecord", "ConsentSource", "ConsentStatus", "ProfilingDecision", "effective_state", "may_profile"]

ConsentStatus = Literal["granted", "denied", "withdrawn", "opted_out", "objected"]
ConsentSource = Literal["api", "banner", "tcf", "gpc", "import"]
LawfulBasis = Literal["consent", "legitimate_interest", "contract"]

STATUSES: tuple[str, ...] = get_args(ConsentStatus)
SOURCES: tuple[str, ...] = get_args(ConsentSource)
BASES: tuple[str, ...] = get_args(LawfulBasis)
_RESTRICTIVENESS = {"granted": 0, "opted_out": 1, "objected": 2, "denied": 3, "withdrawn": 4}
_BASIS_REFERENCE = {
    "consent": "GDPR Art. 6(1)(a)",
    "legitimate_interest": "GDPR Art. 6(1)(f)",
    "contract": "GDPR Art. 6(1)(b)",
}
_BASIS_NAME = {"consent": "consent", "legitimate_interest": "legitimate interest", "contract": "contract"}

# Messages tests assert on.
MSG_FIELD = "consent record field {field!r} must be one of {allowed}, got {value!r}"
MSG_PURPOSE = "consent record field 'purpose' must be a non-empty string, got {value!r}"
MSG_TIME = "consent record field 'time' must be a timezone-aware datetime (UTC), got {value!r}"
MSG_EVIDENCE = "consent record field 'evidence' must be a mapping, got {type}"
MSG_NOT_RECORD = "consent records must be ConsentRecord objects, got {type} at position {index}"
MSG_VENDOR_REQUIRED = (
    "may_profile got a TCF string but no vendor_id; pass the vendor id whose consent the TC string must carry"
)

REASON_UNLISTED = "purpose {purpose!r} is not listed in the pack's consent section (listed: {listed}); recgov fails closed: no profiling"
REASON_WITHDRAWN = "consent withdrawn ({record}): withdrawal stops processing at once (GDPR Art. 7(3))"
REASON_DENIED = (
    "denied ({record}): the subject refused purpose {purpose!r}, which rests on {basis} ({ref}); a refusal means no"
)
REASON_OBJECTED = "objection to profiling ({record}): processing stops (GDPR Art. 21)"
REASON_OPTED_OUT = "opted out ({record}): processing stops (CCPA §1798.120; GDPR Art. 21)"
REASON_GPC = (
    "Sec-GPC: 1 opt-out preference signal: the subject opted out of the opt-out purpose {purpose!r} "
    "(CCPA §1798.120; CCPA regs §7025, §7026; an objection by automated means, GDPR Art. 21(5))"
)
REASON_NO_RECORD = "no consent record for purpose {purpose!r}: under opt-in {basis} ({ref}) no record means no"
REASON_WRONG_BASIS = (
    "the latest record ({record}) was given under {given}, but purpose {purpose!r} rests on consent ({ref}); "
    "only a consent given as consent counts (GDPR Art. 7(1))"
)
REASON_TCF = "the TCF string blocks consent-based profiling for purpose {purpose!r}: {tcf}"
REASON_TCF_LAPSED = (
    "the grant ({record}) rests on a TC string last updated {when}, more than {days} days ago "
    "(consent.tcf.max_age_days): under opt-in {basis} ({ref}) the user must be asked again"
)
REASON_GRANTED = "allowed: the latest record ({record}) grants purpose {purpose!r} under opt-in {basis} ({ref})"
REASON_OPT_OUT_NO_RECORD = (
    "allowed: no objection or opt-out recorded for purpose {purpose!r} under opt-out {basis} ({ref})"
)
REASON_OPT_OUT_GRANTED = (
    "allowed: the latest record ({record}) grants purpose {purpose!r} under opt-out {basis} ({ref})"
)


@dataclass(frozen=True)
class ConsentRecord:
    """One consent event of one subject for one purpose."""

    purpose: str
    status: ConsentStatus
    lawful_basis: LawfulBasis
    """The basis the record was given under."""
    source: ConsentSource
    time: datetime
    """When it happened; timezone-aware, stored in UTC."""
    evidence: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """What proves it (GDPR Art. 7(1)): banner version, TC string, request id, ..."""

    def __post_init__(self) -> None:
        if not isinstance(self.purpose, str) or not self.purpose.strip():
            raise DataError(MSG_PURPOSE.format(value=self.purpose))
        for name, allowed in (("status", STATUSES), ("lawful_basis", BASES), ("source", SOURCES)):
            value = getattr(self, name)
            if value not in allowed:
                raise DataError(MSG_FIELD.format(field=name, allowed=", ".join(allowed), value=value))
        if not isinstance(self.time, datetime) or self.time.tzinfo is None or self.time.utcoffset() is None:
            raise DataError(MSG_TIME.format(value=self.time))
        if not isinstance(self.evidence, Mapping):
            raise DataError(MSG_EVIDENCE.format(type=type(self.evidence).__name__))
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        object.__setattr__(self, "evidence", dict(self.evidence))

    def describe(self) -> str:
        """A short citation of the record, for reasons: ``withdrawn via api at 2024-05-01T10:00:00+00:00``."""
        return f"{self.status} via {self.source} at {self.time.isoformat()}"

    def _order_key(self) -> tuple[Any, ...]:
        evidence = json.dumps(self.evidence, sort_keys=True, default=repr, ensure_ascii=False)
        return (self.time, _RESTRICTIVENESS[self.status], self.lawful_basis, self.source, evidence)


def effective_state(records: Iterable[ConsentRecord]) -> dict[str, ConsentRecord]:
    """The record in force per purpose: the latest wins; at equal times the most restrictive.

    The order of ``records`` never matters. The result is keyed by purpose, sorted.
    """
    latest: dict[str, ConsentRecord] = {}
    for index, record in enumerate(records):
        if not isinstance(record, ConsentRecord):
            raise DataError(MSG_NOT_RECORD.format(type=type(record).__name__, index=index))
        current = latest.get(record.purpose)
        if current is None or record._order_key() > current._order_key():
            latest[record.purpose] = record
    return dict(sorted(latest.items()))


@dataclass(frozen=True)
class ProfilingDecision:
    """Whether one subject may be profiled for one purpose, and why."""

    allowed: bool
    reason: str
    """Plain language, citing the provision, the basis and what decided."""
    purpose: str
    lawful_basis: str | None = None
    """The pack's basis for the purpose (None when the pack does not list it)."""
    model: str | None = None
    legal_reference: str | None = None
    """The pack's reference for the purpose, else the GDPR Art. 6(1) point of its basis."""
    record: ConsentRecord | None = None
    """The record that decided, when one did."""
    gpc: bool = False
    """Whether a GPC opt-out was honoured in this decision."""
    tcf: TcfDecision | None = None
    jurisdiction: str | None = None


def _lapsed_tcf_grant(record: ConsentRecord | None, requirements: TcfRequirements, now: datetime) -> str | None:
    """When ``record`` is a grant from a TC string now older than the pack allows: that string's LastUpdated."""
    if record is None or record.status != "granted" or record.source != "tcf" or requirements.max_age_days is None:
        return None
    stamp = record.evidence.get("tc_last_updated") if isinstance(record.evidence, Mapping) else None
    try:
        updated = datetime.fromisoformat(stamp) if isinstance(stamp, str) else record.time
    except ValueError:
        updated = record.time
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    if now - updated <= timedelta(days=requirements.max_age_days):
        return None
    return updated.isoformat()


def may_profile(
    section: ConsentSection,
    records: Iterable[ConsentRecord],
    *,
    purpose: str = "personalization",
    gpc: bool = False,
    tcf: TCString | None = None,
    vendor_id: int | None = None,
    jurisdiction: str | None = None,
    now: datetime | None = None,
) -> ProfilingDecision:
    """Decide whether the subject whose ``records`` these are may be profiled for ``purpose``.

    ``gpc`` is the request's GPC signal (see :func:`governance.consent.gpc.gpc_opt_out`);
    ``tcf`` a decoded TC string, checked for ``vendor_id`` (default: the pack's
    ``consent.tcf.vendor_id``; one of the two is required with ``tcf``) under the
    pack's ``consent.tcf`` requirements, at ``now`` (default: now).
    ``jurisdiction`` is carried into the decision for the audit record; the pack
    already encodes what the jurisdiction requires.

    Example::

        may_profile(pack.consent, [], purpose="personalization").reason
        # "no consent record for purpose 'personalization': under opt-in consent (GDPR Art. 6(1)(a)) no record means no"
    """
    requirements = section.tcf_requirements()
    vendor_id = vendor_id if vendor_id is not None else requirements.vendor_id
    if tcf is not None and vendor_id is None:
        raise ConfigError(MSG_VENDOR_REQUIRED)
    now = datetime.now(UTC) if now is None else now
    state = effective_state(records)
    config: ConsentPurpose | None = section.purposes.get(purpose)
    if config is None:
        listed = ", ".join(sorted(section.purposes)) or "none"
        return ProfilingDecision(
            False, REASON_UNLISTED.format(purpose=purpose, listed=listed), purpose, jurisdiction=jurisdiction
        )

    basis, model = config.lawful_basis, config.model
    ref = config.legal_reference or _BASIS_REFERENCE[basis]
    names = {"purpose": purpose, "basis": _BASIS_NAME[basis], "ref": ref}

    def decide(allowed: bool, reason: str, record: ConsentRecord | None = None, **extra: Any) -> ProfilingDecision:
        return ProfilingDecision(
            allowed, reason, purpose, basis, model, ref, record, jurisdiction=jurisdiction, **extra
        )

    record = state.get(purpose)
    if record is not None and record.status != "granted":
        template = {
            "withdrawn": REASON_WITHDRAWN,
            "denied": REASON_DENIED,
            "objected": REASON_OBJECTED,
            "opted_out": REASON_OPTED_OUT,
        }
        return decide(False, template[record.status].format(record=record.describe(), **names), record)
    if gpc and section.honour_gpc and model == "opt_out":
        return decide(False, REASON_GPC.format(**names), record, gpc=True)
    lapsed = _lapsed_tcf_grant(record, requirements, now)
    if lapsed is not None and model == "opt_in":
        return decide(False, REASON_TCF_LAPSED.format(record=record.describe(), when=lapsed, days=requirements.max_age_days, **names), record)  # type: ignore[union-attr]
    if lapsed is not None:
        record = None  # under opt-out a lapsed grant is no record at all
    if model == "opt_in":
        if record is None:
            return decide(False, REASON_NO_RECORD.format(**names))
        if basis == "consent" and record.lawful_basis != "consent":
            return decide(
                False,
                REASON_WRONG_BASIS.format(record=record.describe(), given=_BASIS_NAME[record.lawful_basis], **names),
                record,
            )
    tcf_decision = None
    if tcf is not None and basis == "consent" and purpose == requirements.purpose:
        tcf_decision = tcf_allows_profiling(tcf, vendor_id, requirements, now=now)  # type: ignore[arg-type]
        if not tcf_decision.allowed:
            return decide(False, REASON_TCF.format(tcf=tcf_decision.reason, **names), record, tcf=tcf_decision)
    if model == "opt_in":
        reason = REASON_GRANTED.format(record=record.describe(), **names)  # type: ignore[union-attr]
    elif record is None:
        reason = REASON_OPT_OUT_NO_RECORD.format(**names)
    else:
        reason = REASON_OPT_OUT_GRANTED.format(record=record.describe(), **names)
    return decide(True, reason, record, tcf=tcf_decision)
