"""``/v1/monitor`` and the monitoring gauges on ``/metrics`` over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from governance.cli.policy import SHIPPED
from governance.lifecycle.rules import EXPORTED, alerting_rules, metric_names
from governance.policy import parse_pack
from tests.governance.lifecycle_world import LIFECYCLE

EVERY_KIND = """    - {id: skew, kind: prediction_skew, max_ks: 0.4}
    - {id: gini, kind: exposure_regression, metric: exposure_gini, max: 0.8}
    - {id: stale, kind: staleness, max_days: 30}
    - {id: weekly, kind: schedule, every_days: 7}
    - {id: erasures, kind: erasure_retrains}
"""


def test_a_pass_over_http_is_stored_once_per_window_end_and_listed(server) -> None:
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    with server.client("operator") as client:
        first = client.post("/v1/monitor/runs", json={"pack": "baseline", "at": at})
        assert first.status_code == 201, first.text
        doc = first.json()
        assert doc["created"] is True and doc["fired"] == [] and doc["pack"] == "baseline"
        assert doc["window_end"] == datetime.fromisoformat(at).isoformat()
        again = client.post("/v1/monitor/runs", json={"pack": "baseline", "at": at})
        assert again.status_code == 200 and again.json()["id"] == doc["id"] and again.json()["created"] is False
        # Bad input: located, and nothing stored.
        future = client.post("/v1/monitor/runs", json={"pack": "baseline", "at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
        assert future.status_code == 422 and "cannot end in the future" in future.json()["detail"]
        naive = client.post("/v1/monitor/runs", json={"pack": "baseline", "at": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        unknown = client.post("/v1/monitor/runs", json={"pack": "no-such-pack"})
        assert unknown.status_code == 404
    with server.client("viewer") as client:
        assert client.post("/v1/monitor/runs", json={"pack": "baseline"}).status_code == 403
        listed = client.get("/v1/monitor/runs").json()
        assert doc["id"] in [r["id"] for r in listed["runs"]]
        assert listed["total"] == len({r["id"] for r in client.get("/v1/monitor/runs", params={"limit": 500}).json()["runs"]})
        assert client.get(f"/v1/monitor/runs/{doc['id']}").json()["window_end"] == doc["window_end"]
        assert client.get("/v1/monitor/tickets").json() == {"tickets": []}
        assert client.get("/v1/monitor/tickets", params={"state": "nope"}).status_code == 422


def test_every_series_the_alerting_rules_read_is_exported_on_metrics(server) -> None:
    with server.client("operator") as client:
        assert client.post("/v1/monitor/runs", json={"pack": "baseline"}).status_code == 201
    with server.client("viewer") as client:
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    exported = set(families)
    pack = parse_pack((SHIPPED / "baseline.yaml").read_text() + LIFECYCLE.replace("  canary:", EVERY_KIND + "  canary:"), "p.yaml")
    read = metric_names(alerting_rules(pack))
    assert read <= set(EXPORTED) <= exported, (read, exported)
    last = families["recgov_monitor_last_pass_timestamp_seconds"].samples
    assert len(last) == 1 and abs(last[0].value - datetime.now(UTC).timestamp()) < 600
    assert {s.labels["state"] for s in families["recgov_retrain_tickets"].samples} >= {"open", "failed", "promoted"}
