"""``recgov availability`` on SQLite and PostgreSQL: import all or nothing with located errors, set and clear."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from audits import open_store
from audits.availability import availability_revision, unavailable_items
from governance.cli import app as cli

runner = CliRunner()


def _run(db_url: str, *args: str):
    return runner.invoke(cli, ["availability", *args, "--database-url", db_url])


def _state(db_url: str):
    store = open_store(db_url)
    try:
        with store.session() as session:
            return unavailable_items(session), availability_revision(session)
    finally:
        store.close()


def test_import_set_and_clear(db_url: str, tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("item_id,status,region\ni1,out_of_stock,\ni2,geo_restricted,DE\n")
    result = _run(db_url, "import", str(feed), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unavailable"] == 2
    assert _run(db_url, "set", "i3", "--status", "withdrawn").exit_code == 0
    assert _run(db_url, "clear", "i1").exit_code == 0
    now, _ = _state(db_url)
    assert now.everywhere == {"i3"} and now.by_region == {"DE": frozenset({"i2"})}


def test_a_bad_file_exits_2_names_each_line_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("item_id,status,region\ni1,out_of_stock,\ni2,geo_restricted,\ni3,lost,\n")
    result = _run(db_url, "import", str(feed))
    assert result.exit_code == 2
    assert "line 3: status geo_restricted needs a region" in result.output and "line 4: status must be one of" in result.output
    assert _state(db_url)[1] == 0  # i1 was fine, but nothing was stored
    refused = _run(db_url, "set", "i1", "--status", "geo_restricted")
    assert refused.exit_code == 2 and "needs a region" in refused.output


def test_a_region_is_echoed_as_stored(db_url: str) -> None:
    result = _run(db_url, "set", "i1", "--status", "geo_restricted", "--region", " eu")
    assert result.exit_code == 0, result.output
    assert "i1: geo_restricted in EU" in result.output
    now, _ = _state(db_url)
    assert now.by_region == {"EU": frozenset({"i1"})}
    cleared = _run(db_url, "clear", "i1", "--region", "Eu", "--json")
    assert json.loads(cleared.stdout) == {"item_id": "i1", "status": "available", "region": "EU", "changed": 1}
