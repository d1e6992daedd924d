"""``/v1/recommendations``: one governed list (operator), honouring ``Sec-GPC: 1`` and a TC string (``tcf``); ``/v1/ping`` beside it.

Serving engines are cached on ``app.state.engines`` (:class:`EngineCache`), so a
request does not parse its pack, load its model and open a decision log again:

* a pack is re-read when its file changes (stat: size and modification time);
  its identity in the cache is its content hash;
* a model is re-read when its artifact file changes, and is checked to hold the
  version the store records for that file;
* a model's engines serve with the item table of the dataset it was trained on
  (its provider groups, categories and harmful-content flags, read once per
  model from the dataset version's recorded source): the pack's re-ranking and
  the category blocks need them. A source the service cannot read (a relative
  path from another working directory, a moved file) is logged as a warning and
  the model's lists are served without item metadata, as before;
* the escalation blocks are checked on every request: a block, flag or case
  answered by the API (or made by the CLI) holds for every request that starts
  after it. Every
  change to a flag, case or block row stamps it with its new trail event, so
  the largest ``trail_seq`` of the three tables is a revision of what is
  blocked (:func:`blocks_revision`, one query); only when it moved are the
  blocked items read again and an engine built for them (from the cached pack
  and model). Engines are never changed in place, so concurrent requests each
  serve with the blocks of the revision they read;
* an erasure needs no engine rebuilt: each engine knows up to which erasure its
  model's data was cleaned (:func:`governance.suppressed.erasures_seen`, read
  when it is built) and each request reads the subject's latest erasure in its
  snapshot, so a subject erased after the model read its data gets the
  non-profiling list from every cached engine, from the next request on;
* one :class:`~audits.decisions.DecisionLog` is shared by every engine: decisions
  of concurrent requests are committed together (group commit), and each request
  waits for its own commit before answering. The trail record of each call
  (``api.recommendations.create``, by the calling key) goes with its decision:
  the engines' sink (:class:`CallAttributingSink`) hands it to the log with the
  record, and it is appended in the same transaction as the decision row, so
  a list is answered only once both are durable. The log is closed when the app
  stops.

Where a list is decided: on an embedded SQLite store, a request that writes
nothing (no consent signal) and finds its pack, model and engine loaded is
decided on the event loop itself: its reads are a few microseconds of local file
access, and on one interpreter a worker thread adds only lock hand-offs
(``bench/bench_http.py`` measured about 1.5x the lists per second this way).
The model's part of such a list (candidates, re-ranking, tags) is made in the
compute process (``RECGOV_API_COMPUTE``, :mod:`governance.api.compute`) while
the loop serves other requests; the consent decision and the record stay here.
Everything else (a PostgreSQL store, whose reads are network round trips; a
consent signal to record; a pack, model or engine to load) runs on a worker
thread (``RECGOV_API_THREADS``). Either way the wait for the commit holds no
thread: the decision is queued and the request awaits its commit on the event
loop. A commit that fails or times out is logged as the request's failure, as
the engine logs its own, and the list is not answered.

The model row, the blocks and the subject's consent history are read in one
read-only snapshot (:mod:`governance.api.reads`: prepared statements on a pooled
connection; a SQLAlchemy snapshot when the deployments must be read too): on
SQLite that read does not queue behind the writer for the write lock, and
everything committed before the request began (a block, a withdrawal, an
erasure) is seen by it; nothing of it is cached across requests.
A request without a consent signal writes nothing but its decision and its
trail record. The answer is encoded once, from the served list, in the shape of
:class:`~governance.api.schemas.GovernedList` (the documented response model).

``GET /v1/ping`` answers an operator key with no other work: a liveness check for
authenticated clients, and the baseline against which ``bench/bench_http.py``
measures what governance costs per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import orjson
import pandas as pd
from fastapi import APIRouter, FastAPI, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from audits.consent import read_consent_history
from audits.decision_writer import ProcessDecisionLog
from audits.decisions import Decision, DecisionLog, DecisionReceipt, log_failure
from audits.models import DatasetVersion, EscalationCase, ItemBlock, ItemFlag, ModelVersion
from audits.trail import NewEvent
from governance import packs as pack_store
from governance.api.compute import ComputeProcess
from governance.api.deps import ListsKey, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas import GovernedList, RecommendationCreate
from governance.packs import SHIPPED_PACKS as SHIPPED
from governance.packs import resolve_pack
from governance.consent.gpc import gpc_opt_out
from governance.consent.state import ConsentRecord
from governance.consent.tcf import decode_tc_string
from governance.deploy import deployed_versions
from governance.escalation import items_out_of_lists
from governance.policy import LoadedPack
from governance.privacy import record_consent_from_request
from governance.serving import ServedList, ServeRequest, ServingEngine
from governance.shadow import NOTHING_IN_PRODUCTION, canary_bucket
from governance.suppressed import erasure_seq, erasures_seen, model_standing, standing_reader
from recommender.als import ALSRecommender
from recommender.errors import ConfigError, DataError
from recommender.loaders import load_data

__all__ = ["CallAttributingSink", "EngineCache", "close_engines", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["recommendations"], responses=problems(401, 403, 500))

SHUTTING_DOWN = "the service is shutting down; retry the request on another instance"
MAX_CACHED_MODELS = 8
"""Models (and their engines) kept loaded by a server process, least recently used evicted first."""
CATALOG_RETRY_S = 60.0
"""Seconds before a model's item table that could not be read is tried again."""
MAX_SHADOW_BACKLOG = 1000
"""Served requests that may wait for the shadow versions; more are not mirrored (and are counted)."""
NO_MODEL = "model version {model_version!r} is not in the store; train one with 'recgov train'"
MODEL_MISMATCH = "the artifact at {location} holds model {found}, not {expected}; the store and the file disagree"
TCF_UNREADABLE = "tcf is not a TC string: {detail}; send the string the subject's CMP holds, or no tcf"
TCF_NO_VENDOR = (
    "pack {pack} sets no consent.tcf.vendor_id, so a TC string cannot be judged for this service; "
    "set the installation's IAB vendor id there"
)


def _check_tcf(tcf: str, loaded: LoadedPack) -> None:
    """A 422 naming ``tcf`` unless the string decodes and the pack names the vendor to judge it for
    (IAB TCF v2.2: a string is read for one vendor); nothing is recorded or served then."""
    try:
        decode_tc_string(tcf)
    except DataError as err:
        detail = TCF_UNREADABLE.format(detail=err)
    else:
        if loaded.pack.consent.tcf_requirements().vendor_id is not None:
            return
        detail = TCF_NO_VENDOR.format(pack=loaded.name)
    raise Problem(422, detail, kind="consent-signal", errors=[{"location": "body", "field": "tcf", "message": detail}])


class _NotReady(Exception):
    """Deciding this list inline would block the event loop (a load, a build or a write): use a worker thread."""


class Pong(BaseModel):
    """The answer of ``GET /v1/ping``."""

    status: str = "ok"
    key_id: int


def _stat_key(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of ``path``, or None when it cannot be read."""
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return stat.st_size, stat.st_mtime_ns


def _pack_path(packs_dir: Path, ref: str) -> Path | None:
    """The file ``pack_store.load_ref`` reads for ``ref`` (None for a ref it would refuse)."""
    if "@" in ref:
        name, version = ref.split("@", 1)
        if "/" in name or "/" in version or ".." in name or ".." in version:
            return None
        return packs_dir / name / f"{version}.yaml"
    path = resolve_pack(ref)
    return path if path.parent == SHIPPED else None


DECISION_TIMEOUT_S = 5.0
"""Seconds a governed list waits for its decision's commit; past it the list is not answered."""


@dataclass
class _Call:
    """The request being served in this context."""

    actor: str
    """The calling key's trail actor."""
    gpc: bool
    """Whether the request sent ``Sec-GPC: 1``."""
    defer: bool = False
    """Queue the decision and leave the wait to the caller (who awaits :attr:`pending`)."""
    pending: Future[DecisionReceipt] | None = None
    """The queued decision's commit, when deferred."""


_CALLER: ContextVar[_Call | None] = ContextVar("recgov_api_caller", default=None)
"""The request being served in this context."""


class CallAttributingSink:
    """The engines' decision sink: the shared log, plus the trail record of the call being served.

    Inside :meth:`calling` (the route wraps ``engine.serve`` in it), each
    decision goes to the log with an ``api.recommendations.create`` event by
    the calling key, naming the decision, the model, the mode, the GPC signal
    and the pack; the log appends it in the same transaction as the decision
    row. Outside it (the shadows' thread) a decision goes alone: a mirrored
    list is no call. The caller is held in a context variable, so concurrent
    requests never see each other's. With ``defer=True`` the decision is
    queued and its commit left in the call's ``pending`` future, for the caller
    to wait for (on the event loop) before it answers.
    """

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    @staticmethod
    @contextmanager
    def calling(actor: str, *, gpc: bool, defer: bool = False) -> Iterator[_Call]:
        """Attribute the decisions made in this block to ``actor`` (a key's ``key:<id>:<name>``)."""
        call = _Call(actor, gpc, defer)
        token = _CALLER.set(call)
        try:
            yield call
        finally:
            _CALLER.reset(token)

    def submit_and_wait(self, record: Decision, timeout: float = DECISION_TIMEOUT_S) -> DecisionReceipt | None:
        """Store ``record`` (and the current call's trail record) durably; return once committed.

        In a deferred call, return at once (``None``): the commit is the call's ``pending`` future.
        """
        call = _CALLER.get()
        if call is None:
            return self.log.submit_and_wait(record, timeout=timeout)
        gpc = call.gpc
        event = NewEvent(
            actor=call.actor, action="api.recommendations.create",
            objects={"decision": record.decision_id, "model": record.model_version},
            payload={"mode": record.mode, "gpc": gpc, "pack": record.pack_name, "pack_version": record.pack_version, "pack_hash": record.pack_hash},
        )  # fmt: skip
        if call.defer:
            if call.pending is not None:
                raise RuntimeError("one call made two decisions")
            call.pending = self.log.submit(record, events=(event,))
            return None
        return self.log.submit_and_wait(record, timeout=timeout, events=(event,))


# Built once: a statement's cache key is then computed once, not on every request.
_LATEST_BLOCK_CHANGES = select(
    *(select(func.coalesce(func.max(t.trail_seq), 0)).scalar_subquery() for t in (ItemFlag, EscalationCase, ItemBlock))
)
_ARTIFACT_OF = select(ModelVersion.artifact_location).where(ModelVersion.version_id == bindparam("version"))
_DATASET_OF = (
    select(DatasetVersion.source, DatasetVersion.data_schema)
    .join(ModelVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
    .where(ModelVersion.version_id == bindparam("version"))
)
_DATASET_BY_HASH = select(DatasetVersion.source, DatasetVersion.data_schema).where(DatasetVersion.content_hash == bindparam("hash"))
MAX_DERIVATIONS = 8
"""Unlearned datasets followed back to the one a catalog can be read from (each erasure adds one)."""


def _dataset_sources(read: Connection, model_version: str) -> list[str]:
    """Where the dataset of ``model_version`` came from: its recorded source, then (an unlearned model's
    dataset is a matrix derived from another) the sources of the datasets it derives from."""
    sources: list[str] = []
    seen: set[str] = set()
    row = read.execute(_DATASET_OF, {"version": model_version}).one_or_none()
    for _ in range(MAX_DERIVATIONS):
        if row is None:
            break
        source, schema = row
        if source and source not in sources:
            sources.append(source)
        parent = schema.get("derived_from") if isinstance(schema, dict) else None
        if not isinstance(parent, str) or parent in seen:
            break
        seen.add(parent)
        row = read.execute(_DATASET_BY_HASH, {"hash": parent}).one_or_none()
    return sources


def blocks_revision(read: Session | Connection | Any) -> tuple[int, int, int]:
    """The latest trail event that changed a flag, a case or a block: it moves whenever what is blocked may change."""
    flags, cases, blocks = read.execute(_LATEST_BLOCK_CHANGES).one()
    return int(flags), int(cases), int(blocks)


def artifact_location(read: Session | Connection | Any, model_version: str) -> str | None:
    """Where the store says ``model_version``'s artifact is (None: no such version)."""
    return read.execute(_ARTIFACT_OF, {"version": model_version}).scalar_one_or_none()


@dataclass(frozen=True)
class _Engine:
    """An engine, and the revision of the blocks it was built with."""

    revision: tuple[int, int, int]
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
        self._models: dict[str, tuple[tuple[int, int], ALSRecommender]] = {}
        self._engines: dict[tuple[str, str], _Engine] = {}
        self._catalogs: dict[str, tuple[float, pd.DataFrame | None]] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._log: DecisionLog | None = None
        self._sink: CallAttributingSink | None = None
        self._shadows: ThreadPoolExecutor | None = None
        self._shadow_backlog = 0
        self.shadow_failures = 0
        self.shadow_dropped = 0
        self.decided_inline = 0
        """Lists decided on the event loop (see the module doc), and below on a worker thread."""
        self.decided_on_threads = 0
        self._closed = False

    def start_decision_log(self) -> DecisionLog:
        """Start the shared decision log now (the app does at startup: the first list must not wait for its writer)."""
        with self._lock:
            if self._log is None:
                self._log = ProcessDecisionLog(self.store) if self.decision_writer == "process" else DecisionLog(self.store)
                self._sink = CallAttributingSink(self._log)
            return self._log

    def pack(self, packs_dir: Path, ref: str, *, loaded_only: bool = False) -> LoadedPack:
        """The pack ``ref`` names (raises ``PackNotFound``), parsed again only when its file changed.

        ``loaded_only``: raise :class:`_NotReady` rather than parse it.
        """
        path = _pack_path(packs_dir, ref)
        stat = _stat_key(path) if path is not None else None
        cached = self._packs.get(ref)
        if cached is not None and stat is not None and cached[0] == stat:
            return cached[1]
        if loaded_only:
            raise _NotReady
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

    def _cached_model(self, model_version: str, location: str) -> ALSRecommender | None:
        """Under :attr:`_lock`: the loaded model if its artifact is unchanged (then most recently used)."""
        stat = _stat_key(Path(location))
        cached = self._models.get(model_version)
        if cached is None or stat is None or cached[0] != stat:
            return None
        del self._models[model_version]
        self._models[model_version] = cached  # most recently used last
        return cached[1]

    def _load_model(self, model_version: str, location: str) -> ALSRecommender:
        """Load ``model_version`` (outside :attr:`_lock`); the last :data:`MAX_CACHED_MODELS` models used stay
        loaded (retrains and unlearned versions come and go; a long-running service must not keep them all)."""
        with self._loading(model_version):
            with self._lock:
                model = self._cached_model(model_version, location)
            if model is not None:  # another request loaded it meanwhile
                return model
            stat = _stat_key(Path(location))
            model = ALSRecommender.load(location)
            if model.version_id_ != model_version:
                raise ConfigError(MODEL_MISMATCH.format(location=location, found=model.version_id_, expected=model_version))
            if stat is not None:
                with self._lock:
                    self._models.pop(model_version, None)
                    self._models[model_version] = (stat, model)
                    while len(self._models) > MAX_CACHED_MODELS:
                        evicted = next(iter(self._models))
                        del self._models[evicted]
                        for key in [k for k in self._engines if k[1] == evicted]:
                            del self._engines[key]
                        self._catalogs.pop(evicted, None)
            return model

    def engine(self, loaded: LoadedPack, model_version: str, location: str, read: Any, *, built_only: bool = False) -> ServingEngine:
        """The engine serving ``loaded`` with ``model_version`` and the blocks as ``read`` (a snapshot) sees them, or newer.

        ``read`` is a read-only snapshot (a ``Connection`` or a
        :class:`~governance.api.reads.FastSnapshot`); when the blocks moved, what
        is blocked is read with the ORM in a snapshot of its own, begun after
        ``read``, so the engine built holds every block ``read`` sees.
        ``built_only``: raise :class:`_NotReady` rather than load a model or build an engine.
        Loading and building happen outside the cache's lock.
        """
        key = (loaded.content_hash, model_version)
        revision = blocks_revision(read)
        with self._lock:
            if self._closed:
                raise Problem(503, SHUTTING_DOWN)
            model = self._cached_model(model_version, location)
            cached = self._engines.get(key)
            if model is not None and cached is not None and cached.revision == revision and cached.engine.model is model:
                return cached.engine
        if built_only:
            raise _NotReady
        if model is None:
            model = self._load_model(model_version, location)
        with self.store.snapshot() as connection, Session(bind=connection) as session:
            revision = blocks_revision(connection)
            blocked = frozenset(items_out_of_lists(session, loaded.pack))
            sources = _dataset_sources(connection, model_version)
            seen = erasures_seen(connection, model_version)
            standing = model_standing(connection, model_version)
        catalog = self._catalog(model_version, model, sources)  # after the snapshot: loading a dataset is slow
        with self._lock:
            if self._closed:
                raise Problem(503, SHUTTING_DOWN)
            if self._log is None:
                self._log = ProcessDecisionLog(self.store) if self.decision_writer == "process" else DecisionLog(self.store)
                self._sink = CallAttributingSink(self._log)
            sink = self._sink
        store = self.store
        engine = ServingEngine(
            loaded, model, catalog, blocked=blocked, sink=sink,
            on_failure=lambda cause, detail: log_failure(store, cause, detail), erasures_seen=seen,
            standing=standing, reread_standing=standing_reader(store, model_version),
        )  # fmt: skip
        with self._lock:
            cached = self._engines.get(key)
            if model_version in self._models and (cached is None or cached.revision <= revision):
                self._engines[key] = _Engine(revision, engine)  # a slower request must not put older blocks back
        return engine

    def _catalog(self, model_version: str, model: ALSRecommender, sources: list[str]) -> pd.DataFrame | None:
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
            items, problems = None, []
            needed = pd.Index(model.train_.item_ids.astype(str))
            for source in sources:
                try:
                    table = load_data(source).items
                except Exception as err:  # noqa: BLE001 - a catalog that cannot be read degrades to no metadata, loudly
                    problems.append(f"{source[:200]!r}: {type(err).__name__}: {str(err)[:200]}")
                    continue
                missing = needed.difference(table.index.astype(str))
                if len(missing):
                    problems.append(f"{source[:200]!r}: {len(missing)} of the model's {len(needed)} items are not in its item table")
                    continue
                items = table
                break
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

    def mirror(self, request: ServeRequest, decision_id: str, loaded: LoadedPack, shadows: list[tuple[str, str]]) -> None:
        """Hand a served request to the shadow versions ``(model_version, artifact location)``, on a thread of their own.

        Their engines are built and their lists made and recorded there
        (``served: false``, ``shadow_of`` the served decision), never returned:
        a shadow that cannot load or serve is logged as a failed request and
        counted, never felt by the request. At most :data:`MAX_SHADOW_BACKLOG`
        requests wait for the shadows; beyond that a mirror is dropped and
        counted (``shadow_dropped``) rather than held in memory.
        """
        if not shadows:
            return
        with self._lock:  # submitted under the lock: close() cannot shut the pool in between
            if self._closed:
                return
            if self._shadow_backlog >= MAX_SHADOW_BACKLOG:
                self.shadow_dropped += 1
                return
            if self._shadows is None:
                self._shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recgov-api-shadow")
            self._shadow_backlog += 1
            self._shadows.submit(self._run_shadows, request, decision_id, loaded, shadows)

    def _run_shadows(self, request: ServeRequest, decision_id: str, loaded: LoadedPack, shadows: list[tuple[str, str]]) -> None:
        try:
            for model_version, location in shadows:
                try:
                    with self.store.snapshot() as read:
                        engine = self.engine(loaded, model_version, location, read)
                except Exception as err:  # noqa: BLE001 - a shadow that cannot load is logged, never raised
                    with self._lock:
                        self.shadow_failures += 1
                    try:
                        log_failure(self.store, f"shadow.{type(err).__name__}"[:100], {"model_version": model_version, "message": str(err)[:500]})
                    except Exception:  # noqa: BLE001 - the store is failing too; the count stays
                        pass
                    continue
                try:
                    engine.serve(request, shadow_of=decision_id)
                except Exception:  # noqa: BLE001 - the engine logged the failure with its cause
                    with self._lock:
                        self.shadow_failures += 1
        finally:
            with self._lock:
                self._shadow_backlog -= 1

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the app is stopping)."""
        return self._closed

    def close(self) -> None:
        """Write what the decision log holds and stop it; later requests are refused (503)."""
        with self._lock:
            self._closed = True
            log, self._log, self._sink = self._log, None, None
            shadows, self._shadows = self._shadows, None
            self._engines.clear()
        if shadows is not None:  # mirrored requests finish (and are recorded) before the log closes
            shadows.shutdown(wait=True)
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


def _consent_records(history: list[dict[str, Any]]) -> tuple[ConsentRecord, ...]:
    return tuple(
        ConsentRecord(
            purpose=r["purpose"], status=r["status"], lawful_basis=r["lawful_basis"], source=r["source"],
            time=r["recorded_at"].astimezone(UTC), evidence=r.get("evidence") or {},  # a TCF grant lapses by its string's age
        )  # fmt: skip
        for r in history
    )


def _answer(served: ServedList, signals: dict[str, Any], deployment: dict[str, Any] | None) -> Response:
    """The served list as :class:`GovernedList` JSON (its fields, in its order), encoded once.

    The list was made by the engine, so it is not validated again field by
    field; ``tests/api`` holds every answer to the model.
    """
    body = {
        **served.pack,
        "decision_id": served.decision_id,
        "mode": served.mode,
        "items": [{"item_id": item, "score": score, "tags": tags} for item, score, tags in zip(served.items, served.scores, served.tags, strict=True)],
        "model_version": served.model_version,
        "consent": served.consent_reason,
        "decided_at": served.decided_at,
        "blocked_removed": served.blocked_removed,
        "model_standing": served.model_standing,
        "retrain_request": served.retrain_request,
        "signals": signals,
        "deployment": deployment,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@dataclass
class _Prepared:
    """A request read and resolved: its engine, and what answering it needs, its list still to make."""

    engine: ServingEngine
    request: ServeRequest
    signals: dict[str, Any]
    deployment: dict[str, Any] | None
    loaded: LoadedPack
    shadows: list[tuple[str, str]]
    actor: str
    gpc: bool


@dataclass
class _Decided:
    """A request whose list is made and whose decision is queued: what the event loop answers with."""

    prepared: _Prepared
    served: ServedList
    pending: Future[DecisionReceipt]


def _decide(body: RecommendationCreate, request: Request, store: Any, settings: Any, actor: str, inline: bool = False) -> _Decided | _Prepared:
    """The list's reads, consent decision and engine, up to its decision queued (see the module doc).

    ``inline`` (on the event loop): raise :class:`_NotReady`, having written
    nothing, where the work would block (a pack, model or engine to load, a
    consent signal to record); otherwise return the request prepared, for
    :func:`_decide_on_loop` to make and record its list.
    """
    cache = engines_of(request.app)
    try:
        loaded = cache.pack(settings.packs_dir, body.pack, loaded_only=inline)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    gpc = gpc_opt_out(request.headers.raw)  # any Sec-GPC: 1, even beside a conflicting duplicate
    signalled = gpc or body.tcf is not None  # a consent signal to record before serving
    if inline and signalled:
        raise _NotReady
    if body.tcf is not None:
        _check_tcf(body.tcf, loaded)
    shadow_refs: list[tuple[str, str]] = []
    deployment: dict[str, Any] | None = None
    # The model, the blocks and the consent history as of now, in one read-only snapshot: prepared
    # statements on a pooled DBAPI connection, or (to read the deployments) a SQLAlchemy one.
    snapshot = request.app.state.reads.snapshot() if body.model_version is not None else store.snapshot()
    with snapshot as read:
        model_version = body.model_version
        if model_version is None:  # what is deployed answers; the shadows get the request too
            with Session(bind=read) as session:
                stages = deployed_versions(session)
            if not stages["production"]:
                raise Problem(404, NOTHING_IN_PRODUCTION)
            stage, model_version = "production", stages["production"][0]
            if stages["canary"] and settings.canary_share > 0 and canary_bucket(body.subject) < settings.canary_share:
                stage, model_version = "canary", stages["canary"][0]
            for shadow in stages["shadow"]:  # loaded and served after the answer, on the shadows' thread
                shadow_location = artifact_location(read, shadow)
                if shadow_location is not None:
                    shadow_refs.append((shadow, shadow_location))
            deployment = {"stage": stage, "shadows": list(stages["shadow"])}
        location = artifact_location(read, model_version)
        if location is None:
            raise Problem(404, NO_MODEL.format(model_version=model_version))
        engine = cache.engine(loaded, model_version, location, read, built_only=inline)
        # With a signal to record, the history is read after recording it (below).
        history_now = [] if signalled else read_consent_history(read, body.subject)
        erased = erasure_seq(read, body.subject)  # an erasure is never undone: read once, with or without a signal
    if signalled:
        signals = record_consent_from_request(store, body.subject, pack=loaded, headers=request.headers.raw, tcf=body.tcf, actor=actor)
        with request.app.state.reads.snapshot() as read:
            history = read_consent_history(read, body.subject)
    else:  # nothing to record: what record_consent_from_request answers for a request without a signal
        signals = {"gpc": False, "tcf": None, "recorded": [], "unchanged": [], "ignored": []}
        history = history_now
    if cache.closed:  # a service that is shutting down refuses (503) before it decides anything
        raise Problem(503, SHUTTING_DOWN)
    serve_request = ServeRequest(body.subject, k=body.k, consent=_consent_records(history), gpc=gpc, tcf=body.tcf, erasure_seq=erased)
    prepared = _Prepared(engine, serve_request, signals, deployment, loaded, shadow_refs, actor, gpc)
    if inline:  # the list is made and recorded by _decide_on_loop
        return prepared
    # The call's trail record is committed with its decision; the commit is awaited on the event loop.
    with CallAttributingSink.calling(actor, gpc=gpc, defer=True) as call:
        served = engine.serve(prepared.request)
    if call.pending is None:
        raise RuntimeError("the serving engine recorded no decision for a served list")
    return _Decided(prepared, served, call.pending)


async def _decide_on_loop(prepared: _Prepared, cache: EngineCache) -> _Decided:
    """Make and record the list of a request :func:`_decide` prepared on the event loop.

    The model's part of a personalized list is made in the compute process
    (:mod:`governance.api.compute`) while the loop serves other requests, or
    here when that process cannot. A failure is logged from a worker thread (a
    store write never runs on the loop) and raised with its own cause.
    """
    engine, serve_request = prepared.engine, prepared.request
    try:
        plan = engine.begin(serve_request)
        made = None
        if cache.compute is not None and plan.mode == "personalized" and plan.allowed is None:
            made = await cache.compute.personalize(plan.personalizer, plan.row, serve_request.k)
        if cache.closed:  # the service began to stop meanwhile
            raise Problem(503, SHUTTING_DOWN)
        with CallAttributingSink.calling(prepared.actor, gpc=prepared.gpc, defer=True) as call:
            served = engine.finish(plan, made)
    except Problem:
        raise
    except Exception as err:
        await anyio.to_thread.run_sync(engine.report_failure, serve_request, err)
        raise err from err.__cause__  # the original error, with its own cause
    if call.pending is None:
        raise RuntimeError("the serving engine recorded no decision for a served list")
    return _Decided(prepared, served, call.pending)


async def _committed(decided: _Decided) -> None:
    """Wait (on the event loop) until the list's decision is durable; a failed or late commit fails the request.

    The failure is logged with its cause, as the engine logs its own, and
    raised: the list is not answered. A late commit may still store the
    decision, as one never served (see ``DecisionLog.submit_and_wait``).
    """
    waiting = asyncio.wrap_future(decided.pending)
    done, _ = await asyncio.wait({waiting}, timeout=DECISION_TIMEOUT_S)  # never cancels the log's future
    try:
        if not done:
            waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # its outcome is read, never lost
            raise TimeoutError(f"the decision was not committed within {DECISION_TIMEOUT_S:g} s")
        waiting.result()
    except Exception as err:
        await anyio.to_thread.run_sync(decided.prepared.engine.report_failure, decided.prepared.request, err)
        raise


@router.post("/v1/recommendations", response_model=GovernedList, responses=problems(404, 422, 503), summary="Serve one governed list")
async def recommend(
    body: RecommendationCreate,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    key: ListsKey,
    # Declared so that OpenAPI documents the header; it is read from the raw headers below.
    sec_gpc: Annotated[str | None, Header(alias="Sec-GPC", description="Global Privacy Control: '1' opts the subject out.")] = None,
) -> Response:
    """A ``Sec-GPC: 1`` header is recorded as an opt-out (under a pack that honours GPC) before serving; a TC string
    (``tcf``) is recorded and judged under the pack's ``consent.tcf`` (a string that does not decode, or a pack that
    names no vendor id, is a 422 naming ``tcf``)."""
    actor = actor_of(key)
    cache = engines_of(request.app)
    decided = None
    if request.app.state.reads.embedded:  # see the module doc: local reads are decided on the loop
        try:
            prepared = _decide(body, request, store, settings, actor, inline=True)
        except _NotReady:
            pass
        else:
            assert isinstance(prepared, _Prepared)
            decided = await _decide_on_loop(prepared, cache)
            cache.decided_inline += 1
    if decided is None:
        decided = await anyio.to_thread.run_sync(_decide, body, request, store, settings, actor)
        assert isinstance(decided, _Decided)
        cache.decided_on_threads += 1
    await _committed(decided)
    served = decided.served
    request.app.state.metrics.decisions.labels(outcome=served.mode).inc()
    prepared = decided.prepared
    engines_of(request.app).mirror(prepared.request, served.decision_id, prepared.loaded, prepared.shadows)
    return _answer(served, prepared.signals, prepared.deployment)


@router.get("/v1/ping", response_model=Pong, tags=["health"], summary="Liveness for authenticated clients (lists: operator, admin, serving)")
def ping(key: ListsKey) -> Pong:
    """Checks the key (as every /v1 endpoint does) and nothing else: no store write, no trail record."""
    return Pong(key_id=key.id)
