"""The serving path's consent cache (audits.consent.ConsentReadCache), on SQLite and PostgreSQL.

A cached state must equal an uncached read of the same snapshot, whatever was
committed in between and by whom: a grant, a withdrawal, a suppression, a
shredding (erasure), a bulk import; and a hit must skip the reads it caches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits import Store, record_consent
from audits.consent import ConsentReadCache, read_consent_history, read_consent_state
from audits.subjects import shred_subject
from audits.suppression import suppress_subject
from governance.api.reads import FastReads
from governance.suppressed import erasure_seq
from recommender.errors import ConfigError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _record(store: Store, subject: str, status: str, minutes: int = 0) -> None:
    with store.session() as session:
        record_consent(
            session, subject_id=subject, purpose="personalization", status=status, lawful_basis="consent", source="api",
            evidence={"banner_version": f"v{minutes}", "nested": {"list": [1, 2]}}, at=T0 + timedelta(minutes=minutes),
        )  # fmt: skip


def _uncached(store: Store, subject: str) -> tuple[list[dict], int | None]:
    with store.snapshot() as connection:
        return read_consent_history(connection, subject), erasure_seq(connection, subject)


def _cached(reads: FastReads, cache: ConsentReadCache, subject: str) -> tuple[list[dict], int | None]:
    with reads.snapshot() as read:
        state = cache.read(read, subject)
        return state.history(), state.erasure_seq


class _Counting:
    """A snapshot that counts its statements."""

    def __init__(self, read: object) -> None:
        self.read, self.statements = read, 0
        self.engine = read.engine  # type: ignore[attr-defined]

    def execute(self, statement: object, parameters: object = None) -> object:
        self.statements += 1
        return self.read.execute(statement, parameters)  # type: ignore[attr-defined]


def test_a_hit_is_one_statement_and_equals_the_uncached_read(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    _record(store, "alice", "granted")
    expected = _uncached(store, "alice")
    assert _cached(reads, cache, "alice") == expected  # a miss: read and kept
    with reads.snapshot() as read:
        counting = _Counting(read)
        state = cache.read(counting, "alice")
    assert (state.history(), state.erasure_seq) == expected
    assert counting.statements == 1, "a hit is the version statement alone"
    assert (cache.hits, cache.misses) == (1, 1)
    with reads.snapshot() as read:
        assert read_consent_state(read, "alice", cached=False).history() == expected[0]


def test_a_caller_cannot_change_what_the_cache_holds(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    _record(store, "alice", "granted")
    history, _ = _cached(reads, cache, "alice")
    history[0]["status"] = "withdrawn"
    history[0]["evidence"]["nested"]["list"].append(3)
    history.append({})
    assert _cached(reads, cache, "alice") == _uncached(store, "alice")


def test_withdrawal_suppression_and_erasure_are_seen_by_the_next_read(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    _record(store, "bob", "granted")
    assert [r["status"] for r in _cached(reads, cache, "bob")[0]] == ["granted"]
    _record(store, "bob", "withdrawn", 1)  # committed by another transaction, as the CLI would
    history, erased = _cached(reads, cache, "bob")
    assert [r["status"] for r in history] == ["granted", "withdrawn"] and erased is None
    # Erasure: the secret shredded and a suppression kept, in one transaction.
    with store.session() as session:
        shred_subject(session, "bob")
        suppress_subject(session, "bob", denied={"personalization": {"status": "withdrawn", "lawful_basis": "consent"}}, erased_at=T0 + timedelta(minutes=2))
    history, erased = _cached(reads, cache, "bob")
    assert (history, erased) == _uncached(store, "bob")
    assert [r["status"] for r in history] == ["withdrawn"] and erased is not None
    # They come back and grant again: a new secret, a new pseudonym, a new record.
    _record(store, "bob", "granted", 3)
    assert _cached(reads, cache, "bob") == _uncached(store, "bob")
    assert [r["status"] for r in _cached(reads, cache, "bob")[0]] == ["withdrawn", "granted"]


def test_a_shredding_alone_is_seen(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    _record(store, "carol", "granted")
    assert _cached(reads, cache, "carol")[0]
    with store.session() as session:
        shred_subject(session, "carol")
    assert _cached(reads, cache, "carol") == ([], None)


def test_a_subject_never_seen_then_recorded(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    assert _cached(reads, cache, "dora") == ([], None)
    assert _cached(reads, cache, "dora") == ([], None) and cache.hits == 1
    _record(store, "dora", "objected")
    assert [r["status"] for r in _cached(reads, cache, "dora")[0]] == ["objected"]


def test_a_snapshot_older_than_a_commit_is_not_cached_over_it(store: Store) -> None:
    """A read in an old snapshot keeps its own (older) version; the next snapshot still sees the commit."""
    reads, cache = FastReads(store.engine), ConsentReadCache()
    _record(store, "erin", "granted")
    with reads.snapshot() as old:
        cache.read(old, "erin")  # the snapshot has begun
        _record(store, "erin", "withdrawn", 1)
        assert [r["status"] for r in cache.read(old, "erin").history()] == ["granted"]  # what that snapshot sees
    assert [r["status"] for r in _cached(reads, cache, "erin")[0]] == ["granted", "withdrawn"]


def test_the_cache_is_bounded(store: Store) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache(max_subjects=3)
    for n in range(5):
        _cached(reads, cache, f"s{n}")
    assert len(cache) == 3
    with pytest.raises(ConfigError, match="max_subjects"):
        ConsentReadCache(max_subjects=0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.sampled_from(["granted", "withdrawn", "objected", "shred", "suppress", "read"])), max_size=10))
def test_any_sequence_of_changes_reads_as_uncached(store: Store, steps: list[tuple[str, str]]) -> None:
    reads, cache = FastReads(store.engine), ConsentReadCache()
    tag = f"h{id(steps)}-"  # subjects of their own per example (the store is the test's)
    for minute, (subject, step) in enumerate(steps):
        who = tag + subject
        if step == "shred":
            with store.session() as session:
                shred_subject(session, who)
        elif step == "suppress":
            with store.session() as session:
                suppress_subject(session, who, denied={"personalization": {"status": "objected", "lawful_basis": "consent"}}, erased_at=T0)
        elif step != "read":
            _record(store, who, step, minute)
        for any_subject in ("u1", "u2"):
            assert _cached(reads, cache, tag + any_subject) == _uncached(store, tag + any_subject)
