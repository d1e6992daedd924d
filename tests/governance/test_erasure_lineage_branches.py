"""An exact refit of an older version of a lineage leaves out everyone erased since that version read its data.

Regression: a subject listed only in an older version of a lineage (an approximate erasure of them kept it, and an
approximate erasure of another subject came after) was erased exactly: the older version was refit without them
alone, so the refit, which took its stage and its place, was a new file listing the other erased subject's raw id,
that nothing pointed at any more. And two erasures running at once, one refitting an older version the other
replaced as older, each recorded a version holding whom the other erased: the "replaced meanwhile" check saw only
the version a refit came from, not the older versions a refit replaces. Both for ALS and for a family whose
``forget`` is approximate, which an exact erasure refits.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import ModelVersion, TrainingRun
from governance.cli import app
from governance.deploy import deployed_versions
from governance.policy import load_pack
from governance.privacy import erasure as erasure_module
from governance.privacy import erase_subject
from recommender.errors import DataError
from tests.files_naming import files_naming
from tests.governance.test_erasure_lineage_stages import approximate_family  # noqa: F401  (a fixture)

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
X, Y = "u000017", "u000018"


FAMILIES = pytest.mark.parametrize("family", [None, "approximate"], ids=["als", "refit-family"])


def _train(db_url: str, family: str | None = None) -> dict:
    extra = ["--family", family, "--param", "regularization=20"] if family else ["--factors", "8", "--iterations", "4"]
    result = runner.invoke(app, ["train", DATA, "--no-carbon", "--database-url", db_url, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _exact_versions_listing(store, *subjects: str) -> list[str]:
    """The recorded versions an exact erasure made whose file lists one of ``subjects``."""
    import io

    from recommender.family import model_user_ids

    out = []
    with store.session() as session:
        rows = session.execute(
            select(ModelVersion.version_id, ModelVersion.artifact_location, TrainingRun.params).join(
                TrainingRun, ModelVersion.training_run_id == TrainingRun.id
            )
        ).all()
    for version, location, params in rows:
        if (params.get("unlearning") or {}).get("kind") != "exact" or not Path(location).exists():
            continue
        ids = model_user_ids(io.BytesIO(Path(location).read_bytes())).astype(str)
        if any(s in ids for s in subjects):
            out.append(version)
    return out


@FAMILIES
def test_a_subject_only_in_an_older_version_is_refit_out_without_bringing_back_another_erased_one(
    db_url: str, recgov_home: Path, approximate_family: str, family: str | None
) -> None:
    first = _train(db_url, approximate_family if family else None)
    old, artifact = first["model_version"], Path(first["artifact"])
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=old, stage="shadow")
            record_deployment(session, model_version=old, stage="production")
        erase_subject(store, X, pack=EU, measure_carbon=False, exact=False)  # keeps `old`, which lists X and Y
        erase_subject(store, Y, pack=EU, measure_carbon=False, exact=False)  # Y is out of the newest; `old` lists Y
        assert files_naming(recgov_home, X) == [artifact]  # X is only in the older version now
        if family is None:
            from recommender.als import ALSRecommender

            matrix = ALSRecommender.load(artifact).train_
            own = int(matrix.matrix[int(matrix.user_index([X])[0])].nnz)
        report = erase_subject(store, X, pack=EU, measure_carbon=False)  # exactly, this time
        with store.session() as session:
            stages = deployed_versions(session)
        listing = _exact_versions_listing(store, X, Y)
    finally:
        store.close()
    (step,) = [s for s in report["unlearning"] if s.get("previous_version") == old]
    refit = step["version"]
    assert not artifact.exists() and files_naming(recgov_home, X) == []
    action = {v["version_id"]: v["action"] for v in report["models"]["versions"]}[old]
    assert f"model version {refit}" in action and "file deleted" in action  # the answer says so
    assert stages["production"] == [refit] and old in stages["retired"]
    # the refit that took production is no new file naming Y, whom an erasure before it erased
    assert listing == [], listing
    assert Path(step["artifact"]) not in files_naming(recgov_home, Y)
    if family is None:  # the figures the answer gives are the subject's own, not the other erased subject's too
        assert step["n_users_removed"] == 1 and step["n_interactions_removed"] == own, step
        assert "also leaves out the subjects erased since" in step["also_left_out"]


@FAMILIES
def test_two_erasures_at_once_record_no_version_holding_whom_the_other_erased(
    db_url: str, recgov_home: Path, monkeypatch: pytest.MonkeyPatch, approximate_family: str, family: str | None
) -> None:
    _train(db_url, approximate_family if family else None)
    store = open_store(db_url)
    try:
        erase_subject(store, X, pack=EU, measure_carbon=False, exact=False)  # X only in the older version now
        # both erasures refit before either records: X's refits the older version, Y's the newest and replaces the
        # older one as holding Y too
        barrier = threading.Barrier(2, timeout=60)
        listing = erasure_module._listing

        def listing_after_both(*args, **kwargs):
            barrier.wait()
            return listing(*args, **kwargs)

        monkeypatch.setattr(erasure_module, "_listing", listing_after_both)
        outcomes: dict[str, object] = {}

        def erase(subject: str) -> None:
            try:
                outcomes[subject] = erase_subject(store, subject, pack=EU, measure_carbon=False)
            except DataError as err:
                outcomes[subject] = err

        threads = [threading.Thread(target=erase, args=(s,)) for s in (X, Y)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        monkeypatch.setattr(erasure_module, "_listing", listing)
        assert set(outcomes) == {X, Y}, outcomes
        failed = [s for s, o in outcomes.items() if isinstance(o, DataError)]
        assert len(failed) <= 1, outcomes
        erased = [s for s in (X, Y) if s not in failed]
        assert _exact_versions_listing(store, *erased) == []  # no version recorded holds whom an erasure erased
        for subject in failed:  # the one refused runs again and completes
            assert "run the erasure again" in str(outcomes[subject]) and subject not in str(outcomes[subject])
            erase_subject(store, subject, pack=EU, measure_carbon=False)
        assert _exact_versions_listing(store, X, Y) == []
    finally:
        store.close()
    assert files_naming(recgov_home, X) == [] and files_naming(recgov_home, Y) == []
