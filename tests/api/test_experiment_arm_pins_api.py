"""An arm is served only under the pack content its plan pinned, checked on every list, over real HTTP (SQLite and
PostgreSQL).

The treatment names a stored pack. While the experiment runs, the pack's file is changed in place (same name and
version, other content): serving used to load the changed pack and serve the treatment's subjects under it, rules
no one had approved for the experiment, until the next look refused. Now each such list is served as a request
outside the experiment would be (the request's pack, the deployed model), its record saying ``arm_refused`` and why;
the status counts those subjects per arm, and no list of the experiment carries the changed content. Restored, the
pack serves the arm again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from audits.lineage import record_deployment
from audits.models import DecisionRecord, Experiment
from governance.deploy import deployed_versions
from governance.cli.policy import SHIPPED
from recgov.client import Client
from tests.governance.test_experiment_packs import PLAN

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

ARM_PACK = (SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: arm-pack")
SUBJECTS = [f"p{i:04d}" for i in range(40)]
REQUEST_PACK = "california-ccpa"


def _lists(server, subjects: list[str] = SUBJECTS) -> dict[str, dict]:
    """Every subject's answer (the deployed path: the experiment in force serves it)."""
    out = {}
    with server.client("operator") as http:
        for subject in subjects:
            answer = http.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": REQUEST_PACK})
            assert answer.status_code == 200, answer.text
            out[subject] = answer.json()
    return out


def _deploy(server, stage: str) -> None:
    """The module's model in ``stage`` (recorded unless it is there already)."""
    with server.store.session() as session:
        if server.model_version not in deployed_versions(session)[stage]:
            record_deployment(session, model_version=server.model_version, stage=stage, actor="test")


def _treated(answers: dict[str, dict]) -> set[str]:
    return {s for s, body in answers.items() if body["deployment"]["experiment"]["variant"] == "treatment"}


def test_an_arm_whose_pack_changed_in_place_is_not_served_under_it(server) -> None:
    _deploy(server, "production")
    with Client(server.url, server.tokens["admin"]) as api, server.client("admin") as admin:
        uploaded = admin.post("/v1/packs", content=ARM_PACK, headers={"Content-Type": "application/yaml"})
        assert uploaded.status_code in (200, 201), uploaded.text
        version = uploaded.json()["pack_version"]
        planned = api.plan_experiment(PLAN.format(name="pinned-arm", control="", treatment=f"    pack: arm-pack@{version}"))
        api.start_experiment("pinned-arm", plan_hash=planned["plan_hash"])
        with server.store.session() as session:
            pinned = session.scalars(select(Experiment.plan).where(Experiment.name == "pinned-arm")).one()["pack_pins"]["treatment"]["content_hash"]

        first, later = SUBJECTS[:20], SUBJECTS[20:]
        before = _lists(server, first)
        assert 3 <= len(_treated(before)) <= 17, before
        assert all(before[s]["pack"] == "arm-pack" and before[s]["pack_hash"] == pinned for s in _treated(before))

        path = Path(server.app.state.settings.packs_dir) / "arm-pack" / f"{version}.yaml"
        original = path.read_text()
        path.write_text(original.replace("  owner: recgov maintainers\n", "  owner: someone who changed it in place\n", 1))
        during = _lists(server)
        treated = _treated(during)
        assert _treated(before) <= treated and 5 <= len(treated) <= 35, treated
        for subject in treated:
            body = during[subject]
            assignment = body["deployment"]["experiment"]
            assert assignment["reason"] == "arm_refused", assignment
            assert f"not the {pinned} the plan pinned" in assignment["refused"], assignment
            assert body["pack"] == REQUEST_PACK, body  # as a request outside the experiment
        assert all(during[s]["deployment"]["experiment"]["reason"] == "randomised" for s in set(SUBJECTS) - treated)

        path.write_text(original)
        after = _lists(server)
        assert all(after[s]["pack"] == "arm-pack" and after[s]["deployment"]["experiment"]["reason"] == "randomised" for s in treated)
        status = api.experiment_status("pinned-arm")  # a subject's first list decides their reason
        assert status["counts"]["treatment"] == {"randomised": len(_treated(before)), "arm_refused": len(treated - set(first))}, status
        assert status["pack_drift"] == {}, status["pack_drift"]
        api.stop_experiment("pinned-arm")

    with server.store.session() as session:
        records = session.execute(select(DecisionRecord.pack_hash, DecisionRecord.context)).all()
    arm = [digest for digest, context in records if (context.get("experiment") or {}).get("variant") == "treatment"
           and context["experiment"]["reason"] == "randomised" and "shadow_of" not in context]  # fmt: skip
    assert arm and set(arm) == {pinned}, arm  # no list of the arm under other content
    refused = [c["experiment"] for _, c in records if (c.get("experiment") or {}).get("reason") == "arm_refused" and "shadow_of" not in c]
    assert len(refused) == len(treated) and all("refused" in a for a in refused)

STRICT_PACK = (  # subjects' ids are not among its inputs: it admits no model of their interactions
    ARM_PACK.replace("name: arm-pack", "name: strict-arm")
    .replace("allowed_inputs: [user_id, item_id, event_type, value, timestamp, session_id]", "allowed_inputs: [item_id, event_type, value, timestamp]")
)


def test_an_arm_whose_pack_does_not_admit_the_model_deployed_since_the_start_is_not_served(server) -> None:
    """A pack-only arm serves the production model, which may change while the experiment runs: checked per list."""
    _deploy(server, "shadow")  # nothing in production when the plan is frozen and started
    with Client(server.url, server.tokens["admin"]) as api, server.client("admin") as admin:
        uploaded = admin.post("/v1/packs", content=STRICT_PACK, headers={"Content-Type": "application/yaml"})
        assert uploaded.status_code in (200, 201), uploaded.text
        text = PLAN.format(name="strict-arm", control="", treatment=f"    pack: strict-arm@{uploaded.json()['pack_version']}")
        api.start_experiment("strict-arm", plan_hash=api.plan_experiment(text)["plan_hash"])
        _deploy(server, "production")
        served = _lists(server)
        treated = {s for s, body in served.items() if body["deployment"]["experiment"]["variant"] == "treatment"}
        assert 5 <= len(treated) <= 35, treated
        for subject in treated:
            assignment = served[subject]["deployment"]["experiment"]
            assert assignment["reason"] == "arm_refused", assignment
            assert assignment["refused"].startswith(f"pack 'strict-arm@{uploaded.json()['pack_version']}' does not admit the model the arm would serve: "), assignment
            assert "reads interactions, not on minimization.purposes.personalization.allowed_inputs" in assignment["refused"], assignment
            assert served[subject]["pack"] == REQUEST_PACK
        api.stop_experiment("strict-arm")


def test_an_arm_whose_model_file_changed_on_disk_is_not_served(server, tmp_path: Path) -> None:
    """A list of that arm answered 409 artifact-changed: its subjects got no list at all for an operator's mistake."""
    import json
    import shutil

    import numpy as np
    from typer.testing import CliRunner

    from audits.models import ModelVersion
    from governance.cli import app as cli
    from tests.api.conftest import DATA

    trained = CliRunner().invoke(cli, ["train", DATA.replace("seed=4", "seed=12"), "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3",
                                       "--database-url", server.db_url, "--json"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    treatment = json.loads(trained.stdout)["model_version"]
    _deploy(server, "production")
    with server.store.session() as session:
        path = session.get(ModelVersion, treatment).artifact_location
    with Client(server.url, server.tokens["admin"]) as api:
        text = PLAN.format(name="changed-model", control="", treatment=f"    model_version: {treatment}")
        api.start_experiment("changed-model", plan_hash=api.plan_experiment(text)["plan_hash"])
        kept = tmp_path / "recorded.npz"
        shutil.copyfile(path, kept)
        arrays = dict(np.load(path, allow_pickle=False))
        arrays["item_factors"] = np.zeros_like(arrays["item_factors"])
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        served = _lists(server)
        treated = _treated(served)
        assert 5 <= len(treated) <= 35, treated
        for subject in treated:
            assignment = served[subject]["deployment"]["experiment"]
            assert assignment["reason"] == "arm_refused" and "changed on disk" in assignment["refused"], assignment
            assert served[subject]["model_version"] == server.model_version, served[subject]  # as outside the experiment
        shutil.copyfile(kept, path)
        again = _lists(server, sorted(treated))
        assert all(body["model_version"] == treatment and body["deployment"]["experiment"]["reason"] == "randomised" for body in again.values())
        api.stop_experiment("changed-model")
