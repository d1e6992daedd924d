"""Red team, through the CLI on SQLite and PostgreSQL: blocks, new items and flags stored under a wrong spelling.

Holes pinned:

* there was no way to block an item by hand (``recgov harm block``), and the store's ``block_item`` took any
  spelling: a block on ``I00047`` when lists hold ``i00047`` keeps nothing out. Now a block is checked as a flag is;
* an item whose id is a near spelling of a catalogue's (``I9`` beside ``i9``) could not be flagged at all. Now
  ``--new-item`` says it is another item: the write goes ahead and its trail event records the claim and the
  spellings it overrode; the claim on an id a catalogue holds exactly is refused;
* flags stored before the catalogue check under a wrong spelling were never reconciled. ``recgov harm flags``
  lists every flag marked with whether the catalogue holds its item and the catalogue's spelling, exiting 1 while
  such a flag is active.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.catalogue import clear_catalogue_cache
from audits.models import ItemBlock, ItemFlag, ItemReport, TrailEvent
from governance.cli import app

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=60,n_interactions=3000,seed=5"


def _cli(db_url: str, *args: str):
    return runner.invoke(app, [*args, "--database-url", db_url])


@pytest.fixture
def version(db_url: str) -> str:
    """A store with one trained model, which serves i00047."""
    clear_catalogue_cache()
    result = _cli(db_url, "train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["model_version"]


def _count(db_url: str, table) -> int:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return session.scalar(select(func.count()).select_from(table))
    finally:
        store.close()


def _events(db_url: str, action: str) -> list[TrailEvent]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.scalars(select(TrailEvent).where(TrailEvent.action == action).order_by(TrailEvent.seq)))
    finally:
        store.close()


def test_a_block_is_checked_against_the_catalogue_and_keeps_the_item_out(db_url: str, version: str) -> None:
    before = (_count(db_url, ItemBlock), _count(db_url, TrailEvent))
    refused = _cli(db_url, "harm", "block", "I00047", "--reason", "court order")
    assert refused.exit_code == 2 and "did you mean i00047?" in refused.output and "nothing was stored" in refused.output
    assert (_count(db_url, ItemBlock), _count(db_url, TrailEvent)) == before

    blocked = _cli(db_url, "harm", "block", "i00047", "--reason", "court order", "--json")
    assert blocked.exit_code == 0, blocked.output
    answer = json.loads(blocked.stdout)
    assert answer["blocked"] is True and answer["in_catalogue"] is True and answer["new_item"] is False
    served = _cli(db_url, "recommend", "u000001", "--model", version, "--k", "60", "--json")
    assert served.exit_code == 0, served.output
    assert "i00047" not in {i["item_id"] for i in json.loads(served.stdout)["items"]}

    lifted = _cli(db_url, "harm", "block", "i00047", "--unblock", "--reason", "order lifted")
    assert lifted.exit_code == 0 and "item i00047 unblocked" in lifted.output and "stays out" not in lifted.output

    # An unblock does not lift what else keeps the item out, and says so rather than claim it is back in lists.
    assert _cli(db_url, "harm", "flag", "i00047", "--category", "self-harm", "--confidence", "0.99", "--pack", "eu-gdpr-dsa").exit_code == 0
    held = _cli(db_url, "harm", "block", "i00047", "--unblock", "--reason", "order lifted again", "--json")
    assert held.exit_code == 0, held.output
    (hold,) = json.loads(held.stdout)["still_held"]
    assert "(self-harm) is active" in hold and "under a pack that blocks 'self-harm'" in hold
    assert [e.action for e in _events(db_url, "item.blocked") + _events(db_url, "item.unblocked")] == ["item.blocked", "item.unblocked", "item.unblocked"]


def test_new_item_lets_a_near_spelling_through_and_is_on_the_trail(db_url: str, version: str) -> None:
    flag = _cli(db_url, "harm", "flag", "I00047", "--category", "spam", "--confidence", "0.5", "--new-item", "--json")
    assert flag.exit_code == 0, flag.output
    answer = json.loads(flag.stdout)
    assert answer["item_id"] == "I00047" and answer["in_catalogue"] is False and answer["new_item"] is True
    assert answer["near"] == ["i00047"]
    report = _cli(db_url, "harm", "report", "I00047", "--reason", "spam", "--new-item", "--json")
    assert report.exit_code == 0, report.output
    block = _cli(db_url, "harm", "block", "I00047", "--reason", "another item, spam", "--new-item", "--json")
    assert block.exit_code == 0, block.output
    for action in ("item.flagged", "item.reported", "item.blocked"):
        (event,) = _events(db_url, action)
        assert json.loads(event.payload)["new_item"] == {"near": ["i00047"], "near_in": f"model {version} (recorded, not deployed)"}, action

    listed = _cli(db_url, "harm", "flags", "--json")  # claimed a new item: not a misspelling
    assert listed.exit_code == 0 and json.loads(listed.stdout)["flags"][0]["claimed_new"] is True, listed.output

    before = (_count(db_url, ItemFlag), _count(db_url, ItemReport), _count(db_url, TrailEvent))
    for args in (
        ("flag", "i00047", "--category", "spam", "--confidence", "0.5"),
        ("report", "i00047", "--reason", "spam"),
        ("block", "i00047", "--reason", "spam"),
    ):
        claimed = _cli(db_url, "harm", *args, "--new-item")
        assert claimed.exit_code == 2, claimed.output
        assert "'i00047' is in model" in claimed.output and "it is not a new item" in claimed.output
    assert (_count(db_url, ItemFlag), _count(db_url, ItemReport), _count(db_url, TrailEvent)) == before


def test_flags_stored_under_a_wrong_spelling_are_listed_as_such(db_url: str) -> None:
    """A flag stored before any model was recorded (no catalogue: every id is accepted) under a spelling the model
    trained later does not serve keeps nothing out of its lists: the listing says so, and names the spelling."""
    clear_catalogue_cache()
    early = _cli(db_url, "harm", "flag", "I00047", "--category", "spam", "--confidence", "0.9", "--json")
    assert early.exit_code == 0 and json.loads(early.stdout)["in_catalogue"] is False, early.output
    assert _cli(db_url, "harm", "flags").exit_code == 0  # no catalogue yet: nothing to reconcile against
    trained = _cli(db_url, "train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json")
    assert trained.exit_code == 0, trained.output
    assert _cli(db_url, "harm", "flag", "i00012", "--category", "spam", "--confidence", "0.5").exit_code == 0

    listed = _cli(db_url, "harm", "flags", "--json")
    assert listed.exit_code == 1, listed.output
    doc = json.loads(listed.stdout)
    by_item = {f["item_id"]: f for f in doc["flags"]}
    assert by_item["I00047"]["in_catalogue"] is False and by_item["I00047"]["near"] == ["i00047"]
    assert by_item["i00012"]["in_catalogue"] is True and by_item["i00012"]["near"] == []
    assert doc["misspelt"] == [by_item["I00047"]["id"]]
    table = _cli(db_url, "harm", "flags")
    assert table.exit_code == 1 and "did you mean i00047?" in table.output

    # Reconciled: the catalogue's id flagged, the misspelt flag switched off (on the trail): nothing left to say.
    assert _cli(db_url, "harm", "flag", "i00047", "--category", "spam", "--confidence", "0.9").exit_code == 0
    off = _cli(db_url, "harm", "unflag", str(by_item["I00047"]["id"]), "--note", "misspelt; flagged again as i00047")
    assert off.exit_code == 0, off.output
    assert _cli(db_url, "harm", "flags").exit_code == 0
    assert _cli(db_url, "harm", "flags", "--all").exit_code == 0  # the switched-off flag is listed, not a finding
    assert _events(db_url, "item.flag_deactivated")


def test_a_case_resolved_with_an_unblock_says_what_still_holds_the_item(db_url: str, version: str) -> None:
    """``harm case --action unblock`` printed "item ... unblocked" while an active flag (under a pack that blocks its
    category) or another case under review kept the item out of lists; it says so now, as ``block --unblock`` does."""
    for n in range(3):  # the baseline pack opens a case at three reports
        assert _cli(db_url, "harm", "report", "i00047", "--reason", f"abusive ({n})").exit_code == 0
    opened = _cli(db_url, "harm", "evaluate", "--pack", "baseline", "--json")
    assert opened.exit_code == 0, opened.output
    (case,) = [c for c in json.loads(opened.stdout)["opened"] if c["item_id"] == "i00047"]
    blocked = _cli(db_url, "harm", "case", str(case["case_id"]), "--to", "triaged", "--action", "block", "--json")
    assert blocked.exit_code == 0 and json.loads(blocked.stdout)["still_held"] == [], blocked.output
    flag = _cli(db_url, "harm", "flag", "i00047", "--category", "self-harm", "--confidence", "0.99", "--pack", "eu-gdpr-dsa", "--json")
    assert flag.exit_code == 0, flag.output
    flag_id = json.loads(flag.stdout)["flag_id"]

    resolved = _cli(db_url, "harm", "case", str(case["case_id"]), "--to", "resolved", "--action", "unblock", "--note", "not abusive")
    assert resolved.exit_code == 0, resolved.output
    words = " ".join(resolved.output.split())
    assert "item i00047 unblocked" in words
    assert f"it stays out of lists meanwhile: flag {flag_id} (self-harm) is active: under a pack that blocks 'self-harm'" in words
