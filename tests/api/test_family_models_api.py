"""``POST /v1/recommendations`` serves a recorded version of any model family as ``recgov recommend`` does,
over real HTTP, on SQLite and PostgreSQL.

An EASE version trained under the baseline pack: a consenting subject gets EASE's ranking with EASE's own
``because_you_interacted`` tags (the list the CLI path makes, item for item and tag for tag, and the list the
compute process makes), a subject who withdrew gets the non-profiling list; an exact erasure replaces the version
it erased from; the decision record names the EASE version. A version whose file
is another family's, or whose recorded family is not installed, is refused with a problem document that says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits.lineage import record_model_version
from audits.models import DecisionRecord, ModelVersion
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from governance.family_training import family_model_class
from governance.governed_list import serve_list
from governance.packs import load_ref
from recommender.family import get_family
from recommender.loaders import load_data

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def _train(server, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["train", DATA, "--no-carbon", "--database-url", server.db_url, "--json", "--pack", "baseline", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def ease(server) -> dict:
    """An EASE version trained under the baseline pack, in the server's store."""
    doc = _train(server, "--family", "ease", "--param", "regularization=20")
    assert doc["model_version"].startswith("ease-")
    return doc


def _ask(client, subject: str, version: str, k: int = 5, pack: str = "california-ccpa"):
    """A list under the California pack (the baseline pack lists no consent purpose: it profiles nobody; this one
    profiles unless the subject opted out, and re-ranks nothing, so the list is the family's own ranking)."""
    return client.post("/v1/recommendations", json={"subject": subject, "k": k, "model_version": version, "pack": pack})


def _consent(client, subject: str, status: str) -> None:
    body = {"subject": subject, "purpose": "personalization", "status": status, "basis": "consent", "source": "api"}
    assert client.post("/v1/consent", json=body).status_code == 201


def test_a_consenting_subject_gets_the_family_ranking_and_its_own_tags(server, ease: dict) -> None:
    subject = "u000040"
    with server.client("operator") as client:
        _consent(client, subject, "granted")
        answer = _ask(client, subject, ease["model_version"])
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["mode"] == "personalized" and served["model_version"] == ease["model_version"] and len(served["items"]) == 5, (served["consent"], served["mode"])
    model = family_model_class(get_family("ease")).load(ease["artifact"])
    ids = [i["item_id"] for i in served["items"]]
    # EASE's own ranking of the unseen items (no re-ranking in the baseline pack), with EASE's own scores
    row = model.train_.user_index([subject])[0]
    seen = set(model.train_.item_ids[model.train_.matrix[row].indices].astype(str))
    want, scores = model._recommend_known(np.array([row], dtype=np.int64), 5, filter_seen=True)
    assert ids == [str(model.train_.item_ids[j]) for j in want[0]] and not seen & set(ids)
    assert [i["score"] for i in served["items"]] == pytest.approx([float(s) for s in scores[0]], abs=1e-5)
    # the tags are EASE's (exact contributions of the subject's items), not the ALS decomposition's
    for item, own in zip(served["items"], model.explain(subject, ids), strict=True):
        assert item["tags"] == [t.to_dict() for t in own] and {t["kind"] for t in item["tags"]} == {"because_you_interacted"}
        assert all(t["exact"] and set(t["items"]) <= seen for t in item["tags"])
    # the decision record names the EASE version (its family is the version's recorded kind)
    with server.store.snapshot() as connection:
        recorded = connection.execute(
            select(DecisionRecord.model_version, DecisionRecord.mode, ModelVersion.kind)
            .join(ModelVersion, ModelVersion.version_id == DecisionRecord.model_version)
            .where(DecisionRecord.decision_id == served["decision_id"])
        ).one()
    assert tuple(recorded) == (ease["model_version"], "personalized", "ease")
    # the same list as the CLI's path (recgov recommend: governance.governed_list) makes, here and under the EU
    # pack's re-ranking (the re-ranking's move tags first, then EASE's)
    items = load_data(DATA).items
    with server.client("operator") as client:
        eu = _ask(client, subject, ease["model_version"], pack="eu-gdpr-dsa").json()
    assert eu["mode"] == "personalized"
    for pack, made in (("california-ccpa", served), ("eu-gdpr-dsa", eu)):
        cli_list = serve_list(server.store, load_ref(server.home / "packs", pack), ease["model_version"], subject, k=5, items=items)
        assert cli_list.mode == "personalized"
        assert [(i["item_id"], i["tags"]) for i in cli_list.item_dicts()] == [(i["item_id"], i["tags"]) for i in made["items"]], pack
    for item, own in zip(eu["items"], model.explain(subject, [i["item_id"] for i in eu["items"]]), strict=True):
        assert [t for t in item["tags"] if "exact" in t] == [t.to_dict() for t in own]


def test_the_compute_process_makes_the_same_family_list(server, ease: dict) -> None:
    """The family's personalizer is sent to the compute process like ALS's; what it makes is the server's list."""
    subject = "u000043"
    cache = server.app.state.engines
    assert cache.compute is not None, "the server runs with its compute process (RECGOV_API_COMPUTE=process)"
    with server.client("operator") as client:
        _consent(client, subject, "granted")
        first = _ask(client, subject, ease["model_version"]).json()
        before = cache.compute.made_there
        answers = []
        deadline = time.monotonic() + 90
        while cache.compute.made_there == before and time.monotonic() < deadline:
            answers.append(_ask(client, subject, ease["model_version"]).json())
            time.sleep(0.1)
    assert cache.compute.made_there > before, "the compute process never made the family's list"
    assert first["mode"] == "personalized"
    for made in answers:
        assert made["items"] == first["items"]


def test_a_subject_who_did_not_consent_gets_the_non_profiling_list(server, ease: dict) -> None:
    subject = "u000041"
    with server.client("operator") as client:
        no_record = _ask(client, subject, ease["model_version"], pack="eu-gdpr-dsa").json()  # opt-in: no record, no profiling
        assert _ask(client, subject, ease["model_version"]).json()["mode"] == "personalized"  # opt-out: no record, profiled
        _consent(client, subject, "opted_out")
        opted_out = _ask(client, subject, ease["model_version"]).json()
    for served in (no_record, opted_out):
        assert served["mode"] == "non_profiling" and served["model_version"] == ease["model_version"], served["consent"]
        assert len(served["items"]) == 5 and all(i["score"] is None for i in served["items"])
        assert all(t["kind"] != "because_you_interacted" for i in served["items"] for t in i["tags"])


def test_an_exact_erasure_replaces_the_family_version_it_erased_from(server) -> None:
    """EASE forgets exactly: the erasure records a version trained without the subject, which takes the old one's
    place; the old one, whose file listed the subject, is retired and its file deleted, so naming it is a 409
    ``model-replaced`` naming the new version (not a list, and not a missing-file error). The new version never
    held the subject: their list from it is never made from their old history."""
    # Its own EASE, on data with subjects no other model here holds: the module's versions are not erased from
    result = CliRunner().invoke(cli, ["train", "synthetic:n_users=320,n_items=200,n_interactions=12800,seed=5", "--no-carbon",
                                      "--database-url", server.db_url, "--json", "--pack", "baseline", "--family", "ease",
                                      "--param", "regularization=25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    own = json.loads(result.stdout)
    subject = "u000315"
    with server.client("operator") as client:
        _consent(client, subject, "granted")
        assert _ask(client, subject, own["model_version"]).json()["mode"] == "personalized"  # the cached engine is warm
    with server.client("admin") as client:
        erased = client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline"})
    assert erased.status_code == 200, erased.text
    steps = [s for s in erased.json()["unlearning"] if s.get("family") == "ease" and s.get("previous_version") == own["model_version"]]
    assert steps and all(s["status"] == "unlearned" for s in steps)
    with server.client("operator") as client:
        _consent(client, subject, "granted")  # a grant after erasure does not bring the old version's data back
        replaced = _ask(client, subject, own["model_version"])
        unlearned = _ask(client, subject, steps[0]["version"])
    assert replaced.status_code == 409 and replaced.json()["type"].endswith("/model-replaced"), replaced.text
    assert steps[0]["version"] in replaced.json()["detail"]
    assert unlearned.status_code == 200, unlearned.text
    assert unlearned.json()["mode"] in ("non_profiling", "fallback") or subject not in json.dumps(unlearned.json())
    assert subject not in erased.text


def test_a_file_of_another_family_is_refused_with_a_problem(server, ease: dict) -> None:
    other = _train(server, "--family", "ease", "--param", "regularization=35")
    bpr = _train(server, "--family", "bpr", "--param", "factors=4", "--param", "iterations=2")
    Path(other["artifact"]).write_bytes(Path(bpr["artifact"]).read_bytes())
    with server.store.snapshot() as connection:
        decisions = connection.execute(select(DecisionRecord.decision_id)).all()
    with server.client("operator") as client:
        _consent(client, "u000044", "granted")
        changed = _ask(client, "u000044", other["model_version"])
    # the file is not the one recorded: refused before it is read (409 artifact-changed)
    assert changed.status_code == 409 and changed.json()["type"].endswith("/artifact-changed"), changed.text
    with server.store.session() as session:  # a record naming the other family's file with its hash
        session.get(ModelVersion, other["model_version"]).artifact_hash = bpr["artifact_hash"]
    os.utime(other["artifact"], ns=(time.time_ns(), time.time_ns() + 1_000_000))  # the engine cache reads it again
    with server.client("operator") as client:
        answer = _ask(client, "u000044", other["model_version"])
        still = _ask(client, "u000044", ease["model_version"])
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.json()
    assert problem["status"] == 422
    assert f"model version {other['model_version']} is recorded as model family ease" in problem["detail"]
    assert "recgov.family.bpr.v1" in problem["detail"] and other["artifact"] in problem["detail"]
    assert still.status_code == 200 and still.json()["mode"] == "personalized"  # another version is unaffected
    with server.store.snapshot() as connection:
        after = connection.execute(select(DecisionRecord.decision_id)).all()
    assert len(after) == len(decisions) + 1  # only the served list was recorded


def test_a_version_of_a_family_not_installed_is_refused_with_a_problem(server, ease: dict) -> None:
    version = "ghost_family-0123456789abcdef"
    with server.store.session() as session:
        row = session.get(ModelVersion, ease["model_version"])
        record_model_version(
            session, version_id=version, kind="ghost_family", training_run=row.training_run_id,
            artifact_hash=hashlib.sha256(Path(ease["artifact"]).read_bytes()).hexdigest(), artifact_location=ease["artifact"],
        )  # fmt: skip
    with server.client("operator") as client:
        answer = _ask(client, "u000045", version)
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM_JSON, answer.text
    detail = answer.json()["detail"]
    assert "recorded as model family 'ghost_family', which is not installed here" in detail
    assert "installed: " in detail and "ease" in detail
    assert "not a recgov ALS model file" in detail or "unsupported model format" in detail
