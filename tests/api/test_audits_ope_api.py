"""``POST /v1/audits`` with off-policy options over real HTTP (SQLite and PostgreSQL): the pack's off-policy rules are
judged on the store's decision log as ``recgov gate --ope-logged-pack`` judges them, figure for figure; what the
command line refuses with exit 2 is a located 422 that queues no job; a logged pack with no overlap fails its rules
(missing evidence), as on the command line.

The world is the off-policy gate's (:mod:`tests.ope.test_ope_gate`): lists drawn by the logged pack's logging policy,
clicks from a known position-based model; a colder candidate earns more clicks, a hotter one fewer.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits.models import AuditJob, AuditRun, TrailEvent
from governance.api.audit_jobs import work
from governance.cli import app as cli
from governance.policy import parse_pack
from recommender.errors import ConfigError
from tests.api.test_audits_api import _start, _wait
from tests.ope.test_ope_from_log import LOGGED, TYPES, _fill, pack_text
from tests.ope.test_ope_gate import CLICKS, COLD, HOT, TAIL, _exposure_rule, _rules_text, _world

NAME = "audit-ope"
DATA = "synthetic:n_users=60,n_items=40,n_interactions=900,seed=3"
TAIL_ITEMS = [f"item-{t}-{j}" for t in range(TYPES) for j in TAIL]


def _named(text: str, *, analytics: bool = True, tradeoff: float | None = None) -> str:
    """``text`` under this module's pack name (a stored pack of its own), optionally without the analytics purpose
    or with another re-ranking."""
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(text)
    doc["metadata"]["name"] = NAME
    if not analytics:
        del doc["consent"]["purposes"]["analytics"]
    if tradeoff is not None:
        doc["reranking"]["steps"][0]["params"]["tradeoff"] = tradeoff
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _store_pack(server, text: str) -> str:
    with server.client("admin") as client:
        response = client.post("/v1/packs", content=text.encode(), headers={"Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text
    loaded = parse_pack(text)
    return f"{loaded.name}@{loaded.version}"


@pytest.fixture(scope="module")
def world(server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stored packs, 1,500 logged lists (and 300 deterministic ones) with their clicks, the slates to audit, and the
    same packs as files for the command line."""
    texts = {
        "logged": _named(pack_text(LOGGED, "9.0.0")),
        "deterministic": _named(pack_text(None, "8.0.0")),
        "better": _named(_rules_text(COLD, "9.1.0", {"quality": [CLICKS], "fairness": [_exposure_rule(max_drop=0.2)]}, required=["ope-clicks", "ope-tail"])),
        "worse": _named(_rules_text(HOT, "9.2.0", {"quality": [CLICKS], "fairness": [_exposure_rule(min_share=0.05)]}, required=["ope-clicks", "ope-tail"])),
        "plain": _named(pack_text(COLD, "9.3.0")),
        "reranks": _named(_rules_text(COLD, "9.4.0", {"quality": [CLICKS]}), tradeoff=0.1),
        "no_analytics": _named(pack_text(LOGGED, "7.0.0"), analytics=False),
        "drifted": _named(pack_text(LOGGED, "6.0.0")),
    }
    refs = {name: _store_pack(server, text) for name, text in texts.items()}
    _fill(server.store, 1500, texts["logged"], world=_world())
    _fill(server.store, 300, texts["deterministic"], world=_world(), seed=8)
    # decisions recorded under audit-ope 6.0.0 by another content than the stored 6.0.0: that pack did not serve them
    _fill(server.store, 20, _named(pack_text({**LOGGED, "temperature": 0.9}, "6.0.0")), world=_world(), seed=9)
    data_dir = server.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ope-slates.csv").write_text("user_id,item_id,rank\n" + "".join(f"{u},{i},{r}\n" for u in range(5) for r, i in enumerate(range(3), start=1)))
    files = tmp_path_factory.mktemp("ope-packs")
    for name, text in texts.items():
        (files / f"{name}.yaml").write_text(text)
    (files / "tail.txt").write_text("".join(f"{item}\n" for item in TAIL_ITEMS))
    return {"refs": refs, "files": files}


def _body(world: dict[str, Any], pack: str, logged: str | None = "logged", **extra: Any) -> dict[str, Any]:
    body = {"pack": world["refs"][pack], "data": DATA, "slates": "ope-slates.csv", **extra}
    if logged is not None:
        body["ope_logged_pack"] = world["refs"][logged]
    return body


def _cli_gate(server, world: dict[str, Any], pack: str, logged: str, out: str) -> dict[str, Any]:
    """``recgov gate --ope-logged-pack`` of the same slates, on the same store, with the same packs as files."""
    files = world["files"]
    args = ["gate", DATA, "--slates", str(server.home / "data" / "ope-slates.csv"), "--pack", str(files / f"{pack}.yaml"),
            "--ope-logged-pack", str(files / f"{logged}.yaml"), "--ope-provider-group", f"tail={files / 'tail.txt'}",
            "--database-url", server.db_url, "--out", str(files / out), "--json"]  # fmt: skip
    done = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert done.exit_code in (0, 1), done.output
    return json.loads(done.stdout)


def _ope(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in results if r["rule_id"].startswith("ope-")}


def test_the_audit_judges_the_off_policy_rules_as_the_command_line_gate_does(server, world) -> None:
    jobs = {
        name: _start(server, _body(world, name, ope_provider_groups={"tail": TAIL_ITEMS}))
        for name in ("better", "worse")
    }  # fmt: skip
    done = {name: _wait(server, job_id) for name, job_id in jobs.items()}
    for name, job in done.items():
        assert job["status"] == "succeeded", job["error"]
        assert job["request"]["ope_logged_pack"] == world["refs"]["logged"] and job["request"]["ope_provider_groups"] == {"tail": TAIL_ITEMS}
        assert job["request"]["ope_logged_pack_hash"] == parse_pack((world["files"] / "logged.yaml").read_text()).content_hash
    better, worse = _ope(done["better"]["results"]), _ope(done["worse"]["results"])
    assert {r["status"] for r in better.values()} == {"pass"}, better
    assert worse["ope-clicks"]["status"] == "fail" and "judged on the lower bound" in worse["ope-clicks"]["message"]
    assert not any("ope-" in reason for reason in done["better"]["decision"]["reasons"])
    assert any("ope-clicks" in reason for reason in done["worse"]["decision"]["reasons"]) and done["worse"]["decision"]["passed"] is False
    for name in ("better", "worse"):  # the command line's gate on the same log: the same statuses and figures
        cli_results = _ope(_cli_gate(server, world, name, "logged", f"cli-{name}")["results"])
        api_results = _ope(done[name]["results"])
        assert set(cli_results) == set(api_results) == {"ope-clicks", "ope-tail"}
        for rule, result in api_results.items():
            assert (result["status"], result["value"], result["threshold"]) == (cli_results[rule]["status"], cli_results[rule]["value"], cli_results[rule]["threshold"]), rule
    with server.store.session() as session:  # recorded with the audit run: the log the rules were judged on
        used = session.get(AuditRun, done["worse"]["audit_id"]).summary["dataset"]["off_policy"]
    assert used["decisions_used"] == 1500 and used["logged_pack"]["pack_version"] == "9.0.0" and used["provider_groups"] == ["tail"]
    with server.store.session() as session:  # the call on the trail: the logged pack, and the groups' sizes, not their items
        event = session.scalars(select(TrailEvent).where(TrailEvent.action == "api.audits.create", TrailEvent.objects.contains(jobs["worse"]))).one()
    payload = json.loads(event.payload)
    assert payload["ope_logged_policy"]["pack_version"] == "9.0.0" and payload["request"]["ope_provider_groups"] == {"tail": len(TAIL_ITEMS)}
    without = _wait(server, _start(server, _body(world, "better", logged=None)))  # without the logged pack: skipped, as before
    assert without["status"] == "succeeded" and "ope_logged_pack" not in without["request"]
    assert {r["status"] for r in _ope(without["results"]).values()} == {"skipped"}


def test_a_log_with_no_overlap_fails_the_rules_with_the_estimators_reason(server, world) -> None:
    """A deterministic logger shows one list per context: no estimate of a stochastic candidate stands, so the rules
    fail as missing evidence (not a failed job), with the reason the command line gives."""
    job = _wait(server, _start(server, _body(world, "better", logged="deterministic", ope_provider_groups={"tail": TAIL_ITEMS})))
    assert job["status"] == "succeeded", job["error"]
    clicks = _ope(job["results"])["ope-clicks"]
    assert clicks["status"] == "fail" and "missing evidence is not a pass" in clicks["message"] and clicks["evidence"]["refused"] is True
    cli = _ope(_cli_gate(server, world, "better", "deterministic", "cli-deterministic")["results"])["ope-clicks"]
    assert (cli["status"], cli["message"]) == (clicks["status"], clicks["message"])
    assert job["decision"]["passed"] is False


@pytest.mark.parametrize(
    ("pack", "logged", "extra", "field", "says"),
    [
        ("better", None, {"ope_provider_groups": {"tail": TAIL_ITEMS}}, "ope_provider_groups", "needs ope_logged_pack"),
        ("plain", "logged", {}, "ope_logged_pack", "declares no off-policy rule"),
        ("reranks", "logged", {}, "pack", "re-ranks differently from the logged pack"),
        ("better", "no_analytics", {}, "ope_logged_pack", "declares no 'analytics' consent purpose"),
        ("better", "drifted", {}, "ope_logged_pack", "is not the pack that served the decisions recorded under audit-ope 6.0.0: 20 decision(s)"),
        ("better", "logged", {"ope_provider_groups": {"tail": []}}, "ope_provider_groups.tail", "at least 1 item"),
        ("better", "logged", {"ope_provider_groups": {f"g{i}": ["x"] for i in range(6)}}, "ope_provider_groups", "at most 5 items"),
        ("better", "logged", {"ope_provider_groups": {"tail": ["i" * 201]}}, "ope_provider_groups.tail.0", "at most 200 characters"),
    ],
)
def test_options_the_command_line_refuses_are_located_422s_and_queue_no_job(server, world, pack, logged, extra, field, says) -> None:
    with server.store.session() as session:
        before = session.scalar(select(func.count()).select_from(AuditJob))
    with server.client("auditor") as client:
        response = client.post("/v1/audits", json=_body(world, pack, logged=logged, **extra))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["location"] == "body" and e["field"] == field and says in e["message"] for e in errors), errors
    with server.store.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditJob)) == before


def test_an_unknown_logged_pack_is_a_404_and_a_viewer_may_not_start_one(server, world) -> None:
    with server.client("auditor") as client:
        unknown = client.post("/v1/audits", json={**_body(world, "better"), "ope_logged_pack": f"{NAME}@1.2.3"})
    with server.client("viewer") as client:
        forbidden = client.post("/v1/audits", json=_body(world, "better"))
    assert unknown.status_code == 404 and unknown.json()["detail"].startswith("body.ope_logged_pack: no stored pack 'audit-ope' at version '1.2.3'")
    assert forbidden.status_code == 403


def test_a_logged_pack_changed_after_the_request_fails_the_job(server, world) -> None:
    """The job reads the logged pack again when it runs: another content than the one asked for is refused."""
    request = {"pack": world["refs"]["better"], "ope_logged_pack": world["refs"]["logged"], "ope_logged_pack_hash": "0" * 64, "ope_provider_groups": None}
    with pytest.raises(ConfigError, match=r"the logged pack 'audit-ope@9.0.0' has changed since the audit was asked for \(hash 000000000000"):
        work.off_policy_input(_settings(server), request)
    asked = parse_pack((world["files"] / "logged.yaml").read_text()).content_hash
    given = work.off_policy_input(_settings(server), {**request, "ope_logged_pack_hash": asked, "ope_provider_groups": {"tail": TAIL_ITEMS}})
    assert given is not None and given.logged.content_hash == asked and given.provider_groups == {"tail": frozenset(TAIL_ITEMS)}
    assert work.off_policy_input(_settings(server), {"pack": "baseline"}) is None


def _settings(server) -> Any:
    from governance.api import ApiSettings

    return ApiSettings(home=server.home, database_url=server.db_url)
