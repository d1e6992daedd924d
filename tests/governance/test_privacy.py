"""The DPO's library (governance.privacy) on SQLite and PostgreSQL: consent-filtered training
data that agrees with may_profile subject by subject, GPC and TCF signals recorded, the access
export, and an erasure after which the raw id is nowhere and the trail still verifies."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event, select, text

from audits import (
    DecisionLog,
    Store,
    consent_history,
    list_requests,
    lookup_pseudonyms,
    record_consent,
    verify_trail,
)
from audits.models import ModelVersion, SubjectRequest, TrailEvent
from governance.privacy import consent as privacy_consent
from governance.privacy import unlearning as privacy_unlearning
from governance.consent.state import may_profile
from governance.policy import TcfRequirements, load_pack
from governance.privacy import (
    EXCLUSION_REASONS,
    erase_subject,
    export_subject,
    filter_training_events,
    processing_record,
    record_consent_from_request,
    show_consent,
)
from governance.training import train_and_record
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.synthetic import SyntheticSpec, generate
from store_dump import dump_store

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(
    POLICIES / "eu-gdpr-dsa.yaml"
)  # personalization: consent, opt_in; analytics: legitimate interest, opt_out
CA = load_pack(
    POLICIES / "california-ccpa.yaml"
)  # personalization: legitimate interest, opt_out; sale_sharing: opt_out
NOW = datetime(2024, 7, 2, tzinfo=UTC)  # the synthetic log runs 2024-01-01 to 2024-07-01
T0 = datetime(2024, 1, 1, tzinfo=UTC)
VICTIM = "dsr-victim-7Qx9"
# TCF v2.2 strings (policy version 4) last updated 2024-03-01, built bit by bit as in test_tcf.py:
TC_ALLOWS_23 = "CP60edpP60edpAKADBDECWEgAL-AAAAAAAYgALgAAAgAAAAA"  # purposes 1, 3-9; vendor 23
TC_DENIES = "CP60edpP60edpAKADBDECWEgAEBAAAAAAAYgALgAAAgAAAAA"  # purposes 2 and 10 only
EU_TCF_ANY_AGE = EU.pack.model_copy(  # EU, letting TCF grant, without the age limit, so the strings above never expire
    update={"consent": EU.pack.consent.model_copy(update={"tcf": TcfRequirements(max_age_days=None, grants=True)})}
)


def _dataset(n_users: int = 60, n_items: int = 40, n: int = 1500, seed: int = 4, victim: bool = True) -> Dataset:
    data = generate(
        SyntheticSpec(n_users=n_users, n_items=n_items, n_interactions=n, seed=seed, event_mix={"rating": 1.0})
    )
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    if victim:  # the busiest user becomes the subject with a distinctive id
        busiest = events["user_id"].value_counts().index[0]
        events.loc[events["user_id"] == busiest, "user_id"] = VICTIM
    return Dataset(events=events, items=data.items, name="privacy-test", source="synthetic:privacy-test")


def _consent(
    store: Store,
    subject: str,
    status: str,
    *,
    at: datetime = T0,
    purpose: str = "personalization",
    basis: str = "consent",
    source: str = "banner",
) -> None:
    with store.session() as session:
        record_consent(
            session, subject_id=subject, purpose=purpose, status=status, lawful_basis=basis, source=source, at=at
        )


# -- filter_training_events -----------------------------------------------------------------
def test_the_filter_agrees_with_may_profile_subject_by_subject(store: Store) -> None:
    data = _dataset(victim=False)
    users = sorted(data.events["user_id"].unique())
    plan = {
        users[0]: [("granted", "consent", T0)],
        users[1]: [("granted", "consent", T0), ("withdrawn", "consent", T0 + timedelta(days=1))],
        users[2]: [("denied", "consent", T0)],
        users[3]: [("objected", "consent", T0)],
        users[4]: [("opted_out", "consent", T0)],
        users[5]: [("granted", "legitimate_interest", T0)],  # not given as consent
        users[6]: [("granted", "consent", T0), ("withdrawn", "consent", T0)],  # same time: most restrictive wins
        users[7]: [("withdrawn", "consent", T0), ("granted", "consent", T0 + timedelta(days=2))],  # granted again
        **{u: [("granted", "consent", T0)] for u in users[8:30]},
    }
    with store.session() as session:
        for subject, records in plan.items():
            for status, basis, at in records:
                record_consent(
                    session,
                    subject_id=subject,
                    purpose="personalization",
                    status=status,
                    lawful_basis=basis,
                    source="banner",
                    at=at,
                )
    events = data.events.copy()
    events.loc[events.index[:5], "user_id"] = None  # events that name no subject
    data = data.with_events(events)

    filtered, report = filter_training_events(data, EU, store, now=NOW)

    with store.session() as session:
        expected = {
            u for u in users if may_profile(EU.pack.consent, privacy_consent.consent_records(consent_history(session, u))).allowed
        }
    assert set(filtered.events["user_id"].astype(str).unique()) == expected
    assert expected == {users[0], users[7], *users[8:30]}
    excluded = report["subjects"]["excluded"]
    assert excluded["withdrawn"] == 2 and excluded["denied"] == 1 and excluded["objected"] == 1
    assert excluded["opted_out"] == 1 and excluded["wrong_basis"] == 1
    assert excluded["no_consent_record"] == len(users) - len(plan)
    assert report["events"]["excluded"]["missing_subject_id"] == 5
    assert (
        report["events"]["kept"] + sum(report["events"]["excluded"].values())
        == report["events"]["total"]
        == len(events)
    )
    assert report["events"]["kept"] == len(filtered.events)
    assert set(report["events"]["excluded"]) == set(EXCLUSION_REASONS)


def test_a_withdrawal_takes_effect_at_the_next_training_filter(store: Store) -> None:
    data = _dataset()
    for subject in data.events["user_id"].unique():
        _consent(store, subject, "granted")
    first, report = filter_training_events(data, EU, store, now=NOW)
    assert VICTIM in set(first.events["user_id"])
    assert report["subjects"]["excluded"]["withdrawn"] == 0

    _consent(store, VICTIM, "withdrawn", at=T0 + timedelta(days=3), source="api")
    second, report = filter_training_events(data, EU, store, now=NOW)
    n_victim = int((data.events["user_id"] == VICTIM).sum())
    assert VICTIM not in set(second.events["user_id"])
    assert report["subjects"]["excluded"]["withdrawn"] == 1
    assert report["events"]["excluded"]["withdrawn"] == n_victim
    assert len(second.events) == len(first.events) - n_victim
    with store.snapshot() as connection:
        filtered_events = connection.execute(
            text("SELECT COUNT(*) FROM trail_events WHERE action = 'privacy.training_filtered'")
        ).scalar_one()
        assert filtered_events == 2
        assert verify_trail(connection).intact
    assert VICTIM not in dump_store(store)


def test_retention_and_opt_out_purposes(store: Store) -> None:
    data = _dataset()
    # California: personalization is opt-out, so no record means yes; an opt-out means no.
    _consent(store, VICTIM, "opted_out", basis="legitimate_interest", source="gpc")
    now = datetime(2024, 12, 1, tzinfo=UTC)  # retention 365 days: events before 2023-12-02 go; none here
    _, report = filter_training_events(data, CA, store, now=now)
    assert report["subjects"]["excluded"]["opted_out"] == 1
    assert report["subjects"]["excluded"]["no_consent_record"] == 0
    assert report["subjects"]["kept"] == data.events["user_id"].nunique() - 1
    # A year later, half of the log is older than the 365 days the pack keeps.
    later = datetime(2025, 4, 1, tzinfo=UTC)
    aged, report = filter_training_events(data, CA, store, now=later)
    cutoff = later - timedelta(days=365)
    assert report["cutoff"] == cutoff.isoformat()
    assert (aged.events["timestamp"] >= cutoff).all()
    young_others = (data.events["timestamp"] >= cutoff) & (data.events["user_id"] != VICTIM)
    assert len(aged.events) == int(young_others.sum())
    assert report["events"]["excluded"]["retention"] == int(
        ((data.events["timestamp"] < cutoff) & (data.events["user_id"] != VICTIM)).sum()
    )


def test_the_filter_reads_consent_in_bulk_and_is_deterministic(store: Store) -> None:
    def statements(data: Dataset) -> int:
        seen: list[str] = []

        def count(conn, cursor, statement, *args) -> None:
            seen.append(statement)

        event.listen(store.engine, "before_cursor_execute", count)
        try:
            filter_training_events(data, EU, store, now=NOW, record=False)
        finally:
            event.remove(store.engine, "before_cursor_execute", count)
        return len(seen)

    small, large = _dataset(n_users=20, n=400, victim=False), _dataset(n_users=300, n=6000, victim=False)
    for data in (small, large):
        for subject in data.events["user_id"].unique()[::2]:
            _consent(store, subject, "granted")
    # no per-subject query: the installation key check, pseudonyms, suppressions, states, bases
    assert statements(small) == statements(large) <= 10
    a, report_a = filter_training_events(large, EU, store, now=NOW, record=False)
    b, report_b = filter_training_events(large, EU, store, now=NOW, record=False)
    assert a.content_hash() == b.content_hash() and report_a == report_b


def test_the_filter_refuses_a_purpose_the_pack_does_not_list(store: Store) -> None:
    with pytest.raises(
        ConfigError,
        match=r"purpose 'marketing' is not listed in the consent section of pack eu-gdpr-dsa \(listed: analytics, personalization\)",
    ):
        filter_training_events(_dataset(), EU, store, purpose="marketing")


# -- signals from a request -------------------------------------------------------------------
def test_gpc_is_recorded_as_an_opt_out_with_source_gpc(store: Store) -> None:
    outcome = record_consent_from_request(store, VICTIM, pack=CA, headers={"sec-gpc": " 1 "}, jurisdiction="US-CA")
    assert outcome["gpc"] is True
    assert sorted((r["purpose"], r["status"], r["source"]) for r in outcome["recorded"]) == [
        ("personalization", "opted_out", "gpc"),
        ("sale_sharing", "opted_out", "gpc"),
    ]
    again = record_consent_from_request(store, VICTIM, pack=CA, headers={"Sec-GPC": "1"})
    assert again["recorded"] == [] and len(again["unchanged"]) == 2  # a repeated signal is not recorded twice
    with store.session() as session:
        history = consent_history(session, VICTIM)
    assert {(h["source"], h["status"], h["jurisdiction"]) for h in history} == {("gpc", "opted_out", "US-CA")}
    assert all(h["lawful_basis"] == CA.pack.consent.purposes[h["purpose"]].lawful_basis for h in history)
    filtered, report = filter_training_events(_dataset(), CA, store, now=NOW)
    assert VICTIM not in set(filtered.events["user_id"]) and report["subjects"]["excluded"]["opted_out"] == 1
    # Under the EU pack, GPC opts out of the opt-out purpose only; no signal, nothing recorded.
    eu = record_consent_from_request(store, "someone-else-1", pack=EU, headers=[("Sec-GPC", "1")])
    assert [(r["purpose"], r["status"]) for r in eu["recorded"]] == [("analytics", "opted_out")]
    assert record_consent_from_request(store, "someone-else-2", pack=EU, headers={"Sec-GPC": "0"})["recorded"] == []
    assert VICTIM not in dump_store(store)


def test_a_tcf_string_is_recorded_with_its_evidence(store: Store) -> None:
    granted = record_consent_from_request(store, VICTIM, pack=EU_TCF_ANY_AGE, tcf=TC_ALLOWS_23, vendor_id=23)
    assert [(r["purpose"], r["status"], r["source"]) for r in granted["recorded"]] == [
        ("personalization", "granted", "tcf")
    ]
    assert record_consent_from_request(store, VICTIM, pack=EU_TCF_ANY_AGE, tcf=TC_ALLOWS_23, vendor_id=23)["recorded"] == []
    refused = record_consent_from_request(store, VICTIM, pack=EU_TCF_ANY_AGE, tcf=TC_DENIES, vendor_id=23)
    assert [r["status"] for r in refused["recorded"]] == ["withdrawn"]  # it was granted before
    assert (
        record_consent_from_request(store, "new-subject-9", pack=EU_TCF_ANY_AGE, tcf=TC_DENIES, vendor_id=23)["recorded"][0][
            "status"
        ]
        == "denied"
    )
    with store.session() as session:
        history = consent_history(session, VICTIM)
    assert [h["evidence"]["tc_string"] for h in history] == [TC_ALLOWS_23, TC_DENIES]
    assert all(h["source"] == "tcf" and h["lawful_basis"] == "consent" for h in history)
    assert "purpose 5" in history[-1]["evidence"]["decision"]
    with pytest.raises(ConfigError, match="no vendor_id"):
        record_consent_from_request(store, VICTIM, pack=EU_TCF_ANY_AGE, tcf=TC_ALLOWS_23)
    with pytest.raises(DataError, match="not base64url"):
        record_consent_from_request(store, VICTIM, pack=EU_TCF_ANY_AGE, tcf="not a tc string!", vendor_id=23)


# -- access and erasure -----------------------------------------------------------------------
@pytest.fixture
def trained(store: Store, recgov_home: Path) -> tuple[Dataset, object]:
    data = _dataset()
    run = train_and_record(
        data,
        store=store,
        models_dir=recgov_home / "models",
        params={"factors": 8, "iterations": 5},
        measure_carbon=False,
    )
    _consent(store, VICTIM, "granted")
    _consent(store, VICTIM, "withdrawn", at=T0 + timedelta(days=10), source="api")
    with DecisionLog(store) as log:
        log.submit_and_wait(
            {
                "subject_id": VICTIM,
                "mode": "personalized",
                "model_version": run.model_version,
                "slate": {
                    "items": ["i00001", "i00002"],
                    "scores": [0.9, 0.7],
                    "tags": [["because_you_watched"], ["popular"]],
                },
                "context": {"surface": "home"},
                "pack_name": EU.name,
                "pack_version": EU.version,
                "pack_hash": EU.content_hash,
            }
        )
    return data, run


def test_the_export_holds_history_events_decisions_models_and_logic(store: Store, trained) -> None:
    data, run = trained
    doc = export_subject(store, VICTIM, dataset=data, pack=EU)
    assert doc["subject"] == {"id": VICTIM}
    assert [h["status"] for h in doc["consent"]["history"]] == ["granted", "withdrawn"]
    assert doc["consent"]["in_force"]["personalization"]["status"] == "withdrawn"
    assert doc["profiling"]["personalization"]["allowed"] is False
    assert "withdrawn" in doc["profiling"]["personalization"]["reason"]
    mine = data.events[data.events["user_id"] == VICTIM]
    assert doc["interactions"]["count"] == len(mine) > 0
    assert sorted(e["item_id"] for e in doc["interactions"]["events"]) == sorted(mine["item_id"].astype(str))
    assert all("user_id" not in e for e in doc["interactions"]["events"])
    assert [d["tags"] for d in doc["decisions"]] == [[["because_you_watched"], ["popular"]]]
    assert [(m["version_id"], m["membership"]) for m in doc["models"]] == [(run.model_version, "includes")]
    assert doc["logic"]["legal_reference"].startswith("DSA Art. 27") and doc["logic"]["inputs"]
    assert [r["kind"] for r in doc["requests"]] == ["access"] and doc["requests"][0]["status"] == "completed"
    assert doc["request"]["deadline_basis"].startswith("30 days")
    json.dumps(doc, allow_nan=False)  # plain JSON
    with store.session() as session:
        (request,) = list_requests(session, kind="access")
    assert request["status"] == "completed" and request["result"]["counts"]["interactions"] == len(mine)
    assert VICTIM not in dump_store(store)


def test_erasure_unlearns_records_and_shreds_leaving_no_raw_id(store: Store, trained, recgov_home: Path) -> None:
    data, run = trained
    needles = [VICTIM.encode("utf-8"), VICTIM.encode("utf-32-le")]  # numpy keeps str arrays as UTF-32
    original = run.artifact.read_bytes()
    assert any(n in original for n in needles), "the check must be able to see the id in an artifact"
    with store.session() as session:
        before = lookup_pseudonyms(session, [VICTIM])[VICTIM]

    report = erase_subject(store, VICTIM, pack=EU, exact=False, model_path=run.artifact, delete_previous=True)

    (step,) = report["unlearning"]
    assert step["status"] == "unlearned" and step["n_users_removed"] == 1 and step["recorded"] is True
    assert step["propagate"] == 1 and step["n_users_refreshed"] > 0  # one sweep over the users sharing their items
    assert step["previous_artifact_deleted"] and not run.artifact.exists()
    new_artifact = Path(step["artifact"])
    assert not any(n in new_artifact.read_bytes() for n in needles)
    residual = step["residual_influence"]
    assert residual["measured"] is True and 0 <= residual["unlearned_vs_retrained"]["topk_jaccard_mean"] <= 1
    assert [(v["version_id"], v["membership"]) for v in report["models"]["versions"]] == [
        (run.model_version, "includes")
    ]
    assert report["shredded"] and report["pseudonym"] == before
    assert report["unlinked"] == {
        "consent_records": 2,
        "subject_requests": 2,  # the erasure and the retrain it calls for
        "decisions": 1,
        "batch_decisions": 0,
        "item_reports": 0,
        "trail_events": report["unlinked"]["trail_events"],
    }
    assert VICTIM not in json.dumps(report)

    with store.snapshot() as connection:
        assert verify_trail(connection).intact
    assert VICTIM not in dump_store(store)
    with store.session() as session:
        assert lookup_pseudonyms(session, [VICTIM])[VICTIM] is None  # the secret is gone
        # only the restriction the suppression record keeps, at the erasure time
        (kept,) = consent_history(session, VICTIM)
        assert consent_history(session, VICTIM, include_suppressions=False) == []
        (request,) = list_requests(session, kind="erasure")
        (retrain,) = list_requests(session, kind="retrain")
        models = session.execute(text("SELECT version_id FROM model_versions")).scalars().all()
    assert request["status"] == "completed" and request["subject"] == before
    assert request["result"]["shredded"] is True
    assert (kept["purpose"], kept["status"], kept["source"], kept["id"]) == ("personalization", "withdrawn", "import", 0)
    # the kept restriction leads nowhere: no request, no pseudonym, in the row and in its trail event
    assert "subject_request" not in kept["evidence"]
    with store.session() as session:
        suppressed = session.execute(
            select(TrailEvent.subject, TrailEvent.objects).where(TrailEvent.action == "subject.suppressed")
        ).one()
        assert session.execute(text("SELECT request_id FROM suppressions")).scalars().all() == [None]
    assert suppressed.subject is None and before not in str(suppressed.objects)
    assert sorted(models) == sorted([run.model_version, step["version"]])
    assert retrain["status"] == "received" and retrain["subject"] == before
    assert retrain["result"]["erasure_request"] == request["id"]
    assert sorted(retrain["result"]["models"]) == sorted(models)  # the unlearned version too: it approximates
    assert retrain["deadline"] - retrain["requested_at"] == timedelta(days=EU.pack.consent.requests.retrain_days)
    assert report["retrain"]["request"]["id"] == retrain["id"] and report["retrain"]["run"] is None
    assert any("recgov retrain run DATA" in item for item in report["not_done"])
    # The next training filter leaves the subject out: the withdrawal is kept, and their old events are erased.
    _, filtered = filter_training_events(data, EU, store, now=NOW, record=False)
    assert filtered["subjects"]["excluded"]["withdrawn"] == 1
    assert filtered["events"]["excluded"]["withdrawn"] == int((data.events["user_id"] == VICTIM).sum())
    assert show_consent(store, VICTIM, pack=EU)["subject"] is None


def test_a_failed_erasure_is_recorded_and_shreds_nothing(
    store: Store, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run = trained

    def broken(*args, **kwargs):
        raise DataError(f"disk full while writing the model of {VICTIM}")

    monkeypatch.setattr(privacy_unlearning, "_unlearn", broken)
    with pytest.raises(DataError) as caught:
        erase_subject(store, VICTIM, pack=EU, model_path=run.artifact)
    assert VICTIM not in str(caught.value) and "was NOT shredded" in str(caught.value)
    with store.session() as session:
        (request,) = list_requests(session, kind="erasure")
        assert consent_history(session, VICTIM)  # still linked: nothing was shredded
    assert request["status"] == "failed" and "<subject>" in request["result"]["cause"]
    assert run.artifact.exists()
    assert VICTIM not in dump_store(store)


def test_erasure_input_is_checked_before_anything_is_stored(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; expected a .npz file written by `recgov train`"):
        erase_subject(store, VICTIM, pack=EU, model_path=tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a recgov ALS model file"):
        erase_subject(store, VICTIM, pack=EU, model_path=tmp_path / "junk.npz")
    with store.session() as session:
        assert session.scalar(select(SubjectRequest.id)) is None
        assert lookup_pseudonyms(session, [VICTIM])[VICTIM] is None


def test_residual_influence_is_skipped_on_large_models(store: Store, trained, monkeypatch: pytest.MonkeyPatch) -> None:
    _, run = trained
    monkeypatch.setattr(privacy_unlearning, "RESIDUAL_MAX_INTERACTIONS", 10)
    report = erase_subject(store, VICTIM, pack=EU, exact=False, model_path=run.artifact, measure_residual=True)
    residual = report["unlearning"][0]["residual_influence"]
    assert residual["measured"] is False and "at or above 10" in residual["reason"]
    assert run.artifact.exists()  # kept without delete_previous
    assert "still holds the subject" in report["unlearning"][0]["previous_artifact_note"]


def test_erasing_the_same_rows_from_the_same_model_again_reuses_the_recorded_unlearned_model(store: Store, trained) -> None:
    # The unlearned model's version id is derived from the model and the rows removed: a second
    # erasure of the same subject from the same artifact (the subject came back, or the demo ran
    # twice) makes the same version; it must reuse the recorded one, not fail on its id.
    _, run = trained
    first = erase_subject(store, VICTIM, pack=EU, exact=False, model_path=run.artifact)["unlearning"][0]
    artifact = Path(first["artifact"])
    recorded_bytes = artifact.read_bytes()
    second = erase_subject(store, VICTIM, pack=EU, exact=False, model_path=run.artifact)["unlearning"][0]
    assert second["version"] == first["version"] and second["recorded"] is True
    assert second["artifact_reused"] is True and "reused" in second["recorded_note"]
    assert artifact.read_bytes() == recorded_bytes  # the file its record points at is untouched
    with store.session() as session:
        row = session.get(ModelVersion, first["version"])
        assert row.artifact_hash == hashlib.sha256(recorded_bytes).hexdigest()
        assert verify_trail(session.connection()).intact


def test_erasure_without_a_model_unlearns_the_recorded_artifact_lists_models_and_shreds(store: Store, trained) -> None:
    _, run = trained
    report = erase_subject(store, VICTIM, pack=EU, exact=False, measure_residual=False)
    (step,) = report["unlearning"]  # the recorded artifact holds the subject: it is unlearned without being named
    assert step["previous_version"] == run.model_version and step["status"] == "unlearned"
    assert step["previous_artifact_deleted"] is False and run.artifact.exists()  # it may be deployed
    (entry,) = report["models"]["versions"]  # listed before unlearning
    assert entry["membership"] == "includes" and entry["action"].startswith("unlearned by this request")
    assert report["retrain"]["request"]["models"] == [run.model_version, step["version"]]
    assert report["shredded"]


def test_erasure_can_leave_recorded_artifacts_alone(store: Store, trained) -> None:
    report = erase_subject(store, VICTIM, pack=EU, unlearn_recorded=False)
    assert report["unlearning"] == []
    (entry,) = report["models"]["versions"]
    assert entry["membership"] == "includes" and entry["action"].startswith("unlearn it")
    assert report["shredded"]


# -- records of processing ----------------------------------------------------------------------
def test_the_processing_record_names_the_controller_and_dpo_the_pack_declares(store: Store) -> None:
    doc = processing_record(EU, store)
    controller, dpo = EU.pack.controller, EU.pack.dpo
    assert controller is not None and dpo is not None
    assert doc["controller"] == controller.name != EU.pack.metadata.owner
    assert doc["controller_details"] == {"name": controller.name, "address": controller.address, "contact": controller.contact}
    assert doc["dpo"] == {"name": dpo.name, "contact": dpo.contact}
    baseline = load_pack(POLICIES / "baseline.yaml")
    assert baseline.pack.controller is None
    plain = processing_record(baseline, store)
    assert plain["controller"] == baseline.pack.metadata.owner
    assert plain["controller_details"] is None and plain["dpo"] is None


def test_the_processing_record_lists_purposes_retention_and_counts(store: Store) -> None:
    _consent(store, "subject-aaaa", "granted")
    _consent(store, "subject-bbbb", "granted")
    _consent(store, "subject-bbbb", "withdrawn", at=T0 + timedelta(days=1))
    record_consent_from_request(store, "subject-cccc", pack=EU, headers={"Sec-GPC": "1"})
    erase_subject(store, "subject-aaaa", pack=EU)
    doc = processing_record(EU, store, recipients=["hosting provider (processor, Art. 28)"])
    purposes = {p["purpose"]: p for p in doc["purposes"]}
    assert purposes["personalization"]["lawful_basis"] == "consent"
    assert purposes["personalization"]["legal_reference"].startswith("GDPR Art. 6(1)(a)")
    assert purposes["analytics"]["consent_model"] == "opt_out"
    assert doc["retention"]["training_events_days"] == 730
    assert "health" in doc["categories_of_data"]["forbidden_attributes"]
    assert doc["categories_of_data"]["audit_only_attributes"] == ["gender", "age_band"]
    assert doc["recipients"] == ["hosting provider (processor, Art. 28)"]
    assert processing_record(EU, store)["recipients"] == ["none outside the controller"]
    counts = doc["counts"]
    assert counts["consent_records"]["personalization"] == {"granted": 2, "withdrawn": 1}
    assert counts["subjects_in_force"] == {"analytics": {"opted_out": 1}, "personalization": {"withdrawn": 1}}
    assert counts["erased_subjects"] == 1 and counts["erased_subjects_with_consent_records"] == 1
    assert counts["subject_requests"] == {"erasure": {"completed": 1}} and counts["open_requests"] == 0
    assert doc["pack_hash"] == EU.content_hash


# -- suppression: what an erasure keeps ------------------------------------------------------------
RETURNING = "returning-subject-Zq41"


def test_an_opt_out_survives_erasure_until_a_later_grant_and_old_events_stay_erased(store: Store) -> None:
    """Regression: after crypto-shredding, a subject who had opted out came back with an empty
    history, so an opt-out purpose profiled them again and their old events were trained on again."""
    record_consent_from_request(store, RETURNING, pack=CA, headers={"Sec-GPC": "1"})
    report = erase_subject(store, RETURNING, pack=CA)
    assert report["suppression"]["denied"] == {
        "personalization": {"status": "opted_out", "lawful_basis": "legitimate_interest"},
        "sale_sharing": {"status": "opted_out", "lawful_basis": "consent"},
    }
    assert report["retrain"] == {"request": None, "run": None}  # no model held them
    erased_at = datetime.fromisoformat(report["suppression"]["erased_at"])

    data = _dataset(victim=False)
    events = data.events.copy()
    busiest = events["user_id"].value_counts().index[0]
    mine = np.flatnonzero(np.asarray(events["user_id"] == busiest))
    events.loc[events["user_id"] == busiest, "user_id"] = RETURNING
    later = mine[: len(mine) // 3]  # a third of their events come after the erasure
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    stamps.iloc[later] = pd.Timestamp(erased_at + timedelta(minutes=5))
    events["timestamp"] = stamps
    returning = Dataset(events=events, items=data.items, name="returning", source="synthetic:returning")
    moment = erased_at + timedelta(hours=1)

    # Serving and training: still opted out, under a pseudonym nothing links to the old one.
    assert show_consent(store, RETURNING, pack=CA)["profiling"]["personalization"]["allowed"] is False
    with store.session() as session:
        (kept, _) = consent_history(session, RETURNING)
    assert (kept["status"], kept["source"], kept["recorded_at"]) == ("opted_out", "import", erased_at)
    _, report_out = filter_training_events(returning, CA, store, now=moment, record=False)
    assert report_out["events"]["excluded"]["opted_out"] == len(mine)
    assert report_out["subjects"]["excluded"]["opted_out"] == 1

    # They opt back in after the erasure: the later grant outranks the suppression, for new events only.
    with store.session() as session:
        record_consent(session, subject_id=RETURNING, purpose="personalization", status="granted",
                       lawful_basis="legitimate_interest", source="api", at=erased_at + timedelta(seconds=1))  # fmt: skip
    assert show_consent(store, RETURNING, pack=CA)["profiling"]["personalization"]["allowed"] is True
    kept_data, report_in = filter_training_events(returning, CA, store, now=moment, record=False)
    assert report_in["events"]["excluded"]["erased"] == len(mine) - len(later)
    assert report_in["events"]["excluded"]["opted_out"] == 0
    assert int((kept_data.events["user_id"] == RETURNING).sum()) == len(later)
    # sale_sharing stays opted out: only the purpose they granted came back
    assert show_consent(store, RETURNING, pack=CA)["profiling"]["sale_sharing"]["allowed"] is False

    # No raw id, and the suppression key is neither a pseudonym nor a secret lookup.
    assert RETURNING not in dump_store(store)
    with store.session() as session:
        (lookup,) = session.execute(text("SELECT lookup FROM suppressions")).scalars().all()
        secrets_ = set(session.execute(text("SELECT lookup FROM subject_secrets")).scalars())
        subjects = set(session.execute(text("SELECT subject FROM consent_records")).scalars())
    assert len(lookup) == 64 and lookup not in secrets_ and lookup not in subjects
    with store.snapshot() as connection:
        assert verify_trail(connection).intact


def test_suppressions_are_append_only(store: Store) -> None:
    erase_subject(store, RETURNING, pack=CA)
    for statement in ("UPDATE suppressions SET denied = NULL", "DELETE FROM suppressions"):
        with pytest.raises(Exception, match="append-only"):
            with store.session() as session:
                session.execute(text(statement))
    with store.session() as session:
        assert session.execute(text("SELECT COUNT(*) FROM suppressions")).scalar_one() == 1


def test_request_deadlines_come_from_the_pack(store: Store) -> None:
    doc = export_subject(store, "deadline-subject", pack=CA)
    with store.session() as session:
        (request,) = list_requests(session, kind="access")
    assert request["deadline"] - request["requested_at"] == timedelta(days=45)
    assert doc["request"]["deadline_basis"].startswith("45 days: consent.requests.access_days of pack california-ccpa")
    assert "CCPA §1798.130(a)(2)(A)" in doc["request"]["deadline_basis"]
    report = erase_subject(store, "deadline-subject", pack=EU)
    assert report["request"]["deadline_basis"].startswith("30 days: consent.requests.erasure_days of pack eu-gdpr-dsa")
    plain = export_subject(store, "deadline-subject-2")  # no pack: the schema's default
    assert plain["request"]["deadline_basis"].startswith("30 days: recgov's default")


def test_a_second_erasure_does_not_revive_a_restriction_the_subject_lifted(store: Store) -> None:
    record_consent_from_request(store, RETURNING, pack=CA, headers={"Sec-GPC": "1"})
    first = erase_subject(store, RETURNING, pack=CA)
    with store.session() as session:
        record_consent(session, subject_id=RETURNING, purpose="personalization", status="granted",
                       lawful_basis="legitimate_interest", source="api")  # fmt: skip
    second = erase_subject(store, RETURNING, pack=CA)
    assert sorted(first["suppression"]["denied"]) == ["personalization", "sale_sharing"]
    assert sorted(second["suppression"]["denied"]) == ["sale_sharing"]  # the grant had lifted the opt-out
    profiling = show_consent(store, RETURNING, pack=CA)["profiling"]
    assert profiling["personalization"]["allowed"] is True and profiling["sale_sharing"]["allowed"] is False
    data = _dataset(victim=False)
    _, report = filter_training_events(data, CA, store, now=NOW, record=False)
    assert report["subjects"]["excluded"]["opted_out"] == 0


def test_consent_coverage_names_a_filter_of_no_pack_as_such() -> None:
    """A model trained with the filter of no pack (erasures and refusals only) is failed in words a regulator can read:
    no 'None' pack version or purpose in the report's message."""
    from governance.engine import evaluate
    from governance.facts import AuditFacts, PrivacyFacts
    from governance.packs import shipped_pack_path
    from governance.policy import load_pack

    no_pack = {
        "pack": "(none: erasures and refusals)",
        "rules": "no pack: ...",
        "events": {"total": 6000, "kept": 5990, "excluded": {"erased": 10, "withdrawn": 0}},
        "subjects": {"erased": 1},
    }
    facts = AuditFacts(privacy=PrivacyFacts(training_filter=no_pack, model_trained=True))
    (result,) = [r for r in evaluate(load_pack(shipped_pack_path("california-ccpa")), facts).results if r.check == "consent_coverage"]
    assert result.status.value == "fail"
    assert "None" not in result.message
    assert result.message == (
        "training kept 5,990 of 6,000 events with no pack's consent filter (only erasures and refusals were left out: "
        "no lawful basis was checked); excluded: 10 erased"
    )


def test_overdue_requests_are_counted_in_the_database_with_the_figures_of_the_listing(store: Store) -> None:
    """The record of processing and the audit's privacy facts count overdue subject requests in SQL: no request is
    read into the process (a store of millions of requests would be read whole), and the figures are the listing's."""
    from audits import open_request, update_request
    from audits.models import REQUEST_KINDS
    from governance.audit_inputs import _with_store_facts
    from governance.facts import AuditFacts

    now = datetime.now(UTC)
    with store.session() as session:
        for j, kind in enumerate(REQUEST_KINDS):
            for late in range(j + 1):  # a different count per kind
                open_request(session, subject_id=f"late-{kind}-{late}", kind=kind, deadline_days=30,
                             requested_at=now - timedelta(days=40 + late), actor="dpo")  # fmt: skip
        done = open_request(session, subject_id="late-but-done", kind="access", deadline_days=30,
                            requested_at=now - timedelta(days=60), actor="dpo")  # fmt: skip
        update_request(session, done.id, status="in_progress", actor="dpo", at=now - timedelta(days=2))
        update_request(session, done.id, status="completed", actor="dpo", at=now - timedelta(days=1))
        open_request(session, subject_id="fresh", kind="access", deadline_days=30, requested_at=now, actor="dpo")
    with store.session() as session:
        listed = list_requests(session, overdue_at=now + timedelta(minutes=5))
    expected = {kind: sum(1 for r in listed if r["kind"] == kind) for kind in REQUEST_KINDS}
    assert sum(expected.values()) == len(listed) == sum(range(1, len(REQUEST_KINDS) + 1))

    loaded: list[object] = []
    listener = lambda target, context: loaded.append(target)  # noqa: E731
    event.listen(SubjectRequest, "load", listener)
    try:
        doc = processing_record(EU, store, now=now + timedelta(minutes=5))
        facts = _with_store_facts(AuditFacts(), store, None)
    finally:
        event.remove(SubjectRequest, "load", listener)
    assert loaded == []
    assert doc["counts"]["overdue_requests"] == len(listed)
    assert facts.privacy.overdue_requests == expected


def test_the_processing_record_counts_subjects_in_force_in_the_database(store: Store, monkeypatch) -> None:
    """Subjects per purpose and status in force, and erased subjects, are counted in SQL (the figures of reading
    every subject's consent state, which the record no longer does)."""
    from audits import consent_states
    from governance.privacy import record as record_module

    for j in range(7):
        _consent(store, f"subject-{j}", "granted")
        if j % 2:
            _consent(store, f"subject-{j}", "withdrawn", at=T0 + timedelta(days=1))
        if j % 3 == 0:
            _consent(store, f"subject-{j}", "opted_out", purpose="analytics", basis="legitimate_interest", at=T0 + timedelta(days=2))
    record_consent_from_request(store, "subject-gpc", pack=EU, headers={"Sec-GPC": "1"})
    for erased in ("subject-0", "subject-3", "never-consented"):
        erase_subject(store, erased, pack=EU)
    with store.session() as session:
        shredded = set(session.scalars(select(TrailEvent.subject).where(TrailEvent.action == "subject.shredded")))
        expected: dict[str, dict[str, int]] = {}
        with_records = 0
        for who, states in consent_states(session).items():
            if who in shredded:
                with_records += 1
                continue
            for purpose, status in states.items():
                expected.setdefault(purpose, {}).setdefault(status, 0)
                expected[purpose][status] += 1

    def read_all(*args, **kwargs):
        raise AssertionError("the record read every subject's consent state")

    monkeypatch.setattr(record_module, "consent_states", read_all, raising=False)
    counts = processing_record(EU, store)["counts"]
    assert counts["subjects_in_force"] == {p: dict(sorted(v.items())) for p, v in sorted(expected.items())}
    assert counts["erased_subjects"] == len(shredded) == 3
    assert counts["erased_subjects_with_consent_records"] == with_records == 2
