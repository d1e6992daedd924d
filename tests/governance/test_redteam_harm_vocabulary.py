"""Red team: harm categories are a vocabulary; a flag the pack cannot act on is refused, never silently inert.

On SQLite and PostgreSQL, over the real CLI runner. Each test names the hole it pins.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.harm import flag_item
from audits.models import ItemFlag
from governance.cli import app
from governance.escalation import UNKNOWN_HARM_CATEGORY, evaluate_escalations, items_out_of_lists
from governance.policy import load_pack

runner = CliRunner()
EU = load_pack("policies/eu-gdpr-dsa.yaml")


def _flags(db_url: str) -> int:
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            return connection.execute(select(func.count()).select_from(ItemFlag)).scalar_one()
    finally:
        store.close()


def test_a_misspelt_category_is_refused_with_the_known_ones(db_url: str) -> None:
    """Hole: `harm flag --category self_harm` was stored and then blocked nothing under a pack that blocks `self-harm`."""
    result = runner.invoke(app, ["harm", "flag", "i000007", "--category", "self_harm", "--confidence", "0.95", "--pack", "eu-gdpr-dsa", "--database-url", db_url])
    assert result.exit_code == 2
    known = ", ".join(EU.pack.harmful_content.known_categories())
    expected = UNKNOWN_HARM_CATEGORY.format(category="self_harm", pack="eu-gdpr-dsa", known=known)
    assert result.stderr.strip() == f"error: {expected}"
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert _flags(db_url) == 0  # nothing stored


def test_the_default_pack_checks_the_category_too(db_url: str) -> None:
    """Hole: without a pack, any string was a category; the default (baseline) vocabulary now applies."""
    result = runner.invoke(app, ["harm", "flag", "i000008", "--category", "self harm", "--confidence", "0.5", "--database-url", db_url])
    assert result.exit_code == 2 and "is not one pack baseline knows" in result.stderr
    assert _flags(db_url) == 0


def test_a_known_category_says_what_it_does(db_url: str) -> None:
    """Hole: a flag was accepted without saying whether the pack would act on it; the answer now states its effect."""
    blocked = runner.invoke(app, ["harm", "flag", "i000009", "--category", "self-harm", "--confidence", "0.95", "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert blocked.exit_code == 0, blocked.output
    doc = json.loads(blocked.stdout)
    assert doc["pack"] == "eu-gdpr-dsa" and "keeps it out of lists (a blocked category)" in doc["effect"]
    assert doc["in_catalogue"] is False  # no model is recorded: the effect says no list holds it now
    counted = runner.invoke(app, ["harm", "flag", "i000010", "--category", "violence", "--confidence", "0.95", "--pack", "eu-gdpr-dsa", "--database-url", db_url])
    assert counted.exit_code == 0, counted.output
    assert "does not block 'violence'" in counted.stdout


def test_a_stored_flag_the_pack_does_not_know_goes_to_review(store) -> None:  # noqa: ANN001
    """Hole: a flag written under another pack (or straight to the store) with a category the evaluating pack does
    not know did nothing at all; it now opens a review case and keeps the item out of lists meanwhile."""
    with store.session() as session:
        flag_item(session, item_id="i-unknown", category="self_harm", confidence=0.99, source="model")
        opened = evaluate_escalations(session, EU.pack)
        assert [(c["item_id"], c["rule"]) for c in opened] == [("i-unknown", "harm.unknown_category")]
        assert "i-unknown" in items_out_of_lists(session, EU.pack)
        assert evaluate_escalations(session, EU.pack) == []  # one case, not one per round
