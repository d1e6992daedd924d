"""A governed experiment over real HTTP, on SQLite and PostgreSQL: plan, start, serve, feedback, analyse, promote.

Simulated users follow a known click model: a subject served the treatment's
model clicks with probability 0.40, one served the control's with 0.15 (a real
lift of 0.25). The plan is frozen before any list is served; lists name no model
version, so the subject's variant serves them; subjects who withdrew consent are
never randomised (counted as ``not_profiled``). Clicks come back through
``POST /v1/feedback``. The gate of a pack with ``experiments.require_positive_result``
refuses the treatment's model while only exploratory looks exist, lets it through
after the planned look finds the win, and refuses a model whose experiment found
no lift.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits.models import DecisionRecord, TrailEvent
from governance.cli import app as cli
from governance.cli.policy import SHIPPED
from recgov.client import Client, ClientError

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
GATED_PACK = (
    (SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: exp-gated")
    + "experiments:\n  require_positive_result: true\n"
)
PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: {name}
  owner: growth team
hypothesis: The retrained model raises the share of subjects who click.
variants:
  - name: control
    control: true
    model_version: {control}
  - name: treatment
    model_version: {treatment}
allocation:
  control: 0.5
  treatment: 0.5
holdback: 0.05
primary_metric: click_through
guardrails:
  - metric: non_profiling_share
    margin: 0.05
    direction: lower_is_better
design:
  baseline: 0.15
  mde: 0.15
  alpha: 0.05
  power: 0.8
  alternative: larger
  method: fixed
  looks: 1
"""
SUBJECTS = [f"u{i:06d}" for i in range(320)]
WITHDRAWN = SUBJECTS[:12]


def _data(seed: int) -> str:
    return DATA.replace("seed=4", f"seed={seed}")


def _train(server, seed: int) -> str:
    data = _data(seed)
    done = CliRunner().invoke(cli, ["train", data, "--no-tune", "--no-carbon", "--factors", "6", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["model_version"]


def _serve_and_click(server, api: Client, rates: dict[str, float], rng: np.random.Generator) -> dict[str, int]:
    """Every subject asks for a list (the deployed path); clicks follow the served model's rate; posted as feedback."""
    served: dict[str, int] = {}
    events = []
    with server.client("operator") as http:
        for subject in SUBJECTS:
            answer = http.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": "california-ccpa"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assignment = body["deployment"]["experiment"]
            served[assignment["reason"]] = served.get(assignment["reason"], 0) + 1
            if body["items"] and rng.random() < rates[body["model_version"]]:
                events.append({"subject": subject, "item": body["items"][0]["item_id"], "kind": "click",
                               "time": datetime.now(UTC).isoformat(), "decision_id": body["decision_id"]})  # fmt: skip
        for start in range(0, len(events), 500):
            stored = http.post("/v1/feedback", json=events[start : start + 500])
            assert stored.status_code == 200, stored.text
    return served


@pytest.mark.timeout(900)
def test_a_pre_registered_win_is_what_lets_a_model_through(server) -> None:
    control, treatment, null_model = server.model_version, _train(server, 5), _train(server, 6)
    rng = np.random.default_rng(7)
    with Client(server.url, server.tokens["admin"]) as api, server.client("admin") as admin:
        # Production runs the control; canary is gated by a pack that requires a pre-registered win.
        assert admin.post("/v1/packs", content=GATED_PACK, headers={"Content-Type": "application/yaml"}).status_code in (200, 201)
        for stage in ("canary", "production"):
            assert admin.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        for mv in (control, treatment, null_model):
            api.promote(mv, "shadow")
        api.promote(control, "canary", data=DATA)
        api.promote(control, "production", data=DATA)
        assert admin.put("/v1/deployments/policy/canary", json={"pack": "exp-gated@1.0.0"}).status_code == 200
        # Every subject consented to personalization; a few withdrew since.
        rows = [f"{s},personalization,granted,2026-01-05T09:30:00Z,consent" for s in SUBJECTS]
        rows += [f"{s},personalization,withdrawn,2026-01-06T09:30:00Z,consent" for s in WITHDRAWN]
        imported = admin.post("/v1/consent-imports", content="subject,purpose,status,time,basis\n" + "\n".join(rows) + "\n", headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text

        # Plan: validated, sized and frozen on the trail before any exposure.
        planned = api.plan_experiment(PLAN.format(name="retrain-lift", control=control, treatment=treatment))
        assert planned["status"] == "planned" and planned["sample_size"]["n_per_arm"][0] >= 2
        with pytest.raises(ClientError) as again:
            api.plan_experiment(PLAN.format(name="retrain-lift", control=control, treatment=treatment))
        assert again.value.status == 409
        with pytest.raises(ClientError) as stale:
            api.start_experiment("retrain-lift", plan_hash="0" * 64)
        assert stale.value.status == 409 and "differs from the one frozen" in stale.value.detail
        api.start_experiment("retrain-lift", plan_hash=planned["plan_hash"])

        served = _serve_and_click(server, api, {control: 0.15, treatment: 0.40}, rng)
        assert served["not_profiled"] == len(WITHDRAWN)
        status = api.experiment_status("retrain-lift")
        assert status["srm"]["checked"] and not status["srm"]["mismatch"]
        assert sum(c.get("randomised", 0) for c in status["counts"].values()) == served["randomised"]

        # An exploratory look (another metric) shows the lift too, but does not count: the gate refuses.
        exploratory = api.analyze_experiment("retrain-lift", metric="clicks_per_subject")
        assert exploratory["kind"] == "exploratory" and exploratory["look"] is None and exploratory["winners"] == []
        with pytest.raises(ClientError) as refused:
            api.promote(treatment, "canary", data=_data(5))
        assert refused.value.status == 409 and "no planned look" in refused.value.detail

        # A look at the primary metric on a segment before the planned look would be a peek: refused, nothing stored.
        with pytest.raises(ClientError) as peek:
            api.analyze_experiment("retrain-lift", segment="known")
        assert peek.value.status == 409 and "pre-registered primary metric" in peek.value.detail

        # The planned look: the primary metric, every randomised subject, the guardrail, the SRM check.
        look = api.analyze_experiment("retrain-lift")
        assert look["kind"] == "planned" and look["look"] == 1, look
        (comparison,) = look["comparisons"]
        assert comparison["result"]["decision"] == "reject" and comparison["result"]["estimate"] > 0.1, comparison
        assert [g["failed"] for g in look["guardrails"]] == [False]
        assert look["verdict"] == "treatment_won" and look["winners"] == ["treatment"]
        beyond = api.analyze_experiment("retrain-lift")
        assert beyond["kind"] == "exploratory" and any("all were taken" in why or "concluded" in why for why in beyond["exploratory_because"])
        api.stop_experiment("retrain-lift")
        promoted = api.promote(treatment, "canary", data=_data(5))
        assert promoted["stage"] == "canary"

        # A second experiment whose treatment has no lift: its planned look finds no win, the gate refuses.
        api.plan_experiment(PLAN.format(name="null-lift", control=control, treatment=null_model))
        api.start_experiment("null-lift")
        _serve_and_click(server, api, {control: 0.15, null_model: 0.15}, rng)
        null_look = api.analyze_experiment("null-lift")
        assert null_look["kind"] == "planned" and null_look["winners"] == [] and null_look["verdict"] == "no_win", null_look
        api.stop_experiment("null-lift")
        with pytest.raises(ClientError) as no_win:
            api.promote(null_model, "canary", data=_data(6))
        assert no_win.value.status == 409 and "found no win" in no_win.value.detail

    # The regulator's report of the treatment's model names the experiment and its pre-registered outcome.
    with server.client("auditor") as http:
        report = http.get(f"/v1/reports/{treatment}")
    assert report.status_code == 200 and "retrain-lift" in report.text and "treatment_won" in report.text

    # Every list of the experiments names its assignment; no raw subject id is stored with it.
    with server.store.session() as session:
        # (the shadow versions' unserved lists carry the request's assignment too, and say whose list they mirror)
        contexts = [c for (c,) in session.execute(select(DecisionRecord.context)) if "experiment" in c and "shadow_of" not in c]
        actions = list(session.scalars(select(TrailEvent.action).where(TrailEvent.action.like("experiment.%")).order_by(TrailEvent.seq)))
        payloads = " ".join(json.dumps(p) for p in session.scalars(select(TrailEvent.payload).where(TrailEvent.action.like("experiment.%"))))
        promoted = [json.loads(p) if isinstance(p, str) else p for p in session.scalars(select(TrailEvent.payload).where(TrailEvent.action == "deployment.promoted"))]
        promotions = [p for p in promoted if p.get("experiment")]
    assert [(p["stage"], p["experiment"]["experiment"], p["experiment"]["look"]) for p in promotions] == [("canary", "retrain-lift", 1)]
    assert len(contexts) == 2 * len(SUBJECTS)
    assert {c["experiment"]["reason"] for c in contexts} == {"randomised", "holdback", "not_profiled"}
    assert actions[:2] == ["experiment.planned", "experiment.started"] and actions.count("experiment.analyzed") == 4
    assert "experiment.viewed" in actions
    assert not any(subject in payloads for subject in SUBJECTS)


def test_bad_plans_are_refused_where_they_are_wrong_and_store_nothing(server) -> None:
    with Client(server.url, server.tokens["admin"]) as api:
        before = api.experiments()
        bad = PLAN.format(name="bad-one", control=server.model_version, treatment="no-such-model").replace("treatment: 0.5", "treatment: 0.6")
        with pytest.raises(ClientError) as refused:
            api.plan_experiment(bad)
        assert refused.value.status == 422
        fields = {e["field"] for e in refused.value.problem["errors"]}
        assert "allocation" in fields, refused.value.problem
        unknown_model = PLAN.format(name="bad-two", control=server.model_version, treatment="no-such-model")
        with pytest.raises(ClientError) as missing:
            api.plan_experiment(unknown_model)
        assert missing.value.status == 422 and missing.value.problem["errors"][0]["field"] == "variants.1.model_version"
        assert "line 12, column 20" in missing.value.problem["errors"][0]["message"]
        with pytest.raises(ClientError) as metric:
            api.plan_experiment(PLAN.format(name="bad-three", control=server.model_version, treatment=server.model_version).replace("primary_metric: click_through", "primary_metric: revenue"))
        messages = {e["field"]: e["message"] for e in metric.value.problem["errors"]}
        assert metric.value.status == 422 and "unknown primary metric" in messages["primary_metric"], messages
        assert "the two arms cannot be told apart" in messages["variants.1.model_version"], messages  # both arms serve one model
        with pytest.raises(ClientError) as gone:
            api.analyze_experiment("never-planned")
        assert gone.value.status == 404
        assert api.experiments() == before
    with server.client("auditor") as http:
        assert http.post("/v1/experiments/never-planned/analyses", json={"metric": "revenue"}).status_code == 422
        assert http.post("/v1/experiments", content="x", headers={"Content-Type": "application/yaml"}).status_code == 403
