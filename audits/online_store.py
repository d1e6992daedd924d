"""The online store: model factors and cached lists in Redis, and their invalidation.

What it holds (``NS`` is the namespace, ``recgov`` by default)::

    NS:g                 the global epoch: bumped by a block or an availability change
    NS:e:<subject key>   the subject's epoch: bumped by a consent change or an erasure; it expires twice the
                         lists' time to live after its last bump or write under it
    NS:l:<subject key>   hash: one cached list per (model version, pack, what is kept out, length, context),
                         all under the epochs its field ``~`` names (a write under newer ones starts it afresh);
                         a list older than the time to live is a miss; each list is sealed (an HMAC under a key
                         derived from the installation key, over its subject, field and body): one that is not is a miss
    NS:uf:<version>:<subject key>  the subject's factor vector (float32 bytes), with the lists' time to live
    NS:if:<version>      the model's item factors (float32 bytes, with their shape), with the same time to live;
                         factors are sealed as lists are (an HMAC under their own derived key, over the version,
                         the subject for a subject's vector, and the bytes; a subject's vector also holds the epoch
                         it was written under, checked at each read): factors that are not are a miss
    NS:versions          the model versions whose factors are stored

A subject is named only by a keyed hash: ``HMAC-SHA256(installation key,
b"recgov.online-store.v1\\x00" + id)``, so Redis holds no raw id and nobody
without the installation key can link its keys to a person.

**Invalidation.** A consent change or an erasure bumps the subject's epoch and
deletes their lists and factors; a block or an availability change bumps the
global epoch. They run at once and again after the change's transaction commits
(:func:`invalidate_subjects_after_commit`, through the outbox below), so neither
a list made before the change nor one written while it commits survives it.
**Writes are conditional**: a list is stored only if both epochs still hold
the values read before it was made (one Lua script, atomic in Redis), so a list
made, then overtaken by a consent withdrawal, is never written afterwards. A
read returns an entry only if it was written under the current epochs. A withdrawal, a refusal or an erasure
also sets ``NS:h:<subject key>`` for :data:`HOLD_S` seconds, during which no
list of the subject is stored (a request that read the old consent before the
change but the epochs after it).

**Factors** are written as lists are: one key per subject, with the same time
to live, and only if the subject's epoch still is the one read *before* their
consent was (:meth:`OnlineStore.stamps`), so factors of a subject who withdrew
or was erased while a fill ran are never written after it.

**The outbox.** Every invalidation is also recorded in SQL, in the transaction
that records the change (``online_store_outbox``, :func:`record_outbox`; the
subject's keyed hash, or ``*`` for a global one: no raw id), whether or not the
recording process has ``RECGOV_REDIS_URL``. It is drained into Redis
(:func:`drain_outbox`: the epochs bumped, the entries deleted, the rows deleted
at the version applied) right after the commit when Redis answers, and
otherwise later: by the next serving request that consults the store
(:class:`OutboxWatch`), by ``recgov online-store drain``, by ``recgov
online-store warm`` and at the API's startup. While a subject's row (or a global
one) waits, the serving path neither reads nor writes their cached lists or
factors in Redis (:class:`OutboxWatch`: the outbox as the process read it at
most :attr:`OutboxWatch.interval_s` seconds ago, and at once after its own
changes and drains); so an erasure made while Redis was down leaves nothing of
the subject served from it, and its entries leave Redis at the first drain
after Redis is back (their time to live, :data:`DEFAULT_TTL_S`, still bounds
them should no drain ever run). A row no process applies (no Redis configured
anywhere, or one gone for good) expires once it is older than
:data:`OUTBOX_MAX_AGE_S`, twice that time to live, when nothing it would
invalidate can be served any more (:func:`expire_outbox`: deleted, and recorded
in the audit trail as ``online_store.outbox_expired``, counts only), so the
table holds at most the changes of that window.

**Redis down.** Every call fails soft: a read is a miss, a write is skipped, an
invalidation is logged and waits in the outbox (the serving path's own
per-request checks also keep the entry from being served: see
:mod:`governance.online_store`). After a
failure Redis is not asked again for :data:`RETRY_AFTER_S` seconds, and then
only once a ping from a background thread found it answering, so a dead or
hung server costs a request nothing after the one call that found it so (at
most :data:`TIMEOUT_S`), even on the API's event loop.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

__all__ = [
    "RETRY_AFTER_S",
    "Drained",
    "OnlineStore",
    "OutboxWatch",
    "Stamp",
    "check_redis_url",
    "configured_store",
    "drain_at_startup",
    "drain_outbox",
    "expire_outbox",
    "outbox_watch",
    "record_outbox",
    "store_subject_key",
    "invalidate_everyone",
    "invalidate_everyone_after_commit",
    "invalidate_subjects",
    "invalidate_subjects_after_commit",
]

log = logging.getLogger(__name__)

DOMAIN = b"recgov.online-store.v1\x00"
MAC_DOMAIN = b"recgov.online-store.list-mac.v1"
FACTOR_MAC_DOMAIN = b"recgov.online-store.factor-mac.v1"
MAC_BYTES = 16
"""Each cached list starts with this many bytes of HMAC-SHA256 over its subject, field and body (see ``_seal``)."""
RETRY_AFTER_S = 5.0
"""Seconds during which a store that just failed is not asked again."""
DEFAULT_TTL_S = 24 * 3600
"""How long a cached list lives at most (a change invalidates it sooner)."""
HOLD_S = 30.0
"""After a consent withdrawal or an erasure, no list of the subject is stored for this long (see below)."""
TIMEOUT_S = 0.25
"""Connect and read timeout: a slow store must not hold a request."""

LIST_FIELDS_MAX = 32
"""Cached lists one subject's hash holds at most under the same epochs (model versions, packs, regions, lengths);
a write beyond it starts the hash afresh."""

# Store the entry only if neither epoch moved since they were read and no hold is on the subject
# (KEYS: lists, subject epoch, global epoch, hold; ARGV: epochs, field, entry, time to live in ms, fields at most,
# the epoch's time to live in ms). The hash's field "~" names the epochs its entries were written under: a write
# under newer ones (after a block, an availability change, a consent change) drops the older entries rather than
# keeping them alive with the hash's time to live, and so does a write past LIST_FIELDS_MAX fields. The subject's
# epoch key lives at least as long as any entry written under it (its time to live is renewed here).
_PUT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local e = redis.call('GET', KEYS[2]) or '0'
local g = redis.call('GET', KEYS[3]) or '0'
if e ~= ARGV[1] or g ~= ARGV[2] then return 0 end
local mark = e .. '|' .. g
if redis.call('HGET', KEYS[1], '~') ~= mark or redis.call('HLEN', KEYS[1]) > tonumber(ARGV[6]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], '~', mark)
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if e ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[7]) end
return 1
"""

# One cached list and both epochs in one command (KEYS: lists, subject epoch, global epoch; ARGV: field).
_READ = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0'}
"""

# Store one subject's factors only if their epoch did not move since it was read and no hold is on them
# (KEYS: factors, subject epoch, hold; ARGV: epoch, factors, time to live in ms, the epoch's time to live in ms).
_PUT_FACTORS = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[1] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
"""


def _resp(*parts: Any) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


@dataclass(frozen=True)
class Stamp:
    """The epochs read before a list was made: it is stored only if they still hold."""

    subject: int
    everyone: int


class OnlineStore:
    """Factors and cached lists in one Redis database (see the module docstring).

    ``client``: a ``redis.Redis``; ``key``: the secret of the subjects' keyed hashes
    (default: the installation key, :mod:`audits.keys`).
    """

    def __init__(self, client: Any, *, key: bytes | None = None, namespace: str = "recgov", ttl_s: int = DEFAULT_TTL_S) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_ms = int(ttl_s * 1000)
        """How long a cached list or a subject's factors live at most: a list read later than this after it was
        written is a miss, however long its hash was kept alive by newer writes."""
        self._key = key
        self._mac_key: bytes | None = None
        self._factor_mac_key: bytes | None = None
        self.hold_s = HOLD_S
        self._down_until = 0.0
        self._suspect = False
        """Whether a call failed since the store last answered a ping (:attr:`available`)."""
        self._probing = False
        self._probe_lock = threading.Lock()
        self._lock = threading.Lock()
        self._put = client.register_script(_PUT)
        self._put_factors = client.register_script(_PUT_FACTORS)
        self._read = client.register_script(_READ)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> OnlineStore:
        """A store on the Redis at ``url`` (nothing is sent until it is used)."""
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
        return cls(client, **kwargs)

    @property
    def epoch_ttl_ms(self) -> int:
        """How long a subject's epoch key lives after its last bump or write under it: twice the entries' time to
        live, so it outlives every entry written under it (it is renewed by each write) and an epoch never comes
        back to a value an entry still holds; after that, the subject's keyed hash is gone from Redis."""
        return 2 * self.ttl_ms

    # -- keys ---------------------------------------------------------------------------------------
    def _secret(self) -> bytes:
        if self._key is None:  # read once: the store's keys are named under the key it started with
            from audits.keys import installation_key
            from audits.settings import get_settings

            self._key = installation_key(get_settings())
        return self._key

    def subject_key(self, subject_id: str | int) -> str:
        """The keyed hash that names ``subject_id`` in Redis (never the id itself)."""
        return store_subject_key(subject_id, self._secret())

    def _seal(self, subject: str, field: str, payload: bytes) -> bytes:
        """The tag that binds a cached list to its subject and field, under a key derived from the installation
        key: an entry Redis hands back is served only if this process (or one sharing its key) wrote it there."""
        mac_key = self._mac_key
        if mac_key is None:
            mac_key = self._mac_key = hmac.digest(self._secret(), MAC_DOMAIN, "sha256")
        return hmac.digest(mac_key, b"%b\x00%b\x00%b" % (subject.encode(), field.encode(), payload), "sha256")[:MAC_BYTES]

    def _factor_seal(self, name: str, payload: bytes) -> bytes:
        """The tag that binds stored factors to what they are (``name``: the model version, and the subject's key
        for a subject's vector), under its own key derived from the installation key: factors Redis hands back are
        used only if this installation wrote them there, for that version and that subject."""
        mac_key = self._factor_mac_key
        if mac_key is None:
            mac_key = self._factor_mac_key = hmac.digest(self._secret(), FACTOR_MAC_DOMAIN, "sha256")
        return hmac.digest(mac_key, b"%b\x00%b" % (name.encode(), payload), "sha256")[:MAC_BYTES]

    def _unsealed(self, name: str, raw: bytes) -> bytes | None:
        """The body of sealed factors, or None (logged) when the seal does not hold."""
        body = raw[MAC_BYTES:]
        if len(raw) < MAC_BYTES or not hmac.compare_digest(raw[:MAC_BYTES], self._factor_seal(name, body)):
            log.warning("online store: factors not sealed by this installation (or for another subject or version) were read as a miss")
            return None
        return body

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # -- health -------------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False while a recent failure keeps the store from being asked (see :data:`RETRY_AFTER_S`), and after
        it until a ping from a background thread has found the store answering again (:meth:`_probe`): a caller
        on an event loop never becomes the one that waits out a store still hung, so a hang costs the loop one
        wait of at most :data:`TIMEOUT_S` when it begins, not one every :data:`RETRY_AFTER_S`."""
        if not self._suspect:
            return True
        if time.monotonic() >= self._down_until:
            self._start_probe()
        return False

    def _failed(self, what: str, err: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER_S
        self._suspect = True
        log.warning("online store: %s failed (%s); not asked again for %g s", what, type(err).__name__, RETRY_AFTER_S)

    def _start_probe(self) -> None:
        with self._probe_lock:
            if self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe, name="online-store-probe", daemon=True).start()

    def _probe(self) -> None:
        """Ping the store off the caller's thread; it is asked again only once it answered."""
        try:
            answered = bool(self.client.ping())
        except Exception as err:  # noqa: BLE001 - any failure keeps the store marked down
            self._failed("ping", err)
            answered = False
        finally:
            with self._probe_lock:
                self._probing = False
        if answered:
            self._suspect = False
            log.info("online store: answering again")

    def ping(self) -> bool:
        """Whether Redis answers now (an answer makes the store available again at once)."""
        try:
            answered = bool(self.client.ping())
        except Exception as err:  # noqa: BLE001 - any failure of the store is a miss
            self._failed("ping", err)
            return False
        if answered:
            self._suspect = False
        return answered

    # -- lists --------------------------------------------------------------------------------------
    def read_list(self, subject: str, field: str) -> tuple[dict[str, Any] | None, Stamp | None]:
        """The list cached for ``subject`` (a :meth:`subject_key`) under ``field`` if it was written under the
        current epochs, and the epochs to write a new one with (None, None: the store is down).

        One command, one round trip (:data:`_READ`): the entry and both epochs are read together, so the epochs
        it is checked against are the ones it was read with."""
        if not self.available:
            return None, None
        try:
            raw, epoch, everyone = self._call(self._read, (self._k("l", subject), self._k("e", subject), self._k("g")), (field,))
        except Exception as err:  # noqa: BLE001 - any failure of the store is a miss
            self._failed("read", err)
            return None, None
        stamp = Stamp(int(epoch or 0), int(everyone or 0))
        if raw is None:
            return None, stamp
        body = raw[MAC_BYTES:]
        if not hmac.compare_digest(raw[:MAC_BYTES], self._seal(subject, field, body)):
            log.warning("online store: a cached list not sealed by this installation (or for another subject) was read as a miss")
            return None, stamp  # written by someone without the installation key, or moved from another subject
        try:
            entry = orjson.loads(body)
        except orjson.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):  # not an entry this version wrote (another version, another program): a miss
            log.warning("online store: an entry that is not a cached list was read as a miss")
            return None, stamp
        if entry.get("e") != stamp.subject or entry.get("g") != stamp.everyone:
            return None, stamp
        written = entry.get("w")
        if not isinstance(written, int) or not 0 <= time.time() * 1000 - written <= self.ttl_ms:
            return None, stamp  # older than its time to live (or of a version that did not say when it was written)
        return entry, stamp

    def _call(self, script: Any, keys: Sequence[str], args: Sequence[str]) -> Any:
        """``script`` (a registered Lua script) run with ``keys`` and ``args`` as one ``EVALSHA`` written straight
        to a pooled connection: the serving path's read, without the client's per-command machinery (which costs
        as much as the round trip itself). A script Redis does not hold yet is loaded and run by the client's own
        call; any other failure drops the connection (it may hold half a reply) and raises."""
        from redis.exceptions import NoScriptError

        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([_resp(b"EVALSHA", script.sha, len(keys), *keys, *args)], check_health=False)
            reply = conn.read_response()
        except NoScriptError:
            pool.release(conn)
            return script(keys=list(keys), args=list(args))
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        pool.release(conn)
        return reply

    def stamps(self, subjects: Sequence[str]) -> list[Stamp] | None:
        """The current epochs of ``subjects`` (keyed hashes), one :class:`Stamp` each (None: the store is down).

        Read them *before* the consent a list or factors are made from: a write under them then fails once a
        consent change or an erasure committed after that read has bumped the epoch."""
        if not self.available:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self._k("g"))
            for s in subjects:
                pipe.get(self._k("e", s))
            everyone, *epochs = pipe.execute()
        except Exception as err:  # noqa: BLE001 - any failure of the store is a miss
            self._failed("read", err)
            return None
        return [Stamp(int(e or 0), int(everyone or 0)) for e in epochs]

    def write_list(self, subject: str, field: str, entry: dict[str, Any], stamp: Stamp) -> bool:
        """Store ``entry`` if the epochs still are ``stamp``'s (atomic); whether it was stored."""
        if not self.available:
            return False
        payload = orjson.dumps({**entry, "e": stamp.subject, "g": stamp.everyone, "w": int(time.time() * 1000)})
        payload = self._seal(subject, field, payload) + payload
        keys = [self._k("l", subject), self._k("e", subject), self._k("g"), self._k("h", subject)]
        try:
            args = [stamp.subject, stamp.everyone, field, payload, self.ttl_ms, LIST_FIELDS_MAX, self.epoch_ttl_ms]
            return bool(self._put(keys=keys, args=args))
        except Exception as err:  # noqa: BLE001 - a write that fails is skipped
            self._failed("write", err)
            return False

    # -- factors ------------------------------------------------------------------------------------
    def put_factors(
        self, version: str, item_factors: np.ndarray, subjects: Sequence[str], user_factors: np.ndarray, stamps: Sequence[Stamp]
    ) -> int:
        """Store a model version's item factors and the factors of ``subjects`` (keyed hashes, one row each of
        ``user_factors``), each only if the subject's epoch still is its ``stamps`` entry (read with
        :meth:`stamps` before their consent was) and for the store's time to live; how many subjects were
        stored (0 when the store is down)."""
        items = np.ascontiguousarray(item_factors, dtype=np.float32)
        users = np.ascontiguousarray(user_factors, dtype=np.float32)
        if len(subjects) != len(users) or len(subjects) != len(stamps):
            raise ValueError(f"{len(subjects)} subjects, {len(users)} factor rows and {len(stamps)} stamps; give one of each per subject")
        stored = 0
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(self._k("versions"), version)
            # with the same time to live: a model retired, replaced or deleted (an erased subject's data trained it)
            # does not leave its item factors in Redis for good; each fill renews them
            body = orjson.dumps(list(items.shape)) + b"\n" + items.tobytes()
            pipe.set(self._k("if", version), self._factor_seal(f"if\x00{version}", body) + body, px=self.ttl_ms)
            pipe.unlink(self._k("uf", version))  # the former layout (one hash per version, no time to live)
            pipe.execute()
            for start in range(0, len(subjects), 10_000):
                pipe = self.client.pipeline(transaction=False)
                for j in range(start, min(start + 10_000, len(subjects))):
                    s = subjects[j]
                    keys = [self._k("uf", version, s), self._k("e", s), self._k("h", s)]
                    body = int(stamps[j].subject).to_bytes(8, "little", signed=True) + users[j].tobytes()  # its epoch, then the vector
                    sealed = self._factor_seal(f"uf\x00{version}\x00{s}", body) + body
                    self._put_factors(keys=keys, args=[stamps[j].subject, sealed, self.ttl_ms, self.epoch_ttl_ms], client=pipe)
                stored += sum(int(r) for r in pipe.execute())
        except Exception as err:  # noqa: BLE001 - a store that is down holds nothing
            self._failed("factor write", err)
            return stored
        return stored

    def item_factors(self, version: str) -> np.ndarray | None:
        """A model version's item factors (None: not stored, or the store is down)."""
        if not self.available:
            return None
        try:
            raw = self.client.get(self._k("if", version))
        except Exception as err:  # noqa: BLE001
            self._failed("factor read", err)
            return None
        body = None if raw is None else self._unsealed(f"if\x00{version}", raw)
        if body is None:
            return None
        head, _, data = body.partition(b"\n")
        shape = tuple(orjson.loads(head))
        return np.frombuffer(data, dtype=np.float32).reshape(shape)

    def user_factors(self, version: str, subject: str) -> np.ndarray | None:
        """One subject's factors under a model version (None: not stored, or the store is down)."""
        if not self.available:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self._k("uf", version, subject))
            pipe.get(self._k("e", subject))
            raw, epoch = pipe.execute()
        except Exception as err:  # noqa: BLE001
            self._failed("factor read", err)
            return None
        body = None if raw is None else self._unsealed(f"uf\x00{version}\x00{subject}", raw)
        if body is None or len(body) < 8:
            return None
        if int.from_bytes(body[:8], "little", signed=True) != int(epoch or 0):
            return None  # written under an older epoch (before a consent change or an erasure) and put back since
        return np.frombuffer(body[8:], dtype=np.float32)

    # -- what a subject has here (an access request) ------------------------------------------------
    def subject_holdings(self, subject: str) -> dict[str, Any] | None:
        """Everything stored under ``subject`` (a :meth:`subject_key`), for an access request (GDPR Art. 15): each
        cached list (opened when this installation sealed it, with whether it would still be served), the subject's
        epoch and hold stamps, and their factor vector under each model version. None: the store is down.

        Entries a read would treat as misses (stale, past their time to live) are listed too: they are stored."""
        if not self.available:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self._k("l", subject))
            pipe.pttl(self._k("l", subject))
            pipe.get(self._k("e", subject))
            pipe.pttl(self._k("e", subject))
            pipe.pttl(self._k("h", subject))
            pipe.get(self._k("g"))
            pipe.smembers(self._k("versions"))
            fields, lists_ttl, epoch, epoch_ttl, hold_ttl, everyone, versions = pipe.execute()
            names = sorted(v.decode() if isinstance(v, bytes) else str(v) for v in versions)
            pipe = self.client.pipeline(transaction=False)
            for version in names:
                pipe.get(self._k("uf", version, subject))
            vectors = pipe.execute() if names else []
        except Exception as err:  # noqa: BLE001 - the store is down: the caller says so
            self._failed("read", err)
            return None
        epoch_now, everyone_now = int(epoch or 0), int(everyone or 0)
        now_ms = time.time() * 1000
        lists = []
        for raw_field, raw in sorted(fields.items()):
            field = raw_field.decode("utf-8", "replace") if isinstance(raw_field, bytes) else str(raw_field)
            if field == "~":
                continue
            body = raw[MAC_BYTES:]
            sealed = len(raw) >= MAC_BYTES and hmac.compare_digest(raw[:MAC_BYTES], self._seal(subject, field, body))
            try:
                entry = orjson.loads(body) if sealed else None
            except orjson.JSONDecodeError:
                entry = None
            written = entry.get("w") if isinstance(entry, dict) else None
            served = (
                isinstance(entry, dict) and entry.get("e") == epoch_now and entry.get("g") == everyone_now
                and isinstance(written, int) and 0 <= now_ms - written <= self.ttl_ms
            )  # fmt: skip
            lists.append(
                {
                    "field": field,
                    "sealed_by_this_installation": sealed,
                    "would_be_served": bool(served),
                    "written_at_ms": written,
                    "entry": entry if isinstance(entry, dict) else None,
                    "bytes": len(raw),
                }
            )
        factors = []
        for version, raw in zip(names, vectors):
            if raw is None:
                continue
            body = self._unsealed(f"uf\x00{version}\x00{subject}", raw)
            ok = body is not None and len(body) >= 8 and (len(body) - 8) % 4 == 0
            factors.append(
                {
                    "model_version": version,
                    "written_under_epoch": int.from_bytes(body[:8], "little", signed=True) if ok else None,
                    "factors": np.frombuffer(body[8:], dtype=np.float32).astype(float).tolist() if ok else None,
                    "sealed_by_this_installation": body is not None,
                }
            )
        return {
            "lists": lists,
            "lists_expire_in_ms": int(lists_ttl) if lists and int(lists_ttl) >= 0 else None,
            "epoch": epoch_now if epoch is not None else None,
            "epoch_expires_in_ms": int(epoch_ttl) if epoch is not None and int(epoch_ttl) >= 0 else None,
            "hold_expires_in_ms": int(hold_ttl) if int(hold_ttl) >= 0 else None,
            "factors": factors,
        }

    # -- invalidation -------------------------------------------------------------------------------
    def invalidate(self, subjects: Iterable[str], *, hold: bool = False) -> bool:
        """Bump each subject's epoch, delete their lists and their factors under every version; whether Redis
        took it (it is tried even while the store is marked down: an invalidation must not be skipped lightly).

        ``hold`` (a withdrawal, an erasure): also refuse any list of theirs for :data:`HOLD_S` seconds, so that a
        request that read their consent before the change and looks its list up after it cannot store it."""
        subjects = list(subjects)
        if not subjects:
            return True
        try:
            versions = [v.decode() if isinstance(v, bytes) else v for v in self.client.smembers(self._k("versions"))]
            pipe = self.client.pipeline(transaction=True)
            for start in range(0, len(subjects), 10_000):
                chunk = subjects[start : start + 10_000]
                for s in chunk:
                    pipe.incr(self._k("e", s))
                    pipe.pexpire(self._k("e", s), self.epoch_ttl_ms)  # the pseudonym leaves Redis once nothing needs it
                    if hold:
                        pipe.set(self._k("h", s), 1, px=int(self.hold_s * 1000))
                pipe.delete(*(self._k("l", s) for s in chunk))
                for version in versions:
                    pipe.delete(*(self._k("uf", version, s) for s in chunk))
                    pipe.hdel(self._k("uf", version), *chunk)  # the former layout, if a store still holds it
            pipe.execute()
            return True
        except Exception as err:  # noqa: BLE001
            self._failed("invalidation", err)
            log.error("online store: %d subject(s) could not be invalidated now; the change's outbox rows keep "
                      "their entries from being served until a drain applies them", len(subjects))
            return False

    def invalidate_everyone(self) -> bool:
        """Bump the global epoch: every cached list is stale at once (a block or an availability change)."""
        try:
            self.client.incr(self._k("g"))
            return True
        except Exception as err:  # noqa: BLE001
            self._failed("invalidation", err)
            log.error("online store: the global epoch could not be bumped now; the change's outbox row keeps every "
                      "cached list from being served until a drain applies it")
            return False


_STORES: dict[str, OnlineStore] = {}
_STORES_LOCK = threading.Lock()


def configured_store() -> OnlineStore | None:
    """The store ``RECGOV_REDIS_URL`` names (one per URL per process), or None when none is configured."""
    from audits.settings import get_settings

    url = get_settings().redis_url
    if not url:
        return None
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            check_redis_url(url)
            try:
                made = OnlineStore.from_url(url)
            except ValueError as err:  # what redis-py refuses beyond the checks above; its message may hold the URL
                from recommender.errors import ConfigError

                raise ConfigError("RECGOV_REDIS_URL: not a Redis URL redis-py accepts; e.g. redis://127.0.0.1:6379/0") from err
            store = _STORES[url] = made
        return store


def check_redis_url(url: str) -> None:
    """Refuse a ``RECGOV_REDIS_URL`` that is not a Redis URL, naming the variable and the part that is wrong, never
    repeating the URL (it may hold a password): a bad scheme or port, or a database that is not a number (which
    redis-py would silently read as database 0, another application's)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    from recommender.errors import ConfigError

    where = "RECGOV_REDIS_URL"
    parts = urlsplit(url.strip())
    if parts.scheme not in ("redis", "rediss", "unix"):
        got = f"{parts.scheme}://" if parts.scheme and len(parts.scheme) <= 16 else "none"
        raise ConfigError(f"{where}: the scheme must be redis://, rediss:// or unix:// (got {got}); e.g. redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ConfigError(f"{where}: the port must be a number from 0 to 65535; e.g. redis://127.0.0.1:6379/0") from None
    dbs = [unquote(parts.path).strip("/")] if parts.scheme != "unix" and parts.path.strip("/") else []
    dbs += parse_qs(parts.query).get("db", [])
    for db in dbs:
        if not db.isdigit():
            raise ConfigError(f"{where}: the database must be a number (the path /0, /1, ... or ?db=N); e.g. redis://127.0.0.1:6379/0")


def invalidate_subjects(subject_ids: Iterable[str | int], *, hold: bool = False) -> None:
    """Invalidate the configured store's entries of these subjects (raw ids, hashed here); nothing if none."""
    store = configured_store()
    if store is not None:
        store.invalidate((store.subject_key(s) for s in subject_ids), hold=hold)


def invalidate_everyone() -> None:
    """Bump the configured store's global epoch; nothing if none is configured."""
    store = configured_store()
    if store is not None:
        store.invalidate_everyone()


def store_subject_key(subject_id: str | int, key: bytes | None = None) -> str:
    """The keyed hash that names ``subject_id`` in the online store and its outbox (never the id itself); ``key``:
    the secret (default: the installation key, which every process sharing a database uses)."""
    if key is None:
        from audits.keys import installation_key
        from audits.settings import get_settings

        key = installation_key(get_settings())
    return hmac.digest(key, DOMAIN + str(subject_id).encode("utf-8"), "sha256").hex()[:40]


# -- the outbox ---------------------------------------------------------------------------------------------
OUTBOX_BATCH = 2_000
"""Rows written per statement and applied per drain step."""
OUTBOX_BULK_SUBJECTS = 1_000
"""More subjects than this in one change (a consent import's batch): the outbox records one global
invalidation instead of a row per subject. Every list and factor leaves the store at the next drain (the
global epoch), which is what so many changes warrant, and an import of a million records does not pay a
keyed hash and an upsert per subject."""

OUTBOX_MAX_AGE_S = 2 * DEFAULT_TTL_S
"""A row older than this is expired unapplied (:func:`expire_outbox`): every list and factor written before its
change has outlived its time to live by then (read as a miss, or gone from Redis), so applying it would change
nothing; it only kept the table growing where no process ever reaches Redis. Twice the time to live, as a
subject's epoch key, so that a clock that runs behind another process's by less than that cannot expire a row
early."""
OUTBOX_EXPIRE_EVERY_S = 600.0
"""How often at most a process that cannot apply the outbox looks for rows past :data:`OUTBOX_MAX_AGE_S`."""
OUTBOX_EXPIRED_ACTION = "online_store.outbox_expired"
"""The trail action of an expiry: how many rows, whether a global one, the oldest, and why none applied them."""

OUTBOX_WATCH_MAX = 10_000
"""More pending subjects than this: a serving process treats every subject as pending (it reads no more)."""


def _dialect_of(session: Any) -> str:
    from sqlalchemy.orm import Session

    return session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name


def record_outbox(session: Any, keys: Iterable[str], *, hold: bool = False) -> int:
    """Record the invalidation of ``keys`` (:func:`store_subject_key` hashes, or
    :data:`~audits.models.OUTBOX_EVERYONE`) in ``session``'s transaction (a ``Session`` or a ``Connection``):
    it commits with the change it follows, or not at all. A key already waiting has its ``version`` bumped
    (and ``hold`` kept if either asked for it), so a drain that read the older version does not delete it.
    Returns how many keys were recorded."""
    from datetime import UTC, datetime

    from sqlalchemy import or_
    from sqlalchemy.dialects import postgresql, sqlite

    from audits.models import OnlineStoreOutbox as T

    unique = sorted(set(keys))  # one row per key per statement (PostgreSQL refuses to upsert a row twice)
    if not unique:
        return 0
    postgres = _dialect_of(session) == "postgresql"
    upsert = _OUTBOX_UPSERT.get(postgres)
    if upsert is None:
        module = postgresql if postgres else sqlite
        insert = module.insert(T)
        # One statement per dialect, its rows as parameters: SQLAlchemy caches its compiled form (a multi-row
        # VALUES upsert is compiled again at every execution, a millisecond of the consent write it follows).
        upsert = _OUTBOX_UPSERT[postgres] = insert.on_conflict_do_update(
            index_elements=[T.subject_key],
            set_={"version": T.version + 1, "hold": or_(T.hold, insert.excluded.hold), "recorded_at": insert.excluded.recorded_at},
        )  # fmt: skip
    now = datetime.now(UTC)
    for start in range(0, len(unique), OUTBOX_BATCH):
        chunk = unique[start : start + OUTBOX_BATCH]
        session.execute(upsert, [{"subject_key": k, "hold": hold, "version": 1, "recorded_at": now} for k in chunk])
    return len(unique)


_OUTBOX_UPSERT: dict[bool, Any] = {}
"""The outbox's upsert, built once per dialect (key: PostgreSQL or not)."""


@dataclass(frozen=True)
class Drained:
    """What :func:`drain_outbox` did: rows applied and deleted, and rows still waiting (with why)."""

    applied: int
    subjects: int
    everyone: bool
    pending: int
    reason: str | None = None
    """Why rows still wait: ``no store`` (none configured), ``store down``; None: nothing waits."""
    expired: int = 0
    """Rows past :data:`OUTBOX_MAX_AGE_S` that could not be applied and were expired (:func:`expire_outbox`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied, "subjects": self.subjects, "everyone": self.everyone, "pending": self.pending,
            "reason": self.reason, "expired": self.expired,
        }  # fmt: skip


def _pending_count(engine: Any) -> int:
    from sqlalchemy import func, select

    from audits.models import OnlineStoreOutbox as T

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(T)).scalar_one())


def drain_outbox(engine: Any, store: OnlineStore | None = None) -> Drained:
    """Apply the outbox's invalidations to ``store`` (default: the configured one) and delete what was applied.

    In id order, :data:`OUTBOX_BATCH` rows at a time: each subject's epoch is bumped and their lists and factors
    deleted (held back too where a row asks), the global epoch bumped once for a global row; only once Redis
    took a batch are its rows deleted, each only at the version read (a change recorded meanwhile keeps its row).
    Safe to run concurrently and again: a second application bumps an epoch once more, which only makes more
    entries misses (epochs are compared for equality and only grow)."""
    from sqlalchemy import bindparam, delete, select

    from audits.models import OUTBOX_EVERYONE
    from audits.models import OnlineStoreOutbox as T

    store = store if store is not None else configured_store()
    if store is None:
        expired = expire_outbox(engine, "no store")
        return Drained(0, 0, False, _pending_count(engine), "no store", expired)
    applied = subjects = 0
    everyone = False
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(T.id, T.subject_key, T.hold, T.version).where(T.id > after).order_by(T.id).limit(OUTBOX_BATCH)
            ).all()
        if not rows:
            break
        after = rows[-1][0]
        keys = [(k, bool(h)) for _, k, h, _ in rows if k != OUTBOX_EVERYONE]
        glob = any(k == OUTBOX_EVERYONE for _, k, _, _ in rows)
        held = [k for k, h in keys if h]
        rest = [k for k, h in keys if not h]
        ok = (not held or store.invalidate(held, hold=True)) and (not rest or store.invalidate(rest))
        ok = ok and (not glob or store.invalidate_everyone())
        if not ok:
            expired = expire_outbox(engine, "store down", store)
            pending = _pending_count(engine)
            _note_pending(engine)
            return Drained(applied, subjects, everyone, pending, "store down", expired)
        with engine.begin() as conn:
            conn.execute(
                delete(T).where(T.id == bindparam("row_id"), T.version == bindparam("row_version")),
                [{"row_id": i, "row_version": v} for i, _, _, v in rows],
            )
        applied += len(rows)
        subjects += len(keys)
        everyone = everyone or glob
    pending = _pending_count(engine)
    watch = _WATCHES.get(engine)
    if watch is not None:
        watch.refresh(force=True)
    return Drained(applied, subjects, everyone, pending, None if pending == 0 else "recorded meanwhile")


def expire_outbox(engine: Any, reason: str, store: OnlineStore | None = None) -> int:
    """Delete the outbox rows recorded more than :data:`OUTBOX_MAX_AGE_S` ago (twice ``store``'s time to live, when
    it has its own) and record their expiry in the audit trail, in one transaction; how many were deleted.

    ``reason``: why no drain applied them (``no store``, ``store down``). Nothing a row would invalidate can still
    be served from Redis by then (see :data:`OUTBOX_MAX_AGE_S`); a row re-recorded meanwhile has a newer
    ``recorded_at`` and stays. The trail event holds counts and times only, never a key."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete, select

    from audits.models import OUTBOX_EVERYONE
    from audits.models import OnlineStoreOutbox as T
    from audits.trail import append_event

    max_age_s = OUTBOX_MAX_AGE_S if store is None else max(OUTBOX_MAX_AGE_S, store.epoch_ttl_ms / 1000)
    cutoff = datetime.now(UTC) - timedelta(seconds=max_age_s)
    rows = subjects = 0
    everyone = False
    oldest: datetime | None = None
    with engine.begin() as conn:
        while True:
            ids = select(T.id).where(T.recorded_at < cutoff).order_by(T.id).limit(OUTBOX_BATCH).scalar_subquery()
            gone = conn.execute(delete(T).where(T.id.in_(ids), T.recorded_at < cutoff).returning(T.subject_key, T.recorded_at)).all()
            if not gone:
                break
            rows += len(gone)
            subjects += sum(k != OUTBOX_EVERYONE for k, _ in gone)
            everyone = everyone or any(k == OUTBOX_EVERYONE for k, _ in gone)
            first = min(t for _, t in gone)
            oldest = first if oldest is None else min(oldest, first)
        if rows:
            append_event(
                conn,
                actor="online_store",
                action=OUTBOX_EXPIRED_ACTION,
                payload={
                    "rows": rows, "subjects": subjects, "everyone": everyone, "reason": reason,
                    "oldest": oldest.astimezone(UTC).isoformat() if oldest is not None else None, "max_age_s": max_age_s,
                },
            )  # fmt: skip
    if rows:
        log.warning("online store: %d outbox row(s) older than %g s expired unapplied (%s); recorded in the trail", rows, max_age_s, reason)
        _note_pending(engine)
    return rows


_EXPIRED_AT: weakref.WeakKeyDictionary[Any, float] | dict[Any, float] = weakref.WeakKeyDictionary()
"""When this process last looked for expired rows, per engine (see :func:`_expire_due`)."""


def _expiry_due(engine: Any) -> bool:
    """Whether this process did not look for expired rows of ``engine``'s outbox in the last :data:`OUTBOX_EXPIRE_EVERY_S` seconds."""
    last = _EXPIRED_AT.get(engine)
    return last is None or time.monotonic() - last >= OUTBOX_EXPIRE_EVERY_S


def _expire_due(engine: Any, reason: str, store: OnlineStore | None = None) -> None:
    """:func:`expire_outbox` if :func:`_expiry_due`."""
    if not _expiry_due(engine):
        return
    _EXPIRED_AT[engine] = time.monotonic()
    expire_outbox(engine, reason, store)


def drain_at_startup(engine: Any) -> Drained | None:
    """Drain the outbox into the configured store when a server starts (None: none configured); a store that is
    down, or a failure, is logged and leaves the rows for the next drain: a server starts all the same."""
    store = configured_store()
    if store is None:
        try:
            _expire_due(engine, "no store")  # nothing here applies the rows: those past their age go
        except Exception as err:  # noqa: BLE001 - startup goes on; they are expired later
            log.error("online store: the outbox's expired rows could not be deleted at startup (%s)", type(err).__name__)
        return None
    try:
        done = drain_outbox(engine, store)
    except Exception as err:  # noqa: BLE001 - startup goes on; the rows wait
        log.error("online store: the outbox could not be drained at startup (%s)", type(err).__name__)
        return None
    if done.pending:
        log.warning("online store: %d invalidation(s) still wait in the outbox (%s); their subjects are not served "
                    "from the store until they are applied", done.pending, done.reason)
    outbox_watch(engine).refresh(force=True)
    return done


class OutboxWatch:
    """What a serving process knows of the outbox: the subjects (and whether everyone) with invalidations not yet
    applied to Redis, whose cached lists and factors it must not serve from there.

    Read from the database at most every :attr:`interval_s` seconds, by the first request that asks after that
    (one indexed query on a table that is empty when Redis is up), and at once when this process records or drains
    a change; :meth:`holds` is a set lookup. While something is pending and the store answers, that request also
    starts a drain of it (at most every :attr:`interval_s` seconds), on a thread of its own: a drain writes to the
    database and, after an outage, may apply many thousands of rows, which must not hold the request (the API
    asks from its event loop). Its subjects stay held until the drain is done and the view read again."""

    def __init__(self, engine: Any, interval_s: float = 1.0, *, drain: bool = True) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.drain = drain
        """Whether :meth:`holds` drains a pending outbox into a store that answers."""
        self._subjects: frozenset[str] = frozenset()
        self._everyone = False
        self._checked = float("-inf")
        self._drained = float("-inf")
        self._lock = threading.Lock()
        self._draining = threading.Lock()
        self._drainer: threading.Thread | None = None
        self.refreshes = 0

    @property
    def pending(self) -> bool:
        """Whether an invalidation was waiting at the last read."""
        return self._everyone or bool(self._subjects)

    def refresh(self, *, force: bool = False) -> None:
        """Read the pending keys again if :attr:`interval_s` passed since the last read (``force``: now)."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval_s:
            return
        if not self._lock.acquire(blocking=force):
            return  # another thread is reading it now; this request uses what was read before
        try:
            from sqlalchemy import select

            from audits.models import OUTBOX_EVERYONE
            from audits.models import OnlineStoreOutbox as T

            with self.engine.connect() as conn:
                keys = conn.execute(select(T.subject_key).limit(OUTBOX_WATCH_MAX + 1)).scalars().all()
            self._everyone = OUTBOX_EVERYONE in keys or len(keys) > OUTBOX_WATCH_MAX
            self._subjects = frozenset(keys)
            self._checked = time.monotonic()
            self.refreshes += 1
        finally:
            self._lock.release()

    def holds(self, subject_key: str, store: OnlineStore | None = None) -> bool:
        """Whether ``subject_key``'s entries must not be served from Redis now (an invalidation of theirs, or a
        global one, is pending). With ``store``: a pending outbox is drained into it when it answers."""
        try:
            self.refresh()
        except Exception as err:  # noqa: BLE001 - the database unreadable: serve nothing from Redis
            log.warning("online store: the outbox could not be read (%s); nothing is served from the store", type(err).__name__)
            return True
        if not self.pending:
            return False
        now = time.monotonic()
        if self.drain and store is not None and store.available and now - self._drained >= self.interval_s:
            self._drained = now
            self._drain_behind(store)
        return self._everyone or subject_key in self._subjects

    def _drain_behind(self, store: OnlineStore) -> None:
        """Drain the outbox into ``store`` on a thread of its own (one at a time), then read the view again."""
        if not self._draining.acquire(blocking=False):
            return  # a drain runs already

        def run() -> None:
            try:
                drain_outbox(self.engine, store)
                self.refresh(force=True)  # what is left (nothing, when Redis took it all)
            except Exception as err:  # noqa: BLE001 - drained later (the CLI, the next request, startup)
                log.warning("online store: the outbox could not be drained (%s)", type(err).__name__)
            finally:
                self._draining.release()

        self._drainer = threading.Thread(target=run, name="recgov-online-store-drain", daemon=True)
        self._drainer.start()

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the drain :meth:`holds` started, if one runs."""
        drainer = self._drainer
        if drainer is not None:
            drainer.join(timeout)


_WATCHES: weakref.WeakKeyDictionary[Any, OutboxWatch] = weakref.WeakKeyDictionary()
_WATCHES_LOCK = threading.Lock()


def outbox_watch(engine: Any) -> OutboxWatch:
    """The process's :class:`OutboxWatch` of ``engine``'s database (one per engine)."""
    with _WATCHES_LOCK:
        watch = _WATCHES.get(engine)
        if watch is None:
            watch = _WATCHES[engine] = OutboxWatch(engine)
        return watch


def _note_pending(engine: Any) -> None:
    watch = _WATCHES.get(engine)
    if watch is not None:
        watch.refresh(force=True)


def _engine_of(session: Any) -> Any:
    from sqlalchemy.orm import Session

    bind = session.get_bind() if isinstance(session, Session) else session
    return getattr(bind, "engine", bind)


def invalidate_subjects_after_commit(session: Any, subject_ids: Iterable[str | int], *, hold: bool = False) -> None:
    """Record the invalidation of these subjects in ``session``'s transaction (the outbox, :func:`record_outbox`),
    apply it now, and drain the outbox once the transaction commits (a ``Session``; for a bare connection, the next
    drain: a serving request, ``recgov online-store drain``, the API's startup); ``hold``: a withdrawal or an
    erasure (see :meth:`OnlineStore.invalidate`). Recorded even when no store is configured here: a process that
    serves from Redis applies it."""
    ids = [str(s) for s in subject_ids]
    if not ids:
        return
    store = configured_store()  # its keys are named under the installation key, as the outbox's are without one
    if len(ids) > OUTBOX_BULK_SUBJECTS:  # a bulk change (a consent import's batch): one global row, not one per subject
        from audits.models import OUTBOX_EVERYONE

        record_outbox(session, [OUTBOX_EVERYONE])
        if store is not None and store.available:
            store.invalidate([store.subject_key(s) for s in ids], hold=hold)  # their own keys too, while Redis answers
            store.invalidate_everyone()
        _drain_after_commit(session, store)
        return
    if store is not None:
        keys = [store.subject_key(s) for s in ids]
    else:
        from audits.keys import installation_key
        from audits.settings import get_settings

        secret = installation_key(get_settings())  # read once for the batch
        keys = [store_subject_key(s, secret) for s in ids]
    record_outbox(session, keys, hold=hold)
    # Now as well (a list written while the change commits is refused), unless the store just failed: this runs
    # inside the change's transaction, which must not wait on a Redis that hangs (the outbox row carries it).
    if store is not None and store.available:
        store.invalidate(keys, hold=hold)
    _drain_after_commit(session, store)  # without a store the rows wait for a process that has one (or their age)


def invalidate_everyone_after_commit(session: Any) -> None:
    """Record a global invalidation in ``session``'s transaction (a block, a flag, a case or an availability
    change), bump the global epoch now, and drain the outbox once it commits (see
    :func:`invalidate_subjects_after_commit`)."""
    from audits.models import OUTBOX_EVERYONE

    record_outbox(session, [OUTBOX_EVERYONE])
    store = configured_store()
    if store is not None and store.available:  # not while it is marked down: the change's transaction must not wait on it
        store.invalidate_everyone()
    _drain_after_commit(session, store)


def _drain_after_commit(session: Any, store: OnlineStore | None) -> None:
    """Drain the outbox once ``session`` commits; without a store, only to expire old rows, when that is due (a
    listener on each session costs a consent write a tenth of a millisecond: not paid for nothing)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if store is None and not (isinstance(session, Session) and _expiry_due(_engine_of(session))):
        return
    if isinstance(session, Session) and not session.info.get("online_store_drain"):
        session.info["online_store_drain"] = _engine_of(session)
        event.listen(session, "after_commit", _after_commit, once=True)
        event.listen(session, "after_rollback", _forget_drain, once=True)


def _forget_drain(session: Any) -> None:
    session.info.pop("online_store_drain", None)


def _after_commit(session: Any) -> None:
    engine = session.info.pop("online_store_drain", None)
    if engine is None:
        return
    try:
        store = configured_store()
        if store is None or not store.available:  # marked down: the rows wait (held) for a drain once it answers again
            _note_pending(engine)
            _expire_due(engine, "no store" if store is None else "store down", store)  # those past their age go
            return
        drain_outbox(engine, store)
    except Exception as err:  # noqa: BLE001 - the change is committed; its invalidation waits in the outbox
        log.error("online store: the outbox could not be drained after a commit (%s); it waits for the next drain", type(err).__name__)
        _note_pending(engine)
