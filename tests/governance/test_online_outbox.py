"""The online store's outbox (real Redis, SQLite and PostgreSQL): invalidations that outlive a Redis that is away.

Must hold: an erasure, a consent change or a block recorded while the recording process cannot reach Redis is
kept in the outbox in the change's own transaction (pseudonymous keys only); no list or factors of a subject
with a pending invalidation (or of anyone, for a pending global one) are served from Redis; once Redis is back
a drain (the CLI, a serving request, the API's startup) applies it exactly as the change would have, and
deletes the rows, concurrent drains included.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import audits.online_store as online
from audits.consent import record_consent
from audits.harm import block_item
from audits.models import OnlineStoreOutbox
from audits.online_store import OnlineStore, OutboxWatch, drain_at_startup, drain_outbox, record_outbox
from audits.subjects import shred_subject
from governance.cli import app
from governance.consent.state import ConsentRecord
from governance.online_store import ListCache, personalize_from_factors, store_factors
from governance.policy import load_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

runner = CliRunner()
URL = "redis://online-store-outbox-under-test"
GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=40, n_items=40, n_interactions=1500, seed=5))
    model = ALSRecommender(factors=8, iterations=3).fit(to_implicit(data.events))
    return data, model


@pytest.fixture
def dead(online_store) -> OnlineStore:
    """The same store as the writers would see it with Redis away: a closed port (same namespace and key)."""
    return OnlineStore.from_url("redis://127.0.0.1:1/0", namespace=online_store.namespace, key=b"k" * 32)


def use(monkeypatch, store: OnlineStore) -> None:
    """Make ``store`` the configured one (RECGOV_REDIS_URL) of this process."""
    monkeypatch.setenv("RECGOV_REDIS_URL", URL)
    monkeypatch.setitem(online._STORES, URL, store)


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(OnlineStoreOutbox.subject_key, OnlineStoreOutbox.hold, OnlineStoreOutbox.version))]


def epoch(store: OnlineStore, key: str | None) -> int:
    return int(store.client.get(store._k("e", key) if key else store._k("g")) or 0)


def test_an_erasure_and_a_block_while_redis_is_away_wait_in_the_outbox_and_nothing_stale_is_served(
    world, store, db_url, online_store, dead, monkeypatch
) -> None:
    data, model = world
    subjects = [str(s) for s in model.train_.user_ids]
    a, b = subjects[0], subjects[1]
    ka, kb = online_store.subject_key(a), online_store.subject_key(b)
    use(monkeypatch, online_store)
    with store.session() as session:  # Redis reachable: applied after the commit, nothing waits
        for s in (a, b):
            record_consent(session, subject_id=s, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    assert rows(store.engine) == [] and epoch(online_store, ka) >= 1
    watch = OutboxWatch(store.engine, interval_s=0.0, drain=False)  # this serving process reaches Redis, and reads the outbox at every check
    engine = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    engine.list_cache = ListCache(online_store, watch)
    for s in (a, b):
        engine.serve(ServeRequest(s, k=5, consent=GRANTED))
        assert engine.serve(ServeRequest(s, k=5, consent=GRANTED)).list_source == "online_store"
    assert store_factors(online_store, model, [a, b]) == 2
    plan = engine.begin(ServeRequest(a, k=5, consent=GRANTED))
    assert personalize_from_factors(online_store, engine.personalizer, plan, watch=watch) is not None
    ea, everyone = epoch(online_store, ka), epoch(online_store, None)

    use(monkeypatch, dead)  # the writers lose Redis
    with store.session() as session:
        assert shred_subject(session, a) is not None
    assert rows(store.engine) == [(ka, True, 1)]  # the keyed hash, never the raw id
    assert epoch(online_store, ka) == ea and online_store.client.exists(online_store._k("l", ka))  # Redis was not told
    # The serving process is not fooled by the entry Redis still holds, even for a request whose consent read
    # missed the erasure: a's list and factors are not served from Redis; b's still are.
    assert engine.serve(ServeRequest(a, k=5, consent=GRANTED)).list_source is None
    assert personalize_from_factors(online_store, engine.personalizer, plan, watch=watch) is None
    assert engine.serve(ServeRequest(b, k=5, consent=GRANTED)).list_source == "online_store"
    with store.session() as session:
        block_item(session, item_id=str(model.train_.item_ids[0]), blocked=True, reason="test")
    assert sorted(rows(store.engine)) == sorted([(ka, True, 1), ("*", False, 1)])
    assert epoch(online_store, None) == everyone
    assert engine.serve(ServeRequest(b, k=5, consent=GRANTED)).list_source is None  # a global one holds everyone

    # Redis back: the drain applies both exactly as the changes would have, and empties the outbox.
    use(monkeypatch, online_store)
    result = runner.invoke(app, ["online-store", "drain", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"applied": 2, "subjects": 1, "everyone": True, "pending": 0, "reason": None, "expired": 0}
    assert rows(store.engine) == []
    assert epoch(online_store, ka) == ea + 1 and epoch(online_store, None) == everyone + 1
    assert not online_store.client.exists(online_store._k("l", ka), online_store._k("uf", model.version_id_, ka))
    assert online_store.client.exists(online_store._k("h", ka))  # an erasure holds new lists back a while
    engine.serve(ServeRequest(b, k=5, consent=GRANTED))
    assert engine.serve(ServeRequest(b, k=5, consent=GRANTED)).list_source == "online_store"  # served from Redis again
    again = runner.invoke(app, ["online-store", "drain", "--database-url", db_url, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["applied"] == 0  # idempotent


def test_a_serving_request_or_the_startup_drains_what_waits(store, online_store, dead, monkeypatch) -> None:
    use(monkeypatch, dead)
    with store.session() as session:
        record_consent(session, subject_id="s-1", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    key = online_store.subject_key("s-1")
    assert rows(store.engine) == [(key, True, 1)]
    assert drain_outbox(store.engine).reason == "store down" and rows(store.engine)  # still waits
    use(monkeypatch, online_store)
    watch = OutboxWatch(store.engine, interval_s=0.0)
    assert watch.holds(key) is True  # not served from Redis while it waits ...
    assert watch.holds(key, online_store) is True  # ... until a serving request that reaches Redis drains it, behind it
    watch.settle(10)
    assert watch.holds(key) is False
    assert rows(store.engine) == [] and epoch(online_store, key) == 1 and not watch.pending
    use(monkeypatch, dead)
    with store.session() as session:
        block_item(session, item_id="i9", blocked=True, reason="test")
    use(monkeypatch, online_store)
    before = epoch(online_store, None)
    assert drain_at_startup(store.engine).applied == 1 and epoch(online_store, None) == before + 1


def test_no_store_configured_the_change_is_still_recorded(store, online_store, monkeypatch) -> None:
    """A process without RECGOV_REDIS_URL records the invalidation (under the installation key's hash); the
    CLI refuses to drain without a store (exit 2, named); a drain with the store down says so (exit 1)."""
    monkeypatch.delenv("RECGOV_REDIS_URL", raising=False)
    with store.session() as session:
        record_consent(session, subject_id="n-1", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    assert rows(store.engine) == [(online.store_subject_key("n-1"), False, 1)]
    assert "n-1" not in repr(rows(store.engine))
    url = store.engine.url.render_as_string(hide_password=False)
    refused = runner.invoke(app, ["online-store", "drain", "--database-url", url])
    assert refused.exit_code == 2 and "RECGOV_REDIS_URL" in refused.output
    use(monkeypatch, online_store)
    bad = runner.invoke(app, ["online-store", "drain", "--database-url", "nonsense://x"])
    assert bad.exit_code == 2 and "unsupported database" in bad.output and rows(store.engine)  # named; nothing drained
    use(monkeypatch, OnlineStore.from_url("redis://127.0.0.1:1/0", namespace=online_store.namespace))
    down = runner.invoke(app, ["online-store", "drain", "--database-url", url, "--json"])
    assert down.exit_code == 1 and json.loads(down.stdout)["reason"] == "store down" and json.loads(down.stdout)["pending"] == 1


def test_a_change_recorded_during_a_drain_keeps_its_row_and_concurrent_drains_apply_everything(store, online_store) -> None:
    keys = [online_store.subject_key(f"c-{n}") for n in range(60)]
    with store.engine.begin() as conn:
        record_outbox(conn, keys[:1])
    applied = online_store.invalidate

    def and_meanwhile(subjects, *, hold=False):  # another change of the same subject commits while Redis is told
        with store.engine.begin() as conn:
            record_outbox(conn, keys[:1], hold=True)
        return applied(subjects, hold=hold)

    online_store.invalidate = and_meanwhile
    try:
        assert drain_outbox(store.engine, online_store).pending == 1
    finally:
        online_store.invalidate = applied
    assert rows(store.engine) == [(keys[0], True, 2)]  # the later change still waits (and holds)
    with store.engine.begin() as conn:
        record_outbox(conn, [*keys, "*"])
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            drain_outbox(store.engine, online_store)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and rows(store.engine) == []
    assert all(epoch(online_store, k) >= 1 for k in keys) and epoch(online_store, None) >= 1  # each applied at least once
    assert online_store.client.exists(online_store._k("h", keys[0]))


def test_a_bulk_change_records_one_global_row_and_still_invalidates_each_subject_while_redis_answers(
    store, online_store, monkeypatch
) -> None:
    """A consent import's batch touches thousands of subjects: the outbox records one global row (not a keyed
    hash and an upsert per subject), each subject's own keys are still bumped now, and the drain bumps the global
    epoch."""
    from audits.models import OUTBOX_EVERYONE

    use(monkeypatch, online_store)
    many = [f"bulk-{i}" for i in range(online.OUTBOX_BULK_SUBJECTS + 1)]
    before_global, before_one = epoch(online_store, None), epoch(online_store, online_store.subject_key(many[0]))
    with store.session() as session:
        online.invalidate_subjects_after_commit(session, many, hold=True)
        session.commit()
    assert epoch(online_store, online_store.subject_key(many[0])) == before_one + 1
    assert epoch(online_store, None) >= before_global + 1
    assert all(key == OUTBOX_EVERYONE for key, _, _ in rows(store.engine))  # drained after commit, or waiting as one row
    monkeypatch.delenv("RECGOV_REDIS_URL", raising=False)
    with store.session() as session:
        online.invalidate_subjects_after_commit(session, many)
        session.commit()
    assert rows(store.engine) == [(OUTBOX_EVERYONE, False, 1)] and "bulk-" not in repr(rows(store.engine))


def test_a_serving_request_does_not_wait_for_the_drain_it_starts(store, online_store, dead, monkeypatch) -> None:
    """After an outage the outbox may hold many thousands of rows; the request that found Redis back drained them
    all before it answered (on the API's event loop, holding every other request, and writing to the database
    there). It now starts the drain behind it and answers at once, its subjects held until the drain is done."""
    import threading

    key = online_store.subject_key("s-1")
    with store.engine.begin() as conn:
        record_outbox(conn, [key], hold=True)
    started, release = threading.Event(), threading.Event()
    real = online.drain_outbox

    def slow_drain(*args, **kwargs):  # a drain of a large outbox: it takes as long as the test says
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(online, "drain_outbox", slow_drain)
    watch = OutboxWatch(store.engine, interval_s=0.0)
    assert watch.holds(key, online_store) is True  # answered while the drain has not finished
    assert started.wait(5) and rows(store.engine)  # it runs, behind the request
    assert watch.holds(key, online_store) is True  # one drain at a time; still held meanwhile
    release.set()
    watch.settle(10)
    assert rows(store.engine) == [] and watch.holds(key) is False


@pytest.fixture
def hung(online_store):
    """A store whose Redis accepts connections and never answers (a hung server), same namespace and key."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # kept open, never read nor answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield OnlineStore.from_url(f"redis://127.0.0.1:{server.getsockname()[1]}/0", namespace=online_store.namespace, key=b"k" * 32)
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_hung_redis_holds_a_consent_change_once_not_every_time(store, online_store, hung, monkeypatch) -> None:
    """Every consent change called Redis inside its transaction (and again right after it), even while the store
    was marked down: with a Redis that hangs, each change held the database's write lock a read timeout long and took
    twice that (about 0.5 s each, for good). Now only the first waits; the others are recorded in the outbox at once,
    and applied, held meanwhile, once Redis answers."""
    import time

    use(monkeypatch, hung)
    took = []
    for n in range(4):
        started = time.perf_counter()
        with store.session() as session:
            record_consent(session, subject_id=f"s-{n}", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
        took.append(time.perf_counter() - started)
    assert max(took[1:]) < 0.2, took  # a read timeout is 0.25 s: none of them waited on Redis
    keys = sorted(online_store.subject_key(f"s-{n}") for n in range(4))
    assert sorted(k for k, _, _ in rows(store.engine)) == keys  # every change is in the outbox, held
    assert drain_outbox(store.engine, online_store).pending == 0  # and applied once Redis answers
    assert all(epoch(online_store, k) == 1 for k in keys)


def _age(engine, key: str, seconds: float) -> None:
    """Make ``key``'s row look recorded ``seconds`` ago."""
    from datetime import timedelta

    from sqlalchemy import update

    with engine.begin() as conn:
        conn.execute(
            update(OnlineStoreOutbox).where(OnlineStoreOutbox.subject_key == key).values(recorded_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def _expiries(engine) -> list[dict]:
    from audits.models import TrailEvent

    with engine.connect() as conn:
        return [json.loads(p) if isinstance(p, str) else p for p in conn.execute(
            select(TrailEvent.payload).where(TrailEvent.action == online.OUTBOX_EXPIRED_ACTION).order_by(TrailEvent.seq)
        ).scalars()]  # fmt: skip


def test_rows_no_store_will_ever_apply_expire_once_nothing_they_invalidate_can_be_served(store, online_store, dead, monkeypatch) -> None:
    """With no Redis configured anywhere (or one gone for good), every consent change, erasure and block left a row
    in the outbox for ever: the table grew without bound. A row older than the store's entries live (twice their
    time to live: every list and factor written before its change has expired by then) now expires: deleted, and
    the expiry recorded in the audit trail (counts only, no key), after a change commits (at most every
    OUTBOX_EXPIRE_EVERY_S per process) and by a drain that cannot apply it. A younger row, or one re-recorded
    meanwhile, waits as before."""
    monkeypatch.delenv("RECGOV_REDIS_URL", raising=False)
    monkeypatch.setattr(online, "_EXPIRED_AT", {})
    old_age = online.OUTBOX_MAX_AGE_S + 60
    with store.session() as session:
        record_consent(session, subject_id="x-old", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
        block_item(session, item_id="i1", blocked=True, reason="test")
    old, young = online.store_subject_key("x-old"), online.store_subject_key("x-young")
    _age(store.engine, old, old_age)
    _age(store.engine, "*", old_age)
    online._EXPIRED_AT.clear()  # the commits above ran this process's pass (nothing was past its age then)
    with store.session() as session:  # the next change in this process expires what is past its age
        record_consent(session, subject_id="x-young", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    assert rows(store.engine) == [(young, True, 1)]
    (event,) = _expiries(store.engine)
    assert event["rows"] == 2 and event["subjects"] == 1 and event["everyone"] is True and event["reason"] == "no store"
    assert "x-old" not in json.dumps(event) and old not in json.dumps(event)  # counts, never a key
    with store.session() as session:  # within OUTBOX_EXPIRE_EVERY_S: no second expiry pass
        record_consent(session, subject_id="x-old", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    _age(store.engine, old, old_age)
    with store.session() as session:
        record_consent(session, subject_id="x-3", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    assert len(_expiries(store.engine)) == 1 and (old, False, 1) in rows(store.engine)
    use(monkeypatch, dead)  # Redis configured and down: a drain that cannot apply a row past its age expires it
    done = drain_outbox(store.engine)
    assert done.reason == "store down" and done.expired == 1 and old not in [k for k, _, _ in rows(store.engine)]
    assert young in [k for k, _, _ in rows(store.engine)]  # younger rows still wait, and hold
    assert _expiries(store.engine)[-1]["reason"] == "store down"
    _age(store.engine, young, old_age)
    _age(store.engine, online.store_subject_key("x-3"), old_age)
    url = store.engine.url.render_as_string(hide_password=False)
    said = runner.invoke(app, ["online-store", "drain", "--database-url", url])
    assert said.exit_code == 0 and "2 expired unapplied" in said.output and rows(store.engine) == []
    monkeypatch.delenv("RECGOV_REDIS_URL")
    with store.session() as session:
        record_consent(session, subject_id="x-young", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    watch = OutboxWatch(store.engine, interval_s=0.0, drain=False)
    assert watch.holds(young) is True and watch.holds(old) is False
