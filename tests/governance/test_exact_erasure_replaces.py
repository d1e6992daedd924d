"""After an exact erasure, no model file recgov serves or keeps lists the erased subject.

The version the subject was erased from gives its stage to the model trained without them, is retired (it
profiles nobody), and its file is deleted once the erasure is committed; the trail records the replacement.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import TrailEvent
from governance.cli import app
from governance.deploy import deployed_versions
from governance.policy import load_pack
from governance.privacy import erase_subject
from governance.suppressed import model_standing
from recommender.errors import DataError
from recommender.family import model_user_ids

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")


def _train(db_url: str) -> dict:
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", "--family", "ease", "--param", "regularization=20"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _files_listing(folder: Path, subject: str) -> list[Path]:
    """Every model file under ``folder`` whose training rows name ``subject``."""
    out = []
    for path in folder.rglob("*.npz"):
        ids = model_user_ids(io.BytesIO(path.read_bytes()))
        if ids is not None and (ids.astype(str) == subject).any():
            out.append(path)
    return out


def test_exact_erasure_replaces_the_deployed_version_retires_it_and_deletes_its_file(db_url: str) -> None:
    doc = _train(db_url)
    old, folder, subject = doc["model_version"], Path(doc["artifact"]).parent, "u000017"
    assert _files_listing(folder, subject) == [Path(doc["artifact"])]
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=old, stage="shadow")
            record_deployment(session, model_version=old, stage="production")
        report = erase_subject(store, subject, pack=EU, measure_carbon=False)
        new = next(s["version"] for s in report["unlearning"] if s.get("previous_version") == old)
        with store.session() as session:
            stages = deployed_versions(session)
            retired = model_standing(session, old).retired
            events = session.execute(select(TrailEvent.action, TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")).all()
        other = erase_subject(store, "u000018", pack=EU, measure_carbon=False)
    finally:
        store.close()
    assert _files_listing(folder, subject) == [] and not Path(doc["artifact"]).exists()
    assert stages["production"] == [new] and old in stages["retired"] and retired
    assert len(events) == 1 and all(old in str(payload) and new in str(payload) for _a, payload in events)
    step = next(s for s in report["unlearning"] if s.get("previous_version") == old)
    assert step["previous_artifact_deleted"] is True and step["replaced_in_serving"]["stage"] == "production"
    assert not any("still" in line and old in line for line in report["not_done"]), report["not_done"]
    # a later erasure does not list the deleted version as holding anyone, nor owe a retrain of it
    listed = {v["version_id"]: v for v in other["models"]["versions"]}
    assert old not in listed and old not in ((other["retrain"] or {}).get("request") or {}).get("models", [])


def test_exact_erasure_retires_an_undeployed_version_and_deletes_its_file(db_url: str) -> None:
    doc = _train(db_url)
    old, subject = doc["model_version"], "u000017"
    store = open_store(db_url)
    try:
        erase_subject(store, subject, pack=EU, measure_carbon=False)
        with store.session() as session:
            stages = deployed_versions(session)
    finally:
        store.close()
    assert not Path(doc["artifact"]).exists() and _files_listing(Path(doc["artifact"]).parent, subject) == []
    assert stages["retired"] == [old] and stages["production"] == []


def test_an_erasure_overtaken_by_another_on_the_same_version_fails_and_its_rerun_leaves_neither_subject(db_url: str) -> None:
    """Regression: two erasures removing different subjects from the same version each made a version from it; the
    second to commit found the old one retired already and recorded its own version, which still held the subject
    the first erased, and the first's version (serving) still held the second's subject."""
    doc = _train(db_url)
    old, folder = doc["model_version"], Path(doc["artifact"]).parent
    first, second = "u000017", "u000018"
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=old, stage="shadow")
            record_deployment(session, model_version=old, stage="production")

        def the_first_commits_meanwhile(step: str) -> None:
            if step.startswith("recording"):  # the second has made its version from the old one; the first runs through
                erase_subject(store, first, pack=EU, measure_carbon=False)

        with pytest.raises(DataError, match="replaced by .* by another erasure"):
            erase_subject(store, second, pack=EU, measure_carbon=False, progress=the_first_commits_meanwhile)
        assert _files_listing(folder, first) == []  # the second's file, made from the old version, is gone too
        again = erase_subject(store, second, pack=EU, measure_carbon=False)
        with store.session() as session:
            stages = deployed_versions(session)
    finally:
        store.close()
    assert again["shredded"] is True
    assert _files_listing(folder, first) == [] and _files_listing(folder, second) == []
    [serving] = stages["production"]
    assert model_user_ids(io.BytesIO(Path(folder / f"{serving}.npz").read_bytes())) is not None


def test_the_erase_command_prints_an_exact_erasure_and_the_replacement(db_url: str) -> None:
    """Regression: `recgov subject erase` without --json printed each unlearning step with ALS figures, and a model
    family's step (which has none) ended a completed erasure in a KeyError traceback."""
    doc = _train(db_url)
    result = runner.invoke(app, ["subject", "erase", "u000017", "--pack", "eu-gdpr-dsa", "--database-url", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"model {doc['model_version']} -> ease-" in text and "exact erasure" in text
    assert f"{doc['model_version']} is retired" in text and "deleted the previous artifact" in text
    assert "u000017" not in result.output


def test_two_erasures_of_one_subject_at_once_both_complete_and_the_served_file_is_the_recorded_one(db_url: str) -> None:
    """Regression: two erasures of the same subject in one process (two API requests) wrote the new version through
    the same temporary file name; one renamed it away under the other, which failed with a FileNotFoundError."""
    import threading

    from governance.deploy import check_artifact

    doc = _train(db_url)
    old, folder, subject = doc["model_version"], Path(doc["artifact"]).parent, "u000017"
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=old, stage="shadow")
            record_deployment(session, model_version=old, stage="production")
        together = threading.Barrier(2, timeout=60)
        outcomes: list[object] = []

        def at_the_same_time(step: str) -> None:
            if step.startswith("removing the subject"):
                together.wait()

        def erase() -> None:
            try:
                outcomes.append(erase_subject(store, subject, pack=EU, measure_carbon=False, progress=at_the_same_time))
            except Exception as err:  # noqa: BLE001 - the test reports it
                outcomes.append(err)

        threads = [threading.Thread(target=erase) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        with store.session() as session:
            [serving] = deployed_versions(session)["production"]
            check_artifact(session, serving)  # the file served is the one recorded
    finally:
        store.close()
    assert all(isinstance(o, dict) for o in outcomes) and len(outcomes) == 2, outcomes
    assert sorted(o["shredded"] for o in outcomes) == [False, True]
    assert serving != old and _files_listing(folder, subject) == []
