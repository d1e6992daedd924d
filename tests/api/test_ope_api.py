"""``/v1/ope`` over real HTTP on SQLite and PostgreSQL: the report is the library's (the CLI's), consent for analytics
is honoured and counted, the report is stored on the trail and read back, and every refusal is a located 422 that
stores no report (a deterministic log, a target that re-ranks differently, a pack without an analytics purpose)."""

from __future__ import annotations

import io
import json

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from audits.models import TrailEvent
from governance.ope import OpeSettings, evaluate_from_log
from governance.policy import parse_pack
from recgov.client import Client, ClientError
from tests.ope.test_ope_from_log import LOGGED, TARGETS, _fill, pack_text

NAME = "ope-api"


def _text(logging_policy, version: str, *, analytics: bool = True, tradeoff: float | None = None) -> str:
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(pack_text(logging_policy, version))
    doc["metadata"]["name"] = NAME
    if not analytics:
        del doc["consent"]["purposes"]["analytics"]
    if tradeoff is not None:
        doc["reranking"]["steps"][0]["params"]["tradeoff"] = tradeoff
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _store(server, text: str) -> str:
    with server.client("admin") as client:
        response = client.post("/v1/packs", content=text.encode(), headers={"Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text
    loaded = parse_pack(text)
    return f"{loaded.name}@{loaded.version}"


def _events(server, action: str = "api.ope.evaluate") -> list[TrailEvent]:
    with server.store.session() as session:
        return list(session.scalars(select(TrailEvent).where(TrailEvent.action == action).order_by(TrailEvent.seq)))


@pytest.fixture(scope="module")
def logged(server) -> dict[str, str]:
    """600 lists drawn by the logging policy (20 subjects object to analytics) and 200 deterministic ones, with clicks."""
    refs = {
        "logged": _store(server, _text(LOGGED, "9.0.0")),
        "colder": _store(server, _text(TARGETS["colder"], "9.1.0")),
        "deterministic_log": _store(server, _text(None, "8.0.0")),
        "reranks": _store(server, _text(TARGETS["colder"], "9.2.0", tradeoff=0.1)),
        "no_analytics": _store(server, _text(LOGGED, "7.0.0", analytics=False)),
    }
    _fill(server.store, 600, _text(LOGGED, "9.0.0"), objecting=20)
    _fill(server.store, 200, _text(None, "8.0.0"), seed=8)
    return refs


def test_the_report_is_the_librarys_is_stored_on_the_trail_and_read_back(server, logged) -> None:
    body = {"logged_pack": logged["logged"], "target_pack": logged["colder"], "kinds": ["click"], "n_bootstrap": 200, "seed": 3}
    with server.client("viewer") as client:
        assert client.post("/v1/ope", json=body).status_code == 403  # estimating reads subjects' logs: auditors only
    with server.client("auditor") as client:
        response = client.post("/v1/ope", json=body)
    assert response.status_code == 201, response.text
    doc = response.json()
    assert response.headers["location"] == f"/v1/ope/{doc['id']}" == doc["links"]["self"]
    report = doc["report"]
    # the same consent rule as the CLI: the 20 objecting subjects' lists (600 lists over 400 subjects) are left out and counted
    objecting_lists = sum(1 for i in range(600) if i % 400 < 20)
    assert report["decisions_read"] == 600 and report["decisions_used"] == 600 - objecting_lists
    assert report["excluded"] == {"analytics_consent_not_in_force": objecting_lists} and report["subjects_excluded_for_consent"] == 20
    # the library's report, figure for figure (the same seed), made independently of the server
    settings = OpeSettings(kinds=("click",), n_bootstrap=200, seed=3, limit=2000)
    direct = evaluate_from_log(server.store, parse_pack(_text(LOGGED, "9.0.0")), parse_pack(_text(TARGETS["colder"], "9.1.0")), settings)
    for name, est in direct["metrics"]["click"].items():
        assert report["metrics"]["click"][name]["value"] == pytest.approx(est["value"], rel=1e-12), name
        assert report["metrics"]["click"][name].get("ci_low") == pytest.approx(est.get("ci_low"), rel=1e-12), name
    assert "user-" not in response.text  # pseudonyms only, and the report holds none
    # on the trail, verifiably, and read back by id (a viewer may read it)
    event = _events(server)[-1]
    assert event.seq == doc["id"] and json.loads(event.payload)["report_sha256"] == doc["report_sha256"]
    with server.client("viewer") as client:
        again = client.get(doc["links"]["self"])
        missing = client.get(f"/v1/ope/{doc['id'] - 1}")
    assert again.status_code == 200 and again.json() == doc
    assert missing.status_code == 404
    with server.client("auditor") as client:
        verify = client.get("/v1/trail/verify")
    assert verify.json()["intact"] is True
    # the client
    with Client(server.url, server.tokens["auditor"]) as client:
        made = client.evaluate_off_policy(logged["logged"], logged["colder"], kinds=["click"], n_bootstrap=200, seed=3)
        assert made["report"]["metrics"] == report["metrics"] and made["id"] > doc["id"]
        assert client.off_policy_report(made["id"]) == made


def test_the_target_packs_off_policy_rules_are_judged_in_the_report(server, logged) -> None:
    """A candidate pack with off-policy rules: the stored report holds their results and the gate's decision on them."""
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(_text(TARGETS["colder"], "9.3.0"))
    doc["quality"]["rules"] = [*doc["quality"].get("rules", []), {"id": "ope-clicks", "check": "off_policy_non_inferiority", "description": "Not fewer clicks.", "params": {"margin": 10.0}}]
    doc["fairness"]["rules"] = [*doc["fairness"].get("rules", []), {"id": "ope-tail", "check": "off_policy_exposure", "description": "The tail keeps attention.", "params": {"group": "tail", "min_share": 0.0}}]
    out = io.StringIO()
    yaml.dump(doc, out)
    ref = _store(server, out.getvalue())
    tail = [f"item-{t}-{j}" for t in range(3) for j in (4, 5)]
    with server.client("auditor") as client:
        response = client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": ref, "kinds": ["click"], "n_bootstrap": 100, "provider_groups": {"tail": tail}})
        refused = client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": ref, "provider_groups": {"tail": []}})
    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert set(report["exposure"]["groups"]) == {"tail"}
    gate = report["gate"]
    assert {r["rule_id"]: r["status"] for r in gate["results"]} == {"ope-clicks": "pass", "ope-tail": "pass"} and gate["decision"]["passed"] is True
    assert refused.status_code == 422 and "provider_groups" in refused.text


def test_refusals_are_located_422s_on_the_trail_and_store_no_report(server, logged) -> None:
    before = len(_events(server))
    with server.client("auditor") as client:
        deterministic = client.post("/v1/ope", json={"logged_pack": logged["deterministic_log"], "target_pack": logged["colder"], "kinds": ["click"], "n_bootstrap": 50})
        reranks = client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["reranks"], "kinds": ["click"]})
        no_analytics = client.post("/v1/ope", json={"logged_pack": logged["no_analytics"], "target_pack": logged["colder"], "kinds": ["click"]})
        unknown = client.post("/v1/ope", json={"logged_pack": "no-such-pack@1.0.0", "target_pack": logged["colder"]})
        bad = [
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "limit": 0}),
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "limit": 5001}),
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "kinds": ["click", "click"]}),
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "kinds": ["hover"]}),
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "confidence": 1}),
            client.post("/v1/ope", json={"logged_pack": logged["logged"], "target_pack": logged["colder"], "surprise": 1}),
        ]
    assert deterministic.status_code == 422, deterministic.text
    problem = deterministic.json()
    assert problem["type"].endswith("/ope-refused")
    located = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(located) == {f"metrics.click.{n}" for n in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse", "ips", "snips", "dm", "dr")}
    assert all("overlap" in m or "range" in m for m in located.values()), located
    assert reranks.status_code == 422 and reranks.json()["errors"][0]["field"] == "target_pack" and "re-ranks differently" in reranks.json()["detail"]
    assert no_analytics.status_code == 422 and no_analytics.json()["errors"][0]["field"] == "logged_pack" and "analytics" in no_analytics.json()["detail"]
    assert unknown.status_code == 404 and "logged_pack" in unknown.json()["detail"]
    for response in bad:
        assert response.status_code == 422, response.text
    refused = _events(server)[before:]
    assert len(refused) == 3 and all(json.loads(e.payload)["refused"] is True and "report" not in json.loads(e.payload) for e in refused)
    with Client(server.url, server.tokens["auditor"]) as client:
        with pytest.raises(ClientError) as err:
            client.evaluate_off_policy(logged["deterministic_log"], logged["colder"], kinds=["click"], n_bootstrap=50)
    assert err.value.status == 422
