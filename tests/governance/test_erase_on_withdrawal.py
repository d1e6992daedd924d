"""A pack that erases on withdrawal (GDPR Art. 17(1)(b)): the withdrawal opens the erasure request,
which `recgov subject erase` then carries out; on SQLite and PostgreSQL, from the CLI and the API."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.models import SubjectRequest, TrailEvent
from governance.cli import app
from governance.policy import PolicyError, parse_pack

ROOT = Path(__file__).resolve().parents[2]
EU_TEXT = (ROOT / "policies" / "eu-gdpr-dsa.yaml").read_text()
ERASING = EU_TEXT.replace("      model: opt_in\n", "      model: opt_in\n      erase_on_withdrawal: true\n", 1)
SUBJECT = "withdrawing-subject-Q7x"
runner = CliRunner()


@pytest.fixture
def erasing_pack(tmp_path: Path) -> Path:
    assert ERASING != EU_TEXT, "the EU pack's personalization purpose must be found to switch erase_on_withdrawal on"
    path = tmp_path / "eu-erasing.yaml"
    path.write_text(ERASING)
    return path


def _consent(db_url: str, pack: Path | str, status: str):  # noqa: ANN202
    result = runner.invoke(
        app, ["consent", "set", SUBJECT, "--purpose", "personalization", "--status", status, "--pack", str(pack), "--database-url", db_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _requests(db_url: str) -> list[SubjectRequest]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.scalars(select(SubjectRequest).where(SubjectRequest.kind == "erasure").order_by(SubjectRequest.id)))
    finally:
        store.close()


def test_a_withdrawal_opens_one_erasure_request_which_the_erasure_carries_out(db_url: str, erasing_pack: Path) -> None:
    assert _consent(db_url, erasing_pack, "granted")["erasure_request"] is None
    withdrawn = _consent(db_url, erasing_pack, "withdrawn")
    opened = withdrawn["erasure_request"]
    assert opened is not None and opened["status"] == "received"
    (request,) = _requests(db_url)
    assert request.id == opened["id"] and request.deadline - request.requested_at == timedelta(days=30)
    assert request.result["trigger"] == "withdrawn" and request.result["purpose"] == "personalization"
    assert SUBJECT not in json.dumps(request.result)
    # a second restriction does not open a second request while the first waits
    assert _consent(db_url, erasing_pack, "objected")["erasure_request"]["id"] == opened["id"]
    erased = runner.invoke(app, ["subject", "erase", SUBJECT, "--pack", str(erasing_pack), "--database-url", db_url, "--json"])
    assert erased.exit_code == 0, erased.output
    (done,) = _requests(db_url)  # the same request, carried out: not a second one
    assert done.id == opened["id"] and done.status == "completed"
    store = open_store(db_url)
    try:
        with store.session() as session:
            events = session.execute(
                select(TrailEvent.action, TrailEvent.payload).where(TrailEvent.action.like("subject_request.%")).order_by(TrailEvent.seq)
            ).all()
    finally:
        store.close()
    opened_kinds = [json.loads(payload)["kind"] for action, payload in events if action == "subject_request.opened"]
    assert opened_kinds.count("erasure") == 1  # opened by the withdrawal, never again by the erasure
    assert [a for a, _ in events if a != "subject_request.opened"][:2] == ["subject_request.in_progress", "subject_request.completed"]


def test_without_the_pack_switch_a_withdrawal_only_stops_profiling(db_url: str) -> None:
    _consent(db_url, "eu-gdpr-dsa", "granted")
    assert _consent(db_url, "eu-gdpr-dsa", "withdrawn")["erasure_request"] is None
    assert _requests(db_url) == []


def test_the_switch_must_be_a_boolean_and_is_located() -> None:
    broken = EU_TEXT.replace("      model: opt_in\n", "      model: opt_in\n      erase_on_withdrawal: sometimes\n", 1)
    with pytest.raises(PolicyError) as info:
        parse_pack(broken, "eu.yaml")
    (issue,) = [i for i in info.value.issues if "erase_on_withdrawal" in str(i)]
    line = broken.splitlines().index("      erase_on_withdrawal: sometimes") + 1
    assert f"eu.yaml:{line}:" in str(issue)


def test_a_numeric_subject_id_equal_to_a_record_id_still_withdraws(db_url: str, erasing_pack: Path) -> None:
    # The withdrawal's erasure request names the consent record by its id; a subject whose numeric
    # id equals that id must still be able to withdraw (GDPR Art. 7(3)), and still never be stored raw.
    numeric = "0002"
    for status in ("granted", "withdrawn"):
        result = runner.invoke(
            app, ["consent", "set", numeric, "--purpose", "personalization", "--status", status, "--pack", str(erasing_pack), "--database-url", db_url, "--json"]
        )
        assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["recorded"]["id"] == 2 and doc["erasure_request"] is not None
    (request,) = _requests(db_url)
    assert request.result["consent_record"] == 2
