"""get_settings: cached, yet a changed environment takes effect at the next call."""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.settings import get_settings


def test_the_same_environment_gives_the_same_settings_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(tmp_path))
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "1")  # walked again, but nothing it reads changed
    assert get_settings() is first
    assert get_settings() is first


def test_a_changed_added_or_removed_variable_is_seen_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(tmp_path / "a"))
    assert get_settings().home == tmp_path / "a"
    monkeypatch.setenv("RECGOV_HOME", str(tmp_path / "b"))
    assert get_settings().home == tmp_path / "b"
    monkeypatch.delenv("RECGOV_DATABASE_URL", raising=False)
    assert get_settings().database_url is None
    monkeypatch.setenv("recgov_database_url", "sqlite:////tmp/x.db")  # any case, as pydantic-settings reads it
    assert get_settings().database_url == "sqlite:////tmp/x.db"
    monkeypatch.delenv("recgov_database_url")
    assert get_settings().database_url is None
