"""Governance does not depend on the model family: training, erasure and serving of non-ALS families.

``recgov train --family``: the pack's consent filter and minimisation check, carbon and lineage as for ALS;
erasure routed by the family's erasure kind (exact: forget and a new version; retrain: a retrain request);
``recgov recommend`` lists with the family's own tags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.consent import record_consent
from audits.models import ModelVersion, SubjectRequest, TrailEvent, TrainingRun
from governance.cli import app
from governance.family_training import family_model_class, parse_params
from governance.policy import load_pack
from governance.privacy import erase_subject
from recommender.errors import ConfigError
from recommender.family import get_family

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")


def _grant(db_url: str, users: list[str]) -> None:
    store = open_store(db_url)
    try:
        with store.session() as session:
            for user in users:
                record_consent(session, subject_id=user, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    finally:
        store.close()


def _train(db_url: str, *extra: str) -> dict:
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _state(db_url: str) -> tuple[int, int, int]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return (
                len(session.scalars(select(TrailEvent.seq)).all()),
                len(session.scalars(select(TrainingRun.id)).all()),
                len(session.scalars(select(ModelVersion.version_id)).all()),
            )
    finally:
        store.close()


def test_train_a_family_under_the_pack_filter_with_its_lineage(db_url: str, recgov_home: Path) -> None:
    users = [f"u{i:06d}" for i in range(0, 120, 2)]  # half the subjects consent under the opt-in pack
    _grant(db_url, users)
    doc = _train(db_url, "--family", "ease", "--param", "regularization=20", "--pack", "eu-gdpr-dsa", "--as-of", "2024-07-01")
    assert doc["family"] == "ease" and doc["erasure"] == "exact" and doc["family_inputs"] == ["interactions"]
    assert doc["params"]["regularization"] == 20
    # only consenting subjects were trained on: the saved model's subjects are a subset of them
    artifact = Path(doc["artifact"])
    assert artifact.parent == recgov_home / "models" and artifact.name == f"{doc['model_version']}.npz"
    model = family_model_class(get_family("ease")).load(artifact)
    assert model.version_id_ == doc["model_version"]
    assert set(model.subjects().astype(str)) <= set(users) and len(model.subjects()) > 0
    assert doc["privacy_filter"]["events"]["excluded"]["no_consent_record"] > 0
    with np.load(artifact, allow_pickle=False) as npz:  # no pickle anywhere in the file
        assert all(npz[name].dtype != object for name in npz.files)
    store = open_store(db_url)
    try:
        with store.session() as session:
            row = session.get(ModelVersion, doc["model_version"])
            run = session.get(TrainingRun, row.training_run_id)
            events = session.scalars(select(TrailEvent).order_by(TrailEvent.seq)).all()
    finally:
        store.close()
    assert row.kind == "ease" and row.artifact_location == str(artifact)
    assert run.params["family"] == "ease" and run.params["erasure"] == "exact" and run.params["family_inputs"] == ["interactions"]
    assert run.params["model_inputs"] == ["user_id", "item_id", "event_type", "value"]  # the fields the fit read, as for ALS
    assert run.params["family_params"] == doc["params"]
    actions = [e.action for e in events]
    assert "privacy.training_filtered" in actions and actions[-1] == "model.recorded"
    assert actions.index("privacy.training_filtered") < actions.index("training_run.recorded")
    lineage = runner.invoke(app, ["lineage", doc["model_version"], "--database-url", db_url, "--json"])
    assert lineage.exit_code == 0, lineage.output
    assert "ease" in lineage.stdout
    shown = runner.invoke(app, ["models", "list", "--database-url", db_url, "--json"])
    assert shown.exit_code == 0, shown.output
    listed = {m["version_id"]: m for m in json.loads(shown.stdout)["models"]}
    assert listed[doc["model_version"]]["family"] == "ease" and listed[doc["model_version"]]["erasure"] == "exact"
    # the default is today's ALS path
    als = _train(db_url, "--no-tune", "--factors", "4", "--iterations", "2", "--pack", "eu-gdpr-dsa", "--as-of", "2024-07-01")
    assert als["model_version"].startswith("als-") and "family" not in als


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "no-such-family"], "unknown model family 'no-such-family'"),
        (["--family", "ease", "--param", "regularization"], "expected key=value"),
        (["--family", "ease", "--param", "alpha=2"], "has no parameter 'alpha'"),
        (["--family", "ease", "--param", "regularization=-1"], "regularization"),
        (["--family", "ease", "--factors", "8"], "--factors: ALS options"),
        (["--param", "factors=8"], "--param is for the other families"),
    ],
)
def test_bad_family_flags_change_nothing(db_url: str, recgov_home: Path, args: list[str], message: str) -> None:
    before = _state(db_url)
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert _state(db_url) == before
    assert not list((recgov_home / "models").glob("*.npz"))


def test_a_family_whose_inputs_the_pack_does_not_allow_is_refused_with_the_pack_line(db_url: str, tmp_path: Path) -> None:
    from recommender.family import Family, ErasureKind, _FAMILIES

    ease = get_family("ease")
    reader = Family(
        name="ease_with_text", build=ease.build, description="reads item text", inputs=frozenset({"interactions", "item_text"}),
        erasure=ErasureKind.exact,
    )
    _FAMILIES[reader.name] = reader
    try:
        before = _state(db_url)
        result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--family", "ease_with_text", "--pack", "eu-gdpr-dsa"])
    finally:
        del _FAMILIES[reader.name]
    assert result.exit_code == 2, result.output
    assert "minimization.purposes.personalization" in result.stderr and "item_text" in result.stderr
    assert "eu-gdpr-dsa.yaml:" in result.stderr  # located at the pack's line
    assert _state(db_url) == before


def test_parse_params_reads_numbers_words_and_booleans() -> None:
    assert parse_params(["a=1", "b=0.5", "c=true", "d=bm25"]) == {"a": 1, "b": 0.5, "c": True, "d": "bm25"}
    assert parse_params(['c=["title","genre"]']) == {"c": ["title", "genre"]}
    for bad in (["=1"], ["a=1", "a=2"], ['a={"x":1}'], ["a=[[1]]"]):
        with pytest.raises(ConfigError):
            parse_params(bad)


def _trail_dump(db_url: str) -> str:
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            rows = connection.execute(select(TrailEvent)).all()
            runs = connection.execute(select(TrainingRun.params)).all()
            requests = [tuple(r) for r in connection.execute(select(SubjectRequest)).all()]
    finally:
        store.close()
    return repr([tuple(r) for r in rows]) + repr(runs) + repr(requests)


def test_exact_erasure_makes_a_new_version_without_the_subject(db_url: str) -> None:
    doc = _train(db_url, "--family", "ease", "--param", "regularization=20")
    subject = "u000017"
    model = family_model_class(get_family("ease")).load(doc["artifact"])
    assert subject in set(model.subjects().astype(str))
    store = open_store(db_url)
    try:
        report = erase_subject(store, subject, pack=EU, measure_carbon=False)
    finally:
        store.close()
    steps = [s for s in report["unlearning"] if s.get("family") == "ease"]
    assert len(steps) == 1 and steps[0]["status"] == "unlearned" and steps[0]["standing"]["standing"] == "final"
    new_version = steps[0]["version"]
    assert new_version != doc["model_version"] and steps[0]["previous_version"] == doc["model_version"]
    new = family_model_class(get_family("ease")).load(steps[0]["artifact"])
    assert subject not in set(new.subjects().astype(str))
    assert len(new.subjects()) == len(model.subjects()) - 1
    # exact: the same as a model trained without the subject
    from recommender.family import without_users

    fresh = get_family("ease").create(regularization=20).fit(without_users(model.train_, [subject])[0])
    np.testing.assert_allclose(new.weights_, fresh.weights_, atol=1e-8)
    store = open_store(db_url)
    try:
        with store.session() as session:
            row = session.get(ModelVersion, new_version)
            run = session.get(TrainingRun, row.training_run_id)
            from governance.suppressed import TRAINED, model_standing

            standing = model_standing(session, new_version)
    finally:
        store.close()
    assert row.kind == "ease" and run.params["unlearning"]["from"] == doc["model_version"]
    assert run.params["unlearning"]["kind"] == "exact"
    assert standing.standing == TRAINED  # no retrain owed for an exact erasure
    # no retrain is owed for the exact family version
    retrain = report["retrain"]["request"]
    assert retrain is None or doc["model_version"] not in retrain["models"]
    assert subject not in _trail_dump(db_url)


def test_retrain_family_erasure_opens_a_retrain_request(db_url: str) -> None:
    doc = _train(db_url, "--family", "bpr", "--param", "factors=4", "--param", "iterations=2")
    subject = "u000017"
    model = family_model_class(get_family("bpr")).load(doc["artifact"])
    assert subject in set(model.subjects().astype(str))
    store = open_store(db_url)
    try:
        report = erase_subject(store, subject, pack=EU, measure_carbon=False)
    finally:
        store.close()
    steps = [s for s in report["unlearning"] if s.get("family") == "bpr"]
    assert len(steps) == 1 and steps[0]["status"] == "retrain_required"
    assert doc["model_version"] in report["retrain"]["request"]["models"]
    listed = {v["version_id"]: v for v in report["models"]["versions"]}
    assert "retrain" in listed[doc["model_version"]]["action"]
    assert subject not in _trail_dump(db_url)


def _recommend(db_url: str, user: str, version: str, *extra: str) -> dict:
    result = runner.invoke(app, ["recommend", user, "--model", version, "--data", DATA, "--k", "5", "--database-url", db_url, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("family", "params", "tag_kinds"), [
    ("ease", ["regularization=20"], {"because_you_interacted"}),
    ("user_knn", [], None),
    ("bpr", ["factors=4", "iterations=2"], None),
])
def test_recommend_from_a_family_model_lists_its_own_tags_under_consent(db_url: str, family: str, params: list[str], tag_kinds: set[str] | None) -> None:
    doc = _train(db_url, "--family", family, *[a for p in params for a in ("--param", p)])
    user = "u000012"
    assert _recommend(db_url, user, doc["model_version"], "--pack", "eu-gdpr-dsa")["mode"] == "non_profiling"  # opt-in, no record
    _grant(db_url, [user])
    served = _recommend(db_url, user, doc["model_version"], "--pack", "eu-gdpr-dsa")
    assert served["mode"] == "personalized" and len(served["items"]) == 5
    model = family_model_class(get_family(family)).load(doc["artifact"])
    expected = model.explain(user, [i["item_id"] for i in served["items"]])
    for item, tags in zip(served["items"], expected):
        # the family's own tags, as its explain gives them for the served items
        own = [t for t in item["tags"] if "exact" in t]  # a re-ranking move's tag (first, when any) says no more
        assert own == [t.to_dict() for t in tags] and own
        assert all("exact" in t or t["kind"] != "because_you_interacted" for t in item["tags"])  # no ALS tag
        if tag_kinds is not None:
            assert {t["kind"] for t in own} <= tag_kinds
    # never an item the subject has seen
    seen = set(model.train_.item_ids[model.train_.matrix[model.train_.user_index([user])[0]].indices].astype(str))
    assert not seen & {i["item_id"] for i in served["items"]}
    # erased: the non-profiling list from the version that read their data, or, when an exact erasure replaced
    # that version (retired, its file deleted), from the version trained without them
    store = open_store(db_url)
    try:
        erased = erase_subject(store, user, pack=EU, measure_carbon=False)
    finally:
        store.close()
    replaced = [s["version"] for s in erased["unlearning"] if s.get("replaced_in_serving")]
    assert bool(replaced) == (get_family(family).erasure.value == "exact") and Path(doc["artifact"]).exists() != bool(replaced)
    assert _recommend(db_url, user, (replaced or [doc["model_version"]])[0], "--pack", "eu-gdpr-dsa")["mode"] == "non_profiling"
    assert user not in _trail_dump(db_url)


def test_recommend_refuses_a_model_file_of_another_family(db_url: str) -> None:
    ease = _train(db_url, "--family", "ease", "--param", "regularization=20")
    bpr = _train(db_url, "--family", "bpr", "--param", "factors=4", "--param", "iterations=2")
    Path(ease["artifact"]).write_bytes(Path(bpr["artifact"]).read_bytes())
    result = runner.invoke(app, ["recommend", "u000012", "--model", ease["model_version"], "--database-url", db_url])
    assert result.exit_code == 2, result.output  # the file is not the one recorded: refused before it is read
    assert "cannot be served" in result.stderr and "changed on disk" in " ".join(result.stderr.split())
    # A store whose record names the other family's file with its hash: the family check refuses it.
    from audits.models import ModelVersion

    store = open_store(db_url)
    try:
        with store.session() as session:
            session.get(ModelVersion, ease["model_version"]).artifact_hash = bpr["artifact_hash"]
    finally:
        store.close()
    result = runner.invoke(app, ["recommend", "u000012", "--model", ease["model_version"], "--database-url", db_url])
    assert result.exit_code == 2, result.output
    assert "recorded as model family ease" in result.stderr and "recgov.family.bpr.v1" in result.stderr


def test_approximate_family_erasure_records_its_residual_and_owes_a_retrain(db_url: str) -> None:
    from recommender.families.ease import EASEModel
    from recommender.family import _FAMILIES, ErasureKind, Family, ForgetOutcome

    class ApproximateEASE(EASEModel):
        """EASE whose forget is declared approximate, with a residual (the registry holds no such family yet)."""

        family = "ease_approximate"
        erasure = ErasureKind.approximate
        FORMAT = "recgov.family.ease_approximate.v1"

        def forget(self, user_ids):  # type: ignore[no-untyped-def]
            exact = super().forget(user_ids)
            return ForgetOutcome(ErasureKind.approximate, exact.removed, 0.125, False, {"method": "test"})

    family = Family(name="ease_approximate", build=ApproximateEASE, description="test", inputs=frozenset({"interactions"}), erasure=ErasureKind.approximate)
    _FAMILIES[family.name] = family
    try:
        doc = _train(db_url, "--family", "ease_approximate", "--param", "regularization=20")
        subject = "u000017"
        store = open_store(db_url)
        try:
            # approximate: the family's own forget (an exact erasure refits it: test_erasure_lineage_stages.py)
            report = erase_subject(store, subject, pack=EU, measure_carbon=False, exact=False)
            with store.session() as session:
                from governance.suppressed import PROVISIONAL, model_standing

                step = next(s for s in report["unlearning"] if s.get("family") == "ease_approximate")
                standing = model_standing(session, step["version"])
                run = session.get(TrainingRun, session.get(ModelVersion, step["version"]).training_run_id)
        finally:
            store.close()
    finally:
        del _FAMILIES[family.name]
    assert step["status"] == "unlearned" and step["residual"] == 0.125 and step["standing"]["standing"] == "provisional"
    assert run.params["unlearning"]["residual"] == 0.125 and run.params["unlearning"]["kind"] == "approximate"
    assert step["version"] in report["retrain"]["request"]["models"]  # the retrain is owed
    assert standing.standing == PROVISIONAL and standing.retrain_request == report["retrain"]["request"]["id"]
    assert subject not in set(ApproximateEASE.load(step["artifact"]).subjects().astype(str))
    assert subject not in _trail_dump(db_url)
    assert doc["model_version"] != step["version"]


def test_erase_refuses_a_named_model_file_of_another_family(db_url: str) -> None:
    doc = _train(db_url, "--family", "ease", "--param", "regularization=20")
    before = _state(db_url)
    result = runner.invoke(app, ["subject", "erase", "u000017", "--pack", "eu-gdpr-dsa", "--model", doc["artifact"], "--database-url", db_url])
    assert result.exit_code == 2, result.output
    assert doc["artifact"] in result.stderr and "recgov.family.ease.v1" in result.stderr
    assert _state(db_url) == before


def test_a_content_family_is_trained_with_the_item_content_the_pack_allows(db_url: str, tmp_path: Path) -> None:
    import yaml

    from recommender.family import families

    if "content_tfidf" not in families():
        pytest.skip("the content family is not installed here")
    spec = yaml.safe_load((POLICIES / "eu-gdpr-dsa.yaml").read_text())
    allowed = spec["minimization"]["purposes"]["personalization"]["allowed_inputs"]
    pack = tmp_path / "with-content.yaml"
    pack.write_text(yaml.safe_dump(spec))
    items = tmp_path / "items.csv"
    words = ["jazz piano", "rock guitar", "folk song", "jazz trio", "rock live"]
    items.write_text("item_id,text,category,price,release_time\n" + "".join(f"i{i:05d},{words[i % 5]},c{i % 3},{i % 7 + 1}.5,2020-0{i % 9 + 1}-01\n" for i in range(80)))
    _grant(db_url, [f"u{i:06d}" for i in range(120)])
    train = ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", "--family", "content_tfidf", "--as-of", "2024-07-01", "--items", str(items)]
    refused = runner.invoke(app, [*train, "--pack", str(pack)])  # the pack allows no item content
    assert refused.exit_code == 2 and "item_text" in refused.stderr and f"{pack}:" in refused.stderr
    allowed += ["item_text", "item_category", "item_price", "item_release"]
    pack.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, [*train, "--pack", str(pack)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["family_inputs"] == ["interactions", "item_category", "item_price", "item_release", "item_text"]
    assert "item_text" in doc["inputs_given"] and "item_text" in doc["model_inputs"]
    served = _recommend(db_url, "u000012", doc["model_version"], "--pack", str(pack))
    assert served["mode"] == "personalized" and all(any("exact" in t for t in i["tags"]) for i in served["items"])


def test_retrain_run_names_a_family_version_it_cannot_retrain_with_the_command_to_use(db_url: str) -> None:
    doc = _train(db_url, "--family", "bpr", "--param", "factors=4", "--param", "iterations=2")
    store = open_store(db_url)
    try:
        erase_subject(store, "u000017", pack=EU, measure_carbon=False)
    finally:
        store.close()
    result = runner.invoke(app, ["retrain", "run", DATA, "--pack", "baseline", "--no-carbon", "--database-url", db_url, "--json"])
    assert result.exit_code == 1, result.output  # the request still waits
    run = json.loads(result.stdout)
    assert run["not_retrainable"] == [doc["model_version"]] and run["retrained"] == []
    assert "--family bpr" in run["cannot_retrain"][0]["message"]
    # The model trained on the erased subject is still recorded: the request is not completed (it once was, so the
    # retrain-deadline rules stopped counting while the model kept serving). It waits on that version...
    (request,) = run["requests"]
    assert request["status"] == "in_progress" and request["waiting_for"] == [doc["model_version"]]
    due = runner.invoke(app, ["retrain", "due", "--database-url", db_url, "--json"])
    assert [(r["id"], r["waiting_for"]) for r in json.loads(due.stdout)["pending"]] == [(request["id"], [doc["model_version"]])], due.output
    again = json.loads(runner.invoke(app, ["retrain", "run", DATA, "--pack", "baseline", "--no-carbon", "--database-url", db_url, "--json"]).stdout)
    assert [r["status"] for r in again["requests"]] == ["in_progress"]
    # ... until it is retired (retrained by hand with its family, as the message says, and the old one retired).
    from audits.lineage import record_deployment

    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=doc["model_version"], stage="retired", actor="test")
    finally:
        store.close()
    done = json.loads(runner.invoke(app, ["retrain", "run", DATA, "--pack", "baseline", "--no-carbon", "--database-url", db_url, "--json"]).stdout)
    assert [r["status"] for r in done["requests"]] == ["completed"] and done["not_retrainable"] == []


def test_erasure_reads_a_hybrid_models_subjects_from_the_parts_it_holds(db_url: str) -> None:
    """Regression: a hybrid's file holds its ALS and content parts as nested files, and erasure read only top-level
    training rows: every hybrid version was 'may_include' ("not a readable recgov model file") for every subject,
    so erasing someone it never saw still opened a retrain of it."""
    doc = _train(db_url, "--family", "hybrid", "--no-tune")
    model = family_model_class(get_family("hybrid")).load(doc["artifact"])
    inside = "u000017"
    assert inside in set(model.subjects().astype(str))
    store = open_store(db_url)
    try:
        report = erase_subject(store, inside, pack=EU, measure_carbon=False)
        listed = {v["version_id"]: v for v in report["models"]["versions"]}
        assert listed[doc["model_version"]]["membership"] == "includes", listed[doc["model_version"]]
        assert doc["model_version"] in report["retrain"]["request"]["models"]
        outside = erase_subject(store, "someone-never-seen", pack=EU, measure_carbon=False)
    finally:
        store.close()
    listed = {v["version_id"]: v for v in outside["models"]["versions"]}
    assert listed.get(doc["model_version"], {}).get("membership", "does_not_include") == "does_not_include"
    assert doc["model_version"] not in ((outside.get("retrain") or {}).get("request") or {}).get("models", [])
