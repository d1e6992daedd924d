"""IAB TCF v2 TC strings built bit by bit, for tests (the test-side encoder).

Field order and widths of the core segment, from the IAB Tech Lab "Transparency and
Consent String with Global Vendor & CMP List Formats" (TCF v2.2): Version 6,
Created 36, LastUpdated 36 (deciseconds), CmpId 12, CmpVersion 12, ConsentScreen 6,
ConsentLanguage 12, VendorListVersion 12, TcfPolicyVersion 6, IsServiceSpecific 1,
UseNonStandardTexts 1, SpecialFeatureOptIns 12, PurposesConsent 24,
PurposesLITransparency 24, PurposeOneTreatment 1, PublisherCC 12, then the vendor
consent and vendor legitimate interest sections (MaxVendorId 16, IsRangeEncoding 1,
a bit field) and NumPubRestrictions 12 with, per entry, PurposeId 6,
RestrictionType 2 and a range section (NumEntries 12; IsARange 1, StartOrOnlyVendorId
16, [EndVendorId 16]).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def deciseconds(when: datetime) -> int:
    return round((when - EPOCH).total_seconds() * 10)


def exact(when: datetime) -> datetime:
    """``when`` at the decisecond precision a TC string keeps."""
    return EPOCH + timedelta(milliseconds=deciseconds(when) * 100)


def tc_string(
    *,
    purposes: Iterable[int] = (),
    purposes_li: Iterable[int] = (),
    vendors: Iterable[int] = (),
    vendors_li: Iterable[int] = (),
    policy_version: int = 4,
    created: datetime | None = None,
    last_updated: datetime | None = None,
    restrictions: Iterable[tuple[int, int, int, int]] = (),
    purpose_one_treatment: bool = False,
) -> str:
    """A core-segment TC string; ``restrictions`` are ``(purpose, type, first vendor, last vendor)``."""
    created = created or datetime.now(UTC) - timedelta(days=1)
    last_updated = last_updated or created
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        assert 0 <= value < 1 << n, (value, n)
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def bitset(ids: Iterable[int], n: int) -> None:
        chosen = set(ids)
        bits.extend(int(i + 1 in chosen) for i in range(n))

    def vendor_section(ids: Iterable[int]) -> None:
        chosen = set(ids)
        top = max(chosen, default=0)
        put(top, 16)
        put(0, 1)  # a bit field
        bitset(chosen, top)

    put(2, 6)
    put(deciseconds(created), 36)
    put(deciseconds(last_updated), 36)
    put(10, 12)  # CmpId
    put(3, 12)  # CmpVersion
    put(1, 6)  # ConsentScreen
    put(ord("E") - 65, 6), put(ord("N") - 65, 6)  # ConsentLanguage EN
    put(150, 12)  # VendorListVersion
    put(policy_version, 6)
    put(1, 1)  # IsServiceSpecific
    put(0, 1)  # UseNonStandardTexts
    bitset((), 12)
    bitset(purposes, 24)
    bitset(purposes_li, 24)
    put(int(purpose_one_treatment), 1)
    put(ord("D") - 65, 6), put(ord("E") - 65, 6)  # PublisherCC DE
    vendor_section(vendors)
    vendor_section(vendors_li)
    entries = list(restrictions)
    put(len(entries), 12)
    for purpose, kind, first, last in entries:
        put(purpose, 6)
        put(kind, 2)
        put(1, 12)
        put(int(first != last), 1)
        put(first, 16)
        if first != last:
            put(last, 16)
    bits.extend([0] * (-len(bits) % 8))
    data = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
