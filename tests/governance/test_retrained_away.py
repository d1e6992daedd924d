"""A model version a full retrain after an erasure replaced is never deployed again, on SQLite and PostgreSQL.

``recgov retrain run`` trains a model without the erased subject to replace every version trained on their data,
and completes the erasure's retrain request. The replaced version, displaced from production to shadow when the
retrain was promoted, came back with ``recgov deploy rollback`` (or by promotion): the model the retrain was the
remedy for served again, as if nothing was owed. Now both refuse it, naming the retrain that replaced it.
"""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke, ok

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def _promote(db_url: str, version: str, tmp_path: Path, *stages: str) -> None:
    for stage in stages:
        extra = () if stage == "shadow" else ("--data", DATA, "--out", tmp_path / f"gate-{version}-{stage}")
        ok("deploy", "promote", version, "--to", stage, *extra, "--database-url", db_url)


def test_rollback_and_promotion_refuse_a_version_a_retrain_replaced(db_url: str, recgov_home: Path, tmp_path: Path) -> None:
    first = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--database-url", db_url)["model_version"]
    for stage in ("canary", "production"):
        assert invoke("deploy", "policy", "set", stage, "--pack", "baseline", "--database-url", db_url).exit_code == 0
    _promote(db_url, first, tmp_path, "shadow", "canary", "production")
    erased = ok("subject", "erase", "--approximate", "u000003", "--pack", "baseline", "--no-residual", "--database-url", db_url)
    assert first in erased["retrain"]["request"]["models"]
    run = ok("retrain", "run", DATA, "--pack", "baseline", "--no-carbon", "--database-url", db_url)
    (entry,) = run["retrained"]
    second = entry["version"]
    assert first in entry["replaces"] and [r["status"] for r in run["requests"]] == ["completed"]
    _promote(db_url, second, tmp_path, "shadow", "canary", "production")  # the first goes back to shadow

    back = invoke("deploy", "rollback", "--database-url", db_url)
    assert back.exit_code == 2, back.output
    said = " ".join(back.stderr.split())
    assert f"{first!r}, kept in shadow, cannot come back" in said and f"a full retrain after an erasure replaced it ({second}" in said
    again = invoke("deploy", "promote", first, "--to", "canary", "--data", DATA, "--database-url", db_url)
    assert again.exit_code == 2 and "a full retrain after an erasure replaced it" in " ".join(again.stderr.split()), again.output
    status = ok("deploy", "status", "--database-url", db_url)
    assert [d["model_version"] for d in status["production"]] == [second]
