"""Files that hold personal data never get wider permissions than they had; exports are owner-only.

The holes, through the command line on SQLite and PostgreSQL:

* ``recgov subject export --out`` and ``recgov trail export`` wrote with the
  process umask: an access export (everything recgov holds about a person)
  and the trail (subjects by pseudonym) came out ``0644``, readable by every
  account on the machine;
* ``recgov data purge`` rewrote a log kept ``0600`` (or ``0640``) as ``0644``;
* an unwritable target is one line and exit 2 (no traceback, nothing left).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from audits import list_requests, open_store
from audits.private_files import UNWRITABLE
from governance.cli import app

runner = CliRunner()
NOBODY = 65534


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most machines run with (022): what made exports world-readable."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_an_access_export_is_owner_only_and_replaces_a_wider_file(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    done = runner.invoke(app, ["subject", "export", "subj-perm-1", "--out", str(out), "--database-url", db_url])
    assert done.exit_code == 0, done.output
    assert _mode(out) == 0o600
    out.chmod(0o644)  # an earlier export, left readable
    again = runner.invoke(app, ["subject", "export", "subj-perm-1", "--out", str(out), "--database-url", db_url])
    assert again.exit_code == 0, again.output
    assert _mode(out) == 0o600 and _leftovers(tmp_path) == []


def test_a_trail_export_is_owner_only(db_url: str, tmp_path: Path) -> None:
    runner.invoke(app, ["subject", "export", "subj-perm-2", "--database-url", db_url])  # something on the trail
    out = tmp_path / "trail.jsonl"
    done = runner.invoke(app, ["trail", "export", str(out), "--database-url", db_url])
    assert done.exit_code == 0, done.output
    assert _mode(out) == 0o600 and out.stat().st_size > 0


def test_the_home_of_the_embedded_store_is_owner_only(recgov_home: Path) -> None:
    """RECGOV_HOME holds the SQLite store (consent records, decisions, requests): it was made 0755."""
    assert not recgov_home.exists()
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    assert (recgov_home / "recgov.db").exists() and _mode(recgov_home) == 0o700


def test_the_embedded_store_file_is_owner_only_in_a_home_someone_else_made(recgov_home: Path) -> None:
    """Hole: RECGOV_HOME is made 0700 only when recgov makes it; in a folder made beforehand (a container volume,
    a deployment script's mkdir) the SQLite file, holding every subject's pseudonym secret and record key, and its
    WAL file came out 0644: any account on the machine could open every sealed list and link pseudonyms to ids."""
    recgov_home.mkdir(mode=0o755, parents=True)
    done = runner.invoke(app, ["consent", "set", "subj-perm-3", "--purpose", "personalization", "--status", "granted", "--basis", "consent"])
    assert done.exit_code == 0, done.output
    files = sorted(p.name for p in recgov_home.iterdir() if p.name.startswith("recgov.db"))
    assert "recgov.db" in files
    assert {name: _mode(recgov_home / name) for name in files} == dict.fromkeys(files, 0o600)
    kept = recgov_home / "kept.db"
    kept.touch(mode=0o640)  # a file that exists keeps the mode its owner gave it
    assert runner.invoke(app, ["db", "upgrade", "--database-url", f"sqlite:///{kept}"]).exit_code == 0
    assert _mode(kept) == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_a_purged_log_keeps_its_mode(db_url: str, tmp_path: Path, mode: int) -> None:
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["2022-01-01T00:00:00Z", "2024-06-20T00:00:00Z"]}).to_csv(log, index=False)
    log.chmod(mode)
    done = runner.invoke(app, ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    assert pd.read_csv(log)["user_id"].tolist() == ["b"], "the purge happened"
    assert _mode(log) == mode and _leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["folder", "system"])
def test_an_unwritable_export_target_is_one_line_and_exit_2(db_url: str, tmp_path: Path, target: str) -> None:
    out = tmp_path if target == "folder" else Path("/sys/recgov-export.json")
    for args in (["subject", "export", "subj-perm-3", "--out", str(out)], ["trail", "export", str(out), "--no-checkpoint"]):
        done = runner.invoke(app, [*args, "--database-url", db_url])
        assert done.exit_code == 2, done.output
        reason = "it is a folder" if target == "folder" else "Permission denied"
        assert done.stderr.strip() == "error: " + UNWRITABLE.format(path=out, reason=reason), done.stderr
    assert _leftovers(tmp_path) == []
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert list_requests(session, kind="access") == [], "an export that cannot be written records no answered request"
    finally:
        store.close()


@contextmanager
def _unprivileged() -> Iterator[None]:
    """Act as an account without write access where root has it (root writes anywhere)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_purge_of_a_log_in_a_read_only_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The store is a SQLite file the unprivileged account may write; the log's folder is not theirs."""
    shared = Path(tempfile.mkdtemp(prefix="recgov-purge-"))
    try:
        shared.chmod(0o777)
        folder = shared / "logs"
        folder.mkdir(mode=0o755)
        log = folder / "log.csv"
        pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["2022-01-01T00:00:00Z", "2024-06-20T00:00:00Z"]}).to_csv(log, index=False)
        log.chmod(0o644)
        folder.chmod(0o555)
        before = log.read_bytes()
        db_url = f"sqlite:///{shared / 'store.db'}"
        env = {"RECGOV_HOME": str(shared / "home")}
        with _unprivileged():
            done = runner.invoke(app, ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--no-erased", "--database-url", db_url], env=env)
        assert done.exit_code == 2, done.output
        assert done.stderr.strip() == "error: " + UNWRITABLE.format(path=log, reason="Permission denied"), done.stderr
        assert log.read_bytes() == before and _leftovers(folder) == []
    finally:
        for path in (shared / "logs",):
            path.chmod(0o755)
        import shutil

        shutil.rmtree(shared, ignore_errors=True)
