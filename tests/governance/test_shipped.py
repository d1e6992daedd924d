"""The shipped packs and schemas are package data, found wherever recgov is installed.

Regression: the shipped packs were found at a path computed from the source
tree (``parents[2] / "policies"``), so a wheel installed outside a checkout had
no packs at all: `recgov demo` and every shipped pack name failed there.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from governance.packs import PackNotFound, load_ref
from governance.packs import SHIPPED_PACKS, resolve_pack, shipped_pack_names, shipped_pack_path, shipped_schema_path

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_packs_are_the_files_under_policies():
    assert SHIPPED_PACKS.resolve() == (ROOT / "policies").resolve()
    assert shipped_pack_names() == ["baseline", "california-ccpa", "eu-gdpr-dsa"]
    assert shipped_pack_path("baseline").read_text(encoding="utf-8") == (ROOT / "policies" / "baseline.yaml").read_text(encoding="utf-8")


def test_schemas_are_found_through_the_package():
    assert shipped_schema_path("policy-pack").read_bytes() == (ROOT / "schemas" / "policy-pack.schema.json").read_bytes()
    with pytest.raises(Exception, match="reinstall recgov"):
        shipped_schema_path("no-such-schema")


def test_resolve_pack_prefers_a_file_then_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_pack("baseline") == shipped_pack_path("baseline")
    assert resolve_pack("mine.yaml") == Path("mine.yaml")
    (tmp_path / "baseline").write_text("x")
    assert resolve_pack("baseline") == Path("baseline")


@pytest.mark.parametrize("ref", ["../policies/baseline", "baseline.test", "eu-gdpr-dsa.test", "/etc/passwd", "nothing"])
def test_load_ref_names_only_shipped_packs(tmp_path, ref):
    with pytest.raises(PackNotFound, match="shipped: baseline, california-ccpa, eu-gdpr-dsa"):
        load_ref(tmp_path, ref)


@pytest.mark.slow
def test_the_wheel_carries_packs_schemas_and_migrations(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("recgov-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pack in ROOT.joinpath("policies").glob("*.yaml"):
        assert f"policies/{pack.name}" in names
    for schema in ROOT.joinpath("schemas").glob("*.json"):
        assert f"schemas/{schema.name}" in names
    for migration in ROOT.joinpath("migrations", "versions").glob("*.py"):
        assert f"migrations/versions/{migration.name}" in names
    assert "governance/packs.py" in names
    console = ROOT / "governance" / "api" / "console"
    for page in [*console.joinpath("templates").glob("*.html"), *console.joinpath("static").glob("*")]:
        assert page.relative_to(ROOT).as_posix() in names
    assert not any(n.startswith("tests/") for n in names)
