"""Signing in to the console with an API key, and signing out.

The key is checked as the API checks a bearer token
(:func:`governance.api.keys.live_key` over the app's read snapshots), and a key
whose role cannot read anything (``serving``) is refused. Signing in and out
are recorded on the trail like an API write (:func:`governance.api.call_record.record_call`,
``api.console.login`` / ``api.console.logout``, by ``key:<id>:<name>``), so the
trail says who reviewed from the console and when.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from governance.api.call_record import record_call
from governance.api.console.sessions import LIFETIME_S, LOGIN_NONCE_S
from governance.api.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    BookDep,
    ConsoleRoute,
    FormDep,
    Refusal,
    Reviewer,
    acting_for,
    clear_cookie,
    render,
    set_cookie,
)
from governance.api.deps import ReadsDep, SessionDep
from governance.api.keys import live_key, role_allows

__all__ = ["HOME", "router"]

HOME = "/console/audits"
TOKEN_FIELD = "token"
LOGIN_TOKEN_FIELD = "login_token"
UNKNOWN_KEY = "that API key is unknown or revoked; check it, or ask an administrator for one ('recgov keys create')"
NO_READ = "key {key_id} has the role {role}, which reads nothing: the console needs the role viewer or above"
STALE_FORM = "the sign-in form has expired or was not sent from this console; load it again"

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _next_page(wanted: str | None) -> str:
    """Where to go after signing in: a console page only (never another site)."""
    if wanted and wanted.startswith("/console/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return HOME


def _login_page(request: Request, book: BookDep, *, status: int = 200, error: str | None = None, wanted: str | None = None) -> Response:
    cookie, form_token = book.login_nonce()
    response = render(
        request, "login.html", status_code=status, title="Sign in", error=error, login_token=form_token, next_page=_next_page(wanted),
        token_field=TOKEN_FIELD, login_token_field=LOGIN_TOKEN_FIELD,
    )  # fmt: skip
    set_cookie(request, response, LOGIN_COOKIE, cookie, max_age=LOGIN_NONCE_S)
    return response


@router.get("", summary="The console's start page")
def start() -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", summary="The sign-in form")
def login_form(request: Request, book: BookDep, next: str | None = None) -> Response:  # noqa: A002 (the query's name)
    if book.find(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(_next_page(next), status_code=303)
    return _login_page(request, book, wanted=next)


@router.post("/login", summary="Sign in with an API key")
def login(request: Request, form: FormDep, book: BookDep, reads: ReadsDep, session: SessionDep) -> Response:
    """A session for the key; the token itself is checked and forgotten, never kept nor put in a cookie."""
    if not book.login_token_ok(request.cookies.get(LOGIN_COOKIE), form.get(LOGIN_TOKEN_FIELD)):
        raise Refusal(403, STALE_FORM)
    token = (form.get(TOKEN_FIELD) or "").strip()
    with reads.snapshot() as read:
        key = live_key(read, token) if token else None
    wanted = form.get("next")
    if key is None:
        return _login_page(request, book, status=401, error=UNKNOWN_KEY, wanted=wanted)
    if not role_allows(key.role, "read"):
        return _login_page(request, book, status=403, error=NO_READ.format(key_id=key.id, role=key.role), wanted=wanted)
    record_call(session, key, "console.login")  # on the trail before the session exists
    previous = book.find(request.cookies.get(COOKIE))
    if previous is not None:  # signing in again replaces the browser's session
        book.close(previous.id)
    _, cookie = book.open(key_id=key.id)
    response = RedirectResponse(_next_page(wanted), status_code=303)
    set_cookie(request, response, COOKIE, cookie, max_age=LIFETIME_S)
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout", summary="Sign out")
def logout(request: Request, book: BookDep, session: SessionDep, reviewer: Annotated[Reviewer, Depends(acting_for("read"))]) -> Response:
    book.close(reviewer.session.id)
    record_call(session, reviewer.key, "console.logout")
    response = RedirectResponse("/console/login", status_code=303)
    clear_cookie(request, response, COOKIE)
    return response

