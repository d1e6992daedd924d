"""A pack the installation stored (``POST /v1/packs``, ``$RECGOV_HOME/packs/NAME/VERSION.yaml``) is named on the
command line as the API names it, ``NAME@VERSION``; nothing outside the packs folder is reached that way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance import packs as pack_store
from governance.cli import app
from governance.packs import resolve_pack, shipped_pack_path


@pytest.fixture()
def stored(recgov_home: Path):  # noqa: ANN201
    text = shipped_pack_path("eu-gdpr-dsa").read_text().replace("name: eu-gdpr-dsa", "name: acme-eu", 1)
    loaded, _ = pack_store.store_pack(recgov_home / "packs", text=text)
    return loaded


def test_a_stored_pack_is_named_as_name_at_version(stored, recgov_home: Path) -> None:  # noqa: ANN001
    ref = f"acme-eu@{stored.version}"
    assert resolve_pack(ref) == recgov_home / "packs" / "acme-eu" / f"{stored.version}.yaml"
    result = CliRunner().invoke(app, ["policy", "validate", ref, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True


@pytest.mark.parametrize("ref", ["acme-eu@9.9.9", "..@x", "acme-eu@..", "@1.0.0", "acme-eu@"])
def test_an_unknown_or_escaping_stored_reference_is_not_found(stored, ref: str) -> None:  # noqa: ANN001
    assert resolve_pack(ref) == Path(ref)
    result = CliRunner().invoke(app, ["policy", "validate", ref])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_stored_version_that_is_not_there_is_named_with_the_stored_ones(stored) -> None:  # noqa: ANN001
    result = CliRunner().invoke(app, ["policy", "validate", "acme-eu@9.9.9"])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert f"no stored pack 'acme-eu' at version '9.9.9'; stored versions: {stored.version}" in said, result.stderr


def test_the_command_lines_report_finds_a_stored_pack_an_audit_ran_under(stored) -> None:  # noqa: ANN001
    from governance.report.gather import pack_in_force

    audits = [{"policy_pack": "acme-eu", "policy_version": stored.version, "policy_hash": stored.content_hash}]
    found = pack_in_force(audits)
    assert found is not None and found.content_hash == stored.content_hash
    assert pack_in_force([{**audits[0], "policy_hash": "0" * 64}]) is None  # another content under that name: not it


@pytest.mark.parametrize("version", ["1.0.0-rc..1", "1.0.0-", "1.0.0+"])
def test_a_version_with_an_empty_identifier_is_refused_before_it_is_stored(recgov_home: Path, version: str) -> None:
    """Such a version was stored (201) and could then never be named: its file name held ``..`` or ended the ref."""
    from governance.located import PolicyError

    text = shipped_pack_path("eu-gdpr-dsa").read_text().replace("name: eu-gdpr-dsa", "name: acme-eu", 1)
    text = text.replace("version: 1.0.0", f"version: {version}", 1)
    with pytest.raises(PolicyError, match="metadata.version"):
        pack_store.store_pack(recgov_home / "packs", text=text)
    assert not (recgov_home / "packs").exists() or not any((recgov_home / "packs").rglob("*.yaml"))
