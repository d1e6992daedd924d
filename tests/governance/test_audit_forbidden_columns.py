"""An audit or a gate never fits a model on a forbidden column, whatever the pack's consent section holds; on SQLite
and PostgreSQL.

Regression: under a pack listing no consent purpose, ``recgov audit``/``recgov gate`` trained and recorded a model from
``--map value=gender`` with gender audit-only, and only then failed its ``input_allowlist`` rule: the version was
recorded and could be served by naming it. The refit of a recorded model's parameters (``--model``) and the offline
evaluation of an audit without training read the mapped column too. Each is now refused before any fit: a located
error, exit 2, nothing recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.governance.cli_helpers import count, invoke, ok
from tests.governance.test_minimisation_trained_inputs import CLEAN, PACK, _log

LEAKED = "user_id=uid,item_id=sku,timestamp=ts,value=gender"
RECORDS = ("training_runs", "model_versions", "audit_runs", "dataset_versions")


def _counts(db_url: str) -> dict[str, int]:
    return {table: count(db_url, table) for table in RECORDS}


def _pack(tmp_path: Path, *, consent: bool) -> Path:
    text = PACK
    if consent:  # the same rules, with a consent section: the fit was already refused then
        text += "consent:\n  purposes:\n    personalization: {lawful_basis: legitimate_interest, model: opt_out}\n"
    path = tmp_path / "pack.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["audit", "gate"])
@pytest.mark.parametrize("consent", [False, True], ids=["no-consent-section", "consent-section"])
def test_a_trained_audit_refuses_a_forbidden_column_before_the_fit(db_url: str, tmp_path: Path, command: str, consent: bool) -> None:
    pack = _pack(tmp_path, consent=consent)
    line = PACK.splitlines().index("  audit_only_attributes: [gender]") + 1
    result = invoke(command, _log(tmp_path), "--pack", pack, "--map", LEAKED, "--out", tmp_path / "out", "--database-url", db_url, "--json")
    assert result.exit_code == 2, result.output
    assert f"minimization.audit_only_attributes ({pack}:{line}:" in result.stderr
    assert "model family 'als' would read a forbidden or audit-only attribute: event field value reads column 'gender' (gender); it is not fitted" in result.stderr
    assert _counts(db_url) == dict.fromkeys(RECORDS, 0)
    models = tmp_path / "recgov-home" / "models"
    assert not models.exists() or not list(models.iterdir())
    assert not (tmp_path / "out" / "gate.json").exists()


@pytest.mark.parametrize("extra", [["--model", "RECORDED"], ["--no-train"]], ids=["recorded-model", "no-train"])
def test_an_audit_that_refits_refuses_a_forbidden_column_too(db_url: str, tmp_path: Path, extra: list[str]) -> None:
    log = _log(tmp_path)
    trained = ok("train", log, "--map", CLEAN, "--no-tune", "--no-carbon", "--database-url", db_url)
    extra = [trained["model_version"] if a == "RECORDED" else a for a in extra]
    before = _counts(db_url)
    pack = _pack(tmp_path, consent=False)
    result = invoke("gate", log, "--pack", pack, "--map", LEAKED, *extra, "--out", tmp_path / "out", "--database-url", db_url)
    assert result.exit_code == 2, result.output
    assert "event field value reads column 'gender' (gender)" in result.stderr
    assert _counts(db_url) == before
    # the same data mapped cleanly is audited as before
    clean = invoke("gate", log, "--pack", pack, "--map", CLEAN, *extra, "--out", tmp_path / "out", "--database-url", db_url)
    assert clean.exit_code in (0, 1), clean.output
    assert count(db_url, "audit_runs") == before["audit_runs"] + 1


def test_an_ablation_under_a_pack_refuses_a_forbidden_column_before_any_fit(tmp_path: Path) -> None:
    """``recgov evaluate --ablate --pack`` fits ALS on the mapped columns: held to the pack's forbidden attributes as
    ``--families`` under a pack already was."""
    pack = _pack(tmp_path, consent=False)
    args = ("evaluate", _log(tmp_path), "--no-tune", "--ablate", "--bootstrap", "20", "--pack", pack, "--map")
    result = invoke(*args, LEAKED)
    assert result.exit_code == 2, result.output
    assert "event field value reads column 'gender' (gender); it is not fitted" in result.stderr
