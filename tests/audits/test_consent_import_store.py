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


# -- the bulk path writes what the one-record path writes, and erasure still reaches it --------------------------


def test_imported_rows_read_back_exactly_and_their_keys_are_the_documented_digest(store: Store) -> None:
    """Times to the microsecond, no jurisdiction as NULL, no evidence as {}; each import key is import_key(...)."""
    from audits.consent_import import import_key
    from audits.subjects import pseudonym

    batch = _batch(["erin-40112", "frank-5521"]).assign(
        recorded_at=pd.to_datetime([T0 + timedelta(microseconds=123456), T0 + timedelta(days=3)], utc=True),
        jurisdiction=["EU", None],
        evidence=[{"origin": "crm-export-2026-01"}, None],
    )
    with store.session() as session:
        outcome = append_consent_batch(session, batch, anchor={})
    with store.session() as session:
        erin, frank = consent_history(session, "erin-40112"), consent_history(session, "frank-5521")
        assert [(r["recorded_at"], r["jurisdiction"], r["evidence"]) for r in erin] == [
            (T0 + timedelta(microseconds=123456), "EU", {"origin": "crm-export-2026-01"})
        ]
        assert [(r["recorded_at"], r["jurisdiction"], r["evidence"]) for r in frank] == [(T0 + timedelta(days=3), None, {})]
        stored = set(session.scalars(select(ConsentImportKey.key)))
        who = pseudonym(session, "erin-40112")
        assert import_key(who, "personalization", "granted", "2026-01-05T09:30:00.123456+00:00", "import") in stored
        assert session.scalars(select(ConsentImportKey.trail_seq)).all() == [outcome.trail_seq] * 2


def test_a_subject_known_before_keeps_its_pseudonym_and_record_key(store: Store) -> None:
    """Records imported for a subject with a secret already are theirs: same pseudonym, evidence opens."""
    from audits.consent import record_consent
    from audits.subjects import subject_record_key

    with store.session() as session:
        record_consent(session, subject_id="gina-77310", purpose="analytics", status="granted",
                       lawful_basis="consent", source="api", evidence={"note": "first"}, at=T0)  # fmt: skip
        before = subject_record_key(session, "gina-77310")
    with store.session() as session:
        outcome = append_consent_batch(session, _batch(["gina-77310"]), anchor={})
    assert outcome.added == 1
    with store.session() as session:
        assert subject_record_key(session, "gina-77310") == before
        history = consent_history(session, "gina-77310")
        assert [(r["purpose"], r["evidence"]) for r in history] == [
            ("analytics", {"note": "first"}),
            ("personalization", {"origin": "crm-export-2026-01"}),
        ]
        assert {r["subject"] for r in session.execute(select(ConsentRecordRow.subject)).mappings()} == {before[0]}


def test_a_secret_filed_before_wins_over_the_one_offered(store: Store) -> None:
    """The batch offers a fresh secret for every subject; where one is filed already (earlier, or by another writer
    meanwhile) the store keeps it, the records go under its pseudonym, and only the truly new subject counts as
    created: importing the same rows again finds their keys and adds nothing."""
    from audits.subjects import pseudonym

    with store.session() as session:
        known = pseudonym(session, "hana-60012")
    with store.session() as session:
        outcome = append_consent_batch(session, _batch(["hana-60012", "ivan-81234"]), anchor={})
    with store.session() as session:
        again = append_consent_batch(session, _batch(["hana-60012", "ivan-81234"]), anchor={})
    assert (outcome.added, again.added, again.already_recorded) == (2, 0, 2)
    with store.session() as session:
        assert pseudonym(session, "hana-60012") == known
        assert session.scalar(select(func.count()).where(ConsentRecordRow.subject == known)) == 1
        assert consent_history(session, "hana-60012")[0]["evidence"] == {"origin": "crm-export-2026-01"}


def test_a_subject_given_as_a_number_and_as_its_string_is_one_subject(store: Store) -> None:
    """7 and "7" are the same subject (as audits.pseudonym says): one secret offered, one record kept."""
    from audits.models import SubjectSecret

    batch = _batch(["4242", "4242"]).assign(subject=[4242, "4242"], recorded_at=pd.Timestamp(T0))
    with store.session() as session:
        outcome = append_consent_batch(session, batch, anchor={})
    assert (outcome.added, outcome.already_recorded) == (1, 1)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(SubjectSecret)) == 2  # the secret and the record key


def test_a_record_key_filed_before_the_batch_is_the_one_its_evidence_is_sealed_under(store: Store) -> None:
    """Readers holding only the pseudonym find the filed key: the batch seals under it, not under a derived one."""
    import os

    from sqlalchemy import delete

    from audits.models import SubjectSecret
    from audits.sealing import file_record_keys, find_record_keys, open_evidence
    from audits.subjects import _installation_key, pseudonym, record_key_lookup

    with store.session() as session:
        who = pseudonym(session, "jon-9930001")
        key = _installation_key(session)
    with store.session() as session:  # a key filed under another rule (as older rows had): it must win
        session.execute(delete(SubjectSecret).where(SubjectSecret.lookup == record_key_lookup(key, who)))
        filed = file_record_keys(session, key, {who: os.urandom(32)})[who]
    with store.session() as session:
        append_consent_batch(session, _batch(["jon-9930001"]), anchor={})
    with store.session() as session:
        assert find_record_keys(session, key, [who])[who] == filed
        raw = session.connection().exec_driver_sql("SELECT evidence FROM consent_records").scalar_one()
        sealed = json.loads(raw) if isinstance(raw, str) else raw
        assert open_evidence(filed, who, sealed) == {"origin": "crm-export-2026-01"}
        assert consent_history(session, "jon-9930001")[0]["evidence"] == {"origin": "crm-export-2026-01"}


def test_erasing_an_imported_subject_shreds_what_the_import_sealed(store: Store) -> None:
    """Crypto-shredding reaches imported records: the secret and the record key go, the evidence stays sealed for good,
    the subject comes back with an empty history, and the trail still verifies."""
    from audits.models import SubjectSecret
    from audits.sealing import find_record_keys, is_sealed
    from audits.subjects import _installation_key, shred_subject

    with store.session() as session:
        append_consent_batch(session, _batch(["kim-5501234", "lee-7781234"]), anchor={})
        secrets_before = session.scalar(select(func.count()).select_from(SubjectSecret))
    with store.session() as session:
        old = shred_subject(session, "kim-5501234")
    assert old is not None
    with store.session() as session:
        key = _installation_key(session)
        assert session.scalar(select(func.count()).select_from(SubjectSecret)) == secrets_before - 2
        assert find_record_keys(session, key, [old]) == {}
        assert consent_history(session, "kim-5501234", include_suppressions=False) == []
        raw = session.connection().exec_driver_sql(
            "SELECT evidence FROM consent_records WHERE subject = " + ("%(s)s" if store.dialect == "postgresql" else ":s"),
            {"s": old},
        ).scalar_one()
        sealed = json.loads(raw) if isinstance(raw, str) else raw
        assert is_sealed(sealed) and "crm-export" not in json.dumps(sealed)
        assert consent_history(session, "lee-7781234")[0]["evidence"] == {"origin": "crm-export-2026-01"}
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact


def test_evidence_naming_the_subject_refuses_the_whole_batch(store: Store) -> None:
    """The raw-id guard still runs on the bulk path, and a refused batch writes nothing."""
    import pytest

    from recommender.errors import DataError

    batch = _batch(["mia-4400123", "ned-5500123"]).assign(evidence=[{"note": "called mia-4400123"}, {"origin": "x"}])
    with pytest.raises(DataError, match="raw subject id"):
        with store.session() as session:
            append_consent_batch(session, batch, anchor={})
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ConsentRecordRow)) == 0
        assert session.scalar(select(func.count()).select_from(TrailEvent)) == 0


def test_the_token_cut_out_of_a_sealed_evidence_is_the_one_its_json_holds() -> None:
    """The batch digest reads each record's token from the stored text without parsing it: the same token."""
    import os

    import orjson

    from audits.consent_import import _evidence_token
    from audits.sealing import sealed_evidence_texts

    keys = [os.urandom(32) for _ in range(50)]
    texts = sealed_evidence_texts(keys, [os.urandom(32).hex() for _ in keys], [b'{"banner_version":"2024-11"}'] * 49 + [None])
    assert [_evidence_token(t) for t in texts] == [orjson.loads(t)["sealed"] for t in texts[:-1]] + [None]
    assert _evidence_token('{"sealed":"v1:QUJD"}') == "v1:QUJD"  # another spelling of the same JSON: parsed
