"""An erasure removes the subject from ALS models exactly, as from the other families that forget exactly.

Regression: an erasure left ALS behind. Its unlearned stand-in was provisional, and the version it was unlearned
from kept its stage and its file, whose training rows list the erased subject's raw id, until a full retrain; only
a warning named the file. Now each ALS version holding the subject is refit without them (its recipe on the
matrix without their row and the items only they touched): the new version takes the old one's stage under the
same gate, the old one is retired with a ``model.replaced_by_erasure`` trail event, and its file is deleted once
the erasure is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import TrailEvent
from governance.cli import app
from governance.deploy import deployed_versions
from governance.policy import load_pack
from governance.privacy import erase_subject
from governance.privacy.access import export_subject
from governance.suppressed import TRAINED, model_standing
from recommender.als import ALSRecommender
from recommender.family import without_users
from tests.files_naming import files_naming

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
SUBJECT = "u000017"


def _train(db_url: str) -> dict:
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", "--factors", "8", "--iterations", "4"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _deployed(store, version: str) -> None:
    with store.session() as session:
        record_deployment(session, model_version=version, stage="shadow")
        record_deployment(session, model_version=version, stage="production")


def test_an_erasure_refits_the_deployed_als_version_retires_it_and_deletes_its_file(db_url: str, recgov_home: Path) -> None:
    doc = _train(db_url)
    old, artifact = doc["model_version"], Path(doc["artifact"])
    assert files_naming(recgov_home, SUBJECT) == [artifact]
    store = open_store(db_url)
    try:
        _deployed(store, old)
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
        step = next(s for s in report["unlearning"] if s.get("previous_version") == old)
        new = step["version"]
        with store.session() as session:
            stages = deployed_versions(session)
            old_standing, new_standing = model_standing(session, old), model_standing(session, new)
            events = session.execute(select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")).all()
        other = erase_subject(store, "u000018", pack=EU, measure_carbon=False)
    finally:
        store.close()
    assert files_naming(recgov_home, SUBJECT) == [] and not artifact.exists()
    assert stages["production"] == [new] and old in stages["retired"] and old_standing.retired
    assert new_standing.standing == TRAINED and new_standing.retrain_request is None
    assert len(events) == 1 and old in str(events[0][0]) and new in str(events[0][0])
    assert step["exact"] is True and step["standing"]["standing"] == "final" and step["previous_artifact_deleted"] is True
    assert report["retrain"]["request"] is None  # nothing owed: the model is the one trained without the subject
    assert not any(old in line for line in report["not_done"]), report["not_done"]
    # the erased version is no longer listed as holding anyone by a later erasure
    assert old not in {v["version_id"] for v in other["models"]["versions"]}


def test_the_refit_model_is_the_one_its_recipe_trains_without_the_subject(db_url: str, recgov_home: Path) -> None:
    doc = _train(db_url)
    before = ALSRecommender.load(doc["artifact"])
    store = open_store(db_url)
    try:
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
    finally:
        store.close()
    step = next(s for s in report["unlearning"] if s.get("previous_version") == doc["model_version"])
    after = ALSRecommender.load(step["artifact"])
    expected = ALSRecommender(**before.get_params()).fit(without_users(before.train_, [SUBJECT])[0])
    assert after.version_id_ == expected.version_id_
    assert np.allclose(after.item_factors_, expected.item_factors_, atol=1e-5)
    assert SUBJECT not in set(after.train_.user_ids.astype(str))


def test_after_an_exact_erasure_the_access_export_does_not_find_the_subject(db_url: str, recgov_home: Path) -> None:
    doc = _train(db_url)
    store = open_store(db_url)
    try:
        _deployed(store, doc["model_version"])
        before = export_subject(store, SUBJECT)["models"]
        erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
        after = export_subject(store, SUBJECT)["models"]
    finally:
        store.close()
    assert [m["version_id"] for m in before] == [doc["model_version"]] and before[0]["membership"] == "includes"
    assert after == []


def test_the_erase_command_prints_the_als_replacement(db_url: str, recgov_home: Path) -> None:
    doc = _train(db_url)
    result = runner.invoke(app, ["subject", "erase", SUBJECT, "--pack", "eu-gdpr-dsa", "--database-url", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"model {doc['model_version']} -> als-" in text and "exact erasure" in text
    assert f"{doc['model_version']} is retired" in text and "deleted the previous artifact" in text
    assert SUBJECT not in result.output and files_naming(recgov_home, SUBJECT) == []


def test_an_approximate_erasure_keeps_the_provisional_stand_in(db_url: str, recgov_home: Path) -> None:
    doc = _train(db_url)
    store = open_store(db_url)
    try:
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False, exact=False)
    finally:
        store.close()
    step = next(s for s in report["unlearning"] if s.get("previous_version") == doc["model_version"])
    assert step["exact"] is False and step["standing"]["standing"] == "provisional"
    assert Path(doc["artifact"]).exists() and report["retrain"]["request"] is not None
