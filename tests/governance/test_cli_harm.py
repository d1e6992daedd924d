"""``recgov harm`` on SQLite and PostgreSQL: flags, reports, the scheduled rules, the case workflow."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.models import EscalationCase, ItemBlock, ItemReport, TrailEvent
from governance.cli import app as cli
from governance.cli.policy import resolve_pack
from governance.policy import load_pack

runner = CliRunner()


def _harm(db_url: str, *args: str):
    return runner.invoke(cli, ["harm", *args, "--database-url", db_url])


def _json(result) -> dict:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _documents(text: str) -> list[dict]:
    """The JSON documents printed one after another (one per round)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
        while at < len(text) and text[at].isspace():
            at += 1
    return docs


def test_a_flag_below_the_block_confidence_opens_a_review_case_and_a_block_follows(db_url: str) -> None:
    flag = _json(_harm(db_url, "flag", "i000007", "--category", "self-harm", "--confidence", "0.5", "--json"))
    assert flag["item_id"] == "i000007" and flag["confidence"] == 0.5
    rounds = _harm(db_url, "evaluate", "--pack", "eu-gdpr-dsa", "--every", "1", "--times", "2", "--json")
    assert rounds.exit_code == 0, rounds.output
    docs = _documents(rounds.stdout)
    assert [d["round"] for d in docs] == [1, 2]
    assert [c["rule"] for c in docs[0]["opened"]] == ["harm.review"] and docs[1]["opened"] == []  # not opened twice
    case_id = docs[0]["opened"][0]["case_id"]
    listed = _json(_harm(db_url, "cases", "--status", "open", "--json"))["cases"]
    assert [c["id"] for c in listed] == [case_id]
    moved = _json(_harm(db_url, "case", str(case_id), "--to", "resolved", "--action", "block", "--note", "confirmed", "--json"))
    assert moved == {"case_id": case_id, "item_id": "i000007", "status": "resolved", "action": "block", "still_held": []}
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert [b.item_id for b in session.scalars(select(ItemBlock).where(ItemBlock.blocked.is_(True)))] == ["i000007"]
            assert session.get(EscalationCase, case_id).resolution == "confirmed"
            actions = list(session.scalars(select(TrailEvent.action).order_by(TrailEvent.seq)))
    finally:
        store.close()
    assert {"item.flagged", "case.opened", "case.resolved", "item.blocked"} <= set(actions)


def test_reports_are_pseudonymous_and_open_a_case_at_the_pack_count(db_url: str) -> None:
    for n in range(5):
        _json(_harm(db_url, "report", "i000003", "--reason", "disturbing", "--reporter", f"u00004{n}", "--json"))
    opened = _json(_harm(db_url, "evaluate", "--pack", "eu-gdpr-dsa", "--json"))["opened"]
    store = open_store(db_url)
    try:
        with store.session() as session:
            reporters = list(session.scalars(select(ItemReport.reporter)))
    finally:
        store.close()
    assert len(reporters) == 5 and all(r and len(r) == 64 and not r.startswith("u0") for r in reporters)
    needed = load_pack(resolve_pack("eu-gdpr-dsa")).pack.harmful_content.reports_to_escalate
    assert [c["rule"] for c in opened] == (["harm.reports"] if 5 >= needed else [])


def test_bad_input_is_one_line_and_changes_nothing(db_url: str) -> None:
    cases = [
        (["flag", "i1", "--category", "violence", "--confidence", "1.5"], "confidence must be a number from 0 to 1"),
        (["flag", "i1", "--category", "violence", "--confidence", "0.5", "--source", "rumour"], "source"),
        (["case", "999", "--to", "resolved"], "999"),
        (["evaluate", "--times", "2"], "--times needs --every"),
        (["cases", "--status", "lost"], "status"),
    ]
    for args, message in cases:
        result = _harm(db_url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, (args, result.stderr)
    bad_pack = _harm(db_url, "evaluate", "--pack", "no-such-pack")
    assert bad_pack.exit_code == 2 and "Traceback" not in bad_pack.output
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert list(session.scalars(select(TrailEvent.action).where(TrailEvent.action.like("item.%")))) == []
    finally:
        store.close()
