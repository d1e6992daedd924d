"""One governed list for the API: the request's reads, consent and engine, its list decided, its commit awaited.

The steps, in order: the pack (cached, :mod:`governance.api.services.engines`);
the request's consent signals (``Sec-GPC: 1``, a TC string) and the TC string's
check; in one read-only snapshot, first the calling key (401/403 before any other answer:
:class:`~governance.api.deps.Token`), then the model version (named, or what is deployed:
production, the canary for its share of subjects, and the shadows to mirror to),
its engine with the blocks as of now, the subject's consent history and latest
erasure; the signals judged on that history (a first opt-out or refusal goes with the decision, written in
its transaction by the decision log, :mod:`audits.consent_write`; a grant is written first, the history as of
that write, without a second read); the list made by the engine and its decision queued with the call's trail record
(:class:`~governance.api.services.call_sink.CallAttributingSink`); the commit
awaited on the event loop.

Where a list is decided: on an embedded SQLite store, a request that writes
nothing (no consent signal, or one already on record: a browser sends
``Sec-GPC: 1`` on every request) and finds its pack, model and engine loaded is
prepared on the event loop itself (:func:`prepare_on_loop`; so is a first opt-out, which writes nothing there): its reads are a
few microseconds of local file access, and on one interpreter a worker thread
adds only lock hand-offs. On PostgreSQL, whose reads are network round trips, the
same request is prepared on the event loop too when statements awaited there
answer every read it makes (:func:`prepare_awaited`,
:mod:`governance.api.awaited_reads`: the key, the model's artifact, the blocks
revision and the subject's consent version in one statement, one round trip; for a
subject whose state the process does not hold, or holds changed, their records and
latest suppression in a second). Everything else (the deployments to read, a TC
string's grant to record; a pack, model
or engine to load; an awaited statement that failed) is prepared on a worker
thread (:func:`prepare_on_thread`), having read nothing else and written nothing.
Either way the list is then made by :func:`decide_on_loop`: the model's part
(candidates, re-ranking, tags) in the compute process (``RECGOV_API_COMPUTE``,
:mod:`governance.api.compute`) while the loop serves other requests, the
consent decision and the record here; and the wait for the commit holds no
thread: the decision is queued and the request awaits its commit on the event
loop (:func:`committed`). A commit that fails or times out is logged as the request's
failure, as the engine logs its own, and the list is not answered.

The model row, the blocks and the subject's consent history are read in one
read-only snapshot (:mod:`governance.api.reads`: prepared statements on a pooled
connection, on PostgreSQL those known ahead read by one statement, awaited or in a
transaction; a SQLAlchemy snapshot when the deployments must be read too): on
SQLite that read does not queue behind the writer for the write lock, and
everything committed before the request began (a block, a withdrawal, an
erasure) is seen by it. A subject's consent state is kept across requests only
as far as one indexed query in that snapshot shows it unchanged (its secret, its
counts of consent and suppression rows: :class:`audits.consent.ConsentReadCache`),
so a change committed by any process is seen by the next request. A request
without a consent signal writes nothing but its decision and its trail record.

A refusal is raised as the API's :class:`~governance.api.errors.Problem` (404: no
such pack or model, nothing in production; 422: a TC string that cannot be judged;
503: the service is stopping), with the messages below.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from audits.consent import consent_read_cache, read_consent_state
from audits.consent_write import ConsentWrite
from audits.availability import canonical_region
from audits.decisions import DecisionReceipt
from audits.online_store import configured_store
from governance import packs as pack_store
from governance.api.awaited_reads import AwaitedReads
from governance.api.deps import Token
from governance.api.errors import Problem
from governance.api.keys import actor_of, live_key_read
from governance.api.reads import Unread
from governance.api.schemas.recommendations import RecommendationCreate
from governance.api.services import call_sink
from governance.api.services.call_sink import CallAttributingSink
from governance.api.services.experiments import experiment_in_force
from governance.api.services.experiments import route as route_experiment
from governance.api.services.engines import BLOCKS_READ, SHUTTING_DOWN, EngineCache, NotReady, artifact_location, artifact_read
from governance.consent.gpc import gpc_opt_out
from governance.consent.tcf import decode_tc_string
from governance.deploy import deployed_versions
from governance.governed_list import consent_records
from governance.policy import LoadedPack
from governance.privacy.consent import plan_request_signals, record_request_signals, request_signals_unchanged
from governance.serving import ServedList, ServeRequest, ServingEngine
from governance.shadow import NOTHING_IN_PRODUCTION, canary_bucket
from recommender.errors import DataError

__all__ = [
    "NO_MODEL",
    "TCF_NO_VENDOR",
    "TCF_UNREADABLE",
    "Decided",
    "ListContext",
    "NotReady",
    "Prepared",
    "committed",
    "decide_on_loop",
    "prepare_awaited",
    "prepare_on_loop",
    "prepare_on_thread",
]

NO_MODEL = "model version {model_version!r} is not in the store; train one with 'recgov train'"
TCF_UNREADABLE = "tcf is not a TC string: {detail}; send the string the subject's CMP holds, or no tcf"
TCF_NO_VENDOR = (
    "pack {pack} sets no consent.tcf.vendor_id, so a TC string cannot be judged for this service; "
    "set the installation's IAB vendor id there"
)


@dataclass
class Prepared:
    """A request read and resolved: its engine, and what answering it needs, its list still to make."""

    engine: ServingEngine
    request: ServeRequest
    signals: dict[str, Any]
    """The consent signals the request carried and what was recorded for them."""
    deployment: dict[str, Any] | None
    """When the request named no model version: the stage that answered and the shadow versions."""
    loaded: LoadedPack
    shadows: list[tuple[str, str]]
    """The shadow versions to mirror the request to, as ``(model_version, artifact location)``."""
    actor: str
    gpc: bool
    started: float | None = None
    """:func:`time.perf_counter` when the request's preparation began: the record's ``latency_ms`` counts from it."""
    consent: tuple[ConsentWrite, ...] = ()
    """The consent records the request's signals bring, written with its decision (:mod:`audits.consent_write`)."""


@dataclass
class Decided:
    """A request whose list is made and whose decision is queued: what the event loop answers with."""

    prepared: Prepared
    served: ServedList
    pending: Future[DecisionReceipt]


@dataclass(frozen=True)
class ListContext:
    """What the list service reads from the app for one request."""

    cache: EngineCache
    reads: Any
    """The app's :class:`~governance.api.reads.FastReads`."""
    store: Any
    settings: Any
    headers: list[tuple[bytes, bytes]]
    """The request's raw headers (``Sec-GPC``)."""
    token: Token
    """The calling key, read (401/403) in the request's own snapshot before anything else is read or answered."""
    awaited: AwaitedReads | None = None
    """The app's :class:`~governance.api.awaited_reads.AwaitedReads` (PostgreSQL), else None."""


def prepare_on_loop(body: RecommendationCreate, ctx: ListContext) -> Prepared:
    """The request's reads, consent decision and engine, without blocking: raise :class:`NotReady`, having
    written nothing, where the work would block (a pack, model or engine to load, a consent signal to record)."""
    return _prepare(body, ctx, inline=True)


def prepare_on_thread(body: RecommendationCreate, ctx: ListContext) -> Prepared:
    """The request's reads, consent decision and engine, on a worker thread: loading what is missing and
    recording a consent signal that changes the record; the list is then made by :func:`decide_on_loop`."""
    return _prepare(body, ctx, inline=False)


async def prepare_awaited(body: RecommendationCreate, ctx: ListContext) -> Prepared:
    """PostgreSQL: :func:`prepare_on_loop` with the request's reads read by statements awaited on the event loop
    (:mod:`governance.api.awaited_reads`), no worker thread: one for a subject whose consent state the process
    holds unchanged; a second, with their consent records and latest suppression, for a subject it does not hold
    or whose state changed. Raise :class:`NotReady`, having written nothing, where those statements would not
    answer every read (the installation key not yet checked, the deployments to read, a subject's secret changed
    between the two), where one fails (a dropped connection), and where :func:`prepare_on_loop` does (something
    to load, a grant to record)."""
    if ctx.awaited is None or body.model_version is None:
        raise NotReady
    engine = ctx.reads.engine
    cache = consent_read_cache(engine)
    version = cache.version_read(engine, body.subject)
    if version is None:  # the installation key not yet checked (or an id that is not one): read on a worker thread
        raise NotReady
    started = time.perf_counter()
    online_stamp = _online_stamp(body)  # before the consent is read, as _prepare reads it
    try:
        read = await ctx.awaited.read(_named_reads(body, ctx, version))
        # A subject whose state the process does not hold, or whose state changed (another process wrote a
        # record): their records and latest suppression, and their version again, read by a second statement.
        counted = read.peek(*version)
        more = None if not counted else cache.refresh_reads(engine, body.subject, counted[0])
        if more is None:
            raise NotReady
        if more[0] and read.peek(*live_key_read(ctx.token.token)):  # no live key: its 401 comes first, read no more
            read = await ctx.awaited.read(more[0], whole=more[1], earlier=read)
        found = _read(body, ctx, read, inline=True)
    except Unread:
        raise NotReady from None
    return _resolve(body, ctx, found, inline=True, started=started, online_stamp=online_stamp)


async def decide_on_loop(prepared: Prepared, cache: EngineCache) -> Decided:
    """Make and record the list of a request :func:`prepare_on_loop` prepared, on the event loop.

    The model's part of a personalized list is made in the compute process
    (:mod:`governance.api.compute`) while the loop serves other requests, or
    here when that process cannot. A failure is logged from a worker thread (a
    store write never runs on the loop) and raised with its own cause.
    """
    engine, serve_request = prepared.engine, prepared.request
    plan = None
    try:
        plan = engine.begin(serve_request, started=prepared.started)
        made = None
        if cache.compute is not None and plan.mode == "personalized" and plan.allowed is None and engine.list_cache is None:
            made = await cache.compute.personalize(plan.personalizer, plan.row, plan.length or serve_request.k)
        if cache.closed:  # the service began to stop meanwhile
            raise Problem(503, SHUTTING_DOWN)
        with CallAttributingSink.calling(prepared.actor, gpc=prepared.gpc, defer=True, consent=prepared.consent) as call:
            served = engine.finish(plan, made)
    except Problem:
        raise
    except Exception as err:
        mode = None if plan is None else plan.mode
        await anyio.to_thread.run_sync(functools.partial(engine.report_failure, serve_request, err, mode=mode))
        raise err from err.__cause__  # the original error, with its own cause
    if call.pending is None:
        raise RuntimeError("the serving engine recorded no decision for a served list")
    return Decided(prepared, served, call.pending)


async def committed(decided: Decided, ctx: ListContext) -> None:
    """Wait (on the event loop) until the list's decision is durable; a failed or late commit fails the request.

    The consent records committed with the decision get their ids and trail seqs in the answer's ``signals``, and
    the subject's cached consent state is dropped: it changed, so their next list reads it whole, without first
    comparing a version that could only show the change (:func:`prepare_awaited`).

    The failure is logged with its cause, as the engine logs its own, and
    raised: the list is not answered. A late commit may still store the
    decision, as one never served (see ``DecisionLog.submit_and_wait``).
    """
    waiting = asyncio.wrap_future(decided.pending)
    timeout = call_sink.DECISION_TIMEOUT_S  # read now: one setting for the sink's waits and this one
    done, _ = await asyncio.wait({waiting}, timeout=timeout)  # never cancels the log's future
    try:
        if not done:
            waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # its outcome is read, never lost
            raise TimeoutError(f"the decision was not committed within {timeout:g} s")
        receipt = waiting.result()
    except Exception as err:
        prepared = decided.prepared
        await anyio.to_thread.run_sync(functools.partial(prepared.engine.report_failure, prepared.request, err, mode=decided.served.mode))
        raise
    if decided.prepared.consent:
        consent_read_cache(ctx.reads.engine).forget(ctx.reads.engine, decided.prepared.request.subject_id)
        recorded = decided.prepared.signals["recorded"]
        for entry, (record_id, trail_seq) in zip(recorded, receipt.consent_records, strict=True):
            entry["id"], entry["trail_seq"] = record_id, trail_seq


def _prepare(body: RecommendationCreate, ctx: ListContext, *, inline: bool) -> Prepared:
    """The steps up to the list (see the module doc); ``inline``: raise :class:`NotReady` rather than block."""
    started = time.perf_counter()
    online_stamp = _online_stamp(body)
    # The key, the model, the blocks and the consent history as of now, in one read-only snapshot: prepared
    # statements on a pooled DBAPI connection (on PostgreSQL those known ahead are read by one statement after its
    # BEGIN: three round trips for a subject whose state is cached), or (to read the deployments) a SQLAlchemy one.
    snapshot = ctx.reads.snapshot(_reads_ahead(body, ctx)) if body.model_version is not None else ctx.store.snapshot()
    with snapshot as read:
        found = _read(body, ctx, read, inline=inline)
    return _resolve(body, ctx, found, inline=inline, started=started, online_stamp=online_stamp)


def _online_stamp(body: RecommendationCreate) -> Any:
    """The subject's online-store epochs, read before their consent: a list cached for this request is written only
    if no consent change or erasure committed after this read (audits.online_store; None: no store, or it is down).
    A read with no effect, so it may precede the key's check (which must come in the snapshot that follows)."""
    online = configured_store()
    if online is None:
        return None
    read_stamps = online.stamps([online.subject_key(body.subject)])
    return read_stamps[0] if read_stamps else None


@dataclass
class _Found:
    """What a list's snapshot read: the caller, the pack, the model's engine, the subject's consent."""

    actor: str
    loaded: LoadedPack
    engine: ServingEngine
    history: list[dict[str, Any]]
    erased: int | None
    shadow_refs: list[tuple[str, str]]
    deployment: dict[str, Any] | None
    experiment: Any


def _read(body: RecommendationCreate, ctx: ListContext, read: Any, *, inline: bool) -> _Found:
    """The request's reads in the snapshot ``read``, the key first; ``inline``: raise :class:`NotReady` rather
    than load a pack, a model or an engine."""
    cache = ctx.cache
    actor = actor_of(ctx.token.key(read))  # 401 or 403 before any other answer (404, 422, 503)
    try:
        loaded = cache.pack(ctx.settings.packs_dir, body.pack, loaded_only=inline)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    if body.tcf is not None:
        _check_tcf(body.tcf, loaded)
    model_version, shadow_refs, deployment = _model_to_serve(read, body, ctx.settings)
    experiment = experiment_in_force(read) if body.model_version is None else None
    location = artifact_location(read, model_version)
    if location is None:
        raise Problem(404, NO_MODEL.format(model_version=model_version))
    engine = cache.engine(loaded, model_version, location, read, built_only=inline)
    # The consent history and the latest erasure (never undone: read once, with or without a signal), through
    # the process's cache, which checks the subject's version in this snapshot (audits.consent.ConsentReadCache).
    state = read_consent_state(read, body.subject)
    return _Found(actor, loaded, engine, state.history(), state.erasure_seq, shadow_refs, deployment, experiment)


def _resolve(body: RecommendationCreate, ctx: ListContext, found: _Found, *, inline: bool, started: float, online_stamp: Any) -> Prepared:
    """The request's consent signals judged on the history read (a grant recorded first, unless ``inline``: then
    :class:`NotReady`), and what its list is served with."""
    gpc = gpc_opt_out(ctx.headers)  # any Sec-GPC: 1, even beside a conflicting duplicate
    signalled = gpc or body.tcf is not None  # a consent signal to judge (and record, unless already on record) before serving
    actor, loaded, engine, history = found.actor, found.loaded, found.engine, found.history
    # Nothing to record: what record_consent_from_request answers for a request without a signal, or
    # for a signal already on record (a browser sends Sec-GPC: 1 on every request): a read, no write.
    signals: dict[str, Any] | None = {"gpc": False, "tcf": None, "recorded": [], "unchanged": [], "ignored": []}
    if signalled:
        signals = request_signals_unchanged(history, pack=loaded, headers=ctx.headers, tcf=body.tcf)
    consent: tuple[ConsentWrite, ...] = ()
    if signals is None:  # a signal that changes the record
        signals, consent, planned = plan_request_signals(history, pack=loaded, headers=ctx.headers, tcf=body.tcf, actor=actor)
        if all(write.status != "granted" for write in consent):
            # An opt-out or a refusal (a browser's first Sec-GPC: 1): decided on the history with it, and written
            # with the decision, in its transaction (audits.consent_write). It can only hold profiling back, so
            # nothing made on its account is unsafe before it is durable, and the list waits for both.
            history = planned
        else:  # a grant is durable before anything is made on it: written now (on a worker thread), as of that write
            if inline:
                raise NotReady
            consent = ()
            signals, history = record_request_signals(ctx.store, body.subject, pack=loaded, headers=ctx.headers, tcf=body.tcf, actor=actor)
    if ctx.cache.closed:  # a service that is shutting down refuses (503) before it decides anything
        raise Problem(503, SHUTTING_DOWN)
    context = {"region": canonical_region(body.region)} if body.region else {}  # region codes are case-insensitive
    serve_request = ServeRequest(
        body.subject, k=body.k, consent=consent_records(history), gpc=gpc, tcf=body.tcf, context=context, erasure_seq=found.erased,
        online_stamp=online_stamp,
    )
    deployment = found.deployment
    if found.experiment is not None:  # the variant the subject is assigned to serves (governance.api.services.experiments)
        engine, serve_request, assigned = route_experiment(found.experiment, serve_request, engine, pack_ref=body.pack, ctx=ctx, inline=inline)
        if assigned is not None:  # a stopped experiment's holdback takes only its own subjects
            deployment = {**(deployment or {}), "experiment": assigned}
        loaded = engine.loaded
    return Prepared(engine, serve_request, signals, deployment, loaded, found.shadow_refs, actor, gpc, started, consent)


def _reads_ahead(body: RecommendationCreate, ctx: ListContext) -> list[Any]:
    """The snapshot's reads known before it begins (the key, the model's artifact, the blocks, the subject's consent
    version), for a store whose reads are network round trips to read them by one statement
    (:mod:`governance.api.reads`): each is still read where the code below reads it, in the same order of checks
    (the key first), and answered from what came back; a read told wrong here is only read again."""
    if ctx.reads.embedded or body.model_version is None:
        return []
    return _named_reads(body, ctx, consent_read_cache(ctx.reads.engine).version_read(ctx.reads.engine, body.subject))


def _named_reads(body: RecommendationCreate, ctx: ListContext, version: Any) -> list[Any]:
    """The key, the model's artifact and the blocks revision, and the consent ``version`` read (unless None)."""
    reads = [live_key_read(ctx.token.token), artifact_read(body.model_version), BLOCKS_READ]
    if version is not None:
        reads.append(version)
    return reads


def _model_to_serve(read: Any, body: RecommendationCreate, settings: Any) -> tuple[str, list[tuple[str, str]], dict[str, Any] | None]:
    """The model version that answers, the shadow versions ``(version, location)`` the request is mirrored to,
    and the deployment the answer names (None when the request named its model version)."""
    if body.model_version is not None:
        return body.model_version, [], None
    with Session(bind=read) as session:  # what is deployed answers; the shadows get the request too
        stages = deployed_versions(session)
    if not stages["production"]:
        raise Problem(404, NOTHING_IN_PRODUCTION)
    stage, model_version = "production", stages["production"][0]
    if stages["canary"] and settings.canary_share > 0 and canary_bucket(body.subject) < settings.canary_share:
        stage, model_version = "canary", stages["canary"][0]
    shadow_refs: list[tuple[str, str]] = []
    for shadow in stages["shadow"]:  # loaded and served after the answer, on the shadows' thread
        shadow_location = artifact_location(read, shadow)
        if shadow_location is not None:
            shadow_refs.append((shadow, shadow_location))
    return model_version, shadow_refs, {"stage": stage, "shadows": list(stages["shadow"])}


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
