"""The FastAPI application: :func:`create_app` builds it from :class:`ApiSettings`.

    uvicorn --factory governance.api.app:app_from_env      # or: recgov serve
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from audits.db import open_store
from audits.online_store import drain_at_startup
from governance.api import runtime
from governance.api.awaited_reads import AwaitedReads
from governance.api.console import router as console_router
from governance.api.disclosure import mask_access_log
from governance.api.errors import install_error_handlers
from governance.api.limits import BodyLimit
from governance.api.metrics import install_metrics
from governance.api.options import OptionsAnswer
from governance.api.pack_parser import PackParser
from governance.api.reads import FastReads
from governance.api.schemas import vocabulary
from governance.api.routes import (
    audits,
    consent,
    consent_state,
    datasets,
    deployment_policy,
    deployments,
    harm,
    health,
    lineage,
    models,
    packs,
    recommendations,
    records,
    reports,
    subjects,
    trail,
)
from governance.api.routes.availability import router as availability_router
from governance.api.routes.experiments import router as experiments_router
from governance.api.routes.feedback import router as feedback_router
from governance.api.routes.ope import router as ope_router
from governance.api.routes.monitor import install_monitor_metrics
from governance.api.routes.monitor import router as monitor_router
from governance.api.services.engines import close_engines, engines_of
from governance.api.settings import ApiSettings
from recommender.als import pin_blas_single_thread

__all__ = ["ApiSettings", "app_from_env", "create_app"]


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The app; the store is opened (and upgraded to head) at startup and closed at shutdown."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The blocking work of the endpoints runs on settings.api_threads worker threads, each
        # holding one pooled connection at a time (two while it builds an engine); the rest of the
        # pool, and SQLAlchemy's overflow beyond it, serve the decision log, the audit runner and
        # the shadows. GET /health is answered on the event loop, never behind the workers.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.store = open_store(settings.database_url, pool_size=settings.api_threads + 4)
        app.state.reads = FastReads(app.state.store.engine)  # the hot paths' read-only snapshots
        app.state.reads.hold_for_this_thread()  # SQLite: the loop's lists read on a connection of its own
        # PostgreSQL: a governed list's reads as one statement awaited on the loop, on connections of their own.
        app.state.awaited_reads = None if app.state.reads.embedded else AwaitedReads(app.state.reads, settings.api_threads)
        # Invalidations of the online store recorded while Redis was away (or by a process without it) are applied now.
        await anyio.to_thread.run_sync(drain_at_startup, app.state.store.engine)
        # Concurrent requests are the service's parallelism: one BLAS thread each (see the function).
        pin_blas_single_thread()
        # The model's part of every list is made in the compute process: started now, it is ready
        # (imports done) before the first lists come.
        cache = engines_of(app)
        if cache.compute is not None:
            cache.compute.start()
        # The decision log's writer too: a governed list waits for its decision's commit, and a writer
        # started by the first list could make that list wait past its deadline. GET /ready says when.
        await anyio.to_thread.run_sync(cache.start_decision_log)
        app.state.pack_parser = PackParser()  # posted packs are parsed there, never on the loop's interpreter
        app.state.pack_parser.start()
        # The OpenAPI document is built once, now, on a worker thread: built by the first request for
        # it (a client generator, a fuzzer), it held the event loop, and every list behind it, for seconds.
        await anyio.to_thread.run_sync(app.openapi)
        # Background audits: interrupted jobs are failed and queued ones started again;
        # at shutdown running audits finish (and are recorded) before the store closes.
        app.state.audit_runner = audits.AuditRunner(app.state.store, settings)
        try:
            app.state.audit_runner.start()
            # No full collection walks what was loaded: its pauses were the service's p99 (governance.api.runtime).
            runtime.tune()
            yield
        finally:
            runtime.restore()
            if app.state.awaited_reads is not None:
                await app.state.awaited_reads.aclose()
            app.state.audit_runner.shutdown()
            app.state.pack_parser.close()
            close_engines(app)  # writes what the shared decision log holds
            app.state.reads.release()
            app.state.store.close()

    app = FastAPI(
        title="recgov compliance API",
        version="1",
        description="Policy packs, audits and gate decisions, the audit trail, lineage, models, the regulator's report, the records "
        "of processing and the Art. 27 disclosure, consent and governed recommendations. "
        "Every /v1 endpoint needs 'Authorization: Bearer <token>' (see 'recgov keys create'); errors are RFC 9457 problem details.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app, expose_errors=settings.api_expose_errors)
    vocabulary.install(app, settings.packs_dir)  # the document names the harm categories and purposes of the packs it knows
    review = (models, reports, records, consent_state, datasets)  # what a compliance review reads beside the trail, lineage and packs
    for module in (health, packs, trail, lineage, consent, recommendations, deployments, deployment_policy, harm, subjects, audits, *review):
        app.include_router(module.router)
    app.include_router(feedback_router)
    app.include_router(ope_router)  # off-policy evaluation from the decision log
    app.include_router(availability_router)
    app.include_router(monitor_router)
    app.include_router(experiments_router)
    app.include_router(console_router)  # the reviewer's console: HTML pages under /console, outside the OpenAPI document
    mask_access_log(app, settings.access_log_clients)  # an access log kept by whoever runs the app names no subject of a path
    install_metrics(app)  # GET /metrics (viewer) and per-route latency, errors, decisions
    install_monitor_metrics(app)  # and the latest monitoring pass's figures, read at each scrape
    app.add_middleware(OptionsAnswer)  # OPTIONS on every path: 204 with the methods it has in Allow
    # Outermost but for the server's own: a body past the limit is refused before or while it streams in.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """``create_app`` with settings from the environment (for ``uvicorn --factory``)."""
    return create_app(ApiSettings())
