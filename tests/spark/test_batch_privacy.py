"""Lists written by `recgov batch` are personal data like served decisions: sealed under the subject's record key,
shown to them on an access request, counted and made unreadable by their erasure, while the batch's chains verify.

Runs the in-process engine (no Spark or Java): both engines seal with the same function
(:func:`governance.spark.records.seal_fields`); the Spark engine's sealing is checked in test_lists.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from audits import Store, lookup_pseudonyms, record_consent, verify_trail
from governance.policy import load_pack
from governance.privacy import erase_subject, export_subject
from governance.spark.batch import batch_lists
from governance.spark.records import subject_batch_records, verify_spark_batches
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[2]
EU = load_pack(ROOT / "policies" / "eu-gdpr-dsa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_batch_lists_are_sealed_exported_and_shredded_by_erasure(store: Store, tmp_path: Path) -> None:
    generated = generate(SyntheticSpec(n_users=40, n_items=30, n_interactions=1200, seed=5))
    events = generated.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    subjects = sorted(events["user_id"].unique())
    with store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="banner", at=T0)
    data = Dataset(events=events, items=generated.items, name="b", source="synthetic:b")
    out = tmp_path / "batch"
    run = batch_lists(data, EU, store, out=str(out), engine="inprocess", k=5, models_dir=tmp_path / "models",
                      params={"factors": 4, "iterations": 2}, now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2)  # fmt: skip
    assert run.lists["records"] == len(subjects)
    stored = pq.read_table(out).to_pandas()
    # nothing of a list is in the clear: one sealed token per slate, an empty context
    assert all(set(json.loads(s)) == {"sealed"} for s in stored["slate"]) and set(stored["context"]) == {"{}"}
    assert not any(item in stored["slate"].str.cat() for item in events["item_id"].astype(str).unique() if len(item) > 3)

    victim = subjects[7]
    with store.session() as session:
        who = lookup_pseudonyms(session, [victim])[victim]
        (mine,) = subject_batch_records(session, who)
    assert mine["opened"] and len(mine["slate"]["items"]) == 5 and mine["context"]["batch"] == run.lists["run"]

    doc = export_subject(store, victim, pack=EU)  # Art. 15: the batch list is among their decisions
    (entry,) = [d for d in doc["decisions"] if d["decision_id"] == mine["decision_id"]]
    assert entry["items"] == mine["slate"]["items"] and entry["context"]["batch_path"] == str(out.resolve())

    report = erase_subject(store, victim, pack=EU)
    assert report["unlinked"]["batch_decisions"] == 1 and "recgov batch" in report["retained"]
    assert victim not in json.dumps(report)
    with store.session() as session:
        (after,) = subject_batch_records(session, who)
        assert after["opened"] is False and after["slate"] is None  # the key is gone: unreadable where it lies
        others = subject_batch_records(session, lookup_pseudonyms(session, [subjects[8]])[subjects[8]])
        assert others[0]["opened"]  # another subject's list still opens
    assert pq.read_table(out).num_rows == len(subjects)  # nothing deleted: the chains stay whole
    with store.snapshot() as connection:
        assert verify_trail(connection).intact and verify_spark_batches(connection) == []
