"""The app's engine cache: packs, models, item tables and serving engines, and the decision log they share.

Serving engines are cached on ``app.state.engines`` (:class:`EngineCache`), so a
request does not parse its pack, load its model and open a decision log again:

* a pack is re-read when its file changes (stat: size and modification time);
  its identity in the cache is its content hash;
* a model is re-read when its artifact file changes (size or modification time),
  is hashed once per load and must have the SHA-256 recorded with the version (a
  file changed on disk since is a 409 ``artifact-changed``, as promotion answers
  it: :mod:`governance.artifacts`), and is checked to hold the version the store
  records for that file; the :data:`MAX_CACHED_MODELS` used
  last stay loaded. It is read with the loader of the kind the store records
  (:func:`governance.family_serving.load_served_model`: ALS, or the model
  family's own ``load``, never pickle) and served by that kind's engine (a
  family's :class:`~governance.family_serving.FamilyServingEngine`: its own
  ranking and explanation tags, the same consent, erasure, blocks, re-ranking
  and decision record), as ``recgov recommend`` serves it; a file of another
  family than the one recorded is refused (422, naming the file's format);
* a model's engines serve with the item table of the dataset it was trained on
  (its provider groups, categories and harmful-content flags, read once per
  model from the dataset version's recorded source): the pack's re-ranking and
  the category blocks need them. A source the service cannot read (a relative
  path from another working directory, a moved file) is logged as a warning and
  the model's lists are served without item metadata, as before;
* the escalation blocks are checked on every request: a block, flag or case
  answered by the API (or made by the CLI) holds for every request that starts
  after it. Every change to a flag, case or block row stamps it with its new
  trail event, so the largest ``trail_seq`` of the three tables is a revision of
  what is blocked (:func:`blocks_revision`, one query); only when it moved are
  the blocked items read again and an engine built for them (from the cached
  pack and model). Engines are never changed in place, so concurrent requests
  each serve with the blocks of the revision they read;
* items out of stock, withdrawn or restricted in a region (:mod:`audits.availability`) are part of
  that revision too (the availability table's largest ``trail_seq``), read with the blocks;
* an erasure needs no engine rebuilt: each engine knows up to which erasure its
  model's data was cleaned (:func:`governance.suppressed.erasures_seen`, read
  when it is built) and each request reads the subject's latest erasure in its
  snapshot, so a subject erased after the model read its data gets the
  non-profiling list from every cached engine, from the next request on;
* one :class:`~audits.decisions.DecisionLog` (or its process-backed writer) is
  shared by every engine, behind a
  :class:`~governance.api.services.call_sink.CallAttributingSink`; the requests'
  deployed shadow versions are served by a
  :class:`~governance.api.services.shadows.ShadowMirror`. :meth:`EngineCache.close`
  stops both when the app stops.

Where the request path must not block (the event loop), :meth:`EngineCache.pack`
and :meth:`EngineCache.engine` raise :class:`NotReady` instead of loading.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from fastapi import FastAPI
from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from audits.decision_writer import ProcessDecisionLog
from audits.decisions import DecisionLog, log_failure
from audits.availability import unavailable_items
from audits.online_store import configured_store, outbox_watch
from audits.models import EscalationCase, ItemAvailability, ItemBlock, ItemFlag, ModelVersion, TrailEvent
from governance import packs as pack_store
from governance.api.compute import ComputeProcess
from governance.api.errors import Problem
from governance.api.runtime import freeze_heap
from governance.api.services.call_sink import CallAttributingSink
from governance.api.services.shadows import ShadowMirror
from governance.artifacts import ARTIFACT_CHANGED, ArtifactChanged
from governance.escalation import items_out_of_lists
from governance.experiments.packs import model_refused
from governance.family_serving import load_served_model
from governance.packs import SHIPPED_PACKS as SHIPPED
from governance.packs import resolve_pack
from governance.model_catalog import read_catalog
from governance.model_catalog import dataset_sources as _dataset_sources
from governance.policy import LoadedPack
from governance.online_store import ListCache
from governance.serving import ServingEngine
from governance.suppressed import erasures_seen, model_standing, standing_reader
from recommender.errors import ConfigError

__all__ = [
    "ARTIFACT_CHANGED_KIND",
    "BLOCKS_READ",
    "MAX_CACHED_MODELS",
    "SERVING_BATCH_DELAY_MS",
    "SHUTTING_DOWN",
    "EngineCache",
    "NotReady",
    "artifact_location",
    "artifact_read",
    "blocks_revision",
    "close_engines",
    "engines_of",
]

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the service is shutting down; retry the request on another instance"
REPLACED = (
    "model version {version!r} was replaced by {by!r} after an exact erasure: its file listed the erased subject and "
    "is deleted, and it is retired; serve {by!r} (trained the same way, without the subject)"
)
NOT_ADMITTED = "pack {pack} does not admit this model: {why}; serve it under a pack that does, or train one without those inputs"
MAX_CACHED_MODELS = 8
"""Models (and their engines) kept loaded by a server process, least recently used evicted first."""
SERVING_BATCH_DELAY_MS = 0
"""The service's decision log waits for no more decisions than have queued while its previous batch committed.

Every list waits for its decision's commit. Lists come to the log spaced by the server's own work on each (a fraction
of a millisecond to a millisecond), so a log that waits for the next while they keep coming (the library default)
held each batch open for most of its 5 ms: the lists of a batch waited for one another, the writer idled between
batches, and served lists came in waves. Taken as they queue, the next batch gathers while one commits (group commit
still: measured 3 to 6 lists a batch at 8 and 16 connections), and each list waits about one commit less (SQLite,
``bench/bench_http.py``: lists per second +20 to 35% at 8 and 16 connections)."""
CATALOG_RETRY_S = 60.0
"""Seconds before a model's item table that could not be read is tried again."""
ARTIFACT_CHANGED_KIND = "artifact-changed"
"""The problem kind of a model file that no longer has its recorded SHA-256 (409), as promotion answers it."""
MODEL_MISMATCH = "the artifact at {location} holds model {found}, not {expected}; the store and the file disagree"


class NotReady(Exception):
    """Deciding this list inline would block the event loop (a load, a build or a write): use a worker thread."""


def replacement_after_erasure(connection: Connection, model_version: str) -> str | None:
    """The version an exact erasure put in ``model_version``'s place (its latest ``model.replaced_by_erasure``
    event), or None. Read only when the version's file is missing: such events are few."""
    rows = connection.execute(
        select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure").order_by(TrailEvent.seq.desc())
    )
    for (payload,) in rows:
        found = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        if isinstance(found, dict) and found.get("replaced") == model_version:
            return str(found.get("by"))
    return None


def _stat_key(path: Path | str) -> tuple[int, int] | None:
    """(size, modification time in ns) of ``path``, or None when it cannot be read."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_size, stat.st_mtime_ns


def _pack_path(packs_dir: Path, ref: str) -> Path | None:
    """The file ``pack_store.load_ref`` reads for ``ref`` (None for a ref it would refuse).

    Checked on every list: what depends on ``ref`` alone is worked out once (:func:`_ref_path`); what the file
    system says is asked each time (a file named ``ref`` in the working directory is a path, not a shipped pack)."""
    if "/" in ref and "@" not in ref:  # a path: as resolve_pack reads it
        path = resolve_pack(ref)
        return path if path.parent == SHIPPED else None
    path, as_given = _ref_path(packs_dir, ref)
    if as_given and os.path.exists(ref):  # resolve_pack takes a file of that name as given: not shipped
        return None
    return path


@functools.lru_cache(maxsize=256)
def _ref_path(packs_dir: Path, ref: str) -> tuple[Path | None, bool]:
    """:func:`_pack_path` of a ref without a ``/``, as far as it follows from the ref alone: the file (or None), and
    whether a file named ``ref`` in the working directory would make it None (see ``resolve_pack``)."""
    if "@" in ref:
        name, version = ref.split("@", 1)
        if "/" in name or "/" in version or ".." in name or ".." in version:
            return None, False
        return packs_dir / name / f"{version}.yaml", False
    if Path(ref).suffix in (".yaml", ".yml"):  # a path as given, never a shipped pack
        return None, False
    # The shipped file, which resolve_pack names only when it exists: one that does not is stat()ed to None by the
    # caller, which then caches nothing, as for None.
    return pack_store.shipped_pack_path(ref), True


# Built once: a statement's cache key is then computed once, not on every request.
_LATEST_BLOCK_CHANGES = select(
    *(select(func.coalesce(func.max(t.trail_seq), 0)).scalar_subquery() for t in (ItemFlag, EscalationCase, ItemBlock, ItemAvailability))
)
_ARTIFACT_OF = select(ModelVersion.artifact_location).where(ModelVersion.version_id == bindparam("version"))
_KIND_OF = select(ModelVersion.kind, ModelVersion.artifact_hash).where(ModelVersion.version_id == bindparam("version"))


BLOCKS_READ = (_LATEST_BLOCK_CHANGES, None)
"""What :func:`blocks_revision` reads (for a snapshot to send ahead: :mod:`governance.api.reads`)."""


def artifact_read(model_version: str) -> tuple[Any, dict[str, str]]:
    """What :func:`artifact_location` reads for ``model_version`` (for a snapshot to send ahead)."""
    return _ARTIFACT_OF, {"version": model_version}


def blocks_revision(read: Session | Connection | Any) -> tuple[int, ...]:
    """The latest trail event that changed a flag, a case, a block or an item's availability: it moves whenever
    what is kept out of lists may change."""
    return tuple(int(seq) for seq in read.execute(_LATEST_BLOCK_CHANGES).one())


def artifact_location(read: Session | Connection | Any, model_version: str) -> str | None:
    """Where the store says ``model_version``'s artifact is (None: no such version)."""
    return read.execute(*artifact_read(model_version)).scalar_one_or_none()


@dataclass(frozen=True)
class _Engine:
    """An engine, and the revision of the blocks it was built with."""

    revision: tuple[int, ...]
    engine: ServingEngine


class EngineCache:
    """Packs, models and serving engines of one app, and the decision log they share.

    Thread-safe: the route runs on worker threads and on the event loop. The
    cache's lock guards only its dictionaries and is never held while loading or
    building; a burst of first requests loads a model (and its item table) once,
    under a lock of that version's own.
    """

    def __init__(self, store: Any, decision_writer: str = "thread", compute: str = "inline") -> None:
        self.store = store
        self.decision_writer = decision_writer
        self.compute: ComputeProcess | None = ComputeProcess() if compute == "process" else None
        """Makes the model's part of the lists decided on the event loop (``RECGOV_API_COMPUTE``)."""
        self._lock = threading.Lock()
        self._packs: dict[str, tuple[tuple[int, int], LoadedPack]] = {}
        self._models: dict[str, tuple[tuple[int, int], Any, type[ServingEngine]]] = {}
        """model version -> (its artifact's stat, the model, the engine class that serves its kind)."""
        self._refused: dict[str, tuple[tuple[tuple[int, int], str | None], str]] = {}
        """model version -> ((the stat of an artifact that failed its SHA-256 check, the SHA-256 recorded then), why):
        not hashed again while the file and the record are as they were."""
        self._engines: dict[tuple[str, str], _Engine] = {}
        self._catalogs: dict[str, tuple[float, pd.DataFrame | None]] = {}
        self.arm_verdicts: dict[tuple[str, str], str | None] = {}
        """(pack content hash, model version) -> why an experiment arm's pack does not admit the model, or None
        (:func:`governance.api.services.experiments.arm_refused`)."""
        self._load_locks: dict[str, threading.Lock] = {}
        self._tokens: dict[str, set[str]] = {}
        """model version -> the tokens of the engines built for it (what the compute process may hold of it)."""
        self._log: DecisionLog | None = None
        self._sink: CallAttributingSink | None = None
        self.shadows = ShadowMirror(self.engine, store, self._lock)
        """Serves each answered request again with the deployed shadow versions, on a thread of their own."""
        self.decided_inline = 0
        """Lists prepared on the event loop (see :mod:`governance.api.services.lists`), and below on a worker thread."""
        self.decided_on_threads = 0
        self._closed = False

    def start_decision_log(self) -> DecisionLog:
        """Start the shared decision log now (the app does at startup: the first list must not wait for its writer)."""
        with self._lock:
            return self._started_sink().log

    def _started_sink(self) -> CallAttributingSink:
        """Under :attr:`_lock`: the engines' sink over the shared decision log, started at its first use."""
        if self._sink is None:
            delay = SERVING_BATCH_DELAY_MS
            self._log = ProcessDecisionLog(self.store, max_delay_ms=delay) if self.decision_writer == "process" else DecisionLog(self.store, max_delay_ms=delay)
            self._sink = CallAttributingSink(self._log)
        return self._sink

    def pack(self, packs_dir: Path, ref: str, *, loaded_only: bool = False) -> LoadedPack:
        """The pack ``ref`` names (raises ``PackNotFound``), parsed again only when its file changed.

        ``loaded_only``: raise :class:`NotReady` rather than parse it.
        """
        path = _pack_path(packs_dir, ref)
        stat = _stat_key(path) if path is not None else None
        cached = self._packs.get(ref)
        if cached is not None and stat is not None and cached[0] == stat:
            return cached[1]
        if loaded_only:
            raise NotReady
        loaded = pack_store.load_ref(packs_dir, ref)
        if stat is not None:
            with self._lock:
                self._packs[ref] = (stat, loaded)
        return loaded

    def _loading(self, name: str) -> threading.Lock:
        """The lock under which ``name`` (a model version) is loaded: one load per version at a time,
        outside :attr:`_lock`, which guards only the dictionaries and is never held for I/O (the event
        loop takes it too)."""
        with self._lock:
            return self._load_locks.setdefault(name, threading.Lock())

    def _cached_model(self, model_version: str, location: str) -> tuple[Any, type[ServingEngine]] | None:
        """Under :attr:`_lock`: the loaded model and its engine class if its artifact is unchanged (then most
        recently used)."""
        stat = _stat_key(location)
        cached = self._models.get(model_version)
        if cached is None or stat is None or cached[0] != stat:
            return None
        del self._models[model_version]
        self._models[model_version] = cached  # most recently used last
        return cached[1], cached[2]

    def _load_model(self, model_version: str, location: str) -> tuple[Any, type[ServingEngine]]:
        """Load ``model_version`` (outside :attr:`_lock`) with the loader of the kind the store records, and
        the engine class that serves it; the last :data:`MAX_CACHED_MODELS` models used stay loaded (retrains
        and unlearned versions come and go; a long-running service must not keep them all).

        The file is hashed once per load and must have the SHA-256 recorded with the version: one changed on
        disk since is a 409 ``artifact-changed`` naming the version and the file (and is not hashed again until
        its size or modification time changes, or the recorded SHA-256 does: a record corrected in the store is
        seen at the next request)."""
        with self._loading(model_version):
            with self._lock:
                found = self._cached_model(model_version, location)
                refused = self._refused.get(model_version)
            if found is not None:  # another request loaded it meanwhile
                return found
            stat = _stat_key(location)
            with self.store.snapshot() as connection:
                kind, artifact_hash = connection.execute(_KIND_OF, {"version": model_version}).one_or_none() or (None, None)
                by = replacement_after_erasure(connection, model_version) if stat is None else None
            if by is not None:  # its file listed an erased subject: deleted, and the version retired for good
                raise Problem(409, REPLACED.format(version=model_version, by=by), kind="model-replaced")
            if refused is not None and stat is not None and refused[0] == (stat, artifact_hash):
                raise Problem(409, refused[1], kind=ARTIFACT_CHANGED_KIND)
            try:
                model, engine_class = load_served_model(kind or "als", location, model_version, artifact_hash=artifact_hash)
                if stat is not None and _stat_key(location) != stat:  # replaced between the hash and the read
                    raise ArtifactChanged(ARTIFACT_CHANGED.format(
                        version=model_version, use="served", location=location, why="changed while it was read",
                    ))  # fmt: skip
            except ArtifactChanged as err:
                if stat is not None:
                    with self._lock:
                        self._refused[model_version] = ((stat, artifact_hash), str(err))
                raise Problem(409, str(err), kind=ARTIFACT_CHANGED_KIND) from None
            if model.version_id_ != model_version:
                raise ConfigError(MODEL_MISMATCH.format(location=location, found=model.version_id_, expected=model_version))
            if stat is not None:
                with self._lock:
                    self._refused.pop(model_version, None)
                    self._models.pop(model_version, None)
                    self._models[model_version] = (stat, model, engine_class)
                    while len(self._models) > MAX_CACHED_MODELS:
                        evicted = next(iter(self._models))
                        del self._models[evicted]
                        for key in [k for k in self._engines if k[1] == evicted]:
                            del self._engines[key]
                        self._catalogs.pop(evicted, None)
                        self._tokens.pop(evicted, None)
            return model, engine_class

    def engine(self, loaded: LoadedPack, model_version: str, location: str, read: Any, *, built_only: bool = False) -> ServingEngine:
        """The engine serving ``loaded`` with ``model_version`` and the blocks as ``read`` (a snapshot) sees them, or newer.

        ``read`` is a read-only snapshot (a ``Connection`` or a
        :class:`~governance.api.reads.FastSnapshot`); when the blocks moved, what
        is blocked is read with the ORM in a snapshot of its own, begun after
        ``read``, so the engine built holds every block ``read`` sees.
        ``built_only``: raise :class:`NotReady` rather than load a model or build an engine.
        Loading and building happen outside the cache's lock.
        """
        key = (loaded.content_hash, model_version)
        revision = blocks_revision(read)
        with self._lock:
            if self._closed:
                raise Problem(503, SHUTTING_DOWN)
            found = self._cached_model(model_version, location)
            cached = self._engines.get(key)
            if found is not None and cached is not None and cached.revision == revision and cached.engine.model is found[0]:
                return cached.engine
        if built_only:
            raise NotReady
        model, engine_class = found if found is not None else self._load_model(model_version, location)
        with self.store.snapshot() as connection, Session(bind=connection) as session:
            revision = blocks_revision(connection)
            blocked = frozenset(items_out_of_lists(session, loaded.pack))
            unavailable = unavailable_items(session)
            sources = _dataset_sources(connection, model_version)
            seen = erasures_seen(connection, model_version)
            standing = model_standing(connection, model_version)
            refused = model_refused(session, model_version, loaded)
        if refused is not None:  # trained on what this pack forbids (or reads what its allow-list does not admit)
            raise Problem(409, NOT_ADMITTED.format(pack=loaded.name, why=refused), kind="model-not-admitted")
        catalog = self._catalog(model_version, model, sources)  # after the snapshot: loading a dataset is slow
        with self._lock:
            if self._closed:
                raise Problem(503, SHUTTING_DOWN)
            sink = self._started_sink()
        store = self.store
        engine = engine_class(
            loaded, model, catalog, blocked=blocked, sink=sink,
            on_failure=lambda cause, detail: log_failure(store, cause, detail), erasures_seen=seen,
            standing=standing, reread_standing=standing_reader(store, model_version), unavailable=unavailable,
            exposure_store=store,
        )  # fmt: skip
        online = configured_store()  # RECGOV_REDIS_URL: personalized lists are read from (and kept in) Redis
        if online is not None:
            engine.list_cache = ListCache(online, outbox_watch(store.engine))
        with self._lock:
            cached = self._engines.get(key)
            if model_version in self._models and (cached is None or cached.revision <= revision):
                self._engines[key] = _Engine(revision, engine)  # a slower request must not put older blocks back
            if model_version in self._models:
                self._tokens.setdefault(model_version, set()).add(engine.personalizer.token)
        freeze_heap()  # the model, its catalog and the engine live on: no full collection walks them again
        return engine

    def _catalog(self, model_version: str, model: Any, sources: list[str]) -> pd.DataFrame | None:
        """The item table of the dataset ``model_version`` was trained on (None: not readable here).

        Read once per model (one reader at a time per version); a failed read is
        tried again after :data:`CATALOG_RETRY_S`. The first of ``sources`` (the
        dataset's recorded source, then for an unlearned model the sources of the
        datasets it derives from) that loads and names every item of the model is used.
        """
        with self._lock:
            entry = self._catalogs.get(model_version)
        if entry is not None and (entry[1] is not None or time.monotonic() - entry[0] < CATALOG_RETRY_S):
            return entry[1]
        with self._loading(f"catalog:{model_version}"):
            with self._lock:
                entry = self._catalogs.get(model_version)
            if entry is not None and (entry[1] is not None or time.monotonic() - entry[0] < CATALOG_RETRY_S):
                return entry[1]
            items, problems = read_catalog(model, sources)
            if items is None:
                log.warning(
                    "model %s: no item table of its dataset can be read here (%s); its lists are served without item "
                    "metadata (no provider groups for the re-ranking, no category blocks from metadata); tried again "
                    "in %g s", model_version, "; ".join(problems) or "no source recorded", CATALOG_RETRY_S,
                )  # fmt: skip
            with self._lock:
                if model_version in self._models:  # an evicted model's table is not kept
                    self._catalogs[model_version] = (time.monotonic(), items)
            return items

    def forget_models(self, versions: set[str] | frozenset[str]) -> None:
        """Drop ``versions`` (retired by an erasure: their files listed the erased subject) from every cache now, and
        tell the compute process to drop their model parts, rather than hold them until their next request."""
        if not versions:
            return
        with self._lock:
            for version in versions:
                self._models.pop(version, None)
                self._refused.pop(version, None)
                self._catalogs.pop(version, None)
                self._load_locks.pop(version, None)
            for key in [k for k in self._engines if k[1] in versions]:
                del self._engines[key]
            tokens = {t for version in versions for t in self._tokens.pop(version, set())}
            self.arm_verdicts = {k: v for k, v in self.arm_verdicts.items() if k[1] not in versions}
        if self.compute is not None and tokens:
            self.compute.drop_soon(tokens)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the app is stopping)."""
        return self._closed

    def close(self) -> None:
        """Write what the decision log holds and stop it; later requests are refused (503)."""
        with self._lock:
            self._closed = True
            log, self._log, self._sink = self._log, None, None
            mirrors = self.shadows.refuse()  # under the lock: no request is mirrored after this
            engines = [cached.engine for cached in self._engines.values()]
            self._engines.clear()
        for engine in engines:  # amortised steps' exposure ledgers are saved (write-behind otherwise)
            try:
                engine.close_exposure_state()
            except Exception as err:  # noqa: BLE001 - shutting down goes on; at most a save interval of debt is lost
                logging.getLogger(__name__).warning("saving exposure ledgers at shutdown failed (%s)", type(err).__name__)
        if mirrors is not None:  # mirrored requests finish (and are recorded) before the log closes
            mirrors.shutdown(wait=True)
        if log is not None:
            log.close()
        if self.compute is not None:
            self.compute.close()


_create_lock = threading.Lock()


def engines_of(app: FastAPI) -> EngineCache:
    """The app's engine cache, created at its first use."""
    cache = getattr(app.state, "engines", None)
    if cache is None:
        with _create_lock:
            cache = getattr(app.state, "engines", None)
            if cache is None:
                settings = app.state.settings
                cache = app.state.engines = EngineCache(app.state.store, settings.decision_writer, settings.api_compute)
    return cache


def close_engines(app: FastAPI) -> None:
    """Close the app's engine cache (its decision log), if it was ever used; call before closing the store."""
    cache = getattr(app.state, "engines", None)
    if cache is not None:
        cache.close()
        app.state.engines = None  # a later start of the same app makes a cache of its own
