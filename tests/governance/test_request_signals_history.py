"""record_request_signals: the history it returns with a consent signal's record is the history a read
after its commit gives (the serving path decides on it without reading again), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from audits import Store, consent_history, record_consent
from audits.suppression import suppress_subject
from governance.policy import TcfRequirements, load_pack
from governance.privacy.consent import record_consent_from_request, record_request_signals

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")
CA = load_pack(POLICIES / "california-ccpa.yaml")
EU_TCF = EU.pack.model_copy(update={"consent": EU.pack.consent.model_copy(update={"tcf": TcfRequirements(max_age_days=None, grants=True)})})
TC_ALLOWS_23 = "CP60edpP60edpAKADBDECWEgAL-AAAAAAAYgALgAAAgAAAAA"  # purposes 1, 3-9; vendor 23 (see test_privacy.py)
TC_DENIES = "CP60edpP60edpAKADBDECWEgAEBAAAAAAAYgALgAAAgAAAAA"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _after(store: Store, subject: str) -> list[dict]:
    with store.session() as session:
        return consent_history(session, subject)


def test_the_returned_history_is_the_one_read_after_the_commit(store: Store) -> None:
    with store.session() as session:  # a history to add to: a grant, and a suppression kept through an erasure
        record_consent(session, subject_id="s1", purpose="personalization", status="granted", lawful_basis="consent", source="api", at=T0)
        suppress_subject(session, "s1", denied={"analytics": {"status": "objected", "lawful_basis": "legitimate_interest"}}, erased_at=T0)
    outcome, history = record_request_signals(store, "s1", pack=CA, headers={"Sec-GPC": "1"})
    assert outcome["recorded"], "the GPC signal is a new record"
    assert history == _after(store, "s1")
    assert {r["source"] for r in history} >= {"gpc", "api", "import"}
    outcome, history = record_request_signals(store, "s1", pack=CA, headers={"Sec-GPC": "1"})  # on record: nothing written
    assert outcome["recorded"] == [] and outcome["unchanged"] and history == _after(store, "s1")
    for tcf in (TC_ALLOWS_23, TC_DENIES):  # a grant, then a withdrawal over it, with the string as evidence
        outcome, history = record_request_signals(store, "s2", pack=EU_TCF, tcf=tcf, vendor_id=23)
        assert outcome["recorded"] and history == _after(store, "s2")
    assert [r["status"] for r in history] == ["granted", "withdrawn"]


def test_record_consent_from_request_answers_as_before(store: Store) -> None:
    outcome = record_consent_from_request(store, "s3", pack=CA, headers={"Sec-GPC": "1"})
    assert sorted(r["purpose"] for r in outcome["recorded"]) == sorted(p for p, c in CA.pack.consent.purposes.items() if c.model == "opt_out")
    assert record_consent_from_request(store, "s3", pack=CA, headers={"Sec-GPC": "1"})["recorded"] == []
