"""A look at a running experiment whose treatment's model reached production since the start, over real HTTP (SQLite
and PostgreSQL): the control serves production, so the two arms serve the same lists and a look would compare the
production model with itself. It is a 409 ``experiment-arms-alike``, recorded on the trail, and spends no look."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits.lineage import record_deployment
from audits.models import ExperimentLook, TrailEvent
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from recgov.client import Client
from tests.governance.test_experiment_packs import PLAN

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=6"


def test_a_look_while_the_treatments_model_is_in_production_is_a_409(server) -> None:
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    newer = json.loads(trained.stdout)["model_version"]
    with server.store.session() as session:
        record_deployment(session, model_version=server.model_version, stage="production", actor="test")
    text = PLAN.format(name="moved-under-it", control="    pack: eu-gdpr-dsa", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa")
    with Client(server.url, server.tokens["admin"]) as api:
        planned = api.plan_experiment(text + "  method: group_sequential\n  looks: 3\n")
        api.start_experiment("moved-under-it", plan_hash=planned["plan_hash"])
    with server.store.session() as session:
        record_deployment(session, model_version=server.model_version, stage="shadow", actor="test")
        record_deployment(session, model_version=newer, stage="production", actor="test")
    with server.client("auditor") as http:
        look = http.post("/v1/experiments/moved-under-it/analyses", json={})
    assert look.status_code == 409 and look.headers["content-type"] == PROBLEM_JSON, look.text
    assert look.json()["type"].endswith("/experiment-arms-alike")
    assert f"({newer}, the model in production now, under eu-gdpr-dsa)" in look.json()["detail"]
    with server.store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None
        refused = session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")).all()
    assert len(refused) == 1 and newer in refused[0].payload
