"""Feedback, red-teamed, on SQLite and PostgreSQL: an event_id reused for another event is refused with its line, never
counted as already recorded (which dropped the second event in silence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import Store, open_store
from audits.models import OutcomeEvent
from governance.cli import app
from governance.feedback import FeedbackRefused, record_feedback
from tests.governance.test_feedback import T0, _decide

runner = CliRunner()
REUSED = "the event_id already names another event of this subject"


def _stored(store: Store) -> list[tuple[str, str]]:
    with store.session() as session:
        return sorted((e.kind, e.item_id) for e in session.scalars(select(OutcomeEvent)))


def test_an_event_id_reused_for_another_event_is_refused_with_its_line_and_the_same_event_still_adds_nothing(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    try:
        _decide(store, "fb-reuse-0001", T0, ["i1", "i2"])
    finally:
        store.close()
    path = tmp_path / "events.csv"
    path.write_text(
        "subject,item,kind,time,event_id\n"
        "fb-reuse-0001,i1,click,2026-03-01T12:05:00Z,e1\n"
        "fb-reuse-0001,i2,click,2026-03-01T12:06:00Z,e1\n"  # another event under the same id
        "fb-reuse-0001,i1,click,2026-03-01T12:05:00Z,e1\n"  # the first event again: the same event
        "fb-reuse-0001,i2,conversion,2026-03-01T12:07:00Z,e2\n",
        encoding="utf-8",
    )
    args = ["feedback", "import", str(path), "--database-url", db_url, "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output
    doc = json.loads(first.stdout)
    assert (doc["added"], doc["already_recorded"], doc["invalid"]) == (2, 1, 1)
    assert [(p["line"], p["field"]) for p in doc["problems"]] == [(3, "event_id")] and REUSED in doc["problems"][0]["reason"]
    again = json.loads(runner.invoke(app, args).stdout)
    assert (again["added"], again["already_recorded"], again["invalid"]) == (0, 3, 1)
    later = tmp_path / "later.csv"  # the id comes back in another file, for yet another event: refused against the store
    later.write_text("subject,item,kind,time,event_id\nfb-reuse-0001,i1,impression,2026-03-01T12:08:00Z,e2\n", encoding="utf-8")
    refused = runner.invoke(app, ["feedback", "import", str(later), "--database-url", db_url])
    assert refused.exit_code == 1 and "line 2: event_id: " + REUSED in refused.output, refused.output
    store = open_store(db_url)
    try:
        assert _stored(store) == [("click", "i1"), ("conversion", "i2")]
    finally:
        store.close()


def test_the_api_body_with_a_reused_event_id_is_refused_whole(store: Store) -> None:
    _decide(store, "fb-reuse-0002", T0, ["i1", "i2"])
    events = [
        {"subject": "fb-reuse-0002", "item": "i1", "kind": "click", "time": "2026-03-01T12:05:00Z", "event_id": "x"},
        {"subject": "fb-reuse-0002", "item": "i2", "kind": "click", "time": "2026-03-01T12:05:00Z", "event_id": "x"},
    ]
    with pytest.raises(FeedbackRefused) as refused:
        record_feedback(store, events)
    assert [(p.field, p.reason[: len(REUSED)]) for p in refused.value.problems] == [("event_id", REUSED)]
    assert _stored(store) == []
    assert record_feedback(store, events[:1]).added == 1
    assert record_feedback(store, events[:1]).already_recorded == 1
