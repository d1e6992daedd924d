"""The API's settings (prefix ``RECGOV_``); the database comes from :mod:`audits.settings`.

================================ ==================================================
``RECGOV_ENVIRONMENT``           ``development`` (default) or ``production``.
``RECGOV_DATABASE_URL``          the store (see :mod:`audits.settings`).
``RECGOV_HOME``                  data folder; stored packs live in ``packs/<name>/<version>.yaml``.
``RECGOV_API_EXPOSE_ERRORS``     put internal error messages in 500 responses (development only).
``RECGOV_AUDIT_LEASE_S``         seconds a running audit job stays held without a heartbeat (default 60).
``RECGOV_API_THREADS``           worker threads for the endpoints' blocking work (default 8).
``RECGOV_API_COMPUTE``           ``process`` (default) or ``inline``: where a list's model part is made.
``RECGOV_DECISION_WRITER``       ``process`` (default) or ``thread``: where the decision log commits.
``RECGOV_MAX_BODY_BYTES``        largest request body, in bytes (default 1 MiB); more is a 413.
``RECGOV_PACK_PARSE_TIMEOUT_S``  time budget to parse and validate a posted pack (default 5 s).
``RECGOV_AUDIT_MAX_INTERACTIONS`` largest synthetic data an audit may ask for, in events (default 5 million).
``RECGOV_AUDIT_MAX_SUBJECTS``    largest synthetic data an audit may ask for, in users and in items (default 1 million).
``RECGOV_AUDIT_MAX_FILE_BYTES``  largest data file an audit may read, in bytes (default 1 GiB).
``RECGOV_AUDIT_TIME_BUDGET_S``   an audit running longer is failed (default 3600 s).
``RECGOV_AUDIT_SHUTDOWN_GRACE_S`` how long shutdown waits for running audits (default 10 s).
================================ ==================================================

Outside development, insecure defaults are refused: the store must be named
explicitly (no implicit embedded SQLite file) and internal errors are never exposed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audits.jobs import DEFAULT_LEASE_S
from audits.settings import default_home

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """Settings of the REST API."""

    model_config = SettingsConfigDict(env_prefix="RECGOV_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    """``production`` refuses the insecure defaults (see module doc)."""

    home: Path = Field(default_factory=default_home)
    """recgov's data folder."""

    database_url: str | None = None
    """SQLAlchemy URL of the store; unset means the SQLite file ``home/recgov.db`` (development only)."""

    api_expose_errors: bool = False
    access_log_clients: Literal["pseudonymize", "drop", "keep"] = "pseudonymize"
    """What an access log (``recgov serve --access-log``, or uvicorn's own when the app runs under ``uvicorn
    --factory`` or gunicorn) shows of each client's IP address, personal data (``RECGOV_ACCESS_LOG_CLIENTS``):
    ``pseudonymize``, a keyed hash drawn per process (one client's requests link to each other, never to an
    address); ``drop``, ``-``; ``keep``, the address, for an operator whose lawful basis covers it."""
    decision_writer: Literal["process", "thread"] = "process"
    """Where the decision log commits (``RECGOV_DECISION_WRITER``): ``process``, a child process of its
    own, so request threads never wait on the writer's share of the interpreter lock; ``thread``, a
    thread of the server process (no child to start)."""
    canary_share: float = Field(0.0, ge=0.0, le=1.0)
    """Share of subjects the canary version answers when a request names no model version
    (``RECGOV_CANARY_SHARE``; a subject always lands on the same side)."""
    """Show internal error messages in 500 responses (refused in production)."""

    api_compute: Literal["process", "inline"] = "process"
    """Where the model's part of a list decided on the event loop is made (``RECGOV_API_COMPUTE``):
    ``process``, a child process beside the server's interpreter, so that the loop serves other
    requests meanwhile and a second core does the numpy work (:mod:`governance.api.compute`; it
    changes no answer, and a list it cannot make is made in the server); ``inline``, in the server
    (one core, no child to start)."""

    api_threads: int = Field(8, ge=1, le=256)
    """Worker threads that run the endpoints' blocking work (``RECGOV_API_THREADS``): key checks, store
    reads and writes, the serving engine. The store's connection pool is sized to match. Requests
    beyond it wait for a thread; a governed list waits for its decision's commit without holding one.
    On one interpreter more threads add contention, not speed: a few per core is enough for SQLite;
    a PostgreSQL store further away may want more."""

    audit_lease_s: float = Field(DEFAULT_LEASE_S, gt=0, le=86_400)
    """Lease of a running audit job, in seconds (``RECGOV_AUDIT_LEASE_S``): its runner renews it three
    times per lease; a job with no heartbeat for longer is failed as interrupted by any server on the
    store, whatever host ran it. Every server on one store should use the same value."""

    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024**3)
    """Largest request body, in bytes (``RECGOV_MAX_BODY_BYTES``): a declared ``Content-Length`` above it
    is answered 413 before any of the body is read, and a body streamed without one is cut off with a
    413 as soon as it passes the limit. A pack has its own, smaller limit (the YAML limits of
    :mod:`governance.located`)."""

    pack_parse_timeout_s: float = Field(5.0, gt=0, le=600)
    """Time budget to parse and validate a posted pack (``RECGOV_PACK_PARSE_TIMEOUT_S``); parsing runs
    on a worker thread, never on the event loop, and a pack that takes longer is a 422."""

    audit_max_interactions: int = Field(5_000_000, ge=1)
    """Largest synthetic data set an audit may ask for, in events (``RECGOV_AUDIT_MAX_INTERACTIONS``)."""

    audit_max_subjects: int = Field(1_000_000, ge=1)
    """Largest synthetic data set an audit may ask for, in users and in items (``RECGOV_AUDIT_MAX_SUBJECTS``)."""

    audit_max_file_bytes: int = Field(1024**3, ge=1)
    """Largest file (or folder, in all) an audit may read from ``$RECGOV_HOME/data``, in bytes
    (``RECGOV_AUDIT_MAX_FILE_BYTES``)."""

    audit_time_budget_s: float = Field(3600.0, gt=0, le=7 * 86_400)
    """An audit still running after this many seconds is failed with that reason
    (``RECGOV_AUDIT_TIME_BUDGET_S``); whatever it computes after that is not recorded as the job's."""

    audit_isolation: Literal["process", "thread"] = "process"
    """Where an audit started over the API runs (``RECGOV_AUDIT_ISOLATION``): ``process``, a child
    process of its own, with the memory budget below and killed when its time budget runs out or the
    server stops; or ``thread``, a thread of the server (no memory budget; an audit over its time budget
    is failed but its thread runs on)."""

    audit_memory_budget_mb: int = Field(4096, ge=64, le=1024 * 1024)
    """Memory an audit's process may take beyond what its imports took, in MB
    (``RECGOV_AUDIT_MEMORY_BUDGET_MB``): an audit that needs more fails with that reason."""

    audit_shutdown_grace_s: float = Field(10.0, ge=0, le=3600)
    """How long shutdown waits for running audits (``RECGOV_AUDIT_SHUTDOWN_GRACE_S``); those still
    running then are failed as stopped, and the server exits without them."""

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> ApiSettings:
        if self.environment == "production":
            if not self.database_url:
                raise ValueError("RECGOV_DATABASE_URL must be set in production; the embedded SQLite default is for development")
            if self.api_expose_errors:
                raise ValueError("RECGOV_API_EXPOSE_ERRORS must be off in production")
        return self

    @property
    def packs_dir(self) -> Path:
        """Where ``POST /v1/packs`` stores pack texts: ``home/packs/<name>/<version>.yaml``."""
        return self.home / "packs"
