"""Governed deployments through ``recgov deploy``, on SQLite and PostgreSQL: the gate, the stages, rollback."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.models import Deployment, TrailEvent
from audits.verify import verify_trail
from governance.cli import app as cli
from governance.cli.policy import SHIPPED

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
runner = CliRunner()


def _train(db_url: str, factors: int) -> str:
    done = runner.invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", str(factors), "--iterations", "4", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["model_version"]


def _deploy(db_url: str, *args: str):
    return runner.invoke(cli, ["deploy", *args, "--database-url", db_url])


def _promote(db_url: str, mv: str, stage: str, tmp_path: Path):
    return _deploy(db_url, "promote", mv, "--to", stage, "--data", DATA, "--out", str(tmp_path / "gate"), "--json")


def _bind(db_url: str, pack: str, *stages: str) -> None:
    """The installation's deployment policy: ``pack`` gates ``stages``."""
    for stage in stages:
        done = _deploy(db_url, "policy", "set", stage, "--pack", pack)
        assert done.exit_code == 0, done.output


def _actions(db_url: str) -> list[str]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.scalars(select(TrailEvent.action).where(TrailEvent.action.like("deployment.%")).order_by(TrailEvent.seq)))
    finally:
        store.close()


def test_a_model_that_fails_the_gate_is_refused_with_the_rule_named(db_url: str, tmp_path: Path) -> None:
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text((SHIPPED / "baseline.yaml").read_text().replace("min_ratio: 2.0", "min_ratio: 1000.0"))
    mv = _train(db_url, 8)
    _bind(db_url, str(impossible), "canary")
    assert _deploy(db_url, "promote", mv, "--to", "shadow").exit_code == 0
    refused = _promote(db_url, mv, "canary", tmp_path)
    assert refused.exit_code == 1, refused.output
    assert "quality-beats-random" in refused.stderr
    assert json.loads(refused.stdout)["promoted"] is False
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert [d.stage for d in session.scalars(select(Deployment).order_by(Deployment.id))] == ["shadow"]
    finally:
        store.close()


def test_promotion_through_the_gate_and_rollback(db_url: str, tmp_path: Path) -> None:
    old, new = _train(db_url, 8), _train(db_url, 6)
    _bind(db_url, "baseline", "canary", "production")
    for mv in (old, new):
        assert _deploy(db_url, "promote", mv, "--to", "shadow").exit_code == 0
    # Illegal moves and bad input: exit 2, said in one line, before any gate runs.
    skip = _promote(db_url, old, "production", tmp_path)
    assert skip.exit_code == 2 and "the next stage is canary; promote to canary first" in skip.stderr
    assert _promote(db_url, old, "live", tmp_path).exit_code == 2
    assert _promote(db_url, "als-nope", "canary", tmp_path).exit_code == 2
    assert _deploy(db_url, "rollback").exit_code == 2  # nothing in production yet

    for stage in ("canary", "production"):
        done = _promote(db_url, old, stage, tmp_path)
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["audit_id"] is not None
    # The second model goes through the same gate; reaching production moves the first back to shadow.
    for stage in ("canary", "production"):
        assert _promote(db_url, new, stage, tmp_path).exit_code == 0
    status = json.loads(_deploy(db_url, "status", "--json").stdout)
    assert [s["model_version"] for s in status["production"]] == [new]
    assert [(s["model_version"], s["previous"]) for s in status["shadow"]] == [(old, True)]
    assert status["production"][0]["latest_audit"]["verdict"] == "pass"

    back = _deploy(db_url, "rollback", "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["restored"] == old
    status = json.loads(_deploy(db_url, "status", "--json").stdout)
    assert [s["model_version"] for s in status["production"]] == [old]
    assert [s["model_version"] for s in status["retired"]] == [new]

    actions = _actions(db_url)
    assert actions.count("deployment.promoted") == 6 and actions.count("deployment.rolled_back") == 1
    assert actions.count("deployment.changed") == 9  # 6 promotions + old displaced + rollback's two moves
    store = open_store(db_url)
    try:
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()


def test_retire_from_the_command_line(db_url: str, tmp_path: Path) -> None:
    """`recgov deploy retire`: a version in shadow (or never deployed) is retired; the one in production, one retired
    already and an unknown one are one line and exit 2, nothing written."""
    shadow, never = _train(db_url, 5), _train(db_url, 7)
    assert _deploy(db_url, "promote", shadow, "--to", "shadow").exit_code == 0
    for version, previous in ((shadow, "shadow"), (never, None)):
        done = _deploy(db_url, "retire", version, "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["previous_stage"] == previous
    before = _actions(db_url)
    huge = "als-" + "x" * 5000  # a hostile argument is named, not echoed whole
    for version, said in ((shadow, "retired already"), ("als-nope", "unknown model version 'als-nope'"), (huge, "(5,004 characters)")):
        refused = _deploy(db_url, "retire", version)
        assert refused.exit_code == 2 and said in refused.output and len(refused.output.strip().splitlines()) == 1, refused.output
    _bind(db_url, "baseline", "canary", "production")
    live = _train(db_url, 6)
    for stage in ("shadow", "canary", "production"):
        assert _promote(db_url, live, stage, tmp_path).exit_code == 0
    before = _actions(db_url)
    refused = _deploy(db_url, "retire", live)
    assert refused.exit_code == 2 and "use rollback" in refused.output
    assert _actions(db_url) == before
    status = json.loads(_deploy(db_url, "status", "--json").stdout)
    assert {s["model_version"] for s in status["retired"]} == {shadow, never}
