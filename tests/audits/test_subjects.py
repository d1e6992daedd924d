"""Pseudonyms and crypto-shredding: no raw id anywhere, erasure unlinks the trail."""

from __future__ import annotations

import json

import hmac
import re
from hashlib import sha256

import pytest
from sqlalchemy import inspect, text

from audits import Store, append_event, pseudonym, shred_subject, verify_trail
from audits.db import create_store_engine
from audits.subjects import _PSEUDONYM_DOMAIN
from recommender.errors import ConfigError
from store_dump import dump_store

RAW_IDS = ["alice@example.org", "user-8271", "4242"]


def _cells(store: Store) -> set[str]:
    """Every value of every row of every table, as text (JSON values walked to their leaves)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                found.add(str(k))
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value[:1] in "[{":
            try:
                walk(json.loads(value))
            except ValueError:
                found.add(value)
        else:
            found.add(str(value))

    with store.engine.connect() as connection:
        for table in inspect(store.engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                walk(tuple(row))
    return found


def _serve(store: Store, subject_id: str | int) -> str:
    with store.session() as session:
        who = pseudonym(session, subject_id)
        append_event(session, actor="serving", action="decision.served", subject=who, payload={"items": [1, 2]})
    return who


def test_a_pseudonym_is_stable_distinct_and_never_the_raw_id(store: Store) -> None:
    first = {subject: _serve(store, subject) for subject in RAW_IDS}
    again = {subject: _serve(store, subject) for subject in RAW_IDS}
    assert first == again
    assert len(set(first.values())) == len(RAW_IDS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in first.values())
    with store.session() as session:
        assert pseudonym(session, 4242) == first["4242"]  # ints and their strings are one subject
    dump, cells = dump_store(store), _cells(store)
    for raw in RAW_IDS:
        # a short numeric id is looked for as a whole value: '4242' turns up inside hex hashes by chance
        assert raw not in cells if raw.isdigit() and len(raw) < 6 else raw not in dump
        assert sha256(raw.encode()).hexdigest() not in dump  # not even a plain hash of it


def test_shredding_unlinks_the_trail_and_the_chain_stays_valid(store: Store) -> None:
    before = {subject: _serve(store, subject) for subject in RAW_IDS}
    with store.session() as session:
        assert shred_subject(session, "alice@example.org", actor="dpo") == before["alice@example.org"]
    with store.session() as session:
        assert shred_subject(session, "alice@example.org") is None  # nothing left to erase
        secrets = session.execute(text("SELECT secret FROM subject_secrets")).scalars().all()
    assert len(secrets) == 2 * (len(RAW_IDS) - 1)  # per remaining subject: its pseudonym secret and its record key
    # No remaining secret can recompute the old pseudonym.
    old = before["alice@example.org"]
    for secret in secrets:
        candidate = hmac.new(bytes.fromhex(secret), _PSEUDONYM_DOMAIN + b"alice@example.org", sha256).hexdigest()
        assert candidate != old
    # A later request gets a new, different pseudonym; others are unchanged.
    assert _serve(store, "alice@example.org") != old
    assert _serve(store, "user-8271") == before["user-8271"]
    with store.snapshot() as connection:
        report = verify_trail(connection)
        events = connection.execute(
            text("SELECT action, actor FROM trail_events WHERE subject = :p ORDER BY seq"), {"p": old}
        ).all()
    assert report.intact, report.summary()
    assert [tuple(e) for e in events] == [("decision.served", "serving"), ("subject.shredded", "dpo")]
    dump = dump_store(store)
    cells = _cells(store)
    for raw in RAW_IDS:
        # A short numeric id turns up by chance inside hashes and timestamps (the
        # flaky failure this replaces), so it is checked as a whole value; longer
        # ids are checked anywhere in the dump.
        assert raw not in cells
        if len(raw) >= 8:
            assert raw not in dump


def test_another_installation_key_is_refused(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(store, "alice@example.org")
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "ab" * 32)
    with pytest.raises(ConfigError, match="every process sharing the database needs the same key"):
        with store.session() as session:
            pseudonym(session, "alice@example.org")


def test_the_installation_key_can_come_from_the_environment(
    store: Store, monkeypatch: pytest.MonkeyPatch, recgov_home
) -> None:
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "cd" * 32)
    _serve(store, "bob")
    assert not (recgov_home / "keys" / "installation.key").exists()
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "not hex")
    with pytest.raises(ConfigError, match="must be 64 hex digits"), store.session() as session:
        pseudonym(session, "bob")


def test_a_process_with_another_installation_key_is_refused(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "11" * 32)
    with store.session() as session:
        first = pseudonym(session, "user-1")
    # the same engine, then a fresh one: both refuse a key the database was not keyed with
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "22" * 32)
    with pytest.raises(ConfigError, match="installation key"):
        with store.session() as session:
            pseudonym(session, "user-1")
    other = Store(create_store_engine(store.url), store.settings)
    try:
        with pytest.raises(ConfigError, match="installation key"):
            with other.session() as session:
                pseudonym(session, "user-1")
    finally:
        other.engine.dispose()
    monkeypatch.setenv("RECGOV_INSTALLATION_KEY", "11" * 32)
    with store.session() as session:
        assert pseudonym(session, "user-1") == first


def test_the_key_check_runs_until_the_key_is_committed_then_not_again(store: Store) -> None:
    from sqlalchemy import event

    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, stmt, *a: statements.append(stmt))
    meta = lambda: [s for s in statements if "store_meta" in s]  # noqa: E731
    # A transaction that keys the store and rolls back must not be remembered as keyed.
    with pytest.raises(RuntimeError):
        with store.session() as session:
            pseudonym(session, "user-1")
            raise RuntimeError("rolled back")
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM store_meta")).scalar_one() == 0
    statements.clear()
    with store.session() as session:  # checks again, keys the store, commits
        pseudonym(session, "user-1")
    assert any(s.lstrip().upper().startswith("INSERT") for s in meta())
    statements.clear()
    with store.session() as session:  # finds the committed key id: remembered from now on
        pseudonym(session, "user-2")
    assert len(meta()) == 1
    statements.clear()
    with store.session() as session:
        pseudonym(session, "user-3")
        pseudonym(session, "user-4")
    assert meta() == []


def test_a_key_file_changed_on_disk_is_read_and_checked_again(store: Store, monkeypatch: pytest.MonkeyPatch, recgov_home) -> None:
    """The key file is read once and kept while it is unchanged; a change of mode or content is seen at once."""
    monkeypatch.delenv("RECGOV_INSTALLATION_KEY", raising=False)
    first = _serve(store, "carol")
    key_file = recgov_home / "keys" / "installation.key"
    assert key_file.exists()
    key_file.chmod(0o644)  # readable by others: refused from the next lookup on
    with pytest.raises(ConfigError, match="readable by others"), store.session() as session:
        pseudonym(session, "carol")
    key_file.chmod(0o600)
    assert _serve(store, "carol") == first
    key_file.write_text("ef" * 32 + "\n")  # another key: the database refuses it
    with pytest.raises(ConfigError, match="installation key"), store.session() as session:
        pseudonym(session, "carol")


def test_the_bulk_keyed_hashes_equal_the_one_subject_ones() -> None:
    """lookups_of, pseudonyms_and_record_keys and record_key_lookups_of are the same HMACs, computed in bulk
    (checked against Python's hmac module, an independent implementation)."""
    import hashlib
    import hmac
    import os

    from audits.subjects import lookups_of, pseudonyms_and_record_keys, record_key_lookups_of

    key = os.urandom(32)
    subjects = [b"7", b"user-42", "zo\u00eb@example.org".encode(), b"x" * 300]
    secrets_hex = [os.urandom(32).hex() for _ in subjects]
    assert lookups_of(key, subjects) == [
        hmac.new(key, b"recgov.subject.v1\x00" + s, hashlib.sha256).hexdigest() for s in subjects
    ]
    pseudonyms, record_keys = pseudonyms_and_record_keys(secrets_hex, subjects)
    assert pseudonyms == [
        hmac.new(bytes.fromhex(k), b"recgov.pseudonym.v1\x00" + s, hashlib.sha256).hexdigest()
        for k, s in zip(secrets_hex, subjects, strict=True)
    ]
    assert record_keys == [hmac.new(bytes.fromhex(k), b"recgov.record-key.v1\x00", hashlib.sha256).digest() for k in secrets_hex]
    assert record_key_lookups_of(key, pseudonyms) == [
        hmac.new(key, b"recgov.record-key-lookup.v1\x00" + p.encode(), hashlib.sha256).hexdigest() for p in pseudonyms
    ]
    long_key = os.urandom(100)  # longer than a block: hashed first, as RFC 2104 says
    assert lookups_of(long_key, subjects[:1]) == [hmac.new(long_key, b"recgov.subject.v1\x007", hashlib.sha256).hexdigest()]


def test_bulk_sealed_evidence_opens_only_for_its_own_key_and_pseudonym() -> None:
    """sealed_evidence_texts makes the tokens seal_evidence makes: fresh nonces, bound to the pseudonym."""
    import json
    import os

    from audits.canonical import canonical_json
    from audits.sealing import open_evidence, sealed_evidence_texts

    keys = [os.urandom(32), os.urandom(32)]
    evidence = {"banner_version": "2025-11"}
    texts = sealed_evidence_texts([keys[0], keys[0], keys[1]], ["a" * 64, "a" * 64, "b" * 64], [canonical_json(evidence)] * 2 + [None])
    first, second = json.loads(texts[0]), json.loads(texts[1])
    assert texts[2] == "{}" and first != second  # one nonce each
    assert open_evidence(keys[0], "a" * 64, first) == evidence == open_evidence(keys[0], "a" * 64, second)
    assert open_evidence(keys[1], "a" * 64, first) == first  # another key: stays sealed
    assert open_evidence(keys[0], "b" * 64, first) == first  # another pseudonym: stays sealed
