"""Request dependencies: one database session per request, the calling key, scope checks.

The key check reads the key on every request, in a read-only snapshot (on
SQLite it takes no write lock) with one prepared statement
(:mod:`governance.api.reads`): a revoked key is refused from the next request
on. A governed list reads it in the list's own snapshot instead (``ListsToken``,
:class:`Token`): one snapshot fewer per list, with the same answers. Dependencies that do no I/O are ``async``: FastAPI runs them in the event
loop instead of handing each to the thread pool.

>>> @router.get("/things")                                   # doctest: +SKIP
... def things(session: SessionDep, key: ReadKey): ...

Every route names the scope it needs (:data:`governance.api.keys.SCOPES`) through
one of the aliases below (``ReadKey``, ``AuditKey``, ``OperateKey``, ``ListsKey``,
``GovernKey``) or :func:`needs`, which also names the scope in the OpenAPI
document, from which :mod:`governance.api.access` reads the role x endpoint matrix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from audits.api_keys import ApiKey
from audits.db import Store
from governance.api.disclosure import ROLE_STATE
from governance.api.errors import Problem
from governance.api.keys import SCOPES, LiveKey, live_key, live_key_of, role_allows, roles_holding
from governance.api.reads import FastReads
from governance.api.settings import ApiSettings

__all__ = [
    "BAD_KEY",
    "FORBIDDEN",
    "MISSING_KEY",
    "AuditKey",
    "CurrentKey",
    "GovernKey",
    "ListsKey",
    "ListsToken",
    "OperateKey",
    "ReadKey",
    "ReadsDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "Token",
    "bearer_token",
    "check_scope",
    "needs",
    "require",
    "verified_key",
]

MISSING_KEY = "this endpoint needs an API key: send 'Authorization: Bearer <token>' (create one with 'recgov keys create')"
BAD_KEY = "the API key is unknown or revoked"
FORBIDDEN = "this endpoint needs {roles} (scope {scope!r}); key {key_id} has the role {role}"

LEGACY_ROLE_SCOPES = {"viewer": "read", "auditor": "audit", "operator": "operate", "admin": "govern"}
"""``require("admin")`` from when endpoints named a role: the scope that role's endpoints needed."""

CHALLENGE = {"WWW-Authenticate": "Bearer"}

_Key = TypeVar("_Key", ApiKey, LiveKey)

_bearer = HTTPBearer(auto_error=False, description="An API key from 'recgov keys create NAME --role ROLE'.")


async def get_store(request: Request) -> Store:
    """The store opened at startup."""
    return request.app.state.store


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_reads(request: Request) -> FastReads:
    """The app's prepared read-only snapshots (:mod:`governance.api.reads`)."""
    return request.app.state.reads


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ReadsDep = Annotated[FastReads, Depends(get_reads)]


def get_session(store: StoreDep) -> Iterator[Session]:
    """One session per request; routes commit their writes themselves, before answering.

    Whatever is not committed when the request ends is rolled back.
    """
    session = Session(store.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer token the request carries; 401 (no I/O) when it carries none."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, MISSING_KEY, headers=CHALLENGE)
    return credentials.credentials


def verified_key(read: Any, token: str) -> ApiKey:
    """The live key of ``token`` read in ``read`` (a read-only snapshot); 401 when it is unknown or revoked."""
    key = live_key(read, token)
    if key is None:
        raise Problem(401, BAD_KEY, headers=CHALLENGE)
    return key


def current_key(reads: ReadsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    """The live key the request carries; 401 without one, or with an unknown or revoked one.

    Read in a read-only snapshot of its own (a prepared statement on a pooled
    connection), ended before the route runs. It runs in the thread pool, like
    any database call: the event loop never waits on the database.
    """
    token = bearer_token(credentials)
    with reads.snapshot() as read:
        return verified_key(read, token)


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def check_scope(request: Request, key: _Key, scope: str) -> _Key:
    """``key`` when its role holds ``scope``, else 403; the role is noted for the request's problem documents."""
    setattr(request.state, ROLE_STATE, key.role)  # what its problem documents may show (governance.api.disclosure)
    if not role_allows(key.role, scope):
        raise Problem(403, FORBIDDEN.format(roles=roles_holding(scope), scope=scope, key_id=key.id, role=key.role))
    return key


def _known_scope(scope: str) -> str:
    scope = LEGACY_ROLE_SCOPES.get(scope, scope)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    return scope


def require(scope: str) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that lets through keys whose role holds ``scope`` (403 otherwise).

    Routes use it through :func:`needs` (or the aliases), which also documents the scope.
    """
    scope = _known_scope(scope)

    async def check(request: Request, key: CurrentKey) -> ApiKey:  # no I/O: run in the event loop, not the thread pool
        return check_scope(request, key, scope)

    check.__name__ = f"require_{scope}"
    return check


@dataclass(frozen=True)
class Token:
    """A bearer token not yet read from the store, and the scope its route needs.

    For a route that reads the key inside its own read-only snapshot (one
    snapshot, and on PostgreSQL its round trips, fewer per request): the route
    calls :meth:`key` in that snapshot before it does anything else.
    """

    token: str
    scope: str
    request: Request

    def key(self, read: Any) -> LiveKey:
        """The live key (401 when unknown or revoked) whose role holds the scope (403 otherwise), read in ``read``."""
        key = live_key_of(read, self.token)
        if key is None:
            raise Problem(401, BAD_KEY, headers=CHALLENGE)
        return check_scope(self.request, key, self.scope)


def token_for(scope: str) -> Any:
    """``Security`` of a dependency that checks only that a bearer token is sent (401 otherwise, no I/O) and
    returns it as a :class:`Token` for the route to verify in its own snapshot; ``scope`` is documented in
    OpenAPI as :func:`needs` documents it. A route using it must verify the key before any other answer
    (see ``governance.api.routes.recommendations``: a body that fails validation is answered 401 or 403 first)."""
    scope = _known_scope(scope)

    async def token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Token:
        return Token(bearer_token(credentials), scope, request)

    token.__name__ = f"token_for_{scope}"
    return Security(token, scopes=[scope])


def needs(scope: str) -> Any:
    """``Security(require(scope))``: the check, with ``scope`` documented on the operation in OpenAPI.

    The OpenAPI document then says what each operation needs (``security``:
    ``[{"HTTPBearer": [scope]}]``), and :mod:`governance.api.access` reads the
    role x endpoint matrix from it.
    """
    return Security(require(scope), scopes=[scope])


ReadKey = Annotated[ApiKey, needs("read")]
AuditKey = Annotated[ApiKey, needs("audit")]
OperateKey = Annotated[ApiKey, needs("operate")]
ListsKey = Annotated[ApiKey, needs("lists")]
GovernKey = Annotated[ApiKey, needs("govern")]
ListsToken = Annotated[Token, token_for("lists")]
"""The ``lists`` scope's token, verified by the route in its own snapshot (:class:`Token`)."""

# The names routes used when roles were a ladder only, for the scope each role's endpoints needed.
Viewer, Auditor, Operator, Admin = ReadKey, AuditKey, OperateKey, GovernKey
