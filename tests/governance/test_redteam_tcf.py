"""Red team: IAB TCF v2.2 strings judged as the TCF Policies require, and a valid string that grants.

Each test names the hole it pins. The strings are built bit by bit
(``tests/tc_strings.py``, checked against the published IAB examples in
test_tcf.py), last updated a day ago unless a test says otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tc_strings import exact, tc_string
from typer.testing import CliRunner

from audits import open_store
from audits.consent import consent_history, record_consent
from governance.cli import app
from governance.consent import ConsentRecord, decode_tc_string, may_profile
from governance.policy import PolicyError, TcfRequirements, load_pack, parse_pack
from governance.privacy import TCF_NOT_A_SOURCE, TCF_OLDER_THAN_RECORD, record_consent_from_request, request_signals_unchanged

runner = CliRunner()
VENDOR = 755
EU = load_pack("policies/eu-gdpr-dsa.yaml")
DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
GRANTED = [ConsentRecord("personalization", "granted", "consent", "api", datetime.now(UTC) - timedelta(days=2))]
CONSENTED = {"purposes": {1, 5, 6}, "vendors": {VENDOR}}


def _decide(text: str, records=GRANTED, **requirements):  # noqa: ANN001, ANN202
    section = EU.pack.consent.model_copy(update={"tcf": TcfRequirements(**requirements)}) if requirements else EU.pack.consent
    return may_profile(section, records, tcf=decode_tc_string(text), vendor_id=VENDOR)


def test_a_string_that_meets_the_policy_allows() -> None:
    decision = _decide(tc_string(**CONSENTED))
    assert decision.allowed, decision.reason


def test_purpose_1_is_required() -> None:
    """Hole: a string with purposes 5 and 6 but no consent to store/access information (purpose 1) allowed profiling."""
    decision = _decide(tc_string(purposes={5, 6}, vendors={VENDOR}))
    assert decision.allowed is False
    assert "purpose 1 (store and/or access information on a device) not consented" in decision.reason


def test_a_string_made_before_tcf_v22_is_refused() -> None:
    """Hole: a policy-version-2 string (TCF v2.0/v2.1, before LI was withdrawn for purposes 3-6) was accepted."""
    decision = _decide(tc_string(**CONSENTED, policy_version=2))
    assert decision.allowed is False
    assert "made under TCF policy version 2; the pack accepts 4 or later" in decision.reason


def test_a_stale_string_is_refused() -> None:
    """Hole: a string last updated two years ago still allowed profiling; the pack's max_age_days now bounds it."""
    two_years = datetime.now(UTC) - timedelta(days=730)
    decision = _decide(tc_string(**CONSENTED, created=two_years))
    assert decision.allowed is False and "days ago); the pack accepts strings at most 390 days old" in decision.reason
    assert _decide(tc_string(**CONSENTED, created=two_years), max_age_days=None).allowed  # the pack decides


def test_a_string_dated_in_the_future_is_refused() -> None:
    """Hole: a LastUpdated in the future (a forged or broken clock) passed every check."""
    decision = _decide(tc_string(**CONSENTED, created=datetime.now(UTC) + timedelta(days=3)))
    assert decision.allowed is False and "is in the future" in decision.reason


@pytest.mark.parametrize("purpose", [1, 5, 6])
def test_a_publisher_veto_on_any_required_purpose_refuses(purpose: int) -> None:
    """Hole: only restrictions on purposes 5 and 6 were read; a publisher's "not allowed" on purpose 1 was ignored."""
    decision = _decide(tc_string(**CONSENTED, restrictions=[(purpose, 0, VENDOR, VENDOR)]))
    assert decision.allowed is False and f"publisher restricts purpose {purpose} for vendor {VENDOR}" in decision.reason


def test_purpose_11_where_the_pack_maps_it() -> None:
    """Hole: a pack could not require purpose 11 (limited data to select content); now it is required where mapped,
    and may rest on the vendor's legitimate interest where the pack allows it (the Policies allow LI for 11)."""
    without = tc_string(**CONSENTED)
    assert _decide(without, purposes=[1, 5, 6, 11]).allowed is False
    by_li = tc_string(**CONSENTED, purposes_li={11}, vendors_li={VENDOR})
    assert _decide(by_li, purposes=[1, 5, 6, 11]).allowed is False  # consent only, unless the pack says otherwise
    decision = _decide(by_li, purposes=[1, 5, 6, 11], legitimate_interest_purposes=[11])
    assert decision.allowed and (11, "legitimate_interest") in decision.tcf.bases
    vetoed = tc_string(**CONSENTED, purposes_li={11}, vendors_li={VENDOR}, restrictions=[(11, 1, VENDOR, VENDOR)])
    assert _decide(vetoed, purposes=[1, 5, 6, 11], legitimate_interest_purposes=[11]).allowed is False  # require consent


@pytest.mark.parametrize(("purposes", "message"), [("[1, 5, 6]\n    legitimate_interest_purposes: [5]", "cannot rest on legitimate interest"), ("[5, 6]", "must include TCF purpose 1")])
def test_a_pack_cannot_claim_legitimate_interest_for_purposes_3_to_6_nor_drop_purpose_1(purposes: str, message: str) -> None:
    """Hole: nothing stopped a pack from reading profiling consent as legitimate interest (TCF v2.2 forbids it)."""
    text = Path("policies/eu-gdpr-dsa.yaml").read_text(encoding="utf-8").replace("    purposes: [1, 5, 6]\n    legitimate_interest_purposes: []", f"    purposes: {purposes}", 1)
    with pytest.raises(PolicyError) as info:
        parse_pack(text, "eu-variant.yaml")
    assert message in str(info.value) and "consent.tcf" in str(info.value)


@pytest.mark.parametrize(("purpose", "message"), [("analytics", "rests on legitimate_interest, but TCF purposes 1, 5 and 6 need consent"), ("ads", "is not one of the pack's consent purposes (analytics, personalization)")])
def test_a_pack_maps_tcf_only_to_a_consent_purpose_of_its_own(purpose: str, message: str) -> None:
    """Hole: nothing checked that the purpose a pack maps TCF to exists and rests on consent."""
    text = Path("policies/eu-gdpr-dsa.yaml").read_text(encoding="utf-8").replace("  tcf:\n    purpose: personalization\n", f"  tcf:\n    purpose: {purpose}\n", 1)
    with pytest.raises(PolicyError) as info:
        parse_pack(text, "eu-variant.yaml")
    assert "consent.tcf.purpose" in str(info.value) and message in str(info.value)


def test_a_valid_string_grants_only_where_the_pack_lets_tcf_grant(store) -> None:  # noqa: ANN001
    """Hole: a TC string recorded a grant under any pack; only a pack with consent.tcf.grants may take TCF as a source."""
    text = tc_string(**CONSENTED)
    refusing = EU.pack.model_copy(update={"consent": EU.pack.consent.model_copy(update={"tcf": TcfRequirements(grants=False)})})
    outcome = record_consent_from_request(store, "tcf-subject-1", pack=refusing, tcf=text, vendor_id=VENDOR)
    assert outcome["recorded"] == [] and outcome["ignored"] == [{"signal": "tcf", "reason": TCF_NOT_A_SOURCE}]
    granted = record_consent_from_request(store, "tcf-subject-1", pack=EU, tcf=text, vendor_id=VENDOR)
    assert [(r["status"], r["source"]) for r in granted["recorded"]] == [("granted", "tcf")]
    with store.session() as session:
        (record,) = consent_history(session, "tcf-subject-1")
    assert record["evidence"]["tc_string"] == text and record["evidence"]["vendor_id"] == VENDOR


def test_a_stale_or_old_policy_string_records_nothing(store) -> None:  # noqa: ANN001
    """Hole: an unusable string (older policy, too old) was recorded as the subject's refusal or grant."""
    for text in (tc_string(**CONSENTED, policy_version=2), tc_string(**CONSENTED, created=datetime.now(UTC) - timedelta(days=500))):
        outcome = record_consent_from_request(store, "tcf-subject-2", pack=EU, tcf=text, vendor_id=VENDOR)
        assert outcome["recorded"] == [] and outcome["ignored"][0]["reason"].startswith("the TC string cannot be used:")


def test_a_string_older_than_a_withdrawal_does_not_undo_it(store) -> None:  # noqa: ANN001
    """Hole: a browser replaying yesterday's TC string re-granted consent the subject withdrew this morning."""
    yesterday = exact(datetime.now(UTC) - timedelta(days=1))
    with store.session() as session:
        record_consent(session, subject_id="tcf-subject-3", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    outcome = record_consent_from_request(store, "tcf-subject-3", pack=EU, tcf=tc_string(**CONSENTED, created=yesterday), vendor_id=VENDOR)
    assert outcome["recorded"] == []
    assert outcome["ignored"][0]["reason"].startswith(TCF_OLDER_THAN_RECORD.split("{")[0])


def test_a_grant_read_from_a_string_lapses_with_the_string() -> None:
    """Hole: a grant recorded from a TC string outlived the string's maximum age for ever."""
    old = exact(datetime.now(UTC) - timedelta(days=400))
    lapsed = ConsentRecord("personalization", "granted", "consent", "tcf", old + timedelta(minutes=1), {"tc_last_updated": old.isoformat()})
    decision = may_profile(EU.pack.consent, [lapsed])
    assert decision.allowed is False and "more than 390 days ago" in decision.reason
    fresh = ConsentRecord("personalization", "granted", "consent", "tcf", datetime.now(UTC) - timedelta(days=3))
    assert may_profile(EU.pack.consent, [fresh]).allowed


def test_the_cli_serves_a_personalised_list_on_a_valid_string_and_records_it(db_url: str) -> None:
    """Hole: `recgov recommend --tcf` could only refuse; a valid string now grants (recorded, source tcf) under the EU pack."""
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    common = ["--model", version, "--pack", "eu-gdpr-dsa", "--vendor-id", str(VENDOR), "--database-url", db_url, "--json"]
    served = runner.invoke(app, ["recommend", "u000012", "--tcf", tc_string(**CONSENTED), *common])
    assert served.exit_code == 0, served.output
    assert json.loads(served.stdout)["mode"] == "personalized"
    refused = runner.invoke(app, ["recommend", "u000012", "--tcf", tc_string(purposes={1, 2}, vendors={VENDOR}), *common])
    assert refused.exit_code == 0, refused.output
    assert json.loads(refused.stdout)["mode"] == "non_profiling"
    store = open_store(db_url)
    try:
        with store.session() as session:
            history = consent_history(session, "u000012")
    finally:
        store.close()
    assert [(h["status"], h["source"]) for h in history] == [("granted", "tcf"), ("withdrawn", "tcf")]
    assert "u000012" not in json.dumps([h["evidence"] for h in history])


def test_the_read_only_judgement_of_a_signal_agrees_with_the_recording_one(store) -> None:  # noqa: ANN001
    """The serving path decides a repeated signal without a write (request_signals_unchanged on the history
    it read): before every step of a subject's life, it must say "nothing to record" exactly when recording
    records nothing, and then answer what recording answers."""
    now = datetime.now(UTC)
    consented, refused = tc_string(**CONSENTED), tc_string(purposes={1}, vendors={VENDOR})
    steps = [
        ({"Sec-GPC": "1"}, None), ({"Sec-GPC": "1"}, None), (None, consented), (None, consented), ({"Sec-GPC": "1"}, consented),
        (None, refused), (None, refused), (None, tc_string(**CONSENTED, created=exact(now - timedelta(days=500)))),
        (None, tc_string(**CONSENTED, policy_version=2)), (None, consented), (None, tc_string(**CONSENTED, created=exact(now - timedelta(days=3)))),
    ]  # fmt: skip
    said_nothing = 0
    for number, (headers, text) in enumerate(steps):
        with store.session() as session:
            history = consent_history(session, "tcf-subject-9")
        judged = request_signals_unchanged(history, pack=EU, headers=headers, tcf=text, vendor_id=VENDOR)
        outcome = record_consent_from_request(store, "tcf-subject-9", pack=EU, headers=headers, tcf=text, vendor_id=VENDOR)
        assert (judged is None) == bool(outcome["recorded"]), f"step {number}"
        if judged is not None:
            assert judged == outcome, f"step {number}"
            said_nothing += 1
    assert 0 < said_nothing < len(steps)  # both kinds of step were taken
