"""An experiment's holdback kept after the stop, and latency/error guardrails on real lists, over real HTTP
(SQLite and PostgreSQL).

Lists name no model version, so the experiment in force serves them. Every list records its serving latency in
the readable part of its record, which the analysis's latency guardrail reads. After the stop, the subjects the
holdback took keep getting the control, recorded under the stopped experiment with reason ``holdback``; everyone
else is out of the experiment (no assignment on the answer).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recgov.client import Client
from tests.api.test_experiments_api import DATA, _train

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: kept-holdback
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
holdback: 0.25
holdback_days: 30
primary_metric: click_through
guardrails:
  - metric: latency_ms
    margin: 100000
    direction: lower_is_better
  - metric: error_rate
    margin: 0.5
    direction: lower_is_better
design:
  baseline: 0.15
  mde: 0.15
"""
SUBJECTS = [f"h{i:05d}" for i in range(80)]


def _lists(server, *, click_every: int = 0) -> dict[str, dict | None]:
    """Every subject's list and its assignment; with ``click_every``, every so many subjects click their first item."""
    out, events = {}, []
    with server.client("operator") as http:
        for i, subject in enumerate(SUBJECTS):
            answer = http.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": "california-ccpa"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            out[subject] = (body.get("deployment") or {}).get("experiment")
            if click_every and i % click_every == 0 and body["items"]:
                events.append({"subject": subject, "item": body["items"][0]["item_id"], "kind": "click",
                               "time": datetime.now(UTC).isoformat(), "decision_id": body["decision_id"]})  # fmt: skip
        if events:
            assert http.post("/v1/feedback", json=events).status_code == 200
    return out


@pytest.mark.timeout(900)
def test_the_holdback_stays_on_the_control_after_the_stop(server) -> None:
    control, treatment = server.model_version, _train(server, 8)
    with Client(server.url, server.tokens["admin"]) as api, server.client("admin") as admin:
        for stage in ("canary", "production"):
            assert admin.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        api.promote(control, "shadow")
        api.promote(control, "canary", data=DATA)
        api.promote(control, "production", data=DATA)
        rows = [f"{s},personalization,granted,2026-01-05T09:30:00Z,consent" for s in SUBJECTS]
        imported = admin.post("/v1/consent-imports", content="subject,purpose,status,time,basis\n" + "\n".join(rows) + "\n", headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text
        planned = api.plan_experiment(PLAN.format(control=control, treatment=treatment))
        api.start_experiment("kept-holdback", plan_hash=planned["plan_hash"])
        during = _lists(server, click_every=3)
        held = {s for s, a in during.items() if a["reason"] == "holdback"}
        assert 8 <= len(held) <= 35 and all(during[s]["variant"] == "control" for s in held)
        look = api.analyze_experiment("kept-holdback", metric="clicks_per_subject")  # exploratory: reads the guardrails
        latency = next(g for g in look["guardrails"] if g["metric"] == "latency_ms")
        assert not latency["failed"] and latency["result"]["df"] > 0, latency  # the lists' latency_ms was read
        errors = next(g for g in look["guardrails"] if g["metric"] == "error_rate")
        assert not errors["failed"] and errors["result"]["failed"] == {"control": 0, "treatment": 0}, errors
        stopped = api.stop_experiment("kept-holdback")
        assert stopped["holdback_until"] is not None and stopped["holdback_days"] == 30
        after = _lists(server)
    for subject in SUBJECTS:
        if subject in held:
            assert after[subject] == during[subject], (subject, after[subject])
        else:
            assert after[subject] is None, (subject, after[subject])
