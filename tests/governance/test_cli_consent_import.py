"""``recgov consent import`` and ``recgov consent synth-export`` through the public CLI, on SQLite and PostgreSQL:
exit codes, the report, a broken file refused whole, and the EU pack trained on the synthetic export's consented users."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from cli_helpers import invoke, ok

from governance.consent.import_table import MISSING_COLUMN

DATA = "synthetic:n_users=120,n_items=60,n_interactions=3000,seed=3"
CSV = (
    "user,purpose,status,time,source,banner_version\n"
    "cli-import-alice-1,personalization,granted,2026-01-05T09:30:00Z,banner,2025-11\n"
    "cli-import-bob-22,personalization,granted,2099-01-05T09:30:00Z,banner,2025-11\n"
)


def test_refused_rows_exit_1_with_their_lines_and_the_rest_is_imported(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    args = ("consent", "import", path, "--map", "subject=user", "--pack", "eu-gdpr-dsa", "--database-url", db_url)
    first = invoke(*args, "--json")
    assert first.exit_code == 1, first.output
    doc = json.loads(first.stdout)
    assert (doc["added"], doc["invalid"], [p["line"] for p in doc["problems"]]) == (1, 1, [3])
    assert "cli-import-bob-22" not in first.output
    again = invoke(*args)
    assert again.exit_code == 1
    assert "0 records added, 1 already recorded, 1 rows refused" in again.stdout
    assert "line 3: time: time '2099-01-05T09:30:00Z' is in the future" in again.stderr
    assert ok("consent", "show", "cli-import-alice-1", "--database-url", db_url)["in_force"]["personalization"]["status"] == "granted"


def test_a_file_without_a_mapped_column_is_one_line_exit_2_and_nothing_written(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    result = invoke("consent", "import", path, "--pack", "eu-gdpr-dsa", "--database-url", db_url)
    assert result.exit_code == 2
    columns = "user, purpose, status, time, source, banner_version"
    assert result.stderr.strip() == "error: " + MISSING_COLUMN.format(name=str(path), column="subject", field="subject", columns=columns)
    assert ok("consent", "show", "cli-import-alice-1", "--database-url", db_url)["history"] == []


def test_the_eu_pack_trains_on_the_synthetic_exports_consented_users_only(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "consent.parquet"
    made = ok("consent", "synth-export", DATA, "--out", out, "--withdrawals", "0.1", "--pack", "eu-gdpr-dsa", "--seed", "7")
    export = pd.read_parquet(out)
    assert made["records"] == len(export)
    imported = invoke("consent", "import", out, "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json")
    assert imported.exit_code == 0, imported.output
    trained = ok("train", DATA, "--pack", "eu-gdpr-dsa", "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2",
                 "--as-of", "2024-07-01", "--database-url", db_url)  # fmt: skip
    personalization = export[export["purpose"] == "personalization"]
    latest = personalization.sort_values("time").groupby("subject")["status"].last()
    subjects = trained["privacy_filter"]["subjects"]
    assert subjects["kept"] == trained["matrix"]["users"] == int((latest == "granted").sum())
    assert subjects["excluded"]["withdrawn"] == int((latest == "withdrawn").sum()) > 0
    assert subjects["excluded"]["denied"] == int((latest == "denied").sum()) > 0
    assert subjects["excluded"]["no_consent_record"] == 0


def test_a_header_cell_over_two_lines_moves_every_rows_line(db_url: str, tmp_path: Path) -> None:
    """A spreadsheet's header cell holding a line break: the rows start a line later, and each refused row is told
    at its own line, in the text report, in --json and in the batch's anchor on the trail."""
    path = tmp_path / "export.csv"
    path.write_text(CSV.replace("banner_version\n", '"banner\nversion"\n', 1))
    args = ("consent", "import", path, "--map", "subject=user,banner_version=banner\nversion", "--pack", "eu-gdpr-dsa", "--database-url", db_url)
    doc = json.loads(invoke(*args, "--json").stdout)
    assert ([p["line"] for p in doc["problems"]], doc["added"]) == ([4], 1)
    assert (doc["batches"][0]["first_line"], doc["batches"][0]["last_line"]) == (3, 3)
    assert "line 4: time: time '2099-01-05T09:30:00Z' is in the future" in invoke(*args).stderr
