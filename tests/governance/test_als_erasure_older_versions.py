"""An exact erasure reaches every version of an ALS lineage that lists the subject, not only the newest.

Regression: an approximate erasure of one subject keeps the version it unlearned from (its stage and its file) until
the retrain. An exact erasure of another subject then refit only the newest version of that lineage, the stand-in;
the older version, still deployed, kept a file that lists the second subject's raw id. Now each older version of the
lineage that lists the subject is replaced by the refit as the newest one is: the refit takes its stage, it is
retired with a ``model.replaced_by_erasure`` event, and its file is deleted once the erasure is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import TrailEvent
from governance.cli import app
from governance.deploy import deployed_versions
from governance.privacy.access import export_subject
from tests.files_naming import files_naming

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
FIRST, SUBJECT = "u000018", "u000017"


def _cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_exact_erasure_replaces_the_older_version_an_approximate_one_kept(db_url: str, recgov_home: Path) -> None:
    trained = _cli("train", DATA, "--no-carbon", "--database-url", db_url, "--factors", "8", "--iterations", "4")
    first, artifact = trained["model_version"], Path(trained["artifact"])
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=first, stage="shadow")
            record_deployment(session, model_version=first, stage="production")
        approx = _cli("subject", "erase", FIRST, "--pack", "eu-gdpr-dsa", "--approximate", "--database-url", db_url)
        (stand_in,) = [s["version"] for s in approx["unlearning"] if s.get("previous_version") == first]
        assert artifact.exists() and files_naming(recgov_home, SUBJECT)  # the approximate erasure kept it
        report = _cli("subject", "erase", SUBJECT, "--pack", "eu-gdpr-dsa", "--database-url", db_url)
        with store.session() as session:
            stages = deployed_versions(session)
            events = session.execute(select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")).scalars().all()
        later = export_subject(store, "u000019")["models"]
    finally:
        store.close()
    (step,) = [s for s in report["unlearning"] if s.get("previous_version") == stand_in]
    refit = step["version"]
    assert files_naming(recgov_home, SUBJECT) == []  # no file under RECGOV_HOME lists the subject any more
    assert not artifact.exists()
    assert stages["production"] == [refit] and {first, stand_in} <= set(stages["retired"])
    assert [(o["version"], o["stage"], o["artifact_deleted"]) for o in step["older_versions_replaced"]] == [(first, "production", True)]
    assert any(first in str(p) and refit in str(p) for p in events)
    actions = {v["version_id"]: v["action"] for v in report["models"]["versions"]}
    assert f"model version {refit}" in actions[first] and "file deleted" in actions[first]
    assert not any(first in line or stand_in in line for line in report["not_done"]), report["not_done"]
    # a later reader sees the deleted version as holding nobody, not as "may include"
    assert first not in {m["version_id"] for m in later}


def test_the_erase_command_prints_the_older_version_it_replaced(db_url: str, recgov_home: Path) -> None:
    trained = _cli("train", DATA, "--no-carbon", "--database-url", db_url, "--factors", "8", "--iterations", "4")
    _cli("subject", "erase", FIRST, "--pack", "eu-gdpr-dsa", "--approximate", "--database-url", db_url)
    result = runner.invoke(app, ["subject", "erase", SUBJECT, "--pack", "eu-gdpr-dsa", "--database-url", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"the older version {trained['model_version']} listed the subject too: it is retired, deleted its artifact" in text
    assert SUBJECT not in result.output and files_naming(recgov_home, SUBJECT) == []
