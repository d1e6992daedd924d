"""``recgov monitor`` and ``recgov lifecycle`` with a runner, tickets and retirement in the store, on SQLite and PostgreSQL;
the generated alerting rules checked by Prometheus's own ``promtool``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.models import ModelProfile, MonitorRun, RetrainTicket, TrailEvent
from audits.monitoring import UNKNOWN_TICKET, evidence_key, open_ticket
from governance import deploy
from governance.cli import app as cli
from governance.cli.policy import SHIPPED
from governance.lifecycle.retirement import retire_models
from governance.policy import parse_pack
from tests.governance.lifecycle_world import LIFECYCLE

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=80,n_interactions=4000,seed=5"


def _pack(tmp_path: Path, extra: str = LIFECYCLE) -> Path:
    path = tmp_path / "lifecycle.yaml"
    path.write_text((SHIPPED / "baseline.yaml").read_text() + extra)
    return path


def _count(db_url: str, table) -> int:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return int(session.scalar(select(func.count()).select_from(table)))
    finally:
        store.close()


def test_monitor_run_is_one_pass_fit_for_cron_and_refuses_bad_input(db_url: str, tmp_path: Path) -> None:
    pack = str(_pack(tmp_path))
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    done = runner.invoke(cli, ["monitor", "run", "-p", pack, "--at", at, "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["created"] and doc["fired"] == [] and doc["metrics"]["overall"]["lists"] == 0
    retried = runner.invoke(cli, ["monitor", "run", "-p", pack, "--at", at, "--database-url", db_url, "--json"])
    assert retried.exit_code == 0 and json.loads(retried.stdout)["created"] is False
    assert _count(db_url, MonitorRun) == 1
    for bad, words in (
        ("2026-01-01T00:00:00", "--at must be an ISO 8601 time with a UTC offset"),
        ("yesterday", "--at must be an ISO 8601 time with a UTC offset"),
        ((datetime.now(UTC) + timedelta(days=2)).isoformat(), "cannot end in the future"),
    ):
        refused = runner.invoke(cli, ["monitor", "run", "-p", pack, "--at", bad, "--database-url", db_url])
        assert refused.exit_code == 2 and words in refused.stderr, refused.output
    broken = _pack(tmp_path, "lifecycle:\n  window_hours: -1\n")
    refused = runner.invoke(cli, ["monitor", "run", "-p", str(broken), "--database-url", db_url])
    assert refused.exit_code == 2 and "lifecycle.window_hours" in refused.stderr and "lifecycle.yaml:" in refused.stderr
    assert _count(db_url, MonitorRun) == 1  # nothing stored by refused input
    listed = runner.invoke(cli, ["monitor", "runs", "--database-url", db_url, "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] == 1


def test_tickets_open_once_per_evidence_and_once_per_model_in_progress(store) -> None:
    stamp = {"pack": "p", "pack_version": "1.0.0", "pack_hash": "h" * 64}
    now = datetime.now(UTC)
    key = evidence_key("drift", None, {"window_end": "e1"})
    with store.session() as session:
        first = open_ticket(session, trigger_id="drift", trigger_kind="input_drift", model_version=None, evidence={"psi": 0.4}, key=key, stamp=stamp, now=now)
        same = open_ticket(session, trigger_id="drift", trigger_kind="input_drift", model_version=None, evidence={"psi": 0.4}, key=key, stamp=stamp, now=now)
    assert first.opened and not same.opened and same.ticket.id == first.ticket.id
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(RetrainTicket)) == 1
        assert session.scalar(select(func.count()).select_from(TrailEvent).where(TrailEvent.action == "retrain.ticket_opened")) == 1
    assert evidence_key("drift", None, {"window_end": "e2"}) != key


def test_lifecycle_run_of_an_unknown_ticket_exits_2_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    done = runner.invoke(cli, ["lifecycle", "run", "no-such-ticket", DATA, "-p", str(_pack(tmp_path)), "--database-url", db_url])
    assert done.exit_code == 2, done.output
    assert UNKNOWN_TICKET.format(id="no-such-ticket") in " ".join(done.stderr.split())
    assert _count(db_url, RetrainTicket) == 0
    listed = runner.invoke(cli, ["lifecycle", "tickets", "--database-url", db_url, "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == {"tickets": []}
    bad_state = runner.invoke(cli, ["lifecycle", "tickets", "--state", "sideways", "--database-url", db_url])
    assert bad_state.exit_code == 2 and "state must be one of" in bad_state.stderr


def test_a_model_past_its_age_is_retired_and_the_trail_says_why(db_url: str, tmp_path: Path) -> None:
    trained = runner.invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    assert runner.invoke(cli, ["deploy", "promote", version, "--to", "shadow", "--database-url", db_url]).exit_code == 0
    pack = parse_pack((SHIPPED / "baseline.yaml").read_text() + "lifecycle:\n  retirement:\n    max_age_days: 5\n", "p.yaml")
    store = open_store(db_url)
    try:
        assert retire_models(store, pack, figures={}, now=datetime.now(UTC) + timedelta(days=1)) == []  # a day old: kept
        done = retire_models(store, pack, figures={}, now=datetime.now(UTC) + timedelta(days=6))
        assert [(d["model_version"], d["stage"]) for d in done] == [(version, "shadow")]
        assert "more than max_age_days 5" in done[0]["reasons"][0]
        assert [s["model_version"] for s in deploy.status(store)["retired"]] == [version]
        with store.session() as session:
            event = session.scalars(select(TrailEvent).where(TrailEvent.action == "model.retired")).one()
            payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
            assert payload["reasons"] == done[0]["reasons"]
        assert retire_models(store, pack, figures={}, now=datetime.now(UTC) + timedelta(days=7)) == []  # retired once
    finally:
        store.close()


def test_the_alerting_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: CI installs Debian's prometheus package (see .ci/run)")
        pytest.skip("promtool is not installed (apt-get install --no-install-recommends prometheus)")
    extra = LIFECYCLE.replace(
        "  canary:",
        "    - {id: skew, kind: prediction_skew, max_ks: 0.4}\n    - {id: gap, kind: exposure_regression, metric: coverage, min: 0.1}\n"
        "    - {id: stale, kind: staleness, max_days: 30}\n    - {id: weekly, kind: schedule, every_days: 7}\n    - {id: erasures, kind: erasure_retrains}\n  canary:",
    ).replace("    guardrails:\n", "    guardrails:\n      - {metric: latency_p99_ms, max: 50}\n")
    done = runner.invoke(cli, ["monitor", "rules", "-p", str(_pack(tmp_path, extra))])
    assert done.exit_code == 0, done.output
    rules = tmp_path / "rules.yml"
    rules.write_text(done.stdout)
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout  # 6 triggers (a schedule alerts nothing), 2 guardrails, 2 every pack has
    assert 'recgov_monitor_figure{figure="latency_p99_ms",stage="canary"} > 50' in done.stdout


def test_a_profile_refits_only_on_who_may_be_profiled(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subjects who denied personalization under the pack never reach the profile's refit; the profile counts them."""
    import recommender.feedback
    from audits.monitoring import profiles_of

    monkeypatch.setenv("RECGOV_HOME", str(tmp_path / "home"))
    trained = runner.invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    # Before any consent is recorded nobody may be profiled under the pack: refused, located, nothing stored.
    refused = runner.invoke(cli, ["monitor", "profile", version, DATA, "-p", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert refused.exit_code == 2 and "no event may be used for the offline evaluation under the pack" in " ".join(refused.stderr.split()), refused.output
    assert _count(db_url, ModelProfile) == 0
    denied = {f"u{u:06d}" for u in range(0, 120, 6)}
    consents = tmp_path / "consent.csv"
    consents.write_text(
        "subject,purpose,status,time,basis,source,evidence_origin\n"
        + "".join(
            f"u{u:06d},personalization,{'denied' if f'u{u:06d}' in denied else 'granted'},2026-01-01T00:00:00Z,consent,import,crm.csv\n"
            for u in range(120)
        )
    )
    imported = runner.invoke(cli, ["consent", "import", str(consents), "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert imported.exit_code == 0, imported.output

    refitted: list[set[str]] = []
    real = recommender.feedback.to_implicit

    def spy(events, *args, **kwargs):
        refitted.append(set(events["user_id"].astype(str)))
        return real(events, *args, **kwargs)

    monkeypatch.setattr(recommender.feedback, "to_implicit", spy)
    done = runner.invoke(cli, ["monitor", "profile", version, DATA, "-p", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert refitted and all(users and not users & denied for users in refitted)  # the refit ran, without them
    from recommender.loaders import load_data

    events = load_data(DATA).events
    n_denied = int(events["user_id"].astype(str).isin(denied).sum())
    assert n_denied > 0 and summary["left_out"] == {"denied": n_denied} and summary["n_events"] == len(events) - n_denied
    store = open_store(db_url)
    try:
        with store.session() as session:
            stored = profiles_of(session, [version])[version]
    finally:
        store.close()
    assert stored["left_out"] == {"denied": n_denied}
    assert not set(stored["deciles"]) - set(events.loc[~events["user_id"].astype(str).isin(denied), "item_id"].astype(str))
