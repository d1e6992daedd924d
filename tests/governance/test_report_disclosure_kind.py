"""The report's DSA Art. 27 disclosure describes the model family that was trained, not ALS whatever it was; on SQLite
and PostgreSQL.

Regression: the disclosure in the regulator's report said every model was "matrix factorization by alternating least
squares", so a report of an EASE model told the regulator the users were shown lists from a model that was never
trained.
"""

from __future__ import annotations

from pathlib import Path

from audits import Store
from tests.governance.cli_helpers import ok

DATA = "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=5"


def _disclosure(db_url: str, tmp_path: Path, *train: str) -> str:
    version = ok("train", DATA, "--no-tune", "--no-carbon", *train, "--database-url", db_url)["model_version"]
    html = tmp_path / f"{version}.html"
    ok("report", version, "--pack", "baseline", "--out", html, "--database-url", db_url)
    page = html.read_text(encoding="utf-8")
    return page[page.index('id="disclosure"') : page.index('id="policy"')]


def test_an_ease_model_is_disclosed_as_ease(store: Store, db_url: str, tmp_path: Path) -> None:
    shown = _disclosure(db_url, tmp_path, "--family", "ease")
    assert "Recommendations come from the ease model family (EASE (Steck 2019)" in shown
    assert "alternating least squares" not in shown


def test_an_als_model_is_still_disclosed_as_als(store: Store, db_url: str, tmp_path: Path) -> None:
    shown = _disclosure(db_url, tmp_path, "--factors", "4", "--iterations", "2")
    assert "Recommendations come from matrix factorization by alternating least squares" in shown


def test_policy_disclosure_of_an_ease_model_describes_ease(store: Store, db_url: str) -> None:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--family", "ease", "--database-url", db_url)["model_version"]
    doc = ok("policy", "disclosure", "baseline", "--model", version, "--database-url", db_url)
    assert doc["model"]["kind"].startswith("the ease model family (EASE (Steck 2019)")
    assert doc["inputs"] and "alternating least squares" not in doc["model"]["kind"]
