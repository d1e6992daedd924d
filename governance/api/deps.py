"""Request dependencies: one database session per request, the calling key, role checks.

>>> @router.get("/things")                                   # doctest: +SKIP
... def things(session: SessionDep, key: Annotated[ApiKey, Depends(require("viewer"))]): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from audits.api_keys import ApiKey
from audits.db import Store
from governance.api.errors import Problem
from governance.api.keys import API_ROLES, authenticate, role_allows
from governance.api.settings import ApiSettings

__all__ = ["BAD_KEY", "MISSING_KEY", "CurrentKey", "SessionDep", "SettingsDep", "StoreDep", "require"]

MISSING_KEY = "this endpoint needs an API key: send 'Authorization: Bearer <token>' (create one with 'recgov keys create')"
BAD_KEY = "the API key is unknown or revoked"
FORBIDDEN = "this endpoint needs the role {required} or above; key {key_id} has the role {role}"

_bearer = HTTPBearer(auto_error=False, description="An API key from 'recgov keys create NAME --role ROLE'.")


def get_store(request: Request) -> Store:
    """The store opened at startup."""
    return request.app.state.store


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


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


def current_key(session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    """The live key the request carries; 401 without one, or with an unknown or revoked one."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, MISSING_KEY, headers=challenge)
    key = authenticate(session, credentials.credentials)
    # End the read transaction now: on SQLite every transaction holds the write lock,
    # and the route may open sessions of its own (privacy functions take the store).
    # The key is detached first, so that reading its role does not begin a new one.
    if key is not None:
        session.expunge(key)
    session.rollback()
    if key is None:
        raise Problem(401, BAD_KEY, headers=challenge)
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require(role: str) -> Callable[[ApiKey], ApiKey]:
    """A dependency that lets through keys of ``role`` or above (403 otherwise)."""
    if role not in API_ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of: {', '.join(API_ROLES)}")

    def check(key: CurrentKey) -> ApiKey:
        if not role_allows(key.role, role):
            raise Problem(403, FORBIDDEN.format(required=role, key_id=key.id, role=key.role))
        return key

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[ApiKey, Depends(require("viewer"))]
Auditor = Annotated[ApiKey, Depends(require("auditor"))]
Operator = Annotated[ApiKey, Depends(require("operator"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]
