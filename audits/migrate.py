"""Alembic, configured from code: upgrade, downgrade and inspect the store's schema.

The migration scripts ship inside the ``migrations`` package, so an installed
recgov migrates its store from any working directory; no ``alembic.ini`` is read.
(``migrations/alembic.ini`` exists for developers who want the ``alembic`` command.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

import migrations
from audits.db_messages import describe_db_error, masked_url
from recommender.errors import ConfigError

__all__ = [
    "SCRIPT_LOCATION",
    "alembic_config",
    "head_revision",
    "known_revisions",
    "current_revision",
    "upgrade",
    "downgrade",
    "ensure_head",
]

SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent
_MIGRATION_LOCK = 0x7265_6367_6F76  # "recgov": a PostgreSQL advisory lock key


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at the shipped migrations, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of recgov ships."""
    head = _scripts().get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def known_revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    try:
        with engine.connect().execution_options(recgov_sqlite_begin="DEFERRED") as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as err:
        raise ConfigError(
            f"cannot read the schema revision of {masked_url(engine.url)}: {describe_db_error(err)}"
        ) from err


def _run(engine: Engine, step: Callable[[Config], None], revision: str) -> None:
    try:
        with engine.connect() as connection, connection.begin():
            if engine.dialect.name == "postgresql":
                # Two processes opening a fresh database at once: one migrates, the other waits.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            step(alembic_config(connection))
    except CommandError as err:
        known = ", ".join(["base", *known_revisions(), "head"])
        raise ConfigError(f"unknown or unreachable revision {revision!r}: {err}; known revisions: {known}") from err
    except DBAPIError as err:
        raise ConfigError(f"migration failed on {masked_url(engine.url)}: {describe_db_error(err)}") from err


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (default: the newest)."""
    _run(engine, lambda config: command.upgrade(config, revision), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``"base"`` drops every store table)."""
    _run(engine, lambda config: command.downgrade(config, revision), revision)


def ensure_head(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision; refuse a database from a newer recgov."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is not None and current not in known_revisions():
        raise ConfigError(
            f"the database {masked_url(engine.url)} is at schema revision {current!r}, which this "
            f"version of recgov does not know (its newest is {head!r}); upgrade recgov"
        )
    upgrade(engine, "head")
