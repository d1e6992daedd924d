"""IAB TCF v2 TC strings: decoding and the profiling decision (pure, no I/O).

A TC string is one to four base64url segments joined by ``.``. The first is the
*core* segment (it starts with the 6-bit version, 2 for every TCF v2.x string); the
others start with a 3-bit segment type: 1 disclosed vendors, 2 allowed vendors
(dropped in TCF v2.2 but still met in stored strings), 3 publisher TC. Field
widths and order follow IAB Tech Lab, "Consent string and vendor list formats
v2" (TCF v2.2: policy version 4; v2.3 strings carry policy version 5 and the same
layout). Every read is bounds-checked, so a truncated or malformed string raises
:class:`~recommender.errors.DataError` naming the segment, the field and the bit
offset, instead of silently reading zeros.

Vendor sets are kept as sorted, merged inclusive ranges, so a hostile range
encoding (4095 entries of 65535 vendors) costs kilobytes, not gigabytes.

Example::

    tc = decode_tc_string("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA")
    tc.purpose_consent(2)                 # True
    tcf_allows_profiling(tc, 755).allowed  # False: purposes 5 and 6 not consented
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from governance.policy import TCF_CONSENT_ONLY_PURPOSES, TcfRequirements
from recommender.errors import ConfigError, DataError

__all__ = [
    "tc_evidence",
    "PURPOSE_CONTENT_PROFILE",
    "PURPOSE_CONTENT_SELECTION",
    "PURPOSE_LIMITED_CONTENT",
    "RESTRICTION_NOT_ALLOWED",
    "RESTRICTION_REQUIRE_CONSENT",
    "RESTRICTION_REQUIRE_LI",
    "PublisherRestriction",
    "PublisherTC",
    "TCString",
    "TcfDecision",
    "VendorSet",
    "decode_tc_string",
    "tcf_allows_profiling",
]

PURPOSE_CONTENT_PROFILE = 5
"""TCF purpose 5: create profiles for personalised content."""
PURPOSE_CONTENT_SELECTION = 6
"""TCF purpose 6: use profiles to select personalised content."""
PURPOSE_LIMITED_CONTENT = 11
"""TCF purpose 11: use limited data to select content (no profile)."""
PURPOSE_STORAGE = 1
"""TCF purpose 1: store and/or access information on a device."""
PURPOSE_NAMES = {
    PURPOSE_STORAGE: "store and/or access information on a device",
    PURPOSE_CONTENT_PROFILE: "create profiles for personalised content",
    PURPOSE_CONTENT_SELECTION: "use profiles to select personalised content",
    PURPOSE_LIMITED_CONTENT: "use limited data to select content",
}

RESTRICTION_NOT_ALLOWED = 0
RESTRICTION_REQUIRE_CONSENT = 1
RESTRICTION_REQUIRE_LI = 2

SEGMENT_DISCLOSED_VENDORS = 1
SEGMENT_ALLOWED_VENDORS = 2
SEGMENT_PUBLISHER_TC = 3
_SEGMENT_NAMES = {0: "core", 1: "disclosed vendors", 2: "allowed vendors", 3: "publisher TC"}

# Messages tests assert on.
MSG_EMPTY = "empty TC string; expected an IAB TCF v2 TC string such as 'CO...' or 'CP...'"
MSG_NOT_STR = "a TC string must be a str, got {type}"
MSG_EMPTY_SEGMENT = "TC string segment {index} is empty (two dots in a row, or a leading or trailing dot)"
MSG_BASE64 = "TC string segment {index} ({name}) is not base64url: {detail}"
MSG_TRUNCATED = (
    "TC string segment {index} ({name}) is truncated: field {field} needs {n} bit(s) at bit offset {offset}, "
    "but the segment has only {total} bits"
)
MSG_VERSION = (
    "TC string version is {version} (bit offset 0, field version); expected 2 (IAB TCF v2.x, strings starting with 'C')"
)
MSG_LETTER = "TC string field {field} at bit offset {offset} holds letter code {code}; expected 0..25 (A..Z)"
MSG_RANGE = (
    "TC string field {field}: range entry {entry} at bit offset {offset} is {start}-{end}; expected 1 <= start <= end"
)
MSG_SEGMENT_TYPE = "TC string segment {index} has segment type {type} at bit offset 0; expected 1 (disclosed vendors), 2 (allowed vendors) or 3 (publisher TC)"
MSG_DUPLICATE_SEGMENT = "TC string segment {index} repeats segment type {type} ({name}); each may appear once"
MSG_PURPOSE_ID = "TCF purpose ids run from 1 to 24, got {n!r}"
MSG_VENDOR_ID = "TCF vendor ids are integers from 1 to 65535, got {vendor_id!r}"

_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- value types -------------------------------------------------------------------
@dataclass(frozen=True)
class VendorSet:
    """A set of vendor ids, as decoded from a bit field or a range section."""

    max_vendor_id: int
    is_range_encoding: bool
    ranges: tuple[tuple[int, int], ...] = ()
    """Sorted, non-overlapping, non-adjacent inclusive ``(start, end)`` ranges."""
    _starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(start for start, _ in self.ranges))

    @classmethod
    def from_ranges(cls, max_vendor_id: int, is_range_encoding: bool, ranges: Iterable[tuple[int, int]]) -> VendorSet:
        """Merge overlapping and adjacent ranges into the canonical form."""
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return cls(max_vendor_id, is_range_encoding, tuple((s, e) for s, e in merged))

    def __contains__(self, vendor_id: object) -> bool:
        if not isinstance(vendor_id, int):
            return False
        i = bisect.bisect_right(self._starts, vendor_id) - 1
        return i >= 0 and vendor_id <= self.ranges[i][1]

    def __iter__(self) -> Iterator[int]:
        for start, end in self.ranges:
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)


@dataclass(frozen=True)
class PublisherRestriction:
    """A publisher's override of one purpose for a set of vendors."""

    purpose_id: int
    restriction_type: int
    """0 not allowed, 1 require consent, 2 require legitimate interest, 3 undefined."""
    vendors: VendorSet


@dataclass(frozen=True)
class PublisherTC:
    """The publisher's own purposes (segment type 3)."""

    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    custom_purposes_consent: frozenset[int]
    custom_purposes_li_transparency: frozenset[int]
    num_custom_purposes: int


@dataclass(frozen=True)
class TCString:
    """A decoded TC string (core segment plus any optional segments)."""

    version: int
    created: datetime
    """UTC, decisecond precision."""
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    tcf_policy_version: int
    """2 for TCF v2.0/2.1, 4 for v2.2, 5 for v2.3."""
    is_service_specific: bool
    use_non_standard_texts: bool
    """``UseNonStandardTexts`` (``UseNonStandardStacks`` before v2.2)."""
    special_feature_opt_ins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consents: VendorSet
    vendor_legitimate_interests: VendorSet
    publisher_restrictions: tuple[PublisherRestriction, ...] = ()
    disclosed_vendors: VendorSet | None = None
    allowed_vendors: VendorSet | None = None
    publisher_tc: PublisherTC | None = None
    tc_string: str = field(default="", repr=False)
    """The string as received, kept as evidence."""

    def purpose_consent(self, n: int) -> bool:
        """Whether the user consented to TCF purpose ``n`` (1..24)."""
        return _purpose_id(n) in self.purposes_consent

    def purpose_li(self, n: int) -> bool:
        """Whether legitimate interest is established (and not objected to) for purpose ``n``."""
        return _purpose_id(n) in self.purposes_li_transparency

    def vendor_consent(self, vendor_id: int) -> bool:
        """Whether the user consented to vendor ``vendor_id``."""
        return _vendor_id(vendor_id) in self.vendor_consents

    def vendor_li(self, vendor_id: int) -> bool:
        """Whether vendor ``vendor_id``'s legitimate interest is established (and not objected to)."""
        return _vendor_id(vendor_id) in self.vendor_legitimate_interests

    def restrictions_for(self, vendor_id: int, purpose_id: int) -> frozenset[int]:
        """The publisher restriction types that apply to ``vendor_id`` for ``purpose_id``."""
        vendor_id, purpose_id = _vendor_id(vendor_id), _purpose_id(purpose_id)
        return frozenset(
            r.restriction_type
            for r in self.publisher_restrictions
            if r.purpose_id == purpose_id and vendor_id in r.vendors
        )


def _purpose_id(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 24:
        raise ConfigError(MSG_PURPOSE_ID.format(n=n))
    return n


def _vendor_id(vendor_id: int) -> int:
    if isinstance(vendor_id, bool) or not isinstance(vendor_id, int) or not 1 <= vendor_id <= 65535:
        raise ConfigError(MSG_VENDOR_ID.format(vendor_id=vendor_id))
    return vendor_id


# -- the bit reader ----------------------------------------------------------------
class _BitReader:
    """Big-endian, left-to-right bit reads over one decoded segment, bounds-checked."""

    def __init__(self, data: bytes, index: int, name: str) -> None:
        self._bits = "".join(f"{byte:08b}" for byte in data)  # slicing a str keeps every read O(n)
        self.total = len(self._bits)
        self.offset = 0
        self.index = index
        self.name = name

    def read_int(self, n: int, field_name: str) -> int:
        if self.offset + n > self.total:
            raise DataError(
                MSG_TRUNCATED.format(
                    index=self.index, name=self.name, field=field_name, n=n, offset=self.offset, total=self.total
                )
            )
        start = self.offset
        self.offset += n
        return int(self._bits[start : self.offset], 2) if n else 0

    def read_bool(self, field_name: str) -> bool:
        return self.read_int(1, field_name) == 1

    def bitset(self, n: int, field_name: str) -> frozenset[int]:
        """``n`` bits; bit ``i`` (from the left) set means id ``i + 1`` is in the set."""
        start = self.offset
        self.read_int(n, field_name)
        bits = self._bits[start : self.offset]
        return frozenset(i + 1 for i, bit in enumerate(bits) if bit == "1")

    def time(self, field_name: str) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.read_int(36, field_name) * 100)

    def letters(self, field_name: str) -> str:
        out = []
        for _ in range(2):
            offset = self.offset
            code = self.read_int(6, field_name)
            if code > 25:
                raise DataError(MSG_LETTER.format(field=field_name, offset=offset, code=code))
            out.append(chr(ord("A") + code))
        return "".join(out)

    def ranges(self, field_name: str) -> list[tuple[int, int]]:
        """A range section: NumEntries (12), then IsARange (1), Start (16), [End (16)] each."""
        count = self.read_int(12, f"{field_name}.num_entries")
        out = []
        for entry in range(count):
            offset = self.offset
            is_range = self.read_bool(f"{field_name}[{entry}].is_a_range")
            start = self.read_int(16, f"{field_name}[{entry}].start_or_only_vendor_id")
            end = self.read_int(16, f"{field_name}[{entry}].end_vendor_id") if is_range else start
            if not 1 <= start <= end:
                raise DataError(MSG_RANGE.format(field=field_name, entry=entry, offset=offset, start=start, end=end))
            out.append((start, end))
        return out

    def vendors(self, field_name: str) -> VendorSet:
        """MaxVendorId (16), IsRangeEncoding (1), then a bit field or a range section."""
        max_id = self.read_int(16, f"{field_name}.max_vendor_id")
        if self.read_bool(f"{field_name}.is_range_encoding"):
            return VendorSet.from_ranges(max_id, True, self.ranges(field_name))
        ids = self.bitset(max_id, f"{field_name}.bit_field")
        return VendorSet.from_ranges(max_id, False, ((i, i) for i in ids))


# -- decoding ----------------------------------------------------------------------
def _b64decode(segment: str, index: int, name: str) -> bytes:
    if not segment:
        raise DataError(MSG_EMPTY_SEGMENT.format(index=index))
    body = segment.rstrip("=")  # tolerated: some CMPs pad, as the IAB's own Java tests show
    bad = next((c for c in body if c not in _BASE64URL), None)
    if bad is not None:
        where = body.index(bad)
        raise DataError(
            MSG_BASE64.format(
                index=index, name=name, detail=f"character {bad!r} at position {where} is not in A-Z a-z 0-9 - _"
            )
        )
    if len(body) % 4 == 1:
        raise DataError(
            MSG_BASE64.format(index=index, name=name, detail=f"{len(body)} characters cannot encode whole bytes")
        )
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as err:  # pragma: no cover - the checks above catch these
        raise DataError(MSG_BASE64.format(index=index, name=name, detail=str(err))) from err


def _decode_core(reader: _BitReader, text: str) -> dict[str, object]:
    version = reader.read_int(6, "version")
    if version != 2:
        raise DataError(MSG_VERSION.format(version=version))
    core: dict[str, object] = {
        "version": version,
        "created": reader.time("created"),
        "last_updated": reader.time("last_updated"),
        "cmp_id": reader.read_int(12, "cmp_id"),
        "cmp_version": reader.read_int(12, "cmp_version"),
        "consent_screen": reader.read_int(6, "consent_screen"),
        "consent_language": reader.letters("consent_language"),
        "vendor_list_version": reader.read_int(12, "vendor_list_version"),
        "tcf_policy_version": reader.read_int(6, "tcf_policy_version"),
        "is_service_specific": reader.read_bool("is_service_specific"),
        "use_non_standard_texts": reader.read_bool("use_non_standard_texts"),
        "special_feature_opt_ins": reader.bitset(12, "special_feature_opt_ins"),
        "purposes_consent": reader.bitset(24, "purposes_consent"),
        "purposes_li_transparency": reader.bitset(24, "purposes_li_transparency"),
        "purpose_one_treatment": reader.read_bool("purpose_one_treatment"),
        "publisher_cc": reader.letters("publisher_cc"),
        "vendor_consents": reader.vendors("vendor_consents"),
        "vendor_legitimate_interests": reader.vendors("vendor_legitimate_interests"),
    }
    restrictions = []
    for i in range(reader.read_int(12, "publisher_restrictions.num_pub_restrictions")):
        name = f"publisher_restrictions[{i}]"
        purpose_id = reader.read_int(6, f"{name}.purpose_id")
        restriction_type = reader.read_int(2, f"{name}.restriction_type")
        ranges = reader.ranges(name)
        vendors = VendorSet.from_ranges(max((end for _, end in ranges), default=0), True, ranges)
        restrictions.append(PublisherRestriction(purpose_id, restriction_type, vendors))
    core["publisher_restrictions"] = tuple(restrictions)
    core["tc_string"] = text
    return core


def _decode_publisher_tc(reader: _BitReader) -> PublisherTC:
    consent = reader.bitset(24, "pub_purposes_consent")
    li = reader.bitset(24, "pub_purposes_li_transparency")
    n = reader.read_int(6, "num_custom_purposes")
    return PublisherTC(
        consent, li, reader.bitset(n, "custom_purposes_consent"), reader.bitset(n, "custom_purposes_li_transparency"), n
    )


DECODED_KEPT = 128
"""How many decoded TC strings :func:`decode_tc_string` keeps (least recently used go first)."""
DECODED_KEPT_LENGTH = 1024
"""The longest string kept decoded: a longer one (a rare, long vendor list) is decoded on every call, so that
hostile strings whose vendor sections decode to thousands of ranges cannot make the kept ones hold more than
about 60 MB."""


def decode_tc_string(s: str) -> TCString:
    """Decode an IAB TCF v2.x TC string.

    Raises :class:`~recommender.errors.DataError` when the string is empty, not
    base64url, truncated, not version 2, or has an unknown or repeated segment;
    the message names the segment, the field and the bit offset.
    """
    if not isinstance(s, str):
        raise DataError(MSG_NOT_STR.format(type=type(s).__name__))
    text = s.strip()
    return _decode_kept(text) if len(text) <= DECODED_KEPT_LENGTH else _decode_text(text)


@functools.lru_cache(maxsize=DECODED_KEPT)
def _decode_kept(text: str) -> TCString:
    """:func:`decode_tc_string` of a stripped string, kept for the strings decoded last.

    A CMP's page sends the same string with every request until the user chooses
    again, and a served list reads it three times (its check, the consent
    judgement, the engine's): a decoded string is immutable, so the work is
    done once per string. A string that does not decode raises every time (an
    exception is never kept)."""
    return _decode_text(text)


def _decode_text(text: str) -> TCString:
    """The decoding itself (see :func:`decode_tc_string`)."""
    if not text:
        raise DataError(MSG_EMPTY)
    segments = text.split(".")
    core = _decode_core(_BitReader(_b64decode(segments[0], 0, "core"), 0, "core"), text)
    seen: set[int] = set()
    for index, segment in enumerate(segments[1:], start=1):
        data = _b64decode(segment, index, "optional segment")
        probe = _BitReader(data, index, "optional segment")
        seg_type = probe.read_int(3, "segment_type")
        if seg_type not in (SEGMENT_DISCLOSED_VENDORS, SEGMENT_ALLOWED_VENDORS, SEGMENT_PUBLISHER_TC):
            raise DataError(MSG_SEGMENT_TYPE.format(index=index, type=seg_type))
        if seg_type in seen:
            raise DataError(MSG_DUPLICATE_SEGMENT.format(index=index, type=seg_type, name=_SEGMENT_NAMES[seg_type]))
        seen.add(seg_type)
        probe.name = _SEGMENT_NAMES[seg_type]
        if seg_type == SEGMENT_DISCLOSED_VENDORS:
            core["disclosed_vendors"] = probe.vendors("disclosed_vendors")
        elif seg_type == SEGMENT_ALLOWED_VENDORS:
            core["allowed_vendors"] = probe.vendors("allowed_vendors")
        else:
            core["publisher_tc"] = _decode_publisher_tc(probe)
    return TCString(**core)  # type: ignore[arg-type]


# -- the decision ------------------------------------------------------------------
# What the IAB Europe TCF Policies v2.2 and the IAB Tech Lab TC string format (v2.2) make a vendor check
# before it processes for a purpose, as :func:`tcf_allows_profiling` applies them:
#
# * the string was made under the policy in force: core field ``TcfPolicyVersion`` (4 for v2.2, 5 for
#   v2.3) at least the pack's ``min_policy_version``;
# * it is fresh: ``LastUpdated`` not before ``Created``, not in the future, and at most the pack's
#   ``max_age_days`` old (the v2.0 Policies' 13-month reminder; v2.2 defers to the local regulator);
# * purpose 1 and every purpose the pack maps have a legal basis for this vendor: consent (the purpose's
#   ``PurposesConsent`` bit and the vendor's ``Vendor Consent`` bit) or, for a purpose the pack lets
#   rest on it and the Policies allow (never 1 or 3-6 under v2.2), legitimate interest (the
#   ``PurposesLITransparency`` and ``Vendor Legitimate Interest`` bits: transparency given and no
#   objection);
# * no publisher restriction (``PubRestrictionEntry``: ``PurposeId``, ``RestrictionType``, vendor ranges)
#   forbids it: type 0 "purpose flatly not allowed by publisher" forbids the purpose; type 1 "require
#   consent" rules out the legitimate-interest path; type 2 "require legitimate interest" rules out the
#   consent path (so, for a consent-only purpose, forbids it); type 3 is undefined and read as a veto.
REASON_POLICY_VERSION = (
    "the string was made under TCF policy version {got}; the pack accepts {minimum} or later "
    "(consent.tcf.min_policy_version; 4 is TCF v2.2)"
)
REASON_TOO_OLD = (
    "the string was last updated {when} ({days} days ago); the pack accepts strings at most {limit} days old "
    "(consent.tcf.max_age_days): the user must be asked again"
)
REASON_FUTURE = "the string's LastUpdated {when} is in the future"
REASON_CREATED_AFTER = "the string's Created {created} is after its LastUpdated {updated}"
REASON_PURPOSE_ONE_TREATMENT = (
    "purpose 1 (store and/or access information on a device) was not disclosed (PurposeOneTreatment set)"
)
REASON_NOT_CONSENTED = "purpose {p} ({name}) not consented"
REASON_VENDOR = "vendor {vendor} not consented"
REASON_NO_BASIS = "purpose {p} ({name}): neither consented nor under the vendor's legitimate interest"
REASON_RESTRICTED = "publisher restricts purpose {p} for vendor {vendor}"
REASON_REQUIRES_LI = (
    "publisher restricts purpose {p} for vendor {vendor} to legitimate interest, which the TCF Policies v2.2 "
    "do not allow for it"
)
REASON_ALLOWED = "TCF: vendor {vendor} may profile for personalised content: {bases}"
REASON_REFUSED = "TCF: no profiling for personalised content by vendor {vendor}: {failures}"
FUTURE_SKEW = timedelta(minutes=5)
"""How far in the future a ``LastUpdated`` may lie (clock skew between the CMP and us)."""
_VETO = frozenset({RESTRICTION_NOT_ALLOWED, 3})


@dataclass(frozen=True)
class TcfDecision:
    """What a TC string allows one vendor to do with personalised content, under the pack's requirements."""

    allowed: bool
    """Every requirement met: policy version, age, and a legal basis for each required purpose."""
    vendor_id: int
    purpose_5_consent: bool
    purpose_6_consent: bool
    vendor_consent: bool
    restricted_purposes: tuple[int, ...]
    """Purposes among those required (and 11) that a publisher restriction forbids this vendor under consent."""
    limited_content_allowed: bool
    """Purpose 11 (limited data to select content, no profile) allowed, by consent or legitimate interest."""
    reason: str
    failures: tuple[str, ...] = ()
    """Each requirement not met, in plain language."""
    bases: tuple[tuple[int, str], ...] = ()
    """The legal basis each required purpose rests on (``consent`` or ``legitimate_interest``), when it has one."""
    string_failures: tuple[str, ...] = ()
    """The failures that make the string itself unusable (policy version, age, times): it says nothing
    about the user's choice, so it is neither a grant nor a refusal to record."""


def _purpose_basis(tc: TCString, vendor_id: int, p: int, li_allowed: bool) -> tuple[str | None, list[str]]:
    """The basis purpose ``p`` has for ``vendor_id`` (or None) and why not, under the publisher restrictions."""
    types = tc.restrictions_for(vendor_id, p)
    name = PURPOSE_NAMES.get(p, f"TCF purpose {p}")
    if types & _VETO:
        return None, [REASON_RESTRICTED.format(p=p, vendor=vendor_id)]
    consent_path = RESTRICTION_REQUIRE_LI not in types
    li_path = li_allowed and RESTRICTION_REQUIRE_CONSENT not in types
    if consent_path and tc.purpose_consent(p) and tc.vendor_consent(vendor_id):
        return "consent", []
    if li_path and tc.purpose_li(p) and tc.vendor_li(vendor_id):
        return "legitimate_interest", []
    if not consent_path and not li_path:
        return None, [REASON_REQUIRES_LI.format(p=p, vendor=vendor_id)]
    if li_path:
        return None, [REASON_NO_BASIS.format(p=p, name=name)]
    if not tc.purpose_consent(p):
        if p == 1 and tc.purpose_one_treatment:
            return None, [REASON_PURPOSE_ONE_TREATMENT]
        return None, [REASON_NOT_CONSENTED.format(p=p, name=name)]
    return None, []  # consented, but not the vendor: said once, by the caller


def _string_failures(tc: TCString, requirements: TcfRequirements, now: datetime) -> list[str]:
    """What makes the string itself unusable: its policy version and its age."""
    failures = []
    if tc.tcf_policy_version < requirements.min_policy_version:
        failures.append(REASON_POLICY_VERSION.format(got=tc.tcf_policy_version, minimum=requirements.min_policy_version))
    if tc.created > tc.last_updated:
        failures.append(REASON_CREATED_AFTER.format(created=tc.created.isoformat(), updated=tc.last_updated.isoformat()))
    if tc.last_updated > now + FUTURE_SKEW:
        failures.append(REASON_FUTURE.format(when=tc.last_updated.isoformat()))
    elif requirements.max_age_days is not None and now - tc.last_updated > timedelta(days=requirements.max_age_days):
        days = (now - tc.last_updated).days
        failures.append(REASON_TOO_OLD.format(when=tc.last_updated.isoformat(), days=days, limit=requirements.max_age_days))
    return failures


def tcf_allows_profiling(
    tc: TCString, vendor_id: int, requirements: TcfRequirements | None = None, *, now: datetime | None = None
) -> TcfDecision:
    """Whether ``tc`` allows ``vendor_id`` to profile for personalised content under ``requirements``.

    ``requirements`` is the pack's ``consent.tcf`` (default: :class:`~governance.policy.TcfRequirements`,
    purposes 1, 5 and 6 on consent, policy version 4 or later, at most 390 days old); ``now`` the
    moment the string is judged at (default: now). See the comment above for what is checked and why.
    Purpose 11 is reported separately (``limited_content_allowed``) unless the pack requires it.
    """
    _vendor_id(vendor_id)
    requirements = requirements if requirements is not None else TcfRequirements()
    now = datetime.now(UTC) if now is None else now
    invalid = _string_failures(tc, requirements, now)
    failures = list(invalid)
    vendor = tc.vendor_consent(vendor_id)
    bases: list[tuple[int, str]] = []
    vendor_missing = False
    for p in sorted(set(requirements.purposes)):
        li_allowed = p in requirements.legitimate_interest_purposes and p not in TCF_CONSENT_ONLY_PURPOSES
        basis, why = _purpose_basis(tc, vendor_id, p, li_allowed)
        if basis is not None:
            bases.append((p, basis))
            continue
        failures.extend(why)
        vendor_missing = vendor_missing or not vendor
    if vendor_missing:
        failures.append(REASON_VENDOR.format(vendor=vendor_id))
    checked = sorted(set(requirements.purposes) | {PURPOSE_LIMITED_CONTENT})
    restricted = tuple(p for p in checked if tc.restrictions_for(vendor_id, p) & (_VETO | {RESTRICTION_REQUIRE_LI}))
    p11_types = tc.restrictions_for(vendor_id, PURPOSE_LIMITED_CONTENT)
    p11 = _purpose_basis(tc, vendor_id, PURPOSE_LIMITED_CONTENT, True)[0] is not None and not p11_types & _VETO
    if failures:
        reason = REASON_REFUSED.format(vendor=vendor_id, failures="; ".join(failures))
    else:
        described = ", ".join(f"purpose {p} on {b.replace('_', ' ')}" for p, b in bases)
        reason = REASON_ALLOWED.format(vendor=vendor_id, bases=described)
    reason += f" (TC string of CMP {tc.cmp_id}, last updated {tc.last_updated.isoformat()}, policy version {tc.tcf_policy_version})"
    return TcfDecision(
        allowed=not failures,
        vendor_id=vendor_id,
        purpose_5_consent=tc.purpose_consent(PURPOSE_CONTENT_PROFILE),
        purpose_6_consent=tc.purpose_consent(PURPOSE_CONTENT_SELECTION),
        vendor_consent=vendor,
        restricted_purposes=restricted,
        limited_content_allowed=p11,
        reason=reason,
        failures=tuple(failures),
        bases=tuple(bases),
        string_failures=tuple(invalid),
    )


def tc_evidence(tc: TCString, vendor_id: int, decision: TcfDecision) -> dict[str, Any]:
    """What a consent record keeps of a TC string it was judged on: who, when, under which policy, and the verdict."""
    return {
        "vendor_id": vendor_id,
        "cmp_id": tc.cmp_id,
        "tc_created": tc.created.isoformat(),
        "tc_last_updated": tc.last_updated.isoformat(),
        "tcf_policy_version": tc.tcf_policy_version,
        "decision": decision.reason,
    }
