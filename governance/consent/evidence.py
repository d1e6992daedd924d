"""The evidence a consent record must carry when its source claims some (pure, no I/O).

GDPR Art. 7(1): where processing rests on consent, the controller must be able to
demonstrate that the subject consented. A record whose ``source`` says the choice
was made somewhere that leaves a trace must bring that trace:

* ``banner``: ``evidence.banner_version``, the version of the consent dialogue the
  subject answered (what they were shown);
* ``import``: ``evidence.origin``, where the record was imported from (a file, a
  system, a previous controller);
* ``tcf``: ``evidence.tc_string``, an IAB TCF v2.2 TC string that decodes and
  supports the claimed status under the pack's ``consent.tcf`` requirements: a
  grant needs a string meeting them, a pack that lets TCF grant
  (``consent.tcf.grants``) and basis ``consent``; a refusal needs a string that
  refuses for a reason about the user's choices (a purpose, the vendor, a
  publisher restriction), not merely one made under an older policy or too old.

``api`` and ``gpc`` claim nothing beyond the call itself (the API call and the
header are on the trail). :func:`check_consent_evidence` raises
:class:`EvidenceError` naming the field at fault; it returns the evidence to
store, with the TC string's decision added for a ``tcf`` record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from governance.consent.tcf import decode_tc_string, tc_evidence, tcf_allows_profiling
from governance.policy import ConsentSection, TcfRequirements
from recommender.errors import ConfigError, DataError

__all__ = ["EVIDENCE_KEYS", "EvidenceError", "check_consent_evidence"]

EVIDENCE_KEYS: dict[str, tuple[str, str]] = {
    "banner": ("banner_version", "the version of the consent dialogue the subject answered"),
    "import": ("origin", "where the record was imported from"),
    "tcf": ("tc_string", "the IAB TCF v2.2 TC string the choice was read from"),
}
"""Sources that claim evidence -> (the evidence key they need, what it holds)."""

MSG_MISSING = (
    "a consent record with source {source!r} claims evidence (GDPR Art. 7(1)): send evidence.{key}, {what}"
)
MSG_NOT_TEXT = "evidence.{key} must be a non-empty string, {what}; got {value!r}"
MSG_TC_UNREADABLE = "evidence.tc_string is not a TC string: {detail}"
MSG_TC_PURPOSE = (
    "a tcf record stands for the pack purpose TCF is mapped to (consent.tcf.purpose: {mapped!r}), not {purpose!r}"
)
MSG_TC_VENDOR = (
    "a tcf record is judged for the installation's IAB vendor id: set the pack's consent.tcf.vendor_id "
    "or send evidence.vendor_id (an integer from 1 to 65535)"
)
MSG_TC_VENDOR_CONFLICT = "evidence.vendor_id {given!r} is not the pack's consent.tcf.vendor_id {vendor}"
MSG_TC_NOT_A_SOURCE = (
    "the pack does not let a TC string grant (consent.tcf.grants is false), so a tcf record cannot be a grant"
)
MSG_TC_BASIS = "a grant read from a TC string rests on consent (TCF purposes 1, 5 and 6), not on {basis}"
MSG_TC_NO_GRANT = "the TC string does not support status 'granted': {reason}"
MSG_TC_NO_REFUSAL = (
    "the TC string does not support status {status!r}: it refuses nothing the subject chose ({reason})"
)


class EvidenceError(ConfigError):
    """A consent record's evidence is missing or does not support it; ``field`` names where (``evidence.tc_string``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _text(evidence: Mapping[str, Any], key: str, what: str) -> str:
    value = evidence.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EvidenceError(f"evidence.{key}", MSG_NOT_TEXT.format(key=key, what=what, value=value))
    return value


def _vendor(requirements: TcfRequirements, evidence: Mapping[str, Any]) -> int:
    given = evidence.get("vendor_id")
    if requirements.vendor_id is not None:
        if given is not None and given != requirements.vendor_id:
            raise EvidenceError("evidence.vendor_id", MSG_TC_VENDOR_CONFLICT.format(given=given, vendor=requirements.vendor_id))
        return requirements.vendor_id
    if isinstance(given, bool) or not isinstance(given, int) or not 1 <= given <= 65535:
        raise EvidenceError("evidence.vendor_id", MSG_TC_VENDOR)
    return given


def _check_tcf(
    *, status: str, lawful_basis: str, purpose: str, evidence: Mapping[str, Any], section: ConsentSection, now: datetime
) -> dict[str, Any]:
    text = _text(evidence, *EVIDENCE_KEYS["tcf"])
    try:
        tc = decode_tc_string(text)
    except DataError as err:
        raise EvidenceError("evidence.tc_string", MSG_TC_UNREADABLE.format(detail=err)) from None
    requirements = section.tcf_requirements()
    if purpose != requirements.purpose:
        raise EvidenceError("purpose", MSG_TC_PURPOSE.format(mapped=requirements.purpose, purpose=purpose))
    vendor_id = _vendor(requirements, evidence)
    decision = tcf_allows_profiling(tc, vendor_id, requirements, now=now)
    if status == "granted":
        if not requirements.grants:
            raise EvidenceError("source", MSG_TC_NOT_A_SOURCE)
        if lawful_basis != "consent":
            raise EvidenceError("basis", MSG_TC_BASIS.format(basis=lawful_basis))
        if not decision.allowed:
            raise EvidenceError("evidence.tc_string", MSG_TC_NO_GRANT.format(reason=decision.reason))
    elif not set(decision.failures) - set(decision.string_failures):
        raise EvidenceError("evidence.tc_string", MSG_TC_NO_REFUSAL.format(status=status, reason=decision.reason))
    return {**evidence, **tc_evidence(tc, vendor_id, decision)}


def check_consent_evidence(
    *,
    source: str,
    status: str,
    lawful_basis: str,
    purpose: str,
    evidence: Mapping[str, Any] | None,
    section: ConsentSection | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Check that a record from ``source`` carries the evidence it claims; return the evidence to store.

    ``section`` is the pack's ``consent`` section (default: an empty one, whose TCF
    requirements are the defaults, under which a TC string never grants); ``now``
    the moment a TC string is judged at. Raises :class:`EvidenceError`.
    """
    if source not in EVIDENCE_KEYS:
        return dict(evidence) if evidence is not None else None
    key, what = EVIDENCE_KEYS[source]
    if not evidence:
        raise EvidenceError("evidence", MSG_MISSING.format(source=source, key=key, what=what))
    if key not in evidence:
        raise EvidenceError(f"evidence.{key}", MSG_MISSING.format(source=source, key=key, what=what))
    if source != "tcf":
        _text(evidence, key, what)
        return dict(evidence)
    return _check_tcf(
        status=status, lawful_basis=lawful_basis, purpose=purpose, evidence=evidence,
        section=section if section is not None else ConsentSection(), now=now or datetime.now(UTC),
    )  # fmt: skip
