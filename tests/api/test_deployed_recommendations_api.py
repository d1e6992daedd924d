"""``POST /v1/recommendations`` without a model version, over real HTTP on both engines: what is
deployed answers, and every shadow version gets the same request, recorded and never served."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from audits.models import DecisionRecord, FailedRequest, ModelVersion
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from governance.shadow import NOTHING_IN_PRODUCTION

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
SUBJECTS = [f"u{n:06d}" for n in range(1, 9)]
PACK = "california-ccpa"  # opt-out: subjects without records are profiled, so the lists are personalized


def _shadow_rows(server, model_version: str, expected: int, timeout: float = 60.0) -> list[DecisionRecord]:
    """The shadow version's decision rows, once ``expected`` of them are committed (shadows run after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        with server.store.session() as session:
            rows = list(session.scalars(select(DecisionRecord).where(DecisionRecord.model_version == model_version)))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_the_deployed_version_answers_and_the_shadow_is_recorded_unserved(server) -> None:
    live = server.model_version
    with server.client("operator") as client:
        nothing = client.post("/v1/recommendations", json={"subject": SUBJECTS[0], "pack": PACK})
    assert nothing.status_code == 404 and nothing.headers["content-type"] == PROBLEM_JSON
    assert nothing.json()["detail"] == NOTHING_IN_PRODUCTION

    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "12", "--iterations", "4", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    candidate = json.loads(trained.stdout)["model_version"]
    with server.client("admin") as client:
        for mv in (live, candidate):
            assert client.post(f"/v1/deployments/{mv}/promote", json={"stage": "shadow"}).status_code == 200
        for stage in ("canary", "production"):  # the installation's deployment policy: the baseline pack gates both
            assert client.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        for stage in ("canary", "production"):
            done = client.post(f"/v1/deployments/{live}/promote", json={"stage": stage, "data": DATA})
            assert done.status_code == 200, done.text

    with server.client("operator") as client:
        answers = [client.post("/v1/recommendations", json={"subject": s, "k": 5, "pack": PACK}) for s in SUBJECTS]
        named = client.post("/v1/recommendations", json={"subject": SUBJECTS[0], "k": 5, "pack": PACK, "model_version": candidate})
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    served = [a.json() for a in answers]
    assert {s["model_version"] for s in served} == {live}
    assert all(s["deployment"] == {"stage": "production", "shadows": [candidate]} for s in served)
    assert all(s["mode"] == "personalized" for s in served)
    # a request naming its model is served by that model and mirrored nowhere
    assert named.status_code == 200 and named.json()["model_version"] == candidate and named.json()["deployment"] is None

    shadow_rows = [r for r in _shadow_rows(server, candidate, len(SUBJECTS) + 1) if "shadow_of" in r.context]
    assert len(shadow_rows) == len(SUBJECTS)
    served_ids = {s["decision_id"] for s in served}
    assert {r.context["shadow_of"] for r in shadow_rows} == served_ids
    assert all(r.context["served"] is False and r.mode == "personalized" for r in shadow_rows)
    assert not {r.decision_id for r in shadow_rows} & served_ids  # the shadow's lists were never the answer

    # A shadow that cannot even load is logged, and production answers as before.
    with server.store.session() as session:
        location = Path(session.get(ModelVersion, candidate).artifact_location)
    hidden = location.with_suffix(".moved")
    location.rename(hidden)
    try:
        with server.client("operator") as client:
            answer = client.post("/v1/recommendations", json={"subject": SUBJECTS[1], "k": 5, "pack": PACK})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == live and str(location) not in answer.text
        deadline = time.monotonic() + 60
        while True:
            with server.store.session() as session:
                causes = list(session.scalars(select(FailedRequest.cause)))
            if any(c.startswith("shadow.") for c in causes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any(c.startswith("shadow.") for c in causes), causes
    finally:
        hidden.rename(location)
