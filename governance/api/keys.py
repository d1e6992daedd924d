"""API keys: random tokens shown once, stored only as SHA-256 hashes, each with a role.

Every endpoint names the scope it needs (:data:`SCOPES`); a role is the set of
scopes its keys hold (:data:`ROLE_SCOPES`). The people's roles form a ladder,
``viewer < auditor < operator < admin``, each holding the scopes of the roles
below it. ``serving`` stands outside the ladder: the key of a serving system
holds ``lists`` only, so it can ask for governed lists (and pass the consent
signals that come with them: the ``Sec-GPC`` header, a TCF string) without
reading audits, the trail, consent histories or subject requests, nor writing
anything else. :func:`governance.api.access.access_matrix` is the resulting
role x endpoint table, as the README shows it.

>>> with store.session() as session:                      # doctest: +SKIP
...     key, token = create_key(session, name="dpo-laptop", role="auditor")
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from audits.api_keys import API_ROLES, LADDER_ROLES, ApiKey
from audits.trail import append_event
from recommender.errors import ConfigError

__all__ = [
    "API_ROLES",
    "LiveKey",
    "ROLE_SCOPES",
    "SCOPES",
    "TOKEN_PREFIX",
    "actor_of",
    "authenticate",
    "create_key",
    "hash_token",
    "list_keys",
    "live_key",
    "live_key_of",
    "live_key_read",
    "revoke_key",
    "role_allows",
    "roles_holding",
]

TOKEN_PREFIX = "rgk_"
UNKNOWN_ROLE = "unknown role {role!r}; choose one of: viewer, auditor, operator, admin, serving"

SCOPES: dict[str, str] = {
    "read": "read packs, lineage, deployments, audit jobs and metrics; validate a pack",
    "audit": "start audits; verify the trail; read escalation cases and subject requests",
    "operate": "append and read consent records; report and flag items",
    "lists": "ask for governed lists, with their consent signals (Sec-GPC header, TCF string)",
    "govern": "store packs, sign checkpoints, promote and roll back, move escalation cases, answer subject requests",
}
"""What an endpoint may need, and what each scope lets a key do."""

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "auditor": frozenset({"read", "audit"}),
    "operator": frozenset({"read", "audit", "operate", "lists"}),
    "admin": frozenset(SCOPES),
    "serving": frozenset({"lists"}),
}
"""The scopes each role holds: the ladder's roles hold those of the roles below them; ``serving`` only ``lists``."""
UNKNOWN_KEY = "no API key with id {key_id}; see 'recgov keys list'"


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def role_allows(role: str, scope: str) -> bool:
    """True when keys of ``role`` hold ``scope`` (False for an unknown role or scope).

    >>> role_allows("serving", "lists"), role_allows("serving", "audit"), role_allows("admin", "audit")
    (True, False, True)
    """
    return scope in ROLE_SCOPES.get(role, ())


def roles_holding(scope: str) -> str:
    """The roles that hold ``scope``, in words: the least ladder role "or above", then the others.

    >>> roles_holding("lists")
    'the role operator or above, or serving'
    """
    ladder = [role for role in LADDER_ROLES if role_allows(role, scope)]
    others = [role for role in API_ROLES if role not in LADDER_ROLES and role_allows(role, scope)]
    words = [f"the role {ladder[0]}" + (" or above" if ladder[0] != LADDER_ROLES[-1] else "")] if ladder else []
    return ", or ".join([*words, *others]) if words else "the role " + " or ".join(others)


def actor_of(key: ApiKey | LiveKey) -> str:
    """How the trail names a key: ``key:<id>:<name>``."""
    return f"key:{key.id}:{key.name}"


def create_key(session: Session, *, name: str, role: str, actor: str = "recgov") -> tuple[ApiKey, str]:
    """Create a key; return it and its token (the only time the token exists outside the caller)."""
    if role not in API_ROLES:
        raise ConfigError(UNKNOWN_ROLE.format(role=role))
    if not name.strip() or len(name) > 100:
        raise ConfigError(f"the key name must be 1 to 100 characters; got {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, key_hash=hash_token(token), created_at=datetime.now(UTC))
    session.add(key)
    session.flush()
    append_event(session, actor=actor, action="api_key.created", objects={"api_key": key.id}, payload={"name": name, "role": role})
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, key_id: int, *, actor: str = "recgov") -> ApiKey:
    """Revoke key ``key_id`` (idempotent: a revoked key keeps its first revocation time)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ConfigError(UNKNOWN_KEY.format(key_id=key_id))
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        append_event(session, actor=actor, action="api_key.revoked", objects={"api_key": key.id}, payload={"name": key.name})
    return key


def authenticate(session: Session, token: str) -> ApiKey | None:
    """The live key whose token is ``token``, else None (unknown or revoked)."""
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_token(token))).one_or_none()
    return key if key is not None and key.revoked_at is None else None


# Built once: its cache key is computed once, not on every request.
_LIVE_KEY = select(ApiKey.id, ApiKey.name, ApiKey.role).where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))


def live_key_read(token: str) -> tuple[Any, dict[str, str]]:
    """The statement and parameters :func:`live_key` reads ``token``'s key with (for a snapshot to send ahead)."""
    return _LIVE_KEY, {"key_hash": hash_token(token)}


class LiveKey(NamedTuple):
    """A live key as a request that only checks it reads it: its id, name and role (the scope check and the trail's
    ``key:<id>:<name>`` actor need nothing else), without the cost of an ORM instance on every governed list."""

    id: int
    name: str
    role: str


def live_key_of(read: Connection | Session | Any, token: str) -> LiveKey | None:
    """:func:`live_key` as a :class:`LiveKey`: the same statement, the same answer (None for an unknown or revoked
    token), nothing cached."""
    row = read.execute(*live_key_read(token)).one_or_none()
    return None if row is None else LiveKey._make(row)


def live_key(read: Connection | Session | Any, token: str) -> ApiKey | None:
    """:func:`authenticate` for a read-only transaction: one prebuilt statement.

    ``read``: a session, a connection (``Store.snapshot()``) or a
    :class:`governance.api.reads.FastSnapshot`.

    Returns a detached :class:`ApiKey` carrying ``id``, ``name`` and ``role``
    (all a request needs), or None for an unknown or revoked token. Nothing is
    cached: a key revoked before the transaction began is refused.
    """
    row = read.execute(*live_key_read(token)).one_or_none()
    if row is None:
        return None
    key_id, name, role = row
    return ApiKey(id=key_id, name=name, role=role)
