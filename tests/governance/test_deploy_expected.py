"""``recgov deploy rollback|promote --expected VERSION``, on SQLite and PostgreSQL: a move decided on one production
version is refused once another one is in production, so two rollbacks at once never go back two versions."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.lineage import record_deployment
from audits.models import Deployment, TrailEvent
from governance.cli import app as cli

DATA = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=5"
runner = CliRunner()


def _train(db_url: str, factors: int) -> str:
    done = runner.invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", str(factors), "--iterations", "2", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["model_version"]


def three_in_a_row(db_url: str) -> tuple[str, str, str]:
    """Three versions each displaced from production by the next: ``third`` in production, ``second`` then ``first`` kept."""
    first, second, third = (_train(db_url, f) for f in (4, 5, 6))
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_deployment(session, model_version=first, stage="production")
            for old, new in ((first, second), (second, third)):
                record_deployment(session, model_version=old, stage="shadow")
                record_deployment(session, model_version=new, stage="production")
    finally:
        store.close()
    return first, second, third


def _state(db_url: str) -> tuple[list[tuple[str, str]], int]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            rows = [(d.model_version_id, d.stage) for d in session.scalars(select(Deployment).order_by(Deployment.id))]
            rolled = len(session.scalars(select(TrailEvent.seq).where(TrailEvent.action == "deployment.rolled_back")).all())
            return rows, rolled
    finally:
        store.close()


def test_a_second_rollback_from_the_same_version_is_refused_and_changes_nothing(db_url: str) -> None:
    first, second, third = three_in_a_row(db_url)
    done = runner.invoke(cli, ["deploy", "rollback", "--expected", third, "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["restored"] == second
    before = _state(db_url)
    again = runner.invoke(cli, ["deploy", "rollback", "--expected", third, "--database-url", db_url, "--json"])
    assert again.exit_code == 2, again.output
    assert f"production is not {third!r}: {second!r} is in production now" in again.stderr
    assert json.loads(again.stdout)["issues"][0]["message"].startswith("production is not")
    assert _state(db_url) == before  # first stays in shadow, second in production
    # Decided on what is in production now, it goes on.
    assert runner.invoke(cli, ["deploy", "rollback", "--expected", second, "--database-url", db_url]).exit_code == 0


def test_a_promotion_decided_on_another_production_version_is_refused(db_url: str) -> None:
    first, second, third = three_in_a_row(db_url)
    fourth = _train(db_url, 7)
    before = _state(db_url)
    refused = runner.invoke(cli, ["deploy", "promote", fourth, "--to", "shadow", "--expected", second, "--database-url", db_url])
    assert refused.exit_code == 2 and f"production is not {second!r}" in refused.stderr
    assert _state(db_url) == before
    assert runner.invoke(cli, ["deploy", "promote", fourth, "--to", "shadow", "--expected", third, "--database-url", db_url]).exit_code == 0


def test_two_rollbacks_at_once_from_the_same_version_go_back_one_version(db_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from governance.deploy import ProductionMoved, rollback

    first, second, third = three_in_a_row(db_url)
    stores = [open_store(db_url) for _ in range(2)]
    ready = Barrier(2)

    def roll(store) -> str:
        ready.wait()
        try:
            return rollback(store, actor="test", expected_production=third)["restored"]
        except ProductionMoved:
            return "refused"

    try:
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(roll, stores))
    finally:
        for store in stores:
            store.close()
    assert outcomes == sorted([second, "refused"])
    rows, rolled = _state(db_url)
    assert rolled == 1 and rows[-2:] == [(third, "retired"), (second, "production")]  # first stays in shadow
