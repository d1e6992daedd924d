"""Where the store lives: settings read from the environment (prefix ``RECGOV_``).

========================== ==================================================
variable                   meaning
========================== ==================================================
``RECGOV_HOME``            recgov's data folder. Default: ``$XDG_DATA_HOME/recgov``,
                           else ``~/.local/share/recgov``.
``RECGOV_DATABASE_URL``    SQLAlchemy URL of the store. Default: the embedded SQLite
                           file ``$RECGOV_HOME/recgov.db``. PostgreSQL:
                           ``postgresql+psycopg://user:password@host:5432/dbname``.
``RECGOV_SIGNING_KEY_PATH`` Ed25519 private key that signs trail checkpoints.
                           Default: ``$RECGOV_HOME/keys/signing-key.pem``.
``RECGOV_INSTALLATION_KEY`` 64 hex digits: the key under which subject ids are
                           looked up in ``subject_secrets``. Default: the file
                           ``$RECGOV_HOME/keys/installation.key``, created on first use.
``RECGOV_ACTOR``           who the trail names as the actor of lineage records
                           when the caller names nobody. Default ``recgov``.
========================== ==================================================

Settings are read afresh on every call of :func:`get_settings`, so a changed
environment (a test, a CLI option) takes effect at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from audits.private_files import OWNER_ONLY_FOLDER

__all__ = ["StoreSettings", "get_settings", "default_home"]


def default_home() -> Path:
    """``$XDG_DATA_HOME/recgov`` when ``XDG_DATA_HOME`` is set, else ``~/.local/share/recgov``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "recgov"


class StoreSettings(BaseSettings):
    """The store's settings; every field can be set by ``RECGOV_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RECGOV_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    """recgov's data folder: the embedded database and the keys live here."""

    database_url: str | None = None
    """SQLAlchemy URL of the store; unset means the SQLite file ``home/recgov.db``."""

    signing_key_path: Path | None = None
    """The Ed25519 private key (PEM) that signs checkpoints; unset means ``home/keys/signing-key.pem``."""

    installation_key: SecretStr | None = None
    """64 hex digits; unset means the file ``home/keys/installation.key`` (created on first use)."""

    actor: str = "recgov"
    """The actor named in trail events of lineage records when the caller names none."""

    redis_url: str | None = None
    """The online store (Redis) of model factors and cached lists, e.g. ``redis://127.0.0.1:6379/0``; unset: none
    (lists are made in-process; consent, erasure, block and availability changes have nothing to invalidate)."""

    @property
    def keys_dir(self) -> Path:
        """The folder of the signing keys, public keys and the installation key."""
        return self.home / "keys"

    @property
    def sqlite_path(self) -> Path:
        """The embedded database file."""
        return self.home / "recgov.db"

    def resolved_database_url(self) -> str:
        """``database_url`` if set, else the embedded SQLite file (its folder is created)."""
        if self.database_url:
            return self.database_url
        self.home.mkdir(mode=OWNER_ONLY_FOLDER, parents=True, exist_ok=True)  # the store holds personal data
        return f"sqlite:///{self.sqlite_path}"

    def resolved_signing_key_path(self) -> Path:
        """``signing_key_path`` if set, else ``keys_dir/signing-key.pem``."""
        return self.signing_key_path or self.keys_dir / "signing-key.pem"


_CACHE: tuple[tuple[tuple[str, str], ...], StoreSettings] | None = None


def _environment() -> tuple[tuple[str, str], ...]:
    """Everything the settings are read from: the ``RECGOV_*`` variables (any case), ``XDG_DATA_HOME``, ``HOME``."""
    return tuple(
        sorted((k.upper(), v) for k, v in os.environ.items() if k.upper().startswith("RECGOV_") or k in ("XDG_DATA_HOME", "HOME"))
    )


_SEEN: tuple[dict[Any, Any], StoreSettings] | None = None
"""The whole environment as the last call saw it (a copy of the mapping behind ``os.environ``) and the
settings it gave: while the environment is equal to it, nothing the settings are read from changed."""


def get_settings() -> StoreSettings:
    """The settings as the environment gives them now.

    Parsed again only when a variable they are read from changed: request paths
    call this many times, and a parse costs a few hundred microseconds. Finding
    the variables they are read from walks ``os.environ`` (every name decoded,
    tens of microseconds), so first the whole environment is compared with the
    one the last call saw, at C speed (CPython keeps it in ``os.environ._data``);
    only when it differs is it walked.
    """
    global _CACHE, _SEEN
    raw = getattr(os.environ, "_data", None)
    seen = _SEEN
    if seen is not None and type(raw) is dict and raw == seen[0]:
        return seen[1]
    # The copy is taken before the settings are read: a variable another thread changes meanwhile
    # then differs from the copy, and the next call reads the settings again.
    snapshot = dict(raw) if type(raw) is dict else None
    env = _environment()
    cached = _CACHE
    if cached is None or cached[0] != env:
        cached = (env, StoreSettings())
        _CACHE = cached
    if snapshot is not None:
        _SEEN = (snapshot, cached[1])
    return cached[1]
