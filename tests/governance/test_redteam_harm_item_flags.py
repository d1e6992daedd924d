"""Red team, through the CLI on SQLite and PostgreSQL: item-table harm flags are read against the pack's vocabulary.

Hole pinned: a dataset's item table flagging items ``harmful:<category>`` with a category the pack does not
know (``self-harm`` under a pack that knows ``violence`` and ``hate``) blocked nothing, with nothing said: the
items were served, ``recgov policy validate PACK --data DATA`` passed, and the audit's gate passed. Now such
items stay out of lists (as the store's ``harm.unknown_category`` case keeps a stored flag's item out), the
engine warns naming the unknown and the known categories, and validation and the audit report an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from governance.harm_vocabulary import UNKNOWN_ITEM_CATEGORIES, VOCABULARY_RULE_ID, item_harm_categories
from recommender.loaders import load_data

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=60,n_interactions=3000,seed=5,harmful_share=0.4"
KNOWN = ("adult", "hate", "violence")
PACK = """\
apiVersion: recgov/v1
metadata: {name: harm-vocab, version: 0.1.0, owner: tests}
carbon: {measure: false}
quality: {tune: false}
harmful_content:
  categories: [violence, hate]
  blocked_categories: [adult]
"""


@pytest.fixture(scope="module")
def flagged() -> dict[str, set[str]]:
    """Item id -> the harm categories the synthetic item table flags it with."""
    items = load_data(DATA).items
    out = {}
    for item, flags in items["flags"].items():
        categories = {p.split(":", 1)[1] for p in str(flags).split("|") if p.startswith("harmful:")}
        if categories:
            out[str(item)] = categories
    unknown = {c for cs in out.values() for c in cs} - set(KNOWN)
    assert unknown, "the data must flag a category the pack does not know"
    return out


def _pack(tmp_path: Path) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    return path


def test_served_lists_keep_items_of_unknown_categories_out_and_warn(db_url: str, tmp_path: Path, flagged, caplog) -> None:  # noqa: ANN001
    """Hole: an item flagged with a category the pack does not know was served (the flag blocked nothing)."""
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    caplog.set_level(logging.WARNING, logger="recgov.serving")
    args = ["recommend", "u000001", "--model", version, "--pack", str(_pack(tmp_path)), "--k", "100", "--data", DATA, "--database-url", db_url, "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    served = json.loads(result.stdout)
    kept_out = {item for item, categories in flagged.items() if categories - {"violence", "hate"}}  # blocked or unknown
    assert served["items"] and not {i["item_id"] for i in served["items"]} & kept_out
    assert served["blocked_removed"] == len(kept_out)
    assert {i["item_id"] for i in served["items"]} & {i for i, c in flagged.items() if c <= {"violence", "hate"}}  # known, unblocked: served
    warnings = [r.getMessage() for r in caplog.records if r.name == "recgov.serving" and "does not know" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per engine
    assert "self-harm" in warnings[0] and "known: adult, hate, violence" in warnings[0]


def test_policy_validate_with_data_reports_unknown_categories(tmp_path: Path, flagged) -> None:  # noqa: ANN001
    """Hole: `recgov policy validate PACK --data DATA` passed a pack that could not act on the data's harm flags."""
    result = runner.invoke(app, ["policy", "validate", str(_pack(tmp_path)), "--data", DATA, "--json"])
    assert result.exit_code == 2, result.output
    (issue,) = json.loads(result.stdout)["issues"]
    assert issue["severity"] == "error" and issue["path"] == "harmful_content.categories"
    assert issue["message"].startswith(UNKNOWN_ITEM_CATEGORIES.split("{n_items}")[0])
    assert "self-harm" in issue["message"] and "known: adult, hate, violence" in issue["message"]
    assert runner.invoke(app, ["policy", "validate", "baseline", "--data", DATA]).exit_code == 0  # a pack that knows them


def test_the_audit_reports_an_error_that_blocks_the_gate(db_url: str, tmp_path: Path, flagged) -> None:  # noqa: ANN001
    """Hole: an audit of data whose harm flags the pack cannot act on passed the gate without a word."""
    args = ["gate", DATA, "--pack", str(_pack(tmp_path)), "--no-train", "--out", str(tmp_path / "out"), "--database-url", db_url, "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    (vocabulary,) = [r for r in document["results"] if r["rule_id"] == VOCABULARY_RULE_ID]
    assert vocabulary["status"] == "error" and "self-harm" in vocabulary["message"]
    unknown = {c: n for c, n in item_harm_categories(load_data(DATA).items["flags"]).items() if c not in KNOWN}
    assert vocabulary["evidence"] == {"unknown": unknown, "known": list(KNOWN)}
    assert any(VOCABULARY_RULE_ID in reason for reason in document["decision"]["reasons"])


def test_a_pack_without_a_harm_vocabulary_is_warned_not_failed(tmp_path: Path, flagged) -> None:  # noqa: ANN001
    """A pack that declares no harm categories takes no position on harm: validation warns (serving keeps the
    flagged items out, as above), but it is not an error of the pack."""
    path = tmp_path / "bare.yaml"
    path.write_text(PACK.split("harmful_content:")[0])
    result = runner.invoke(app, ["policy", "validate", str(path), "--data", DATA, "--json"])
    assert result.exit_code == 0, result.output
    (issue,) = json.loads(result.stdout)["issues"]
    assert issue["severity"] == "warning" and "known: none" in issue["message"]
