"""The online store (real Redis): cached lists and factors, their invalidation, and a store that is down.

Must hold: no unavailable, blocked or erased-subject-derived item appears in any list (made by the model, from
the store's factors or from a cached list), whatever the order of serves, cache fills, blocks, unblocks,
availability changes, consent withdrawals and erasures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.availability import Unavailable
from audits.online_store import OnlineStore
from governance.consent.state import ConsentRecord
from governance.online_store import ListCache, personalize_from_factors, store_factors, warm
from governance.policy import load_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def consent(status: str, minutes: int = 0) -> tuple[ConsentRecord, ...]:
    return (ConsentRecord(purpose="personalization", status=status, lawful_basis="consent", source="api", time=T0 + timedelta(minutes=minutes)),)


class Records:
    """A decision sink that keeps the records."""

    def __init__(self) -> None:
        self.records = []

    def submit_and_wait(self, record, timeout: float = 0.0):
        self.records.append(record)


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=120, n_items=90, n_interactions=5000, seed=11))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=4).fit(matrix)
    return data, matrix, model


@pytest.fixture
def outbox_db(tmp_path):
    """A store's database (SQLite, at head) whose outbox the changes of a test are recorded in."""
    from audits.db import open_store

    opened = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    try:
        yield opened.engine
    finally:
        opened.close()


def engine_of(world, store: OnlineStore | None, pack: str = "eu-gdpr-dsa", **kwargs) -> ServingEngine:
    data, _, model = world
    engine = ServingEngine(load_pack(f"policies/{pack}.yaml"), model, data.items, **kwargs)
    if store is not None:
        engine.list_cache = ListCache(store)
    return engine


def test_a_cached_list_is_the_list_and_its_record_says_so(world, online_store) -> None:
    _, matrix, _ = world
    sink = Records()
    engine = engine_of(world, online_store, sink=sink)
    user = str(matrix.user_ids[5])
    made = engine.serve(ServeRequest(user, k=8, consent=consent("granted")))
    cached = engine.serve(ServeRequest(user, k=8, consent=consent("granted")))
    assert made.list_source is None and cached.list_source == "online_store"
    assert (cached.items, cached.scores, cached.tags) == (made.items, made.scores, made.tags)
    assert "list_source" not in sink.records[0].context and sink.records[1].context["list_source"] == "online_store"
    # No raw subject id in any key of the store.
    keys = [k.decode() for k in online_store.client.scan_iter(match=f"{online_store.namespace}:*")]
    assert keys and not any(user in k for k in keys)


def test_a_store_that_is_down_falls_back_to_the_list_made_here(world) -> None:
    _, matrix, _ = world
    dead = OnlineStore.from_url("redis://127.0.0.1:1/0", key=b"k" * 32)  # nothing listens on port 1
    engine = engine_of(world, dead)
    reference = engine_of(world, None)
    user = str(matrix.user_ids[7])
    for _ in range(3):
        served = engine.serve(ServeRequest(user, k=6, consent=consent("granted")))
        assert served.list_source is None
        assert served.items == reference.serve(ServeRequest(user, k=6, consent=consent("granted"))).items
    assert not dead.available  # marked down: not asked again for a while
    assert dead.invalidate(["x"]) is False and dead.invalidate_everyone() is False  # reported, never raised


def test_a_list_made_before_a_withdrawal_is_never_written_after_it(world, online_store) -> None:
    _, matrix, _ = world
    engine = engine_of(world, online_store)
    user = str(matrix.user_ids[9])
    plan = engine.begin(ServeRequest(user, k=5, consent=consent("granted")))
    cache = engine.list_cache
    found, ticket = cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)
    assert found is None and ticket is not None
    made = plan.personalizer.personalize(plan.row, 5, plan.allowed)
    online_store.invalidate([online_store.subject_key(user)])  # the withdrawal lands while the list is made
    assert cache.put(plan, ticket, made) is False
    assert not online_store.client.exists(f"{online_store.namespace}:l:{online_store.subject_key(user)}")
    # A block (global epoch) refuses it the same way.
    found, ticket = cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)
    online_store.invalidate_everyone()
    assert cache.put(plan, ticket, made) is False
    # The request read the consent before the withdrawal but looks its list up after it (new epochs): the
    # withdrawal's hold refuses the write; a change that holds nothing back (a grant) does not.
    other = str(matrix.user_ids[10])
    plan = engine.begin(ServeRequest(other, k=5, consent=consent("granted")))
    online_store.invalidate([online_store.subject_key(other)], hold=True)
    found, ticket = cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)
    assert cache.put(plan, ticket, plan.personalizer.personalize(plan.row, 5, plan.allowed)) is False
    online_store.hold_s = 0.001
    online_store.invalidate([online_store.subject_key(other)])
    found, ticket = cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)
    online_store.client.delete(f"{online_store.namespace}:h:{online_store.subject_key(other)}")
    assert cache.put(plan, ticket, plan.personalizer.personalize(plan.row, 5, plan.allowed)) is True


def test_a_list_whose_consent_was_read_before_an_erasure_is_not_written_after_it(world, online_store) -> None:
    """The request carries the epochs read before its consent snapshot: an erasure committing between that
    snapshot and the list's lookup (no hold involved) still refuses the write."""
    _, matrix, _ = world
    engine = engine_of(world, online_store)
    user = str(matrix.user_ids[11])
    key = online_store.subject_key(user)
    early = online_store.stamps([key])[0]  # read first, then the consent (granted) ...
    plan = engine.begin(ServeRequest(user, k=5, consent=consent("granted"), online_stamp=early))
    online_store.invalidate([key])  # ... the erasure commits ...
    found, ticket = engine.list_cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)  # ... the lookup
    assert found is None and ticket is not None
    assert engine.list_cache.put(plan, ticket, plan.personalizer.personalize(plan.row, 5, plan.allowed)) is False
    assert not online_store.client.exists(f"{online_store.namespace}:l:{key}")
    # Read after the erasure, the epochs let the next request (which sees it) cache its list.
    plan = engine.begin(ServeRequest(user, k=5, consent=consent("granted"), online_stamp=online_store.stamps([key])[0]))
    found, ticket = engine.list_cache.get(plan, engine.model.version_id_, engine.loaded.content_hash)
    assert engine.list_cache.put(plan, ticket, plan.personalizer.personalize(plan.row, 5, plan.allowed)) is True


def test_factors_expire_and_are_written_only_under_the_epoch_read_before_consent(world, online_store) -> None:
    _, matrix, model = world
    ns, client = online_store.namespace, online_store.client
    subjects = [str(u) for u in matrix.user_ids[:3]]
    keys = [online_store.subject_key(s) for s in subjects]
    stamps = online_store.stamps(keys)
    online_store.invalidate([keys[1]])  # withdrew after their epoch and consent were read
    online_store.invalidate([keys[2]], hold=True)
    online_store.client.set(f"{ns}:e:{keys[2]}", stamps[2].subject)  # epoch as read, but a hold is on them
    stored = store_factors(online_store, model, subjects, dict(zip(subjects, stamps, strict=True)))
    assert stored == 1
    version = model.version_id_
    assert np.array_equal(online_store.user_factors(version, keys[0]), model.user_factors_[0].astype(np.float32))
    assert online_store.user_factors(version, keys[1]) is None and online_store.user_factors(version, keys[2]) is None
    assert 0 < client.pttl(f"{ns}:uf:{version}:{keys[0]}") <= online_store.ttl_ms  # never kept indefinitely
    assert 0 < client.pttl(f"{ns}:if:{version}") <= online_store.ttl_ms  # the model's item factors neither
    # Stamps read now: stored; an invalidation then deletes them.
    assert store_factors(online_store, model, subjects[:2]) == 2
    assert online_store.invalidate(keys[:2]) is True
    assert online_store.user_factors(version, keys[0]) is None and online_store.user_factors(version, keys[1]) is None
    with pytest.raises(ValueError, match="one of each per subject"):
        online_store.put_factors(version, model.item_factors_, keys[:2], model.user_factors_[:2], stamps[:1])


def test_a_cached_list_is_not_served_under_another_consent_state_or_once_an_item_is_kept_out(world, online_store) -> None:
    _, matrix, _ = world
    engine = engine_of(world, online_store)
    user = str(matrix.user_ids[11])
    first = engine.serve(ServeRequest(user, k=6, consent=consent("granted")))
    # Another consent history (withdrawn, then granted again): the entry made under the old one is a miss.
    regranted = consent("granted", 5)
    assert engine.serve(ServeRequest(user, k=6, consent=regranted)).list_source is None
    assert engine.serve(ServeRequest(user, k=6, consent=regranted)).list_source == "online_store"
    # Blocking an item of the cached list, or making it unavailable, makes the entry a miss at once.
    engine.set_blocked([first.items[0]])
    after_block = engine.serve(ServeRequest(user, k=6, consent=regranted))
    assert after_block.list_source is None and first.items[0] not in after_block.items and len(after_block.items) == 6
    engine.set_availability(Unavailable(frozenset({after_block.items[1]})))
    after = engine.serve(ServeRequest(user, k=6, consent=regranted))
    assert after.list_source is None and after_block.items[1] not in after.items and len(after.items) == 6


def test_consent_and_erasure_in_the_store_invalidate_the_subject_and_blocks_everyone(world, online_store, store, monkeypatch) -> None:
    """The store's own code paths (record_consent, shred_subject, block_item, availability) invalidate Redis."""
    import audits.online_store as online
    from audits.availability import set_availability
    from audits.consent import record_consent
    from audits.harm import block_item, flag_item
    from audits.subjects import shred_subject

    url = "redis://online-store-under-test"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, online_store)
    ns, subject = online_store.namespace, online_store.subject_key("u-1")
    client = online_store.client

    def filled() -> None:
        client.hset(f"{ns}:l:{subject}", "f", b"{}")
        client.hset(f"{ns}:uf:v1", subject, b"\0" * 8)  # the former layout
        client.set(f"{ns}:uf:v1:{subject}", b"\0" * 8)
        client.sadd(f"{ns}:versions", "v1")

    filled()
    with store.session() as session:
        record_consent(session, subject_id="u-1", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    assert not client.exists(f"{ns}:l:{subject}", f"{ns}:uf:v1:{subject}") and not client.hexists(f"{ns}:uf:v1", subject)
    assert client.exists(f"{ns}:h:{subject}")  # a withdrawal holds new lists back a while
    epoch = int(client.get(f"{ns}:e:{subject}"))
    filled()
    with store.session() as session:
        assert shred_subject(session, "u-1") is not None
    assert not client.exists(f"{ns}:l:{subject}", f"{ns}:uf:v1:{subject}") and not client.hexists(f"{ns}:uf:v1", subject)
    assert int(client.get(f"{ns}:e:{subject}")) > epoch
    everyone = int(client.get(f"{ns}:g") or 0)
    with store.session() as session:
        block_item(session, item_id="i1", blocked=True, reason="test")
    assert int(client.get(f"{ns}:g")) > everyone
    everyone = int(client.get(f"{ns}:g"))
    with store.session() as session:
        set_availability(session, item_id="i1", status="out_of_stock")
    assert int(client.get(f"{ns}:g")) > everyone
    everyone = int(client.get(f"{ns}:g"))
    with store.session() as session:
        flag_item(session, item_id="i2", category="spam", confidence=0.4, source="api")
    assert int(client.get(f"{ns}:g")) > everyone


OPS = st.one_of(
    st.tuples(st.just("serve"), st.integers(0, 119), st.sampled_from([None, "DE"])),
    st.tuples(st.just("factors"), st.integers(0, 119), st.sampled_from([None, "DE"])),
    st.tuples(st.just("fill"), st.integers(0, 119), st.sampled_from([None, "DE"])),
    st.tuples(st.just("stale_fill"), st.integers(0, 119), st.sampled_from(["withdraw", "erase", "block", "unavailable"])),
    st.tuples(st.just("block"), st.integers(0, 89), st.none()),
    st.tuples(st.just("unblock"), st.integers(0, 89), st.none()),
    st.tuples(st.just("unavailable"), st.integers(0, 89), st.sampled_from(["*", "DE"])),
    st.tuples(st.just("available"), st.integers(0, 89), st.sampled_from(["*", "DE"])),
    st.tuples(st.just("withdraw"), st.integers(0, 119), st.none()),
    st.tuples(st.just("grant"), st.integers(0, 119), st.none()),
    st.tuples(st.just("erase"), st.integers(0, 119), st.none()),
    st.tuples(st.just("outage"), st.just(0), st.none()),  # the writers lose Redis (or never had it), or get it back
    st.tuples(st.just("drain"), st.just(0), st.none()),  # recgov online-store drain
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=25), users=st.lists(st.integers(0, 119), min_size=3, max_size=3, unique=True))
def test_no_list_holds_an_unavailable_blocked_or_erased_derived_item_whatever_the_order(world, online_store, outbox_db, ops, users) -> None:
    """Must hold 2, over the model, the store's factors and its cached lists, with a few heavy users filled first;
    also while the processes recording the changes cannot reach Redis (their invalidations wait in the outbox)."""
    from sqlalchemy import delete, select

    from audits.models import OnlineStoreOutbox
    from audits.online_store import OutboxWatch, drain_outbox, record_outbox

    _, matrix, model = world
    ids = [str(i) for i in matrix.item_ids]
    subjects = [str(u) for u in matrix.user_ids]
    with outbox_db.begin() as conn:  # one example's outbox is not the next one's
        conn.execute(delete(OnlineStoreOutbox))
    watch = OutboxWatch(outbox_db, interval_s=0.0)  # read at every check: the property is exact, not within a second
    engine = engine_of(world, online_store, erasures_seen=0)
    engine.list_cache.watch = watch
    down = [False]

    def invalidate(keys: list[str], hold: bool = False) -> None:  # what the store's code paths do
        with outbox_db.begin() as conn:  # recorded in the change's transaction ...
            record_outbox(conn, keys, hold=hold)
        if not down[0]:  # ... and applied after the commit when the writer reaches Redis
            assert drain_outbox(outbox_db, online_store).pending == 0
    store_factors(online_store, model, subjects)
    item_factors = online_store.item_factors(model.version_id_)
    blocked: set[str] = set()
    everywhere: set[str] = set()
    de: set[str] = set()
    minutes: dict[int, int] = {}
    state: dict[int, str] = {}
    erased: dict[int, int] = {}

    def request(u: int, region: str | None) -> ServeRequest:
        status = state.get(u, "granted")
        return ServeRequest(subjects[u], k=10, consent=consent(status, minutes.get(u, 0)), context={"region": region} if region else {},
                            erasure_seq=erased.get(u))

    def withdraw(u: int) -> None:  # what record_consent does: the ledger, then the store
        state[u], minutes[u] = "withdrawn", minutes.get(u, 0) + 1
        invalidate([online_store.subject_key(subjects[u])], hold=True)

    def erase(u: int) -> None:  # what shred_subject does
        erased[u] = len(erased) + 1
        invalidate([online_store.subject_key(subjects[u])], hold=True)

    def keep_out() -> None:  # what a block or an availability change does: new engine state, and the global epoch
        engine.set_blocked(blocked)
        engine.set_availability(Unavailable(frozenset(everywhere), {"DE": frozenset(de)}))
        invalidate(["*"])

    def check(items: list[str], region: str | None, u: int) -> None:
        out = blocked | everywhere | (de if region == "DE" else set())
        assert not out & set(items), (out & set(items), region)

    warm(engine, [request(u, None) for u in users])  # heavy users' lists precomputed
    for op, a, b in ops:
        if op == "serve":
            with outbox_db.connect() as conn:
                waiting = set(conn.execute(select(OnlineStoreOutbox.subject_key)).scalars())
            served = engine.serve(request(a, b))
            watch.settle()  # the drain the request started behind it, if any
            if waiting & {"*", online_store.subject_key(subjects[a])}:
                assert served.list_source is None  # never from Redis while an invalidation for it waits
            check(served.items, b, a)
            if a in erased or state.get(a) == "withdrawn":
                assert served.mode == "non_profiling" and served.list_source is None
            kept = len(ids) - len(blocked | everywhere | (de if b == "DE" else set()) | {ids[i] for i in engine.personalizer.blocked_items})
            seen = len(matrix.matrix[a].indices) if served.mode == "personalized" else 0
            assert len(served.items) >= min(10, kept - seen)  # never short while enough items are left
        elif op == "factors":
            plan = engine.begin(request(a, b))
            made = personalize_from_factors(online_store, engine.personalizer, plan, item_factors, watch)
            watch.settle()
            if a in erased:
                assert made is None  # the erased subject's factors left the store
            elif made is not None and plan.mode == "personalized":
                check([ids[i] for i in made.items], b, a)
        elif op == "fill":
            warm(engine, [request(a, b)])
        elif op == "stale_fill":  # a list made, then a change lands, then the list is written
            plan = engine.begin(request(a, None))
            if plan.mode != "personalized":
                continue
            found, ticket = engine.list_cache.get(plan, model.version_id_, engine.loaded.content_hash)
            made = plan.personalizer.personalize(plan.row, 10, plan.allowed)
            if b == "withdraw":
                withdraw(a)
            elif b == "erase":
                erase(a)
            elif b == "block":
                blocked.add(ids[int(made.items[0])]) if len(made.items) else None
                keep_out()
            else:
                everywhere.add(ids[int(made.items[0])]) if len(made.items) else None
                keep_out()
            if ticket is not None:
                assert engine.list_cache.put(plan, ticket, made) is False
        elif op in ("block", "unblock"):
            (blocked.add if op == "block" else blocked.discard)(ids[a])
            keep_out()
        elif op in ("unavailable", "available"):
            target = everywhere if b == "*" else de
            (target.add if op == "unavailable" else target.discard)(ids[a])
            keep_out()
        elif op == "withdraw":
            withdraw(a)
        elif op == "grant":
            state[a], minutes[a] = "granted", minutes.get(a, 0) + 1
            invalidate([online_store.subject_key(subjects[a])])
        elif op == "erase":
            erase(a)
        elif op == "outage":
            down[0] = not down[0]
        elif op == "drain":
            assert drain_outbox(outbox_db, online_store).pending == 0
        watch.settle()  # a drain a read started behind it (serve, fill, factors) is done before the checks
        with outbox_db.connect() as conn:
            pending = set(conn.execute(select(OnlineStoreOutbox.subject_key)).scalars())
        for u in erased:  # nothing derived from an erased subject stays in the store, once the outbox is drained
            key = online_store.subject_key(subjects[u])
            if key in pending:
                assert watch.holds(key)  # its lists and factors are not served from Redis meanwhile
                continue
            assert not online_store.client.exists(f"{online_store.namespace}:l:{key}")
            assert online_store.user_factors(model.version_id_, key) is None
    client = online_store.client
    client.delete(*list(client.scan_iter(match=f"{online_store.namespace}:*")) or ["-"])


def test_the_read_is_one_command_that_loads_its_script_and_checks_the_epochs(online_store) -> None:
    """The read path writes its EVALSHA straight to a pooled connection: a script Redis does not hold yet is
    loaded and run; the entry comes back with the epochs it is checked against; the connection is reused."""
    import uuid

    store = online_store
    subject = store.subject_key("someone")
    # A script body Redis has never seen (a unique comment): the first call must load it, not fail.
    fresh = store.client.register_script(f"-- {uuid.uuid4().hex}\n" + "return {redis.call('GET', KEYS[1]) or '0', ARGV[1]}")
    assert not store.client.script_exists(fresh.sha)[0]
    assert store._call(fresh, (store._k("g"),), ("x",)) == [b"0", b"x"]
    assert store.client.script_exists(fresh.sha)[0]
    entry, stamp = store.read_list(subject, "f")
    assert entry is None and stamp is not None
    assert store.write_list(subject, "f", {"i": [1, 2]}, stamp)
    entry, again = store.read_list(subject, "f")
    assert entry is not None and entry["i"] == [1, 2] and again == stamp
    store.invalidate_everyone()  # a block: the entry is still in the hash, but never returned
    entry, after = store.read_list(subject, "f")
    assert entry is None and after.everyone == stamp.everyone + 1
    # Error replies surface as errors (a miss for the caller), and the pool stays usable.
    with pytest.raises(Exception, match="(?i)wrong|number|arg"):
        store._call(fresh, (), ())  # the script reads KEYS[1]: no key given
    assert store.read_list(subject, "f")[1] is not None


def test_the_consent_state_hash_tells_every_field_apart() -> None:
    """A cached list is used only under the consent state it was made under: any change of a record's field,
    of the signals or of the erasure makes another hash; the same state (new objects) the same hash; a record
    JSON cannot hold exactly is still hashed (from its repr)."""
    from dataclasses import replace

    from governance.serving import ServeRequest

    base = consent("granted")[0]
    request = ServeRequest("s", consent=(base,))
    same = ServeRequest("s", consent=consent("granted"))
    variants = [
        ServeRequest("s", consent=(replace(base, status="withdrawn"),)),
        ServeRequest("s", consent=(replace(base, purpose="analytics"),)),
        ServeRequest("s", consent=(replace(base, lawful_basis="legitimate_interest"),)),
        ServeRequest("s", consent=(replace(base, source="banner"),)),
        ServeRequest("s", consent=(replace(base, time=base.time + timedelta(microseconds=1)),)),
        ServeRequest("s", consent=(replace(base, evidence={"banner_version": "v2"}),)),
        ServeRequest("s", consent=(base, base)),
        ServeRequest("s", consent=()),
        ServeRequest("s", consent=(base,), gpc=True),
        ServeRequest("s", consent=(base,), tcf="CP"),
        ServeRequest("s", consent=(base,), erasure_seq=3),
        ServeRequest("s", consent=(replace(base, evidence={1: "x"}),)),  # a non-string key: hashed from its repr
        ServeRequest("s", consent=(replace(base, evidence={"1": "x"}),)),
    ]
    hashes = [ListCache.consent_state(r) for r in (request, *variants)]
    assert ListCache.consent_state(same) == hashes[0]
    assert len(set(hashes)) == len(hashes)


def test_cached_lists_and_epochs_do_not_outlive_their_time_to_live(online_store) -> None:
    """Each write renewed the time to live of the subject's whole hash, so lists made before a block, an
    availability change or a new model stayed in Redis (and one could be read) long after their 24 h, and the hash
    of an active subject grew by a field per change; and a subject's epoch key (their keyed hash) stayed in Redis
    forever, erased or not. Now: a write under newer epochs drops the older lists, a hash holds at most
    LIST_FIELDS_MAX lists, a list older than its time to live is a miss, and an epoch key expires."""
    import time

    from audits.online_store import LIST_FIELDS_MAX

    store = online_store
    store.ttl_ms = 1500
    subject = store.subject_key("someone")
    lists = store._k("l", subject)
    _, stamp = store.read_list(subject, "old")
    assert store.write_list(subject, "old", {"i": [1]}, stamp)
    for n in range(3):  # a block each time, then a list written under the new epoch
        store.invalidate_everyone()
        _, stamp = store.read_list(subject, f"f{n}")
        assert store.write_list(subject, f"f{n}", {"i": [1]}, stamp)
    assert set(store.client.hkeys(lists)) == {b"~", b"f2"}  # what was made before the last block is gone
    for n in range(LIST_FIELDS_MAX + 5):  # many lists under the same epochs (regions, lengths, packs, versions)
        assert store.write_list(subject, f"same{n}", {"i": [1]}, stamp)
    assert store.client.hlen(lists) <= LIST_FIELDS_MAX + 2
    # A list kept alive by later writes to its hash is read as a miss once older than its time to live.
    assert store.write_list(subject, "kept", {"i": [1]}, stamp)
    time.sleep(1.0)
    assert store.write_list(subject, "later", {"i": [1]}, stamp)  # renews the hash, not "kept"
    time.sleep(0.7)
    assert store.client.hexists(lists, "kept")
    assert store.read_list(subject, "kept")[0] is None and store.read_list(subject, "later")[0] is not None
    # The epoch key of an invalidated (e.g. erased) subject expires, and outlives every entry written under it.
    store.invalidate([subject], hold=False)
    epoch = store._k("e", subject)
    assert 0 < store.client.pttl(epoch) <= store.epoch_ttl_ms
    _, stamp = store.read_list(subject, "x")
    assert store.write_list(subject, "x", {"i": [1]}, stamp)
    assert store.client.pttl(epoch) > store.client.pttl(lists)
    erased = store.subject_key("erased")
    store.invalidate([erased], hold=True)
    assert 0 < store.client.pttl(store._k("e", erased)) <= store.epoch_ttl_ms
    assert 0 < store.client.pttl(store._k("h", erased))


def test_a_list_made_without_the_item_metadata_is_not_served_by_an_engine_that_has_it(world, online_store) -> None:
    """A process that could not read the model's item table serves lists without provider groups (the pack's
    provider calibration does nothing) and with other tags; the cache key did not say so, so such a list, once in
    Redis, was served by every process that has the table, as the pack's governed list. The catalog is now part
    of what an entry was made under."""
    data, matrix, model = world
    degraded = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, None)  # no item table
    degraded.list_cache = ListCache(online_store)
    healthy = engine_of(world, online_store)
    reference = engine_of(world, None)
    for u in matrix.user_ids[:10]:
        degraded.serve(ServeRequest(str(u), k=10, consent=consent("granted")))
        served = healthy.serve(ServeRequest(str(u), k=10, consent=consent("granted")))
        want = reference.serve(ServeRequest(str(u), k=10, consent=consent("granted")))
        assert served.list_source is None
        assert (served.items, served.tags) == (want.items, want.tags)
        again = healthy.serve(ServeRequest(str(u), k=10, consent=consent("granted")))  # its own entry is used
        assert again.list_source == "online_store" and again.items == want.items


def test_an_entry_this_version_did_not_write_is_a_miss_not_a_failed_request(world, online_store) -> None:
    """An entry that is not JSON, not an object, or whose items, scores and tags do not line up (another
    version's format, another program in the namespace) made every request of that subject fail until it
    expired; it is now a miss: the list is made here and written again."""
    import orjson

    _, matrix, _ = world
    engine = engine_of(world, online_store)
    reference = engine_of(world, None)
    user = str(matrix.user_ids[9])
    key = f"{online_store.namespace}:l:{online_store.subject_key(user)}"
    want = reference.serve(ServeRequest(user, k=5, consent=consent("granted")))
    engine.serve(ServeRequest(user, k=5, consent=consent("granted")))
    from audits.online_store import MAC_BYTES

    field = next(f for f in online_store.client.hkeys(key) if f != b"~")
    good = orjson.loads(online_store.client.hget(key, field)[MAC_BYTES:])
    subject = online_store.subject_key(user)
    bad = [
        b"\x00garbage",
        b"[1, 2]",
        orjson.dumps({**good, "s": good["s"][:-1]}),
        orjson.dumps({**good, "i": ["x"] * len(good["i"])}),
        orjson.dumps({**good, "t": "text"}),
        orjson.dumps({k: v for k, v in good.items() if k != "i"}),
    ]
    for value in bad:  # sealed as this installation seals them, so that they reach the checks of their shape
        online_store.client.hset(key, field, online_store._seal(subject, field.decode(), value) + value)
        served = engine.serve(ServeRequest(user, k=5, consent=consent("granted")))
        assert served.list_source is None and (served.items, served.tags) == (want.items, want.tags)
        again = engine.serve(ServeRequest(user, k=5, consent=consent("granted")))
        assert again.list_source == "online_store" and again.items == want.items  # written again, good this time


def test_a_list_redis_did_not_get_from_this_installation_is_not_served(world, online_store) -> None:
    """Whoever can write to Redis could put any admissible items and any explanation text in a subject's cached
    list (or copy another subject's there), and it was served and recorded as the pack's list. Each list is now
    sealed under a key derived from the installation key, bound to its subject and field: anything else is a miss."""
    from audits.online_store import MAC_BYTES

    _, matrix, _ = world
    engine = engine_of(world, online_store)
    reference = engine_of(world, None)
    a, b = str(matrix.user_ids[11]), str(matrix.user_ids[12])
    for u in (a, b):
        engine.serve(ServeRequest(u, k=5, consent=consent("granted")))
    key_a = f"{online_store.namespace}:l:{online_store.subject_key(a)}"
    key_b = f"{online_store.namespace}:l:{online_store.subject_key(b)}"
    field = next(f for f in online_store.client.hkeys(key_a) if f != b"~")
    sealed = online_store.client.hget(key_a, field)
    forged = sealed.replace(b"Because you interacted with", b"Because you are pregnant, see")
    assert forged != sealed
    online_store.client.hset(key_a, field, forged)
    served = engine.serve(ServeRequest(a, k=5, consent=consent("granted")))
    want = reference.serve(ServeRequest(a, k=5, consent=consent("granted")))
    assert served.list_source is None and served.tags == want.tags
    online_store.client.hset(key_b, field, online_store.client.hget(key_a, field))  # a's (sealed) list put under b
    served = engine.serve(ServeRequest(b, k=5, consent=consent("granted")))
    assert served.list_source is None and served.items == reference.serve(ServeRequest(b, k=5, consent=consent("granted"))).items
    unsealed = sealed[MAC_BYTES:]  # what an earlier version wrote, or anyone without the key
    online_store.client.hset(key_a, field, unsealed)
    assert engine.serve(ServeRequest(a, k=5, consent=consent("granted"))).list_source is None


def test_factors_redis_did_not_get_from_this_installation_are_not_used(world, online_store) -> None:
    """Whoever can write to Redis could put any vector under a subject (steering their list to chosen items) or
    another subject's there, or put back a vector an invalidation deleted; factors are sealed as lists are (their
    version and subject, and a subject's epoch): anything else is a miss, and the list is then made otherwise."""
    from audits.online_store import MAC_BYTES

    _, matrix, model = world
    ns, client, version = online_store.namespace, online_store.client, model.version_id_
    a, b = str(matrix.user_ids[20]), str(matrix.user_ids[21])
    key_a, key_b = online_store.subject_key(a), online_store.subject_key(b)
    assert store_factors(online_store, model, [a, b]) == 2
    assert np.array_equal(online_store.user_factors(version, key_a), model.user_factors_[model.train_.user_index([a])[0]].astype(np.float32))
    sealed_a = client.get(f"{ns}:uf:{version}:{key_a}")
    steering = np.full(model.user_factors_.shape[1], 9.0, dtype=np.float32).tobytes()
    client.set(f"{ns}:uf:{version}:{key_a}", sealed_a[: len(sealed_a) - len(steering)] + steering)  # the seal kept, the vector replaced
    assert online_store.user_factors(version, key_a) is None
    client.set(f"{ns}:uf:{version}:{key_b}", sealed_a)  # a's sealed vector under b
    assert online_store.user_factors(version, key_b) is None
    client.set(f"{ns}:uf:{version}:{key_a}", sealed_a[MAC_BYTES + 8 :])  # a bare vector: an earlier layout, or anyone without the key
    assert online_store.user_factors(version, key_a) is None
    client.set(f"{ns}:uf:{version}:{key_a}", sealed_a)
    assert online_store.user_factors(version, key_a) is not None
    online_store.invalidate([key_a])  # a withdrawal: deleted, the epoch bumped ...
    client.set(f"{ns}:uf:{version}:{key_a}", sealed_a)  # ... and put back by whoever can write to Redis
    assert online_store.user_factors(version, key_a) is None
    items = client.get(f"{ns}:if:{version}")
    assert online_store.item_factors(version) is not None
    client.set(f"{ns}:if:{version}", items[:-4] + np.float32(50.0).tobytes())
    assert online_store.item_factors(version) is None
    client.set(f"{ns}:if:other-version", items)  # sealed for its own version only
    assert online_store.item_factors("other-version") is None


def test_a_hung_redis_costs_one_bounded_wait_not_one_every_few_seconds(monkeypatch) -> None:
    """A server that accepts and never answers: the first call waits out the timeout and marks the store down;
    later calls, once the retry delay is over, no longer wait (a ping in the background finds it still hung), so a
    caller on the API's event loop is not held every RETRY_AFTER_S seconds. A store answering again is used again."""
    import socket
    import threading
    import time

    from audits import online_store as module

    monkeypatch.setattr(module, "RETRY_AFTER_S", 0.05)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept, read nothing, answer nothing
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        hung = OnlineStore.from_url(f"redis://127.0.0.1:{server.getsockname()[1]}/0", key=b"k" * 32)
        began = time.perf_counter()
        assert hung.stamps(["s"]) is None
        first = time.perf_counter() - began
        assert first >= module.TIMEOUT_S * 0.8  # the one wait that finds it hung
        waits = []
        deadline = time.monotonic() + 1.0  # about twenty retry delays
        while time.monotonic() < deadline:
            began = time.perf_counter()
            assert hung.stamps(["s"]) is None and hung.read_list("s", "f") == (None, None)
            waits.append(time.perf_counter() - began)
            time.sleep(0.01)
        assert max(waits) < 0.05, f"a call waited {max(waits):.3f} s on a hung store"
    finally:
        stop.set()
        acceptor.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_store_marked_down_is_used_again_once_a_background_ping_finds_it_answering(online_store, monkeypatch) -> None:
    import time

    from audits import online_store as module

    monkeypatch.setattr(module, "RETRY_AFTER_S", 0.05)
    online_store._failed("read", TimeoutError("as a hung server would"))
    assert online_store.stamps(["s"]) is None  # marked down
    deadline = time.monotonic() + 5.0
    while not online_store.available and time.monotonic() < deadline:
        time.sleep(0.02)
    assert online_store.available and online_store.stamps(["s"]) is not None
