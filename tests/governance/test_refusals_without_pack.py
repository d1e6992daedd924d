"""A recorded no keeps a subject out of every training path, with or without a pack.

Without a pack there is no opt-in or opt-out model to read a missing consent record by, but a
withdrawal, a refusal, an objection or an opt-out of personalization needs none: ``recgov train``
without a pack (or under a pack without consent rules, such as the baseline), ``recgov evaluate`` and
``recgov tradeoff`` used to learn from such subjects, leaving out only the erased.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from audits import Store, open_store
from audits.consent import record_consent
from governance.cli import app
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.privacy import erase_subject
from governance.suppressed import drop_erased_events
from recommender.synthetic import SyntheticSpec, generate

runner = CliRunner()
DATA = "synthetic:n_users=60,n_items=40,n_interactions=1500,seed=11"
REFUSERS = {"u000000": "withdrawn", "u000001": "denied", "u000002": "objected", "u000003": "opted_out"}


def _record(store: Store, subject: str, status: str, basis: str = "consent") -> None:
    with store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status=status, lawful_basis=basis, source="api")


@pytest.fixture
def data():
    return generate(SyntheticSpec(n_users=60, n_items=40, n_interactions=1500, seed=11))


def test_a_run_without_a_pack_leaves_out_every_subject_who_said_no(store: Store, data) -> None:
    users = sorted(set(data.events["user_id"].astype(str)))
    refusers = dict(zip(users[:4], REFUSERS.values()))
    for subject, status in refusers.items():
        _record(store, subject, status)
    _record(store, users[4], "withdrawn")
    _record(store, users[4], "granted")  # a later grant is the record in force
    _record(store, users[5], "granted")
    kept, report = drop_erased_events(data, store)
    left = set(kept.events["user_id"].astype(str))
    assert not left & set(refusers) and {users[4], users[5]} <= left
    counts = data.events["user_id"].astype(str).value_counts()
    for subject, status in refusers.items():
        assert report["events"]["excluded"][status] == counts[subject]
        assert report["subjects"][status] == 1
    assert report["events"]["kept"] == len(kept.events) == len(data.events) - sum(counts[s] for s in refusers)


def test_a_refusal_kept_through_an_erasure_still_holds_without_a_pack(store: Store, data) -> None:
    """After an erasure the subject's own records are shredded; the objection their suppression kept is not."""
    victim = sorted(set(data.events["user_id"].astype(str)))[0]
    _record(store, victim, "objected", basis="legitimate_interest")
    erase_subject(store, victim, pack=load_pack(resolve_pack("eu-gdpr-dsa")), measure_residual=False, unlearn_recorded=False)
    later = data.events[data.events["user_id"].astype(str) == victim].copy()
    later["timestamp"] = later["timestamp"] + pd.Timedelta(days=3650)  # a new history, after the erasure
    fresh = dataclasses.replace(data, events=pd.concat([data.events, later], ignore_index=True))
    kept, report = drop_erased_events(fresh, store)
    assert victim not in set(kept.events["user_id"].astype(str))
    assert report["events"]["excluded"]["objected"] == len(later)


def test_train_without_a_pack_and_under_the_baseline_learns_from_no_refuser(db_url: str, data) -> None:
    store = open_store(db_url)
    try:
        for subject, status in REFUSERS.items():
            _record(store, subject, status)
    finally:
        store.close()
    for extra in ([], ["--pack", "baseline"], ["--family", "ease"]):
        result = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--database-url", db_url, "--json", *extra])
        assert result.exit_code == 0, result.output
        excluded = json.loads(result.stdout)["privacy_filter"]["events"]["excluded"]
        assert all(excluded[status] > 0 for status in REFUSERS.values()), (extra, excluded)
    evaluated = runner.invoke(app, ["evaluate", DATA, "--no-tune", "--database-url", db_url, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    doc = json.loads(evaluated.stdout)
    assert doc["privacy_filter"]["events"]["excluded"]["withdrawn"] > 0
    assert doc["dataset"]["n_users"] == data.events["user_id"].nunique() - len(REFUSERS)
