"""The access export (GDPR Art. 15) over data sets as recgov reads them: events that name no
subject are someone else's, never a crash, and the subject's own events all come out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from audits import Store, report_item
from governance.policy import load_pack
from governance.privacy import erase_subject, export_subject
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate

SUBJECT = "access-subject-Kp3w"


def _data(user_dtype: str) -> Dataset:
    data = generate(SyntheticSpec(n_users=20, n_items=15, n_interactions=300, seed=7, event_mix={"rating": 1.0}))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[0]
    events.loc[events["user_id"] == busiest, "user_id"] = SUBJECT
    events.loc[events.index[:4], "user_id"] = None  # events that name no subject
    events["user_id"] = events["user_id"].astype(user_dtype)
    return Dataset(events=events, items=data.items, name="access-test", source="synthetic:access-test")


@pytest.mark.parametrize("user_dtype", ["object", "category", "string"])
def test_the_export_skips_events_that_name_no_subject(store: Store, user_dtype: str) -> None:
    data = _data(user_dtype)
    theirs = data.events.loc[data.events["user_id"].astype("string").eq(SUBJECT).fillna(False).to_numpy(bool)]
    doc = export_subject(store, SUBJECT, dataset=data)
    assert doc["interactions"]["count"] == len(theirs) > 0
    assert sorted(e["item_id"] for e in doc["interactions"]["events"]) == sorted(theirs["item_id"].astype(str))
    assert doc["requests"][0]["status"] == "completed"
    assert pd.isna(data.events["user_id"]).sum() == 4


def test_the_export_holds_the_item_reports_the_subject_signed_and_no_one_elses(store: Store) -> None:
    """Hole: the export left out the item reports (DSA notices) the subject signed: the item and
    the reason they gave are their personal data, kept under their pseudonym, and only the trail's
    bare ``item.reported`` action said one existed. Ids that are prefixes of each other, differ in
    case or only by a leading zero are different people."""
    from audits import report_item
    from governance.privacy import erase_subject
    from pathlib import Path

    from governance.policy import load_pack

    reporters = {"u1": "misleading thumbnail", "u10": "spam in the title", "U1": "graphic cover", "7": "scam", "07": "fake"}
    with store.session() as session:
        for n, (who, reason) in enumerate(reporters.items()):
            report_item(session, item_id=f"i{n}", reason=reason, reporter_id=who)
        report_item(session, item_id="i9", reason="anonymous notice")
    for n, (who, reason) in enumerate(reporters.items()):
        doc = export_subject(store, who)
        assert [(r["item_id"], r["reason"]) for r in doc["reports"]] == [(f"i{n}", reason)], who
        assert doc["reports"][0]["reported_at"] is not None
        assert doc["requests"][-1]["status"] == "completed"

    erased = erase_subject(store, "u1", pack=load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml"), measure_residual=False)
    assert erased["unlinked"]["item_reports"] == 1 and "item reports" in erased["retained"]
    assert export_subject(store, "u1")["reports"] == []  # a new pseudonym: nothing links the old report to them
    assert [r["reason"] for r in export_subject(store, "u10")["reports"]] == ["spam in the title"]


def test_the_export_holds_the_subjects_earlier_erasures_with_or_without_restrictions(store: Store) -> None:
    """Hole: what the suppression list keeps about a person after their erasure (found by their id: when they were
    erased, which restrictions it kept) reached the export only as restrictions dressed as consent records, and not
    at all for a person who had restricted nothing: an access request after an erasure said nothing was held."""
    from audits import record_consent

    eu = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
    with store.session() as session:
        record_consent(session, subject_id="erased-granted", purpose="personalization", status="granted", lawful_basis="consent", source="api")
        record_consent(session, subject_id="erased-objected", purpose="analytics", status="objected", lawful_basis="legitimate_interest", source="api")
    assert export_subject(store, "erased-granted")["erasures"] == []
    for subject in ("erased-granted", "erased-objected"):
        erase_subject(store, subject, pack=eu, measure_residual=False)
    granted, objected, never = (export_subject(store, s) for s in ("erased-granted", "erased-objected", "never-seen"))
    assert [e["restrictions"] for e in granted["erasures"]] == [{}]
    assert [e["restrictions"] for e in objected["erasures"]] == [{"analytics": "objected"}]
    assert granted["erasures"][0]["erased_at"] is not None and granted["consent"]["history"] == []
    assert never["erasures"] == []
