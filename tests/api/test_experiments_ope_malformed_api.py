"""Malformed bodies to every ``/v1/experiments*`` and ``/v1/ope*`` route over real HTTP: each is a 4xx problem
located at its field, never a 500, and changes nothing (no trail event, no experiment or look row)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from audits.models import TrailEvent
from audits.models.experiments import Experiment, ExperimentLook
from tests.api.test_experiments_api import PLAN, _train

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

PROBLEM = "application/problem+json"


def _state(server) -> tuple[Any, ...]:
    with server.store.session() as session:
        return (
            session.scalar(select(func.max(TrailEvent.seq))),
            session.scalar(select(func.count()).select_from(Experiment)),
            session.scalar(select(func.count()).select_from(ExperimentLook)),
            tuple(session.execute(select(Experiment.name, Experiment.status)).all()),
        )


def _plans(good: str) -> dict[str, tuple[str, str]]:
    """A malformed plan -> the field its problem names."""
    return {
        "empty": ("", "body"),
        "a list": ("- 1\n", "body"),
        "not YAML": ("a: [\n", "body"),
        "NaN effect": (good.replace("mde: 0.15", "mde: .nan"), "design.mde"),
        "overflowing effect": (good.replace("mde: 0.15", "mde: 1e400"), "design.mde"),
        "huge looks": (good.replace("looks: 1", "looks: 100000000000000000000000"), "design.looks"),
        "looks as text": (good.replace("looks: 1", "looks: many"), "design.looks"),
        "looks as a boolean": (good.replace("looks: 1", "looks: true"), "design.looks"),
        "no variants": (good.replace("variants:", "variantz:"), "variants"),
        "empty variants": (good.split("variants:")[0] + "variants: []\nallocation:" + good.split("allocation:")[1], "variants"),
        "allocation as a list": (good.replace("allocation:\n  control: 0.5\n  treatment: 0.5", "allocation: [0.5, 0.5]"), "allocation"),
        "NaN allocation": (good.replace("control: 0.5\n", "control: .nan\n"), "allocation.control"),
        "huge allocation": (good.replace("control: 0.5\n", "control: 99999999999999999999999999\n"), "allocation"),
        "NaN holdback": (good.replace("holdback: 0.05", "holdback: .nan"), "holdback"),
        "extra field": (good + "bogus: 1\n", "bogus"),
        "extra design field": (good + "  bogus: 1\n", "design.bogus"),
        "metadata as text": (good.split("metadata:")[0] + "metadata: x\nhypothesis:" + good.split("hypothesis:")[1], "metadata"),
        "NaN margin": (good.replace("margin: 0.05", "margin: .nan"), "guardrails.0.margin"),
        "huge baseline": (good.replace("baseline: 0.15", "baseline: 99999999999999999999999"), "design.baseline"),
        "long name": (good.replace("name: probe-2", "name: " + "a" * 300), "metadata.name"),
        "unknown model": (good.replace("model_version: ", "model_version: ffffffffffff  # ", 1), "variants.0.model_version"),
        "unknown method": (good.replace("method: fixed", "method: 5"), "design.method"),
    }


def test_malformed_experiment_and_ope_requests_are_located_4xx_and_change_nothing(server) -> None:
    control, treatment = server.model_version, _train(server, 11)
    good = PLAN.format(name="probe", control=control, treatment=treatment)
    with server.client("admin") as http:
        planned = http.post("/v1/experiments", content=good.encode(), headers={"Content-Type": "application/yaml"})
        assert planned.status_code == 201, planned.text
        before = _state(server)
        for label, (body, field) in _plans(good.replace("name: probe", "name: probe-2")).items():
            answer = http.post("/v1/experiments", content=body.encode(), headers={"Content-Type": "application/yaml"})
            assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, (label, answer.text)
            fields = [e["field"] for e in answer.json()["errors"]]
            assert any(f == field or f.startswith(field + ".") for f in fields), (label, fields)
        json_calls: list[tuple[str, str, Any, int, str]] = [
            ("post", "/v1/experiments/probe/start", {"plan_hash": 5}, 422, "body.plan_hash"),
            ("post", "/v1/experiments/probe/start", {"plan_hash": "x" * 64}, 422, "body.plan_hash"),
            ("post", "/v1/experiments/probe/start", {"bogus": 1}, 422, "body.bogus"),
            ("post", "/v1/experiments/probe/start", [], 422, "body"),
            ("post", "/v1/experiments/no-such/start", {}, 404, ""),
            ("post", "/v1/experiments/no-such/stop", {}, 404, ""),
            ("post", "/v1/experiments/probe/analyses", {"metric": 5}, 422, "body.metric"),
            ("post", "/v1/experiments/probe/analyses", {"metric": "no_such_metric"}, 422, "body.metric"),
            ("post", "/v1/experiments/probe/analyses", {"segment": []}, 422, "body.segment"),
            ("post", "/v1/experiments/probe/analyses", {"bogus": 1}, 422, "body.bogus"),
            ("post", "/v1/experiments/no-such/analyses", {}, 404, ""),
            ("get", "/v1/experiments/no-such", None, 404, ""),
            ("get", "/v1/experiments/no-such/status", None, 404, ""),
            ("get", "/v1/experiments/" + "a" * 300, None, 422, "path.name"),
            ("get", "/v1/experiments/Bad%00Name", None, 422, "path.name"),
            ("post", "/v1/ope", {}, 422, "body.logged_pack"),
            ("post", "/v1/ope", {"logged_pack": 5, "target_pack": "baseline"}, 422, "body.logged_pack"),
            ("post", "/v1/ope", {"logged_pack": "no-such", "target_pack": "baseline"}, 404, ""),
            ("post", "/v1/ope", {"logged_pack": "baseline", "target_pack": "no-such@9.9.9"}, 404, ""),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "kinds": []}, 422, "body.kinds"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "kinds": ["click", "click"]}, 422, "body.kinds"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "min_ess": 10**400}, 422, "body.min_ess"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "n_bootstrap": 10**30}, 422, "body.n_bootstrap"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "seed": -1}, 422, "body.seed"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "limit": 1.5}, 422, "body.limit"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "segment_items": []}, 422, "body.segment_items"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "provider_groups": {}}, 422, "body.provider_groups"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "provider_groups": {"a": []}}, 422, "body.provider_groups.a"),
            ("post", "/v1/ope", {"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "bogus": 1}, 422, "body.bogus"),
            ("post", "/v1/ope", [1], 422, "body"),
            ("get", "/v1/ope/0", None, 422, "path.report_id"),
            ("get", "/v1/ope/99999999999999999999", None, 422, "path.report_id"),
            ("get", "/v1/ope/x", None, 422, "path.report_id"),
            ("get", "/v1/ope/9007199254740991", None, 404, ""),
        ]
        for method, path, body, status, field in json_calls:
            answer = http.get(path) if method == "get" else http.post(path, json=body)
            assert answer.status_code == status and answer.headers["content-type"] == PROBLEM, (path, body, answer.text)
            if field:
                located = [f"{e['location']}.{e['field']}".rstrip(".") for e in answer.json()["errors"]]
                assert field in located, (path, body, located)
        raw = {
            "/v1/ope": b'{"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa", "min_ess": NaN}',
            "/v1/experiments/probe/analyses": b'{"metric":',
            "/v1/experiments/probe/start": b'{"plan_hash": "' + b"0" * 64 + b'",}',
        }
        for path, content in raw.items():
            answer = http.post(path, content=content, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, (path, answer.text)
            errors = answer.json()["errors"]
            if path == "/v1/ope":
                assert [e["field"] for e in errors] == ["min_ess"], errors
            else:  # not JSON: the body is at fault, never a field named by a character offset
                assert [(e["location"], e["field"], e["type"]) for e in errors] == [("body", "", "json_invalid")], errors
                assert "at character" in errors[0]["message"], errors
        assert _state(server) == before
