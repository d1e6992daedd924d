"""The access export holds what the online store keeps of the subject and the numbers each model keeps of them.

A subject's cached lists, epoch stamps and factor vectors in Redis, and their factor row and training row in each
recorded model file, are their personal data (GDPR Art. 15): the export lists them, labelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from audits import open_store, record_consent
from governance.cli import app
from governance.policy import load_pack
from governance.privacy import export_subject
from recommender.als import ALSRecommender

runner = CliRunner()
DATA = "synthetic:n_users=60,n_items=50,n_interactions=2000,seed=4"
EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")


def _trained(db_url: str) -> dict:
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "3", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    return json.loads(trained.stdout)


def test_access_export_lists_the_online_store_entries_and_factors_of_the_subject(db_url: str, online_store, monkeypatch) -> None:
    import audits.online_store as online

    doc = _trained(db_url)
    version = doc["model_version"]
    url = "redis://online-store-under-test"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, online_store)
    store = open_store(db_url)
    try:
        with store.session() as session:
            for n in range(60):
                status = "denied" if n == 7 else "granted"
                record_consent(session, subject_id=f"u{n:06d}", purpose="personalization", status=status, lawful_basis="consent", source="api")
    finally:
        store.close()
    warm = runner.invoke(app, ["online-store", "warm", "--model", version, "--pack", "eu-gdpr-dsa", "--top", "60", "--database-url", db_url, "--json"])
    assert warm.exit_code == 0, warm.output
    subject, key = "u000008", online_store.subject_key("u000008")
    store = open_store(db_url)
    try:
        export = export_subject(store, subject, pack=EU)
        refused = export_subject(store, "u000007", pack=EU)
    finally:
        store.close()
    held = export["online_store"]
    assert held["read"] is True and held["configured"] is True
    assert len(held["lists"]) == len(online_store.client.hkeys(f"{online_store.namespace}:l:{key}")) - 1 >= 1  # less "~"
    assert all(e["sealed_by_this_installation"] and e["would_be_served"] and e["entry"] for e in held["lists"])
    stored = online_store.user_factors(version, key)
    assert [f["model_version"] for f in held["factors"]] == [version]
    np.testing.assert_allclose(held["factors"][0]["factors"], stored)
    assert held["epoch_expires_in_ms"] is None or held["epoch_expires_in_ms"] > 0
    # the model file's numbers about the subject: their factor row and their training row
    model = ALSRecommender.load(doc["artifact"])
    row = int(model.train_.user_index(np.asarray([subject], dtype=object))[0])
    rows = {v["model_version"]: v for v in export["model_rows"]["versions"]}
    np.testing.assert_allclose(rows[version]["factors"], model.user_factors_[row])
    cells = model.train_.matrix[row]
    assert sorted(i["item_id"] for i in rows[version]["interactions"]) == sorted(model.train_.item_ids[cells.indices].astype(str))
    # a subject who refused: nothing in the online store
    assert refused["online_store"]["read"] is True and refused["online_store"]["lists"] == [] and refused["online_store"]["factors"] == []


def test_access_export_says_when_no_online_store_is_configured(db_url: str, monkeypatch) -> None:
    monkeypatch.delenv("RECGOV_REDIS_URL", raising=False)
    _trained(db_url)
    store = open_store(db_url)
    try:
        export = export_subject(store, "u000008")
        unseen = export_subject(store, "never-seen")
    finally:
        store.close()
    assert export["online_store"]["read"] is False and export["online_store"]["configured"] is False
    assert len(export["model_rows"]["versions"]) == 1 and export["model_rows"]["versions"][0]["factors"]
    assert unseen["model_rows"]["versions"] == []
