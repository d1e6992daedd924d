"""``POST /v1/recommendations`` serves a model version only under a pack that admits it, on both stores.

A model trained without a pack from a column the serving pack forbids or keeps for audits only (``--map
value=gender``) was served by naming its version: the gate blocks its promotion, but a list request naming it got
a list made from gender. The engine is now built only for a pack that admits the model (the check experiment arms
get: :func:`governance.experiments.packs.model_refused`), else a 409 ``model-not-admitted`` naming why.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli


def _trained(server, log: Path, mapping: str) -> str:
    trained = CliRunner().invoke(cli, ["train", str(log), "--map", mapping, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2",
                                       "--database-url", server.db_url, "--json"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    return json.loads(trained.stdout)["model_version"]


def test_a_model_trained_on_an_audit_only_column_is_not_served_under_a_pack_that_keeps_it_for_audits(server, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    rows = ["uid,sku,ts,gender,rating"] + [f"u{u},i{(u * 3 + j) % 40},{1700000000 + u * 100 + j},{1 + u % 2},1" for u in range(120) for j in range(12)]
    log.write_text("\n".join(rows) + "\n")
    leaked = _trained(server, log, "user_id=uid,item_id=sku,timestamp=ts,value=gender")
    other = tmp_path / "clean.csv"  # other events (the same ones would make the same model, recorded as a reproduction)
    other.write_text("\n".join(["uid,sku,ts,rating"] + [f"u{u},i{(u * 7 + j) % 40},{1700000000 + u * 100 + j},1" for u in range(120) for j in range(12)]) + "\n")
    clean = _trained(server, other, "user_id=uid,item_id=sku,timestamp=ts,value=rating")
    assert clean != leaked
    with server.client("operator") as client:
        for _ in range(2):  # refused again: no engine was kept for it
            refused = client.post("/v1/recommendations", json={"subject": "u1", "k": 3, "model_version": leaked, "pack": "eu-gdpr-dsa"})
            assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON, refused.text
            problem = refused.json()
            assert problem["type"].endswith("/model-not-admitted")
            assert "gender" in problem["detail"] and "eu-gdpr-dsa" in problem["detail"]
        served = client.post("/v1/recommendations", json={"subject": "u1", "k": 3, "model_version": clean, "pack": "eu-gdpr-dsa"})
        assert served.status_code == 200, served.text
        baseline = client.post("/v1/recommendations", json={"subject": "u1", "k": 3, "model_version": leaked, "pack": "baseline"})
        assert baseline.status_code == 200, baseline.text  # a pack that names no such attribute admits it
