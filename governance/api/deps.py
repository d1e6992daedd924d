"""Request dependencies: one database session per request, the calling key, scope checks.

The key check reads the key on every request, in a read-only snapshot (on
SQLite it takes no write lock) with one prepared statement
(:mod:`governance.api.reads`): a revoked key is refused from the next request
on. Dependencies that do no I/O are ``async``: FastAPI runs them in the event
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
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from audits.api_keys import ApiKey
from audits.db import Store
from governance.api.disclosure import ROLE_STATE
from governance.api.errors import Problem
from governance.api.keys import SCOPES, live_key, role_allows, roles_holding
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
    "OperateKey",
    "ReadKey",
    "ReadsDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "needs",
    "require",
]

MISSING_KEY = "this endpoint needs an API key: send 'Authorization: Bearer <token>' (create one with 'recgov keys create')"
BAD_KEY = "the API key is unknown or revoked"
FORBIDDEN = "this endpoint needs {roles} (scope {scope!r}); key {key_id} has the role {role}"

LEGACY_ROLE_SCOPES = {"viewer": "read", "auditor": "audit", "operator": "operate", "admin": "govern"}
"""``require("admin")`` from when endpoints named a role: the scope that role's endpoints needed."""

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


def current_key(reads: ReadsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    """The live key the request carries; 401 without one, or with an unknown or revoked one.

    Read in a read-only snapshot of its own (a prepared statement on a pooled
    connection), ended before the route runs. It runs in the thread pool, like
    any database call: the event loop never waits on the database.
    """
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, MISSING_KEY, headers=challenge)
    with reads.snapshot() as read:
        key = live_key(read, credentials.credentials)
    if key is None:
        raise Problem(401, BAD_KEY, headers=challenge)
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require(scope: str) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that lets through keys whose role holds ``scope`` (403 otherwise).

    Routes use it through :func:`needs` (or the aliases), which also documents the scope.
    """
    scope = LEGACY_ROLE_SCOPES.get(scope, scope)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")

    async def check(request: Request, key: CurrentKey) -> ApiKey:  # no I/O: run in the event loop, not the thread pool
        setattr(request.state, ROLE_STATE, key.role)  # what its problem documents may show (governance.api.disclosure)
        if not role_allows(key.role, scope):
            raise Problem(403, FORBIDDEN.format(roles=roles_holding(scope), scope=scope, key_id=key.id, role=key.role))
        return key

    check.__name__ = f"require_{scope}"
    return check


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

# The names routes used when roles were a ladder only, for the scope each role's endpoints needed.
Viewer, Auditor, Operator, Admin = ReadKey, AuditKey, OperateKey, GovernKey
