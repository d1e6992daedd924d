"""The minimisation check judges the columns a model was fitted on, in any spelling, on SQLite and PostgreSQL.

Regression: a model trained with ``--map value=gender`` (no pack, or a pack that allows the column) and then
audited with ``--model`` on data mapped cleanly passed ``input_allowlist`` under a pack holding gender audit-only:
the check saw only the audit's own mapping, and the training run did not record which columns it read. And a
mapped column spelt ``Gender`` passed a pack forbidding ``gender``, which the fit's own check refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from audits import open_store
from audits.models import TrainingRun
from tests.governance.cli_helpers import invoke, ok

PACK = """\
apiVersion: recgov/v1
metadata: {name: minimal-inputs, version: 0.1.0, owner: tests}
minimization:
  audit_only_attributes: [gender]
  purposes:
    personalization: {allowed_inputs: [user_id, item_id, event_type, value]}
  rules:
    - id: min-inputs
      check: input_allowlist
      description: Only interaction fields.
carbon:
  measure: false
quality:
  tune: false
"""
CLEAN = "user_id=uid,item_id=sku,timestamp=ts,value=rating"


def _log(tmp_path: Path, gender_column: str = "gender") -> Path:
    log = tmp_path / "log.csv"
    rows = [f"uid,sku,ts,{gender_column},rating"]
    rows += [f"u{u},i{(u * 3 + j) % 40},{1700000000 + u * 100 + j},{u % 2},1" for u in range(120) for j in range(12)]
    log.write_text("\n".join(rows) + "\n")
    return log


def _min_inputs(tmp_path: Path, db_url: str, log: Path, mapping: str, *model: str) -> dict:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    result = invoke("audit", log, "--pack", pack, "--map", mapping, *model, "--out", tmp_path / "out", "--database-url", db_url, "--json")
    assert result.exit_code in (0, 1), result.output
    return {r["rule_id"]: r for r in json.loads(result.stdout)["results"]}["min-inputs"]


def test_an_audit_of_a_recorded_model_judges_the_columns_it_was_trained_on(db_url: str, tmp_path: Path) -> None:
    log = _log(tmp_path)
    trained = ok("train", log, "--map", "user_id=uid,item_id=sku,timestamp=ts,value=gender", "--no-tune", "--no-carbon", "--database-url", db_url)
    store = open_store(db_url)
    try:
        with store.session() as session:
            params = session.scalars(select(TrainingRun.params)).one()
    finally:
        store.close()
    ids = {"event field user_id": "uid", "event field item_id": "sku"}
    assert params["input_sources"] == {**ids, "event field value": "gender"}
    result = _min_inputs(tmp_path, db_url, log, CLEAN, "--model", trained["model_version"])
    assert result["status"] == "fail", result
    assert result["message"] == "forbidden or audit-only attribute(s) reached the model: gender"
    assert result["evidence"]["input_sources"] == {"user_id": "uid", "item_id": "sku", "value": "rating"}
    assert result["evidence"]["trained_input_sources"] == {**ids, "event field value": "gender"}


def test_a_model_trained_on_clean_columns_still_passes(db_url: str, tmp_path: Path) -> None:
    log = _log(tmp_path)
    trained = ok("train", log, "--map", CLEAN, "--no-tune", "--no-carbon", "--database-url", db_url)
    result = _min_inputs(tmp_path, db_url, log, CLEAN, "--model", trained["model_version"])
    assert result["status"] == "pass", result
    assert result["evidence"]["trained_input_sources"] == {"event field user_id": "uid", "event field item_id": "sku", "event field value": "rating"}


def test_a_mapped_column_that_spells_an_audit_only_attribute_otherwise_is_refused(db_url: str, tmp_path: Path) -> None:
    log = _log(tmp_path, gender_column="User_Gender")
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    mapping = "user_id=uid,item_id=sku,timestamp=ts,value=User_Gender"
    result = invoke("audit", log, "--pack", pack, "--map", mapping, "--out", tmp_path / "out", "--database-url", db_url, "--json")
    assert result.exit_code == 2, result.output
    assert "event field value reads column 'User_Gender' (gender)" in result.stderr
