"""Consent history in SQL: append-only, latest wins (ties: most restrictive), bulk states in one query."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import DBAPIError

from audits import (
    Store,
    consent_history,
    consent_states,
    effective_consent,
    lookup_pseudonyms,
    pseudonym,
    record_consent,
    shred_subject,
    verify_trail,
)
from audits.models import ConsentRecordRow, TrailEvent
from recommender.errors import ConfigError, DataError
from store_dump import dump_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RAW_IDS = ["alice@example.org", "user-8271", "9876543210"]


def _assert_clean(store: Store, raw_ids: list[str] = RAW_IDS) -> None:
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert report.intact, report.summary()
    dump = dump_store(store)
    for raw in raw_ids:
        assert raw not in dump, f"raw id {raw!r} found in the database"


def _record(session, subject="alice@example.org", purpose="personalization", status="granted", **kwargs):
    defaults = {"lawful_basis": "consent", "source": "banner", "at": T0}
    return record_consent(session, subject_id=subject, purpose=purpose, status=status, **(defaults | kwargs))


def _count(store: Store, table: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def test_history_is_kept_in_order_and_the_latest_record_is_in_force(store: Store) -> None:
    with store.session() as session:
        _record(session, evidence={"banner_version": "2026-02", "ui": "web"}, jurisdiction="EU")
        _record(session, purpose="analytics", status="granted", lawful_basis="legitimate_interest", source="api")
    with store.session() as session:
        withdrawal = _record(session, status="withdrawn", source="api", at=T0 + timedelta(days=3))
        _record(
            session,
            purpose="analytics",
            status="objected",
            source="gpc",
            at=T0 + timedelta(days=1),
            evidence={"header": "Sec-GPC: 1"},
            lawful_basis="legitimate_interest",
        )
        who = pseudonym(session, "alice@example.org")
    with store.session() as session:
        history = consent_history(session, "alice@example.org")
        state = effective_consent(session, "alice@example.org")
    assert [(r["purpose"], r["status"]) for r in history] == [
        ("personalization", "granted"),
        ("analytics", "granted"),
        ("analytics", "objected"),
        ("personalization", "withdrawn"),
    ]
    assert history[0]["evidence"] == {"banner_version": "2026-02", "ui": "web"}
    assert history[0]["jurisdiction"] == "EU" and history[0]["recorded_at"] == T0
    assert {p: r["status"] for p, r in state.items()} == {"analytics": "objected", "personalization": "withdrawn"}
    assert list(state) == ["analytics", "personalization"]
    with store.snapshot() as connection:
        row = connection.execute(
            text("SELECT seq, action, subject, objects FROM trail_events WHERE seq = :s"), {"s": withdrawal.trail_seq}
        ).one()
        events = connection.execute(text("SELECT COUNT(*) FROM trail_events WHERE action = 'consent.recorded'"))
        assert events.scalar_one() == 4
    assert (row.action, row.subject, row.objects) == ("consent.recorded", who, '{"purpose":"personalization"}')
    _assert_clean(store)


@pytest.mark.parametrize("order", [("granted", "withdrawn"), ("withdrawn", "granted")])
def test_at_equal_times_the_most_restrictive_status_wins_whatever_the_insert_order(store: Store, order) -> None:
    with store.session() as session:
        for status in order:
            _record(session, status=status)
        for status in ("granted", "opted_out", "objected", "denied"):
            _record(session, subject="user-8271", status=status)
    with store.session() as session:
        assert effective_consent(session, "alice@example.org")["personalization"]["status"] == "withdrawn"
        assert effective_consent(session, "user-8271")["personalization"]["status"] == "denied"
        states = consent_states(session)
    assert sorted(s["personalization"] for s in states.values()) == ["denied", "withdrawn"]


def test_bulk_states_agree_with_per_subject_reads_in_one_query(store: Store) -> None:
    rng = random.Random(7)
    subjects = [f"member-{i:04d}" for i in range(60)]
    statuses = ("granted", "denied", "withdrawn", "opted_out", "objected")
    with store.session() as session:
        for _ in range(400):
            _record(
                session,
                subject=rng.choice(subjects),
                purpose=rng.choice(["personalization", "analytics", "ads"]),
                status=rng.choice(statuses),
                at=T0 + timedelta(hours=rng.randrange(30)),  # many ties on purpose
            )
    with store.session() as session:
        names = lookup_pseudonyms(session, [*subjects, "never-seen"])
        expected = {names[s]: {p: r["status"] for p, r in effective_consent(session, s).items()} for s in subjects}
    assert names["never-seen"] is None
    wanted = [names[s] for s in subjects[:20]]

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    with store.session() as session:
        event.listen(store.engine, "before_cursor_execute", count)
        try:
            everyone = consent_states(session)
            some = consent_states(session, wanted)
        finally:
            event.remove(store.engine, "before_cursor_execute", count)
        assert consent_states(session, []) == {}
    assert len(statements) == 2  # one query each, no per-subject queries
    assert everyone == {k: v for k, v in expected.items() if v}
    assert some == {p: expected[p] for p in wanted if expected[p]}


def test_a_list_longer_than_the_drivers_parameter_limits_is_one_parameter(store: Store) -> None:
    with store.session() as session:
        _record(session)
        who = pseudonym(session, "alice@example.org")
        many = [f"{i:064x}" for i in range(70_000)] + [who]  # SQLite caps at 32,766, psycopg at 65,535
        assert consent_states(session, many) == {who: {"personalization": "granted"}}


def test_reads_never_create_a_pseudonym(store: Store) -> None:
    with store.session() as session:
        assert consent_history(session, "user-8271") == []
        assert effective_consent(session, "user-8271") == {}
        assert lookup_pseudonyms(session, ["user-8271", 9876543210]) == {"user-8271": None, 9876543210: None}
    assert _count(store, "subject_secrets") == 0


BAD_RECORDS = [
    (
        {"status": "revoked"},
        ConfigError,
        "status must be one of granted, denied, withdrawn, opted_out, objected; got 'revoked'",
    ),
    (
        {"lawful_basis": "vital_interest"},
        ConfigError,
        "lawful_basis must be one of consent, legitimate_interest, contract; got 'vital_interest'",
    ),
    ({"source": "email"}, ConfigError, "source must be one of api, banner, tcf, gpc, import; got 'email'"),
    ({"purpose": ""}, DataError, "purpose must be a non-empty string of at most 100 characters, got ''"),
    ({"at": datetime(2026, 3, 1, 9, 0)}, DataError, "at must be a timezone-aware datetime"),
    ({"at": datetime.now(UTC) + timedelta(days=1)}, DataError, "is in the future; times up to 0:05:00 ahead"),
    ({"at": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)}, DataError, r"at \(1969-12-31T23:59:59\+00:00\) is before 1970-01-01"),
    ({"at": datetime(1900, 1, 1, tzinfo=UTC)}, DataError, "a placeholder, a sign error or the wrong unit"),
    (
        {"evidence": {"form": "signup", "user_id": 17}},
        DataError,
        r"evidence must not carry a raw subject id, but the key at \$.user_id does",
    ),
    (
        {"evidence": {"note": "granted by alice@example.org on the phone"}},
        DataError,
        r"evidence must not carry a raw subject id, but the value at \$.note does",
    ),
    ({"evidence": {"score": float("nan")}}, DataError, "evidence: .*not a finite number"),
    ({"evidence": ["tcf"]}, DataError, "evidence must be a JSON object"),
]


def test_bad_records_are_refused_and_nothing_is_written(store: Store) -> None:
    for change, error, message in BAD_RECORDS:
        with pytest.raises(error, match=message), store.session() as session:
            _record(session, **change)
    assert (_count(store, "consent_records"), _count(store, "trail_events")) == (0, 0)
    _assert_clean(store)


def test_the_error_never_repeats_the_raw_id(store: Store) -> None:
    with pytest.raises(DataError) as caught, store.session() as session:
        _record(session, evidence={"who": "alice@example.org"})
    assert "alice@example.org" not in str(caught.value)


def test_the_database_refuses_to_change_or_delete_consent_history(store: Store) -> None:
    with store.session() as session:
        _record(session)
    refused = [
        "UPDATE consent_records SET status = 'granted'",
        "DELETE FROM consent_records",
    ]
    if store.dialect == "postgresql":
        refused.append("TRUNCATE consent_records")
    for statement in refused:
        with pytest.raises(DBAPIError, match="consent_records is refused: the table is append-only"):
            with store.engine.begin() as connection:
                connection.execute(text(statement))
    assert _count(store, "consent_records") == 1


def test_erasure_unlinks_the_history_which_stays_as_evidence_under_the_old_pseudonym(store: Store) -> None:
    with store.session() as session:
        _record(session, status="granted")
        _record(session, subject="user-8271", status="opted_out", lawful_basis="legitimate_interest")
        old = pseudonym(session, "alice@example.org")
    with store.session() as session:
        assert shred_subject(session, "alice@example.org", actor="dpo") == old
    with store.session() as session:
        assert consent_history(session, "alice@example.org") == []
        assert effective_consent(session, "alice@example.org") == {}
        assert effective_consent(session, "user-8271")["personalization"]["status"] == "opted_out"
        assert consent_states(session, [old]) == {old: {"personalization": "granted"}}  # unlinkable evidence
        _record(session, status="denied", at=T0 + timedelta(days=1))  # the person comes back: a new pseudonym
        assert pseudonym(session, "alice@example.org") != old
        assert [r["status"] for r in consent_history(session, "alice@example.org")] == ["denied"]
    assert _count(store, "consent_records") == 3
    _assert_clean(store)


def test_bulk_states_over_many_records_are_fast(store: Store) -> None:
    n_subjects, per_subject = 20_000, 3
    rng = random.Random(1)
    with store.session() as session:
        _record(session)  # a real trail event for the rows' trail_seq
        seq = session.execute(text("SELECT MAX(seq) FROM trail_events")).scalar_one()
        rows = [
            {
                "subject": f"{s:064x}",
                "purpose": purpose,
                "status": rng.choice(("granted", "withdrawn", "objected")),
                "lawful_basis": "consent",
                "source": "import",
                "evidence": {},
                "recorded_at": T0 + timedelta(minutes=rng.randrange(1000)),
                "trail_seq": seq,
            }
            for s in range(n_subjects)
            for purpose in ("personalization", "analytics", "ads")[:per_subject]
        ]
        session.execute(insert(ConsentRecordRow), rows)
    started = time.perf_counter()
    with store.session() as session:
        states = consent_states(session)
    elapsed = time.perf_counter() - started
    print(
        f"\nconsent_states on {store.dialect}: {len(rows) + 1:,} records, {len(states):,} subjects "
        f"in {elapsed:.2f} s ({(len(rows) + 1) / elapsed:,.0f} records/s)"
    )
    assert len(states) == n_subjects + 1
    assert elapsed < 20


def test_consent_trail_event_precedes_its_row_and_names_only_the_pseudonym(store: Store) -> None:
    with store.session() as session:
        row = _record(session, subject=9876543210, evidence={"tcf": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"})
        who = pseudonym(session, "9876543210")
        event_row = session.get(TrailEvent, row.trail_seq)
    assert row.subject == who and event_row.subject == who
    assert "9876543210" not in event_row.payload + event_row.objects
    _assert_clean(store)


def test_short_ids_do_not_trip_the_raw_id_guard_on_innocent_values(store: Store) -> None:
    with store.session() as session:
        _record(session, subject=7, evidence={"banner_version": 7, "ui": "7"})
        assert [r["evidence"] for r in consent_history(session, 7)] == [{"banner_version": 7, "ui": "7"}]
    with pytest.raises(DataError, match=r"the key at \$.user_id"), store.session() as session:
        _record(session, subject=7, evidence={"user_id": 7})  # an identifier key is refused whatever the id


def test_the_read_only_history_is_the_history_and_writes_nothing(store: Store) -> None:
    from audits.consent import read_consent_history
    from audits.suppression import suppress_subject

    with store.snapshot() as connection:  # an unkeyed store: the read keys nothing and creates no secret
        assert read_consent_history(connection, "nobody") == []
    assert _count(store, "store_meta") == 0 and _count(store, "subject_secrets") == 0
    with store.session() as session:
        _record(session, status="granted")
        _record(session, status="withdrawn", at=T0 + timedelta(hours=1))
        _record(session, subject="bob", purpose="analytics", status="objected", lawful_basis="legitimate_interest", evidence={"form": "v2"})
        suppress_subject(session, "carol", denied={"personalization": {"status": "opted_out", "lawful_basis": "consent"}}, erased_at=T0)
        _record(session, subject="carol", status="granted", at=T0 + timedelta(hours=2))  # back, and opted in again
    for subject in ("alice@example.org", "bob", "carol", "nobody"):
        with store.session() as session:
            expected = consent_history(session, subject)
        with store.snapshot() as connection:
            assert read_consent_history(connection, subject) == expected, subject
    with store.snapshot() as connection:
        carol = read_consent_history(connection, "carol")
        assert [(r["source"], r["status"]) for r in carol] == [("import", "opted_out"), ("banner", "granted")]
        assert read_consent_history(connection, "nobody") == []


def test_the_read_only_history_refuses_another_installation_key_and_a_readable_key_file(
    store: Store, monkeypatch: pytest.MonkeyPatch, recgov_home
) -> None:
    from audits.consent import read_consent_history

    with store.session() as session:
        _record(session)
    with store.snapshot() as connection:
        assert len(read_consent_history(connection, "alice@example.org")) == 1
    key_file = recgov_home / "keys" / "installation.key"
    key_file.chmod(0o644)  # the key file readable by others: refused from the next read on
    try:
        with pytest.raises(ConfigError, match="readable by others"), store.snapshot() as connection:
            read_consent_history(connection, "alice@example.org")
    finally:
        key_file.chmod(0o600)
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "ab" * 32)
    with pytest.raises(ConfigError, match="every process sharing the database needs the same key"), store.snapshot() as connection:
        read_consent_history(connection, "alice@example.org")
