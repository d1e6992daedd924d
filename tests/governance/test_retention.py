"""`recgov data purge`: events past the pack's retention window leave the log, with a trail event."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from governance.cli import app
from recommender.loaders import write_movielens_100k
from recommender.synthetic import SyntheticSpec, generate

runner = CliRunner()


def test_purge_csv_keeps_only_events_within_the_window(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    pd.DataFrame(
        {"user_id": ["a", "b", "c", "d"], "item_id": ["x", "y", "z", "x"],
         "timestamp": ["2022-01-01T00:00:00Z", "2023-07-01T00:00:00Z", "2023-07-03T00:00:00Z", "2024-06-20T00:00:00Z"]}
    ).to_csv(log, index=False)  # fmt: skip
    args = ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"]
    dry = json.loads(runner.invoke(app, [*args, "--dry-run"]).stdout)
    assert dry["events_purged"] == 2 and pd.read_csv(log).shape[0] == 4  # nothing changed
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["events_purged"] == 2
    assert pd.read_csv(log)["user_id"].tolist() == ["c", "d"]
    verify = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert verify.exit_code == 0 and json.loads(verify.stdout)["n_events"] == 1
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["events_purged"] == 0


def test_purge_movielens_directory(db_url: str, tmp_path: Path) -> None:
    data = generate(SyntheticSpec(n_users=50, n_items=40, n_interactions=2000, seed=1, event_mix={"rating": 1.0}))
    d = write_movielens_100k(data, tmp_path / "ml")
    before = len((d / "u.data").read_text().splitlines())
    result = runner.invoke(app, ["data", "purge", str(d), "--pack", "eu-gdpr-dsa", "--as-of", "2026-04-01", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    after = len((d / "u.data").read_text().splitlines())
    assert report["events_purged"] == before - after > 0


def test_purge_refuses_a_pack_without_retention_and_bad_dates(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\na,x,1\n")
    no_window = runner.invoke(app, ["data", "purge", str(log), "--pack", "baseline", "--database-url", db_url])
    assert no_window.exit_code == 2 and "sets no retention window" in no_window.stderr
    bad = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "later", "--database-url", db_url])
    assert bad.exit_code == 2 and "--as-of must be an ISO 8601 date" in bad.stderr
    assert log.read_text() == "user_id,item_id,timestamp\na,x,1\n"
