"""Serving from the online store: cached lists and factors in Redis (:mod:`audits.online_store`), governed.

:class:`ListCache` is what a :class:`~governance.serving.ServingEngine` reads
before it makes a personalized list, and writes after. It is only asked once
the request's own checks have run (erasure, the model's standing, consent: the
plan is ``personalized``), and an entry is used only when it was made

* by the same model version and pack (both in the entry's field),
* with the same items kept out: a content hash of the blocked items and of the
  items the request's context and region admit (availability included), so a
  block, an unblock or an availability change makes every older entry a miss at
  once, in every process, even where Redis could not be told;
* over the same item metadata: a content hash of the personalizer's catalog (the
  provider groups and categories the pack's re-ranking and tags use), so a list
  made by a process that could not read the item table (re-ranked without them)
  is never served by one that could, nor the other way round;
* under the same consent state: a hash of the consent records, the signals and
  the erasure sequence the request carried, so a list made before a consent
  change or an erasure is never served after it;
* under the current epochs (:mod:`audits.online_store`), which those changes bump;
* and only while no invalidation of the subject (nor a global one) waits in the
  outbox (:class:`audits.online_store.OutboxWatch`: a change recorded while Redis
  was away, or by a process without it): meanwhile their lists are neither read
  from Redis nor written there, and factors are not read from it.

And before it is served its items are checked once more against what is kept
out now (vectorised): an entry holding one of them is dropped, not served.
Decisions made from an entry say so in their record (``list_source``).

The epochs a list is written under are the ones the caller read *before* the
subject's consent (``ServeRequest.online_stamp``: the API and :func:`warm` read
them first), so a consent change or an erasure committed after that read, which
bumps them, refuses the write. A request without them reads them when the list
is looked up, after its consent: for those a withdrawal, a refusal or an
erasure also holds the subject's lists back for
:data:`audits.online_store.HOLD_S` seconds; one slower than the hold could
store a list, never served (its consent hash no longer matches) and gone with
its time to live.

:func:`personalize_from_factors` serves a list from factors kept in the store
(the subject's vector and the model's item factors), governed by the engine's
own re-ranking and tags: the path of a server that does not hold the model (the
API's lists do not take it: they are made from the model the engine loaded, or
read from a cached list). The factors it reads are sealed as cached lists are
(:mod:`audits.online_store`: bound to the model version, the subject and the
subject's epoch), so a vector Redis did not get from this installation, another
subject's, or one an invalidation deleted and someone put back, is a miss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import fields
from operator import attrgetter
from typing import Any

import numpy as np
import orjson

from audits.online_store import OnlineStore, OutboxWatch, Stamp
from governance.consent.state import ConsentRecord

__all__ = ["CACHED", "ListCache", "personalize_from_factors", "warm"]

_RECORD_FIELDS = attrgetter(*(f.name for f in fields(ConsentRecord)))
"""A consent record's fields, in their declared order (what its consent-state hash covers)."""

CACHED = "online_store"
"""The record's ``list_source`` for a list served from the online store."""


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _well_formed(rows: Any, scores: Any, tags: Any) -> bool:
    """Whether a cached entry's items, scores and tags are what :meth:`ListCache.put` writes: lists of one length,
    the items ints, the scores numbers, each item's tags a list of dicts."""
    return (
        type(rows) is list and type(scores) is list and type(tags) is list
        and len(rows) == len(scores) == len(tags)
        and all(type(r) is int for r in rows)
        and all(type(v) in (int, float) or v is None for v in scores)
        and all(type(t) is list and all(type(d) is dict for d in t) for t in tags)
    )  # fmt: skip


class ListCache:
    """The engine's reads and writes of cached lists (see the module docstring)."""

    def __init__(self, store: OnlineStore, watch: OutboxWatch | None = None) -> None:
        self.store = store
        self.watch = watch
        """The outbox as this process knows it (:class:`audits.online_store.OutboxWatch`): a subject with an
        invalidation not yet applied to Redis (or everyone, for a global one) is not served from it."""
        self._blocked_digest: tuple[str, str] | None = None
        self._catalog_digest: tuple[Any, str] | None = None
        self._fields: dict[tuple[str, str, str, int], str] = {}
        self.hits = 0
        self.misses = 0

    def _kept_out(self, personalizer: Any, allowed: np.ndarray | None) -> str:
        """A hash of what the list may not hold: the personalizer's blocked items and the request's admitted ones."""
        cached = self._blocked_digest
        if cached is None or cached[0] != personalizer.token:
            blocked = np.sort(np.asarray(personalizer.blocked_items, dtype=np.int64))
            cached = self._blocked_digest = (personalizer.token, _digest(blocked.tobytes(), self._catalog_of(personalizer).encode()))
        mask = b"" if allowed is None else np.packbits(allowed).tobytes()
        return _digest(cached[1].encode(), mask)

    def _catalog_of(self, personalizer: Any) -> str:
        """A hash of the item metadata ``personalizer`` re-ranks and tags with (its checked catalog; hashed once per
        catalog, which every personalizer of an engine shares)."""
        catalog = getattr(personalizer, "_catalog", None)
        seen = self._catalog_digest
        if seen is not None and seen[0] is catalog:
            return seen[1]
        parts: list[bytes] = []
        if catalog is None:
            parts.append(b"none")
        else:
            for array in (catalog.item_group, catalog.item_popularity):
                parts.append(b"-" if array is None else f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
            matrix = catalog.item_categories
            if matrix is None:
                parts.append(b"-")
            else:
                matrix = matrix.tocsr()
                parts += [str(matrix.shape).encode(), *(np.ascontiguousarray(a).tobytes() for a in (matrix.indptr, matrix.indices, matrix.data))]
        digest = _digest(*parts)
        self._catalog_digest = (catalog, digest)
        return digest

    @staticmethod
    def consent_state(request: Any) -> str:
        """A hash of what the request's consent decision was made from (records, signals, erasure).

        Every field of every record (:class:`~governance.consent.state.ConsentRecord`'s fields, read from the
        class, so a field added later is covered), the GPC signal, the TC string and the erasure sequence,
        encoded as JSON (a few microseconds; ``repr`` of the records costs several times that); a value JSON
        cannot hold exactly (a non-string key, an unknown type) is hashed from its ``repr`` instead, under a
        different tag, so the two forms never collide."""
        consent = request.consent
        try:
            body = b"j" + orjson.dumps([*map(_RECORD_FIELDS, consent), request.gpc, request.tcf, request.erasure_seq])
        except TypeError:
            body = b"r" + repr((consent, request.gpc, request.tcf, request.erasure_seq)).encode()
        return _digest(body)

    def field(self, plan: Any, model_version: str, pack_hash: str) -> str:
        """Where a plan's list is kept in the subject's hash.

        For a request that admits every item (no context or region restriction) the field depends only on
        the personalizer (its blocked items, named by its ``token``: a new block makes a new personalizer),
        the model, the pack and the length, so it is kept per those and not hashed again per request."""
        length = plan.length or plan.request.k
        if plan.allowed is not None:
            return f"{model_version}|{pack_hash[:16]}|{self._kept_out(plan.personalizer, plan.allowed)}|{length}"
        key = (plan.personalizer.token, model_version, pack_hash, length)
        made = self._fields.get(key)
        if made is None:
            if len(self._fields) > 64:  # older personalizers' fields: a new block replaced them
                self._fields.clear()
            made = self._fields[key] = f"{model_version}|{pack_hash[:16]}|{self._kept_out(plan.personalizer, None)}|{length}"
        return made

    def get(self, plan: Any, model_version: str, pack_hash: str) -> tuple[Any | None, tuple[str, str, Stamp] | None]:
        """The cached model part of ``plan``'s list (a :class:`~governance.serving.PersonalizedList`) or None, and
        what :meth:`put` needs to store a fresh one (None: the store is down)."""
        from governance.serving import PersonalizedList

        subject = self.store.subject_key(plan.request.subject_id)
        if self.watch is not None and self.watch.holds(subject, self.store):
            self.misses += 1
            return None, None  # an invalidation of theirs waits in the outbox: neither read nor written
        field = self.field(plan, model_version, pack_hash)
        entry, stamp = self.store.read_list(subject, field)
        if stamp is None:
            return None, None
        early = getattr(plan.request, "online_stamp", None)
        ticket = (subject, field, early if early is not None else stamp)
        if entry is None or entry.get("c") != self.consent_state(plan.request):
            self.misses += 1
            return None, ticket
        rows, scores, tags = entry.get("i"), entry.get("s"), entry.get("t")
        if not _well_formed(rows, scores, tags):
            self.misses += 1
            return None, ticket  # not a list this version wrote: made here (and written again) instead
        items = np.asarray(rows, dtype=np.int64)
        blocked = plan.personalizer.blocked_mask  # what no list may hold now (a boolean mask per model row)
        if rows and (
            min(rows) < 0 or max(rows) >= len(blocked)
            or blocked[items].any()
            or (plan.allowed is not None and not plan.allowed[items].all())
        ):  # fmt: skip
            self.misses += 1
            return None, ticket  # never served: something in it is kept out now
        self.hits += 1
        return PersonalizedList(items, scores, tags), ticket

    def put(self, plan: Any, ticket: tuple[str, str, Stamp], personalized: Any) -> bool:
        """Store ``personalized`` for ``plan`` if nothing changed since :meth:`get` (see :mod:`audits.online_store`)."""
        subject, field, stamp = ticket
        if self.watch is not None and self.watch.holds(subject):
            return False  # an invalidation recorded since the read waits in the outbox: Redis was not told
        entry = {
            "c": self.consent_state(plan.request),
            "i": np.asarray(personalized.items, dtype=np.int64).tolist(),
            "s": list(personalized.scores),
            "t": personalized.tags,
        }
        return self.store.write_list(subject, field, entry, stamp)


def warm(engine: Any, requests: Iterable[Any]) -> int:
    """Make and store the lists of ``requests`` (heavy users' requests, with their consent as the ledger holds
    it) without serving or recording them; a request whose subject may not be profiled is skipped. Returns how
    many lists were stored. Give each request the ``online_stamp`` read before its consent was
    (:meth:`audits.online_store.OnlineStore.stamps`): without it, a list made from a consent read before a
    withdrawal that committed meanwhile is refused only while the withdrawal's hold lasts."""
    cache: ListCache | None = getattr(engine, "list_cache", None)
    if cache is None or getattr(engine.personalizer, "stateful", False):  # lists of a stateful pipeline are not cached
        return 0
    stored = 0
    stamp = engine.loaded.stamp()  # the pack's stamp; each request carries its subject's epochs (read before its consent)
    for request in requests:
        plan = engine.begin(request)
        if plan.mode != "personalized":
            continue
        found, ticket = cache.get(plan, engine.model.version_id_, stamp["pack_hash"])
        if found is not None or ticket is None:
            continue
        made = plan.personalizer.personalize(plan.row, plan.length or request.k, plan.allowed)
        stored += cache.put(plan, ticket, made)
    return stored


def store_factors(store: OnlineStore, model: Any, subject_ids: Iterable[str], stamps: dict[str, Stamp] | None = None) -> int:
    """Put ``model``'s item factors and the factors of ``subject_ids`` (raw ids, hashed here) in the store, each
    only if the subject's epoch is still ``stamps[id]`` (read before their consent was; None: read now, for a
    caller that checked no consent); how many subjects' factors were stored."""
    ids = [str(s) for s in subject_ids]
    rows = model.train_.user_index(ids)
    known = [(s, int(r)) for s, r in zip(ids, np.asarray(rows).tolist(), strict=True) if r >= 0]
    users = model.user_factors_[[r for _, r in known]] if known else np.zeros((0, model.item_factors_.shape[1]), np.float32)
    keys = [store.subject_key(s) for s, _ in known]
    if stamps is None:
        read = store.stamps(keys)
        if read is None:
            return 0
    else:
        read = [stamps[s] for s, _ in known]
    return store.put_factors(model.version_id_, model.item_factors_, keys, users, read)


def personalize_from_factors(
    store: OnlineStore, personalizer: Any, plan: Any, item_factors: np.ndarray | None = None, watch: OutboxWatch | None = None
) -> Any | None:
    """``plan``'s list made from the subject's factors in the store (None: not there, the store is down, or
    ``watch`` holds an invalidation of theirs not yet applied to Redis), with the blocked, seen and not-admitted
    items left out before the cut and the engine's re-ranking and tags."""
    model = personalizer.model
    subject = store.subject_key(plan.request.subject_id)
    if watch is not None and watch.holds(subject, store):
        return None
    factors = store.user_factors(model.version_id_, subject)
    if factors is None:
        return None
    if item_factors is None:
        item_factors = store.item_factors(model.version_id_)
        if item_factors is None:
            return None
    k = plan.length or plan.request.k
    history = personalizer.history_of(plan.row)
    scores = item_factors @ factors
    scores[personalizer.blocked_items] = -np.inf
    scores[history[0]] = -np.inf
    if plan.allowed is not None:
        scores[~plan.allowed] = -np.inf
    n = min(personalizer.n_candidates(k), len(scores))
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    return personalizer.govern(plan.row, history, top, scores[top].astype(np.float32), k)
