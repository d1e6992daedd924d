"""Serving by deployment stage, on SQLite and PostgreSQL: production answers, shadows are recorded unserved."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.decisions import verify_decisions
from audits.models import DecisionRecord, FailedRequest
from audits.verify import verify_trail
from governance.cli import app as cli
from governance.consent.state import ConsentRecord
from governance.policy import load_pack
from governance.serving import ServeRequest
from governance.shadow import NOTHING_IN_PRODUCTION, DeployedServing, canary_bucket, compare_shadows, open_deployed
from recommender.errors import ConfigError

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
BASELINE = Path(__file__).resolve().parents[2] / "policies" / "baseline.yaml"
EU = Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml"
GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
runner = CliRunner()
USERS = [f"u{n:06d}" for n in range(1, 41)]


def _train(db_url: str, factors: int) -> str:
    done = runner.invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", str(factors), "--iterations", "4", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["model_version"]


def _deploy(db_url: str, tmp_path: Path, mv: str, *stages: str) -> None:
    for stage in stages:
        if stage != "shadow":  # the installation's deployment policy: baseline gates canary and production
            bound = runner.invoke(cli, ["deploy", "policy", "set", stage, "--pack", "baseline", "--database-url", db_url])
            assert bound.exit_code == 0, bound.output
        extra = [] if stage == "shadow" else ["--data", DATA, "--out", str(tmp_path / f"gate-{mv}-{stage}")]
        done = runner.invoke(cli, ["deploy", "promote", mv, "--to", stage, *extra, "--database-url", db_url, "--json"])
        assert done.exit_code == 0, done.output


@pytest.fixture
def deployed(db_url: str, tmp_path: Path):
    live, candidate = _train(db_url, 8), _train(db_url, 12)
    _deploy(db_url, tmp_path, live, "shadow", "canary", "production")
    _deploy(db_url, tmp_path, candidate, "shadow")
    store = open_store(db_url)
    yield store, live, candidate
    store.close()


def _decisions(store) -> list[DecisionRecord]:
    with store.session() as session:
        return list(session.scalars(select(DecisionRecord)))


def test_production_answers_and_every_shadow_is_recorded_unserved(deployed) -> None:
    store, live, candidate = deployed
    with open_deployed(store, load_pack(BASELINE)) as serving:
        served = [serving.serve(ServeRequest(user, k=5)) for user in USERS]
    assert {s.model_version for s in served} == {live}
    rows = _decisions(store)
    by_model = Counter(r.model_version for r in rows)
    assert by_model == {live: len(USERS), candidate: len(USERS)}
    served_ids = {s.decision_id for s in served}
    for row in rows:
        if row.model_version == candidate:
            assert row.context["served"] is False and row.context["shadow_of"] in served_ids
        else:
            assert "shadow_of" not in row.context and row.decision_id in served_ids
    with store.engine.connect() as connection:
        assert verify_decisions(connection) == []
        assert verify_trail(connection).intact


def test_shadow_comparison_is_computed_from_the_records(deployed) -> None:
    store, live, candidate = deployed
    with open_deployed(store, load_pack(EU)) as serving:
        served = {s.decision_id: s for s in (serving.serve(ServeRequest(user, k=5, consent=GRANTED)) for user in USERS)}
    (report,) = compare_shadows(store)
    # the same figures by hand, from the rows
    shadow_rows = [r for r in _decisions(store) if r.model_version == candidate]
    overlap = [len(set(r.slate["items"]) & set(served[r.context["shadow_of"]].items)) / 5 for r in shadow_rows]
    first = [r.slate["items"][0] == served[r.context["shadow_of"]].items[0] for r in shadow_rows]
    assert report["model_version"] == candidate
    assert report["requests"] == report["compared"] == len(USERS)
    assert report["overlap"] == pytest.approx(sum(overlap) / len(overlap))
    assert report["same_first"] == pytest.approx(sum(first) / len(first))
    assert report["same_mode"] == 1.0
    assert 0.0 < report["overlap"] < 1.0  # two different models: some agreement, not all
    assert compare_shadows(store, model_version=live) == []


def test_a_failing_shadow_is_logged_and_never_felt_by_the_caller(deployed) -> None:
    store, live, _ = deployed
    serving = open_deployed(store, load_pack(EU))
    shadow = serving.shadows[0].engine

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("shadow model exploded")

    shadow.personalizer.personalize = broken  # the shadow's model part fails from now on
    try:
        served = serving.serve(ServeRequest(USERS[0], k=5, consent=GRANTED))
        serving.drain(timeout=30)
    finally:
        serving.close()
    assert served.model_version == live and len(served.items) == 5
    assert serving.shadow_failures == 1
    with store.session() as session:
        failures = list(session.scalars(select(FailedRequest)))
    assert [f.cause for f in failures] == ["serve.RuntimeError"]
    assert USERS[0] not in json.dumps(failures[0].detail)
    # a shadow's copy: never counted as a failure of a served list (an experiment arm's error rate leaves it out)
    assert failures[0].detail["shadow"] is True and failures[0].detail["mode"] == "personalized"


def test_the_canary_answers_a_stable_share_of_subjects(db_url: str, tmp_path: Path) -> None:
    live, candidate = _train(db_url, 8), _train(db_url, 12)
    _deploy(db_url, tmp_path, live, "shadow", "canary", "production")
    _deploy(db_url, tmp_path, candidate, "shadow", "canary")
    store = open_store(db_url)
    try:
        with open_deployed(store, load_pack(BASELINE), canary_share=0.5) as serving:
            first = {u: serving.serve(ServeRequest(u, k=3)).model_version for u in USERS}
            again = {u: serving.serve(ServeRequest(u, k=3)).model_version for u in USERS}
        assert first == again  # a subject stays on its side
        expected = {u: candidate if canary_bucket(u) < 0.5 else live for u in USERS}
        assert first == expected and set(first.values()) == {live, candidate}
    finally:
        store.close()


def test_nothing_in_production_and_bad_shares_are_clear_errors(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    try:
        with pytest.raises(ConfigError, match="no model version is in production"):
            open_deployed(store, load_pack(BASELINE))
        assert NOTHING_IN_PRODUCTION.startswith("no model version")
        for bad in (-0.1, 1.5, True, "half"):
            with pytest.raises(ConfigError, match="canary_share must be a number from 0 to 1"):
                DeployedServing(object(), canary_share=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="no model version is in canary"):
            DeployedServing(object(), canary_share=0.2)  # type: ignore[arg-type]
    finally:
        store.close()


def test_the_shadows_command_reports_the_comparison(deployed) -> None:
    store, _, candidate = deployed
    empty = runner.invoke(cli, ["deploy", "shadows", "--database-url", str(store.engine.url.render_as_string(hide_password=False)), "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == {"shadows": []}
    with open_deployed(store, load_pack(EU)) as serving:
        for user in USERS[:10]:
            serving.serve(ServeRequest(user, k=5, consent=GRANTED))
    url = store.engine.url.render_as_string(hide_password=False)
    done = runner.invoke(cli, ["deploy", "shadows", "--database-url", url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"shadows": compare_shadows(store)}
    assert json.loads(done.stdout)["shadows"][0]["model_version"] == candidate
    table = runner.invoke(cli, ["deploy", "shadows", "--database-url", url])
    assert table.exit_code == 0 and candidate in table.stdout and "overlap" in table.stdout


def test_the_regulators_figures_count_served_lists_only(deployed, tmp_path: Path) -> None:
    """A shadow version's lists are recorded, never served: the report's Art. 38 figures and the researchers' package
    count the lists people were shown, so the shadow has served none and production every one."""
    from governance.report.accountability import decision_modes
    from governance.report.research import write_research_package

    store, live, candidate = deployed
    with open_deployed(store, load_pack(BASELINE)) as serving:
        for user in USERS:
            serving.serve(ServeRequest(user, k=5))
    assert Counter(r.model_version for r in _decisions(store)) == {live: len(USERS), candidate: len(USERS)}
    with store.session() as session:
        assert decision_modes(session, live)["decisions"] == len(USERS)
        assert decision_modes(session, candidate) == {"decisions": 0, "by_mode": {}, "non_profiling": 0, "non_profiling_share": None}
    with store.session() as session:
        write_research_package(session, candidate, tmp_path / "pkg", min_group=2)
    days = (tmp_path / "pkg" / "decisions_by_day.csv").read_text().splitlines()
    assert len(days) == 1, days  # the header alone: the shadow served no list
