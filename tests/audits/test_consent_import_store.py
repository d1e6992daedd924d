"""Bulk consent in the store: a batch is appended once, anchored by one trail event that names no one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from audits import verify_trail
from audits.consent import append_consent_batch, consent_history, effective_consent
from audits.consent_import import IMPORT_ACTION, ConsentImportKey
from audits.db import Store
from audits.models import ConsentRecordRow, TrailEvent

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def _batch(subjects: list[str], status: str = "granted") -> pd.DataFrame:
    n = len(subjects)
    return pd.DataFrame(
        {
            "subject": subjects,
            "purpose": ["personalization"] * n,
            "status": [status] * n,
            "lawful_basis": ["consent"] * n,
            "source": ["import"] * n,
            "jurisdiction": ["EU"] * n,
            "recorded_at": pd.to_datetime([T0 + timedelta(minutes=i) for i in range(n)], utc=True),
            "evidence": [{"origin": "crm-export-2026-01"}] * n,
        }
    )


def test_a_batch_is_appended_once_and_anchored_by_one_event_without_subject_ids(store: Store) -> None:
    subjects = ["alice@example.org", "bob-77812", "carol-99120"]
    with store.session() as session:
        first = append_consent_batch(session, _batch(subjects), anchor={"file_sha256": "ab" * 32, "batch": 1})
    with store.session() as session:
        again = append_consent_batch(session, _batch(subjects), anchor={"file_sha256": "ab" * 32, "batch": 1})
    assert (first.rows, first.added, first.already_recorded) == (3, 3, 0)
    assert (again.rows, again.added, again.already_recorded, again.trail_seq) == (3, 0, 3, None)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ConsentRecordRow)) == 3
        assert session.scalar(select(func.count()).select_from(ConsentImportKey)) == 3
        events = session.scalars(select(TrailEvent).where(TrailEvent.action == IMPORT_ACTION)).all()
        assert len(events) == 1 and events[0].seq == first.trail_seq and events[0].subject is None
        text = json.dumps([events[0].payload, events[0].objects])
        assert all(s not in text for s in subjects)
        payload = json.loads(events[0].payload) if isinstance(events[0].payload, str) else events[0].payload
        assert payload["added"] == 3 and payload["file_sha256"] == "ab" * 32
        history = consent_history(session, "alice@example.org")
        assert [(r["status"], r["evidence"], r["trail_seq"]) for r in history] == [
            ("granted", {"origin": "crm-export-2026-01"}, first.trail_seq)
        ]
        assert effective_consent(session, "bob-77812")["personalization"]["source"] == "import"
        stored = session.scalars(select(ConsentRecordRow.evidence)).all()
        assert all("origin" not in json.dumps(e) for e in stored)  # sealed in the row
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact


def test_duplicate_rows_within_a_batch_are_appended_once(store: Store) -> None:
    with store.session() as session:
        outcome = append_consent_batch(session, _batch(["dave-11111", "dave-11111"]).assign(recorded_at=pd.Timestamp(T0)), anchor={})
    assert (outcome.added, outcome.already_recorded) == (1, 1)
