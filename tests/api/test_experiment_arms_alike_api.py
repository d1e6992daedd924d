"""A look at a running experiment whose treatment's model reached production since the start, over real HTTP (SQLite
and PostgreSQL): the control serves production, so the two arms serve the same lists and a look would compare the
production model with itself. It is a 409 ``experiment-arms-alike``, recorded on the trail, and spends no look."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits.lineage import record_deployment
from audits.models import Experiment, ExperimentLook, TrailEvent
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from governance.experiments import lifecycle
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


def _treatment_model(server, *, seed: int) -> str:  # noqa: ANN001
    """A newer model for a treatment arm, with the server's model back in production and no experiment running
    (one runs at a time)."""
    trained = CliRunner().invoke(cli, ["train", DATA.replace("seed=6", f"seed={seed}"), "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    with server.store.session() as session:
        if lifecycle._production_model(session) != server.model_version:
            record_deployment(session, model_version=server.model_version, stage="production", actor="test")
        earlier = session.scalars(select(Experiment.name).where(Experiment.status == "running")).first()
    if earlier is not None:
        lifecycle.stop(server.store, earlier, actor="test")
    return json.loads(trained.stdout)["model_version"]


def test_a_look_after_the_treatments_model_served_production_and_went_back_is_a_409_and_exit_2(server) -> None:
    """The treatment's model in production for a while, then rolled back: the control's lists served meanwhile were the
    treatment's. The look is refused over HTTP (409 ``experiment-arms-alike``) and from the command line (exit 2)."""
    newer = _treatment_model(server, seed=7)
    text = PLAN.format(name="round-trip", control="    pack: eu-gdpr-dsa", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa")
    with Client(server.url, server.tokens["admin"]) as api:
        planned = api.plan_experiment(text + "  method: group_sequential\n  looks: 3\n")
        api.start_experiment("round-trip", plan_hash=planned["plan_hash"])
    with server.store.session() as session:
        record_deployment(session, model_version=server.model_version, stage="shadow", actor="test")
        record_deployment(session, model_version=newer, stage="production", actor="test")
    subjects = [f"u{n:06d}" for n in range(60)]  # subjects the models know, who consented: their lists are personalized
    rows = "".join(f"{s},personalization,granted,2026-01-05T09:30:00Z,consent\n" for s in subjects)
    with server.client("admin") as admin:
        imported = admin.post("/v1/consent-imports", content="subject,purpose,status,time,basis\n" + rows, headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text
    served = set()
    with server.client("operator") as http:
        for subject in subjects:
            answer = http.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": "eu-gdpr-dsa"})
            assert answer.status_code == 200, answer.text
            served.add((answer.json()["deployment"]["experiment"]["variant"], answer.json()["mode"]))
    assert ("control", "personalized") in served, served
    with server.store.session() as session:  # rolled back before the look
        record_deployment(session, model_version=newer, stage="shadow", actor="test")
        record_deployment(session, model_version=server.model_version, stage="production", actor="test")
    with server.client("auditor") as http:
        look = http.post("/v1/experiments/round-trip/analyses", json={})
    assert look.status_code == 409 and look.headers["content-type"] == PROBLEM_JSON, look.text
    assert look.json()["type"].endswith("/experiment-arms-alike"), look.text
    assert f"the model in production was {newer}, which variant 'treatment' names" in look.json()["detail"]
    refused = CliRunner().invoke(cli, ["experiment", "analyze", "round-trip", "--database-url", server.db_url])
    assert refused.exit_code == 2, refused.output
    assert "served the treatment's lists" in refused.output
    with server.store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None
        events = [e for e in session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")) if "round-trip" in e.objects]
    assert len(events) == 2 and all("arms_alike_since_start" in e.payload and "u0" not in e.payload for e in events)


def test_fallback_and_held_back_lists_served_while_the_treatments_model_was_in_production_do_not_refuse_a_later_look(server) -> None:
    """The treatment's model in production for a while, then rolled back; meanwhile the control served only lists no
    model made for a randomised subject (fallback lists for subjects the model does not know, non-profiling lists
    for subjects who did not consent) and the production model's lists to subjects held back, who are outside the
    analysis. Nothing the look compares was mixed: it is taken (201), and no refusal is recorded."""
    from governance.experiments.assign import RunningExperiment, assign

    newer = _treatment_model(server, seed=8)
    text = PLAN.format(name="nothing-mixed", control="    pack: eu-gdpr-dsa", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa")
    text = text.replace("primary_metric:", "holdback: 0.3\nprimary_metric:")
    with Client(server.url, server.tokens["admin"]) as api:
        planned = api.plan_experiment(text + "  method: group_sequential\n  looks: 3\n")
        api.start_experiment("nothing-mixed", plan_hash=planned["plan_hash"])
    with server.store.session() as session:
        row = session.scalars(select(Experiment).where(Experiment.name == "nothing-mixed")).one()
        running = RunningExperiment.from_row(row.id, row.name, row.plan, row.salt)
        refused_before = len(session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")).all())
        record_deployment(session, model_version=server.model_version, stage="shadow", actor="test")
        record_deployment(session, model_version=newer, stage="production", actor="test")
    known = [f"u{n:06d}" for n in range(100, 160)]  # subjects the models know
    held = [s for s in known if assign(running, s, may_profile=True)["reason"] == "holdback"][:8]
    unconsented = [s for s in known if s not in held][:8]
    unknown = [f"zz-new-{n}" for n in range(16)]  # no model knows them: a fallback list, whichever arm
    assert held and unconsented
    rows = "".join(f"{s},personalization,granted,2026-01-05T09:30:00Z,consent\n" for s in held + unknown)
    with server.client("admin") as admin:
        imported = admin.post("/v1/consent-imports", content="subject,purpose,status,time,basis\n" + rows, headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text
    served: set[tuple[str, str, str]] = set()
    clicks: list[dict[str, str]] = []
    with server.client("operator") as http:
        for subject in held + unconsented + unknown:
            answer = http.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": "eu-gdpr-dsa"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            arm = (body["deployment"]["experiment"]["variant"], body["deployment"]["experiment"]["reason"], body["mode"])
            if arm[1] == "randomised" and arm not in served and body["items"]:  # one click in each arm: the metric varies
                clicks.append({"subject": subject, "item": body["items"][0]["item_id"], "kind": "click", "time": datetime.now(UTC).isoformat(), "decision_id": body["decision_id"]})
            served.add(arm)
        assert http.post("/v1/feedback", json=clicks).status_code == 200
    assert ("control", "holdback", "personalized") in served and ("control", "randomised", "fallback") in served, served
    assert not {s for s in served if s[0] == "control" and s[1] == "randomised" and s[2] == "personalized"}, served
    with server.store.session() as session:  # rolled back before the look
        record_deployment(session, model_version=newer, stage="shadow", actor="test")
        record_deployment(session, model_version=server.model_version, stage="production", actor="test")
    with server.client("auditor") as http:
        look = http.post("/v1/experiments/nothing-mixed/analyses", json={})
    assert look.status_code == 201, look.text
    with server.store.session() as session:
        refused = session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")).all()
    assert len(refused) == refused_before
