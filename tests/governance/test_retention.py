"""`recgov data purge`: events past the pack's retention window leave the log, with a trail event."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
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
    no_window = runner.invoke(app, ["data", "purge", str(log), "--pack", "baseline", "--no-erased", "--database-url", db_url])
    assert no_window.exit_code == 2 and "sets no retention window" in no_window.stderr
    only_erased = runner.invoke(app, ["data", "purge", str(log), "--pack", "baseline", "--database-url", db_url, "--json"])
    assert only_erased.exit_code == 0, only_erased.output  # no window: only erased subjects' events would go
    assert json.loads(only_erased.stdout)["cutoff"] is None and json.loads(only_erased.stdout)["events_purged"] == 0
    bad = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "later", "--database-url", db_url])
    assert bad.exit_code == 2 and "--as-of must be an ISO 8601 date" in bad.stderr
    assert log.read_text() == "user_id,item_id,timestamp\na,x,1\n"


ERASED = "erased-subject-Zk31"


def test_purge_removes_every_event_of_an_erased_subject_even_after_shredding(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log.parquet"
    pd.DataFrame(
        {"user_id": [ERASED, "kept-1", ERASED, "kept-2", ERASED],
         "item_id": ["x", "y", "z", "x", "y"],
         "timestamp": pd.to_datetime(["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04", "2024-06-05"], utc=True)}
    ).to_parquet(log, index=False)  # fmt: skip
    granted = runner.invoke(app, ["consent", "set", ERASED, "--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa", "--database-url", db_url])
    assert granted.exit_code == 0, granted.output
    erased = runner.invoke(app, ["subject", "erase", ERASED, "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["shredded"] is True  # the pseudonym is gone: only the suppression knows them
    args = ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"]
    kept_by_flag = json.loads(runner.invoke(app, [*args, "--no-erased", "--dry-run"]).stdout)
    assert kept_by_flag["events_of_erased_subjects"] == 0 and kept_by_flag["events_purged"] == 0
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["events_of_erased_subjects"], report["erased_subjects_found"], report["events_past_retention"]) == (3, 1, 0)
    left = pd.read_parquet(log)
    assert left["user_id"].tolist() == ["kept-1", "kept-2"]
    assert ERASED.encode() not in log.read_bytes()
    assert ERASED not in done.output
    from sqlalchemy import select

    from audits import open_store
    from audits.models import TrailEvent

    store = open_store(db_url)
    try:
        with store.session() as session:
            payloads = list(session.scalars(select(TrailEvent.payload).where(TrailEvent.action == "data.purged")))
    finally:
        store.close()
    assert len(payloads) == 1 and ERASED not in str(payloads[0])
    verify = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert verify.exit_code == 0, verify.output


def test_purge_removes_an_erased_subjects_events_of_unknown_time_as_training_leaves_them_out(db_url: str, tmp_path: Path) -> None:
    # an event without a time cannot be shown to follow the erasure: training leaves it out, so the log loses it too
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,item_id,timestamp\n"
        f"{ERASED},x,2024-06-01T00:00:00Z\n"
        f"{ERASED},y,\n"
        "kept-1,y,\n"
        "kept-2,z,2024-06-02T00:00:00Z\n"
    )
    granted = runner.invoke(app, ["consent", "set", ERASED, "--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa", "--database-url", db_url])
    assert granted.exit_code == 0, granted.output
    erased = runner.invoke(app, ["subject", "erase", ERASED, "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert erased.exit_code == 0, erased.output
    done = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["events_of_erased_subjects"], report["events_purged"], report["events_kept"]) == (2, 3, 1)
    assert ERASED not in log.read_text()
    # an undated event of anyone else goes too under a window: training cannot show it is within it either
    assert report["events_of_unknown_time"] == 2
    assert pd.read_csv(log, dtype=str)["user_id"].tolist() == ["kept-2"]
    again = json.loads(runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"]).stdout)
    assert again["events_purged"] == 0 and "trail_seq" not in again  # a second purge finds nothing and writes no trail event


def test_events_written_to_the_log_while_it_is_purged_are_not_lost(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import governance.retention as retention

    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\na,x,2022-01-01T00:00:00Z\nb,y,2024-06-20T00:00:00Z\n")
    reserve = retention.reserve_replacement

    def late_writer(target: Path) -> Path:  # another process appends an event after the purge has read the log
        with open(target, "a") as out:
            out.write("c,z,2024-06-30T00:00:00Z\n")
        return reserve(target)

    monkeypatch.setattr(retention, "reserve_replacement", late_writer)
    args = ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert f"{log}: changed while it was purged; nothing purged" in refused.stderr
    assert pd.read_csv(log)["user_id"].tolist() == ["a", "b", "c"]  # the late event is there, and nothing went
    verify = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert verify.exit_code == 0 and json.loads(verify.stdout)["n_events"] == 0  # no purge on the trail
    monkeypatch.setattr(retention, "reserve_replacement", reserve)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["events_purged"] == 1 and pd.read_csv(log)["user_id"].tolist() == ["b", "c"]


def test_a_log_written_to_between_its_two_reads_is_refused_with_a_located_error(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import governance.retention as retention

    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\na,x,2022-01-01T00:00:00Z\nb,y,2024-06-20T00:00:00Z\n")
    load = retention.load_event_log

    def then_written(path: Path, mapping: object) -> object:  # an event appended right after the events were loaded
        loaded = load(path, mapping)
        with open(path, "a") as out:
            out.write("c,z,2024-06-30T00:00:00Z\n")
        return loaded

    monkeypatch.setattr(retention, "load_event_log", then_written)
    refused = runner.invoke(app, ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"])
    assert refused.exit_code == 2, refused.output
    assert f"{log}: changed while it was purged; nothing purged" in refused.stderr
    assert pd.read_csv(log)["user_id"].tolist() == ["a", "b", "c"]


def test_purge_and_training_keep_the_same_events_at_the_boundary_in_any_zone_and_without_a_time(db_url: str, tmp_path: Path) -> None:
    """The purged log holds exactly the events training would keep for age: an event at the cutoff stays
    (written in UTC or another zone), one a second before it goes, one of unknown time goes under a window
    (reported on its own), and stays where the pack sets none."""
    from audits import open_store
    from governance.policy import load_pack
    from governance.training_filter import filter_training_events
    from recommender.loaders import load_event_log

    rows = [
        ("at-cutoff", "2023-07-02T00:00:00Z"),  # eu-gdpr-dsa: 730 days before 2025-07-01 (2024 has 366 days)
        ("at-cutoff-in-paris", "2023-07-02T02:00:00+02:00"),
        ("a-second-before", "2023-07-01T23:59:59Z"),
        ("a-second-before-in-new-york", "2023-07-01T19:59:59-04:00"),
        ("undated", ""),
        ("recent", "2025-06-30T12:00:00Z"),
    ]
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},x,{t}\n" for u, t in rows))
    pack = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
    store = open_store(db_url)
    try:
        for u, _ in rows:
            runner.invoke(app, ["consent", "set", u, "--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa", "--database-url", db_url])
        from datetime import UTC, datetime

        trained, _ = filter_training_events(load_event_log(log), pack, store, now=datetime(2025, 7, 1, tzinfo=UTC), record=False)
    finally:
        store.close()
    args = ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--as-of", "2025-07-01", "--database-url", db_url, "--json"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["cutoff"] == "2023-07-02T00:00:00+00:00"
    kept = pd.read_csv(log, dtype=str)["user_id"].tolist()
    assert kept == ["at-cutoff", "at-cutoff-in-paris", "recent"]
    assert sorted(kept) == sorted(trained.events["user_id"].astype(str).unique())
    assert (report["events_past_retention"], report["events_of_unknown_time"], report["events_purged"]) == (3, 1, 3)
    text = runner.invoke(app, [*args[:-1], "--dry-run"])
    assert "0 older than" in text.stdout  # nothing left to purge, said in words too
    # no window: an event of unknown time stays (nothing shows it is too old), as training keeps it
    undated = tmp_path / "undated.csv"
    undated.write_text("user_id,item_id,timestamp\nundated,x,\n")
    none = json.loads(runner.invoke(app, ["data", "purge", str(undated), "--pack", "baseline", "--database-url", db_url, "--json"]).stdout)
    assert (none["events_purged"], none["events_of_unknown_time"]) == (0, 0)
