"""An erasure leaves every stage of a lineage on a version that does not list the subject, for every family.

An approximate erasure keeps the version it unlearned from (its file and, often, its stage) until the retrain; its
stand-in may be promoted, which moves the kept version to shadow. An exact erasure of another subject then refits
the newest version and replaces every version of the lineage that lists them: the refit holds one stage only, so it
takes the highest (production before canary before shadow) and the erasure says which stage it could not take
(never a silently empty production). A family whose ``forget`` is approximate is refit by an exact erasure (the
model trained without the subject), and its older versions are replaced as ALS's are. The retrain request the
first erasure opened, whose versions are all replaced by then, is completed with what replaced them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import ModelVersion, SubjectRequest, TrailEvent, TrainingRun
from governance.cli import app
from governance.deploy import deployed_versions
from governance.policy import load_pack
from governance.privacy import erase_subject
from governance.privacy.retrains import pending_retrains
from recommender.families.ease import EASEModel
from recommender.family import _FAMILIES, ErasureKind, Family, ForgetOutcome, model_user_ids

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
FIRST, SUBJECT = "u000018", "u000017"


class ApproximateEASE(EASEModel):
    """EASE whose forget is declared approximate, with a residual (the registry holds no such family)."""

    family = "ease_approx_lineage"
    erasure = ErasureKind.approximate
    FORMAT = "recgov.family.ease_approx_lineage.v1"

    def forget(self, user_ids):  # type: ignore[no-untyped-def]
        exact = super().forget(user_ids)
        return ForgetOutcome(ErasureKind.approximate, exact.removed, 0.125, False, {"method": "test"})


@pytest.fixture
def approximate_family() -> Iterator[str]:
    family = Family(name=ApproximateEASE.family, build=ApproximateEASE, description="test", inputs=frozenset({"interactions"}), erasure=ErasureKind.approximate)
    _FAMILIES[family.name] = family
    try:
        yield family.name
    finally:
        del _FAMILIES[family.name]


def _files_listing(folder: Path, subject: str) -> list[str]:
    out = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        ids = model_user_ids(io.BytesIO(data)) if path.suffix == ".npz" else None
        if subject.encode() in data or (ids is not None and (ids.astype(str) == subject).any()):
            out.append(path.name)
    return out


def _train(db_url: str, family: str | None) -> dict:
    extra = ["--family", family, "--param", "regularization=20"] if family else ["--factors", "8", "--iterations", "4"]
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _lineage(db_url: str, family: str | None, older_stage: str, newest_stage: str) -> tuple[str, str, dict, Path]:
    """v1 trained; an approximate erasure of FIRST makes its stand-in v2; v1 ends in ``older_stage``, v2 in
    ``newest_stage`` (production: promoted over v1, which goes back to shadow as a promotion leaves it)."""
    doc = _train(db_url, family)
    v1 = doc["model_version"]
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=v1, stage="shadow")
            record_deployment(session, model_version=v1, stage="production")
        first = erase_subject(store, FIRST, pack=EU, measure_carbon=False, exact=False)
        (v2,) = [s["version"] for s in first["unlearning"] if s.get("previous_version") == v1]
        with store.session() as session:
            if older_stage != "production":
                record_deployment(session, model_version=v1, stage=older_stage)
            record_deployment(session, model_version=v2, stage="shadow")
            if newest_stage != "shadow":
                record_deployment(session, model_version=v2, stage="canary")
            if newest_stage == "production":
                record_deployment(session, model_version=v2, stage="production")
    finally:
        store.close()
    return v1, v2, first, Path(doc["artifact"]).parent


@pytest.mark.parametrize(
    ("family", "older_stage", "newest_stage", "lost"),
    [
        (None, "shadow", "production", "shadow"),  # the stand-in promoted: the kept version went back to shadow
        (None, "production", "canary", "canary"),
        ("approx", "shadow", "production", "shadow"),
    ],
)
def test_the_refit_keeps_the_highest_stage_and_names_the_one_it_could_not_take(
    db_url: str, recgov_home: Path, approximate_family: str, family: str | None, older_stage: str, newest_stage: str, lost: str
) -> None:
    family = approximate_family if family else None
    v1, v2, first, folder = _lineage(db_url, family, older_stage, newest_stage)
    assert _files_listing(folder, SUBJECT)  # the approximate erasure kept v1, and v2 lists the second subject too
    store = open_store(db_url)
    try:
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
        with store.session() as session:
            stages = deployed_versions(session)
            first_retrain = session.get(SubjectRequest, first["retrain"]["request"]["id"])
            status, result = first_retrain.status, first_retrain.result
            events = session.execute(select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")).scalars().all()
        pending = pending_retrains(store)["pending"]
    finally:
        store.close()
    (step,) = [s for s in report["unlearning"] if s.get("previous_version") == v2]
    refit = step["version"]
    assert step["standing"]["standing"] == "final"
    # production is never left empty: the refit serves the highest stage the lineage had
    assert stages["production"] == [refit] and {v1, v2} <= set(stages["retired"])
    assert not any(lost in stages and v in stages[lost] for v in (v1, v2))
    assert [o["version"] for o in step["older_versions_replaced"]] == [v1]
    notes = [n for n in report["not_done"] if n.startswith(f"{lost} lost a version")]
    assert len(notes) == 1 and refit in notes[0] and "serves production" in notes[0], report["not_done"]
    payloads = [json.loads(p) if isinstance(p, str | bytes) else p for p in events]
    assert any(p.get("not_kept") == lost for p in payloads), payloads
    # no file lists the subject; the first erasure's retrain is owed no more: its versions are replaced
    assert _files_listing(folder, SUBJECT) == [] and _files_listing(recgov_home, SUBJECT) == []
    assert report["retrain"]["request"] is None
    assert report["retrain_requests_settled"] == [first["retrain"]["request"]["id"]]
    assert status == "completed" and result["replaced_by_erasure"]["versions"] == {v1: refit, v2: refit}
    assert pending == []


def test_an_exact_erasure_refits_an_approximate_family_and_replaces_its_older_versions(
    db_url: str, recgov_home: Path, approximate_family: str
) -> None:
    v1, v2, _first, folder = _lineage(db_url, approximate_family, "shadow", "shadow")
    store = open_store(db_url)
    try:
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
        (step,) = [s for s in report["unlearning"] if s.get("previous_version") == v2]
        with store.session() as session:
            run = session.get(TrainingRun, session.get(ModelVersion, step["version"]).training_run_id)
            stages = deployed_versions(session)
    finally:
        store.close()
    assert step["method"] == "family.refit" and run.params["unlearning"]["kind"] == "exact"
    assert run.params["unlearning"]["method"] == "family.refit"
    fresh = ApproximateEASE.load(step["artifact"])
    assert SUBJECT not in set(fresh.subjects().astype(str)) and FIRST not in set(fresh.subjects().astype(str))
    assert stages["shadow"] == [step["version"]] and {v1, v2} <= set(stages["retired"])
    assert _files_listing(folder, SUBJECT) == []
    assert not any(v1 in line or v2 in line for line in report["not_done"]), report["not_done"]


def test_an_approximate_erasure_of_an_approximate_family_says_the_older_version_still_lists_the_subject(
    db_url: str, recgov_home: Path, approximate_family: str
) -> None:
    v1, v2, _first, folder = _lineage(db_url, approximate_family, "shadow", "production")
    store = open_store(db_url)
    try:
        report = erase_subject(store, SUBJECT, pack=EU, measure_carbon=False, exact=False)
    finally:
        store.close()
    (step,) = [s for s in report["unlearning"] if s.get("previous_version") == v2]
    assert step["standing"]["standing"] == "provisional"
    # what the approximate erasure could not do is said: both versions still list the subject, a retrain is owed
    assert {v1, v2, step["version"]} <= set(report["retrain"]["request"]["models"])
    assert any(v1 in line and "still lists the subject" in line for line in report["not_done"])
    assert any(v2 in line and "still holds the subject" in line for line in report["not_done"])


def test_the_erase_command_names_the_stage_the_refit_could_not_take_and_the_settled_request(db_url: str, recgov_home: Path) -> None:
    v1, v2, first, _folder = _lineage(db_url, None, "shadow", "production")
    result = runner.invoke(app, ["subject", "erase", SUBJECT, "--pack", "eu-gdpr-dsa", "--database-url", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"the older version {v1} listed the subject too" in text
    assert "still to do: shadow lost a version to an erasure" in text
    assert f"retrain request #{first['retrain']['request']['id']} completed" in text
    assert SUBJECT not in result.output
