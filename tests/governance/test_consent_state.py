"""Consent state and the profiling decision; the GPC header."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.consent import ConsentRecord, decode_tc_string, effective_state, gpc_opt_out, may_profile
from governance.consent.state import (
    MSG_FIELD,
    MSG_NOT_RECORD,
    MSG_TIME,
    MSG_VENDOR_REQUIRED,
    REASON_GPC,
    REASON_NO_RECORD,
    REASON_UNLISTED,
    REASON_WITHDRAWN,
    SOURCES,
    STATUSES,
)
from governance.policy import ConsentPurpose, ConsentSection, load_pack
from recommender.errors import ConfigError, DataError

POLICIES = Path(__file__).resolve().parents[2] / "policies"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
VENDOR = 755

SECTION = ConsentSection(
    purposes={
        "personalization": ConsentPurpose(lawful_basis="consent", model="opt_in"),
        "analytics": ConsentPurpose(lawful_basis="legitimate_interest", model="opt_out"),
        "sale_sharing": ConsentPurpose(lawful_basis="consent", model="opt_out", legal_reference="CCPA §1798.120"),
    }
)


def core(*, purposes: set[int] = frozenset(), vendors: set[int] = frozenset()) -> str:
    """A minimal TC string core segment (bit field vendors, no LI, no restrictions)."""
    max_id = max(vendors, default=0)
    bits = "000010" + "0" * 72 + format(10, "012b") + "0" * 18 + "000011000100" + "0" * 12 + "000100" + "10" + "0" * 12
    bits += "".join("1" if n in purposes else "0" for n in range(1, 25)) + "0" * 24 + "0" + "000011000100"
    bits += format(max_id, "016b") + "0" + "".join("1" if v in vendors else "0" for v in range(1, max_id + 1))
    bits += "0" * 17 + "0" * 12
    bits += "0" * (-len(bits) % 8)
    return base64.urlsafe_b64encode(int(bits, 2).to_bytes(len(bits) // 8, "big")).decode().rstrip("=")


def record(
    status: str,
    minutes: int = 0,
    purpose: str = "personalization",
    basis: str = "consent",
    source: str = "api",
    **evidence,
) -> ConsentRecord:
    return ConsentRecord(purpose, status, basis, source, T0 + timedelta(minutes=minutes), evidence)  # type: ignore[arg-type]


# -- records -----------------------------------------------------------------------
def test_record_time_is_normalized_to_utc():
    paris = timezone(timedelta(hours=2))
    r = ConsentRecord("personalization", "granted", "consent", "banner", datetime(2024, 5, 1, 12, 0, tzinfo=paris))
    assert r.time == T0 and r.time.tzinfo is UTC


def test_naive_time_is_rejected():
    naive = datetime(2024, 5, 1, 10, 0)
    with pytest.raises(DataError) as info:
        ConsentRecord("personalization", "granted", "consent", "banner", naive)
    assert str(info.value) == MSG_TIME.format(value=naive)


@pytest.mark.parametrize(
    ("field", "kwargs", "allowed"),
    [
        ("status", {"status": "maybe"}, ", ".join(STATUSES)),
        ("source", {"source": "email"}, ", ".join(SOURCES)),
        ("lawful_basis", {"lawful_basis": "vital_interest"}, "consent, legitimate_interest, contract"),
    ],
)
def test_unknown_values_are_rejected(field, kwargs, allowed):
    fields = {
        "purpose": "personalization",
        "status": "granted",
        "lawful_basis": "consent",
        "source": "api",
        "time": T0,
    } | kwargs
    with pytest.raises(DataError) as info:
        ConsentRecord(**fields)
    assert str(info.value) == MSG_FIELD.format(field=field, allowed=allowed, value=kwargs[field])


def test_empty_purpose_and_bad_evidence_are_rejected():
    with pytest.raises(DataError, match="'purpose' must be a non-empty string"):
        ConsentRecord(" ", "granted", "consent", "api", T0)
    with pytest.raises(DataError, match="'evidence' must be a mapping, got list"):
        ConsentRecord("personalization", "granted", "consent", "api", T0, ["banner v3"])  # type: ignore[arg-type]


def test_evidence_is_copied():
    evidence = {"banner": "v3"}
    r = ConsentRecord("personalization", "granted", "consent", "banner", T0, evidence)
    evidence["banner"] = "v4"
    assert r.evidence == {"banner": "v3"}


def test_records_must_be_records():
    with pytest.raises(DataError) as info:
        effective_state([record("granted"), {"purpose": "personalization"}])  # type: ignore[list-item]
    assert str(info.value) == MSG_NOT_RECORD.format(type="dict", index=1)


# -- effective state ---------------------------------------------------------------
def test_latest_record_per_purpose_wins():
    history = [
        record("granted", 0),
        record("withdrawn", 5),
        record("granted", 10),
        record("objected", 3, purpose="analytics"),
    ]
    state = effective_state(history)
    assert list(state) == ["analytics", "personalization"]
    assert state["personalization"] == history[2]
    assert state["analytics"].status == "objected"


def test_ties_go_to_the_most_restrictive_status():
    for first, second in [("granted", "withdrawn"), ("withdrawn", "granted")]:
        state = effective_state([record(first), record(second)])
        assert state["personalization"].status == "withdrawn"
    assert effective_state([record("denied"), record("withdrawn")])["personalization"].status == "withdrawn"
    assert effective_state([record("opted_out"), record("granted")])["personalization"].status == "opted_out"


STATUS = st.sampled_from(STATUSES)
RECORDS = st.lists(
    st.builds(
        ConsentRecord,
        purpose=st.sampled_from(["personalization", "analytics", "sale_sharing", "ads"]),
        status=STATUS,
        lawful_basis=st.sampled_from(["consent", "legitimate_interest", "contract"]),
        source=st.sampled_from(SOURCES),
        time=st.integers(0, 20).map(lambda m: T0 + timedelta(minutes=m)),  # few values: many ties
        evidence=st.dictionaries(st.sampled_from(["banner", "ip", "request"]), st.text(max_size=3), max_size=2),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(records=RECORDS, data=st.data())
def test_reordering_never_changes_the_effective_state(records, data):
    shuffled = data.draw(st.permutations(records))
    assert effective_state(shuffled) == effective_state(records)
    for purpose in ("personalization", "analytics", "sale_sharing", "ads"):
        assert may_profile(SECTION, shuffled, purpose=purpose) == may_profile(SECTION, records, purpose=purpose)


@settings(max_examples=200, deadline=None)
@given(records=RECORDS)
def test_effective_record_is_a_latest_one(records):
    for purpose, chosen in effective_state(records).items():
        same = [r for r in records if r.purpose == purpose]
        assert chosen in same and chosen.time == max(r.time for r in same)


# -- the decision: properties --------------------------------------------------------
PURPOSE = st.sampled_from(["personalization", "analytics", "sale_sharing"])


@settings(max_examples=200, deadline=None)
@given(
    records=RECORDS,
    purpose=PURPOSE,
    stop=st.sampled_from(["withdrawn", "denied", "objected", "opted_out"]),
    gpc=st.booleans(),
)
def test_any_history_ending_in_a_stop_is_no(records, purpose, stop, gpc):
    last = ConsentRecord(purpose, stop, "consent", "api", T0 + timedelta(days=1))  # type: ignore[arg-type]
    decision = may_profile(SECTION, [*records, last], purpose=purpose, gpc=gpc)
    assert decision.allowed is False
    assert decision.record == last


@settings(max_examples=200, deadline=None)
@given(records=RECORDS, gpc=st.booleans())
def test_opt_in_without_a_granted_record_is_no(records, gpc):
    history = [r for r in records if r.status != "granted"]
    assert may_profile(SECTION, history, purpose="personalization", gpc=gpc).allowed is False


@settings(max_examples=200, deadline=None)
@given(records=RECORDS, purpose=st.text(min_size=1, max_size=12).filter(lambda p: p not in SECTION.purposes))
def test_unlisted_purposes_are_always_no(records, purpose):
    decision = may_profile(SECTION, records, purpose=purpose)
    assert decision.allowed is False and "is not listed in the pack's consent section" in decision.reason


@settings(max_examples=200, deadline=None)
@given(records=RECORDS, purpose=PURPOSE)
def test_gpc_never_grants(records, purpose):
    if may_profile(SECTION, records, purpose=purpose).allowed is False:
        assert may_profile(SECTION, records, purpose=purpose, gpc=True).allowed is False


@settings(max_examples=100, deadline=None)
@given(records=RECORDS.map(lambda rs: [r for r in rs if r.purpose != "analytics"]))
def test_opt_out_without_objection_is_yes_unless_gpc(records):
    assert may_profile(SECTION, records, purpose="analytics").allowed is True
    assert may_profile(SECTION, records, purpose="analytics", gpc=True).allowed is False
    no_gpc = SECTION.model_copy(update={"honour_gpc": False})
    assert may_profile(no_gpc, records, purpose="analytics", gpc=True).allowed is True


# -- the decision: examples and reasons ----------------------------------------------
def test_no_record_under_opt_in_consent():
    decision = may_profile(SECTION, [])
    assert decision.allowed is False
    assert (
        decision.reason
        == "no consent record for purpose 'personalization': under opt-in consent (GDPR Art. 6(1)(a)) no record means no"
    )
    assert decision.reason == REASON_NO_RECORD.format(
        purpose="personalization", basis="consent", ref="GDPR Art. 6(1)(a)"
    )
    assert (decision.lawful_basis, decision.model, decision.record) == ("consent", "opt_in", None)


def test_granted_then_withdrawn_stops_at_once():
    grant, withdraw = record("granted", 0, source="banner"), record("withdrawn", 1)
    assert may_profile(SECTION, [grant]).allowed is True
    decision = may_profile(SECTION, [grant, withdraw])
    assert decision.allowed is False and decision.record == withdraw
    assert decision.reason == REASON_WITHDRAWN.format(record="withdrawn via api at 2024-05-01T10:01:00+00:00")
    assert "GDPR Art. 7(3)" in decision.reason


def test_withdrawn_then_granted_again_allows():
    decision = may_profile(
        SECTION, [record("granted", 0), record("withdrawn", 1), record("granted", 2, source="banner")]
    )
    assert decision.allowed is True
    assert decision.reason == (
        "allowed: the latest record (granted via banner at 2024-05-01T10:02:00+00:00) grants purpose 'personalization' "
        "under opt-in consent (GDPR Art. 6(1)(a))"
    )


def test_a_grant_recorded_under_another_basis_is_not_consent():
    decision = may_profile(SECTION, [record("granted", basis="legitimate_interest")])
    assert decision.allowed is False
    assert "was given under legitimate interest, but purpose 'personalization' rests on consent" in decision.reason


@pytest.mark.parametrize(
    ("status", "cites"),
    [
        ("objected", "GDPR Art. 21"),
        ("opted_out", "CCPA §1798.120"),
        ("denied", "rests on legitimate interest (GDPR Art. 6(1)(f)); a refusal means no"),
    ],
)
def test_opt_out_purpose_stops_on_objection(status, cites):
    assert may_profile(SECTION, [], purpose="analytics").allowed is True
    decision = may_profile(
        SECTION, [record(status, purpose="analytics", basis="legitimate_interest")], purpose="analytics"
    )
    assert decision.allowed is False and cites in decision.reason


def test_gpc_opts_out_of_opt_out_purposes_only():
    decision = may_profile(SECTION, [], purpose="sale_sharing", gpc=True)
    assert decision.allowed is False and decision.gpc is True
    assert decision.reason == REASON_GPC.format(purpose="sale_sharing")
    # a GPC signal neither blocks nor replaces an opt-in grant
    assert may_profile(SECTION, [record("granted")], gpc=True).allowed is True
    assert may_profile(SECTION, [], gpc=True).reason.startswith("no consent record")


def test_gpc_wins_over_an_earlier_grant_on_an_opt_out_purpose():
    grant = record("granted", purpose="sale_sharing")
    assert may_profile(SECTION, [grant], purpose="sale_sharing").allowed is True
    assert may_profile(SECTION, [grant], purpose="sale_sharing", gpc=True).allowed is False


def test_unlisted_purpose_reason():
    decision = may_profile(SECTION, [record("granted", purpose="ads")], purpose="ads", jurisdiction="EU")
    assert decision.allowed is False and decision.jurisdiction == "EU"
    assert decision.reason == REASON_UNLISTED.format(purpose="ads", listed="analytics, personalization, sale_sharing")
    empty = may_profile(ConsentSection(), [], purpose="personalization")
    assert "(listed: none)" in empty.reason


# -- TCF ---------------------------------------------------------------------------
STRING_DAY = datetime(1970, 1, 2, tzinfo=UTC)  # core() strings were last updated at the epoch: judged a day later


def test_tcf_without_purposes_5_and_6_blocks_consent_based_personalization():
    granted = [record("granted")]
    tc_no = decode_tc_string(core(purposes={1, 2}, vendors={VENDOR}))
    decision = may_profile(SECTION, granted, tcf=tc_no, vendor_id=VENDOR, now=STRING_DAY)
    assert decision.allowed is False and decision.tcf is not None and not decision.tcf.allowed
    assert "the TCF string blocks consent-based profiling" in decision.reason and "purpose 5" in decision.reason
    tc_yes = decode_tc_string(core(purposes={1, 5, 6}, vendors={VENDOR}))
    allowed = may_profile(SECTION, granted, tcf=tc_yes, vendor_id=VENDOR, now=STRING_DAY)
    assert allowed.allowed is True and allowed.tcf.allowed is True


def test_tcf_without_the_vendor_blocks():
    tc = decode_tc_string(core(purposes={1, 5, 6}, vendors={1, 2}))
    decision = may_profile(SECTION, [record("granted")], tcf=tc, vendor_id=VENDOR, now=STRING_DAY)
    assert decision.allowed is False and f"vendor {VENDOR} not consented" in decision.reason


def test_tcf_never_grants_and_does_not_touch_legitimate_interest_purposes():
    tc = decode_tc_string(core(purposes={1, 5, 6}, vendors={VENDOR}))
    assert may_profile(SECTION, [], tcf=tc, vendor_id=VENDOR, now=STRING_DAY).allowed is False  # still no record
    tc_no = decode_tc_string(core())
    decision = may_profile(SECTION, [], purpose="analytics", tcf=tc_no, vendor_id=VENDOR, now=STRING_DAY)
    assert decision.allowed is True and decision.tcf is None


def test_tcf_needs_a_vendor_id():
    with pytest.raises(ConfigError) as info:
        may_profile(SECTION, [], tcf=decode_tc_string(core()))
    assert str(info.value) == MSG_VENDOR_REQUIRED


# -- the shipped packs -------------------------------------------------------------
def test_shipped_eu_pack():
    section = load_pack(POLICIES / "eu-gdpr-dsa.yaml").pack.consent
    assert may_profile(section, []).allowed is False
    assert may_profile(section, [record("granted")]).allowed is True
    assert may_profile(section, [], purpose="analytics").allowed is True
    assert (
        may_profile(
            section, [record("objected", purpose="analytics", basis="legitimate_interest")], purpose="analytics"
        ).allowed
        is False
    )


def test_shipped_california_pack():
    section = load_pack(POLICIES / "california-ccpa.yaml").pack.consent
    assert may_profile(section, []).allowed is True  # personalization is opt-out there
    decision = may_profile(section, [], gpc=True, jurisdiction="US-CA")
    assert decision.allowed is False and "Sec-GPC: 1" in decision.reason
    assert may_profile(section, [], purpose="sale_sharing", gpc=True).allowed is False


# -- GPC ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Sec-GPC": "1"}, True),
        ({"sec-gpc": "1"}, True),
        ({"SEC-GPC": " 1\t"}, True),
        ({"Sec-GPC": "0"}, False),
        ({"Sec-GPC": ""}, False),
        ({"Sec-GPC": "true"}, False),
        ({"Sec-GPC": "1, 1"}, False),
        ({"Sec-GPC": "11"}, False),
        ({"GPC": "1"}, False),
        ({"DNT": "1"}, False),
        ({}, False),
        ([("Sec-GPC", "0"), ("sec-gpc", "1")], True),
        ([(b"sec-gpc", b"1")], True),
    ],
)
def test_gpc_header(headers, expected):
    assert gpc_opt_out(headers) is expected


def test_gpc_with_starlette_headers():
    from starlette.datastructures import Headers

    assert gpc_opt_out(Headers(raw=[(b"sec-gpc", b"1")])) is True
    assert gpc_opt_out(Headers(headers={"Sec-GPC": "0"})) is False
