"""The gate refuses an output folder it could not write before it trains or records anything; on SQLite and
PostgreSQL.

Regression: ``recgov gate --out FILE`` trained and recorded a model and an audit, then failed writing gate.json with
a traceback and exit code 1, which a CI pipeline reads as "a blocking finding" rather than "bad usage" (2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance.gate import OUT_NOT_A_FOLDER
from tests.governance.cli_helpers import count, invoke

DATA = "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=5"
FILES = "gate.json, junit.xml, summary.md, gate.sarif"


def _outs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    crowded = tmp_path / "crowded"
    (crowded / "gate.json").mkdir(parents=True)
    return {
        "a-file": (taken, OUT_NOT_A_FOLDER.format(out=taken, what="a file, not a folder", files=FILES)),
        "under-a-file": (taken / "out", OUT_NOT_A_FOLDER.format(out=taken / "out", what=f"under {taken}, a file", files=FILES)),
        "a-folder-in-a-files-place": (crowded, OUT_NOT_A_FOLDER.format(out=crowded, what="holding a folder named gate.json", files=FILES)),
    }


@pytest.mark.parametrize("case", ["a-file", "under-a-file", "a-folder-in-a-files-place"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_is_recorded(db_url: str, tmp_path: Path, case: str) -> None:
    out, message = _outs(tmp_path)[case]
    result = invoke("gate", DATA, "--pack", "baseline", "--out", out, "--database-url", db_url, "--json")
    assert result.exit_code == 2, result.output
    assert " ".join(result.stderr.split()) == f"error: {message}"
    for table in ("training_runs", "model_versions", "audit_runs"):
        assert count(db_url, table) == 0, table


def test_a_new_output_folder_is_made_and_written(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "new" / "gate"
    result = invoke("gate", DATA, "--pack", "baseline", "--out", out, "--database-url", db_url, "--json")
    assert result.exit_code in (0, 1), result.output
    assert json.loads((out / "gate.json").read_text())["audit_id"] == json.loads(result.stdout)["audit_id"]
