"""What every console page shares: templates, the signed-in reviewer, forms, refusals and headers.

A page names the scope it needs, as an API route does
(:data:`governance.api.keys.SCOPES`), through :func:`reviewer_for` (pages read)
or :func:`acting_for` (forms that change something). Both read the session's
key from the store on every request, so a key revoked since sign-in is signed
out at once. :class:`ConsoleRoute` turns a :class:`Refusal` (and a malformed
path or query) into an HTML page with its status, where the API answers
problem documents; and it adds the headers every console page carries (a
content security policy that allows only this server's stylesheet, no
framing, no caching of signed-in pages).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select

from audits.api_keys import ApiKey
from governance.api.console.sessions import ConsoleSession, SessionBook
from governance.api.deps import SessionDep
from governance.api.keys import role_allows, roles_holding

__all__ = [
    "BookDep",
    "COOKIE",
    "CSRF_FIELD",
    "LOGIN_COOKIE",
    "ConsoleRoute",
    "FormDep",
    "Refusal",
    "Reviewer",
    "acting_for",
    "book_of",
    "clear_cookie",
    "first_values",
    "render",
    "reviewer_for",
    "set_cookie",
]

COOKIE = "recgov_console"
LOGIN_COOKIE = "recgov_console_login"
CSRF_FIELD = "csrf_token"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 20

NOT_SIGNED_IN = "sign in first: this form acts for a signed-in key"
BAD_CSRF = "the form's CSRF token is missing or belongs to another session; reload the page and send the form again"
NEEDS_SCOPE = "this needs {roles} (scope {scope!r}); you are signed in with key {key_id}, whose role is {role}"
NOT_A_FORM = f"send the form as {FORM_TYPE}, UTF-8, at most {MAX_FIELDS} fields"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

NAV = (
    ("audits", "/console/audits", "Audit runs", "read"),
    ("escalations", "/console/escalations", "Escalation queue", "audit"),
    ("trail", "/console/trail", "Audit trail", "audit"),
    ("deployments", "/console/deployments", "Deployments", "read"),
    ("requests", "/console/requests", "Subject requests", "audit"),
    ("packs", "/console/packs", "Policy packs", "read"),
    ("consent", "/console/consent", "Consent", "operate"),
    ("processing", "/console/records/processing", "Art. 30 record", "audit"),
    ("disclosure", "/console/records/disclosure", "Art. 27 disclosure", "read"),
    ("datasets", "/console/datasets", "Data sets", "audit"),
)
"""The console's pages: name, path, label, and the scope that opens it (links a role cannot open are left out)."""


def _when(value: datetime | str | None) -> str:
    """A time to the second, in UTC when it is known to be ('2026-12-05 11:04:31 UTC')."""
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _figure(value: Any) -> Any:
    """A measured value as people read it: four significant digits for a float, anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else value


_templates = Environment(
    loader=PackageLoader("governance.api.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["when"] = _when
_templates.filters["figure"] = _figure


@dataclass(frozen=True)
class Reviewer:
    """The signed-in key (id, name, role; never its token) and its console session."""

    key: ApiKey
    session: ConsoleSession

    def can(self, scope: str) -> bool:
        """True when the key's role holds ``scope`` (what the page shows follows the API's roles)."""
        return role_allows(self.key.role, scope)


class Refusal(Exception):
    """A request the console refuses; ``sign_in`` sends a browser asking for a page to the sign-in form instead."""

    def __init__(self, status: int, message: str, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sign_in = sign_in


def book_of(request: Request) -> SessionBook:
    """The app's sessions, made on first use (on the event loop, so made once)."""
    book = getattr(request.app.state, "console_sessions", None)
    if book is None:
        book = request.app.state.console_sessions = SessionBook()
    return book


async def _book(request: Request) -> SessionBook:
    return book_of(request)


BookDep = Annotated[SessionBook, Depends(_book)]


def render(request: Request, template: str, *, status_code: int = 200, title: str, reviewer: Reviewer | None = None, **context: Any) -> HTMLResponse:
    """The page ``template`` for ``reviewer`` (None: signed out), with the navigation its role may follow."""
    nav = [(name, path, label) for name, path, label, scope in NAV if reviewer is not None and reviewer.can(scope)]
    html = _templates.get_template(template).render(
        title=title, reviewer=reviewer, nav=nav, csrf_field=CSRF_FIELD, here=request.url.path, **context
    )
    response = HTMLResponse(html, status_code=status_code)
    if reviewer is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


def _signed_in(request: Request, session: Any, book: SessionBook) -> Reviewer | None:
    """The session's reviewer, its key read now (a revoked key closes the session), else None."""
    found = book.find(request.cookies.get(COOKIE))
    if found is None:
        return None
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role).where(ApiKey.id == found.key_id, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    session.rollback()  # end the read: the page's own reads and writes are transactions of their own
    if row is None:
        book.close(found.id)
        return None
    reviewer = Reviewer(ApiKey(id=row.id, name=row.name, role=row.role), found)
    request.state.console_reviewer = reviewer  # what a refusal's page shows in its header
    return reviewer


def _needs(reviewer: Reviewer, scope: str) -> Reviewer:
    if not reviewer.can(scope):
        message = NEEDS_SCOPE.format(roles=roles_holding(scope), scope=scope, key_id=reviewer.key.id, role=reviewer.key.role)
        raise Refusal(403, message)
    return reviewer


def reviewer_for(scope: str) -> Callable[..., Reviewer]:
    """A dependency: the signed-in reviewer whose role holds ``scope``; else the sign-in form, or 403."""

    def dependency(request: Request, session: SessionDep, book: BookDep) -> Reviewer:
        reviewer = _signed_in(request, session, book)
        if reviewer is None:
            raise Refusal(401, NOT_SIGNED_IN, sign_in=True)
        return _needs(reviewer, scope)

    dependency.__name__ = f"console_reviewer_{scope}"
    return dependency


async def _form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each); 415 for anything but a URL-encoded UTF-8 form."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise Refusal(415, NOT_A_FORM)
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, NOT_A_FORM) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


FormDep = Annotated[dict[str, str], Depends(_form)]


def acting_for(scope: str) -> Callable[..., Reviewer]:
    """A dependency for a form that changes something: signed in, the session's CSRF token, then ``scope``; 403 otherwise.

    The CSRF token is checked before the role, so a forged form learns nothing
    about the key behind the session.
    """

    def dependency(request: Request, session: SessionDep, book: BookDep, form: FormDep) -> Reviewer:
        reviewer = _signed_in(request, session, book)
        if reviewer is None:
            raise Refusal(403, NOT_SIGNED_IN)
        if not reviewer.session.csrf_matches(form.get(CSRF_FIELD)):
            raise Refusal(403, BAD_CSRF)
        return _needs(reviewer, scope)

    dependency.__name__ = f"console_acting_{scope}"
    return dependency


def _refused(request: Request, refusal: Refusal) -> Response:
    if refusal.sign_in and request.method in ("GET", "HEAD"):
        return RedirectResponse(f"/console/login?next={quote(request.url.path, safe='/')}", status_code=303)
    reviewer = getattr(request.state, "console_reviewer", None)
    return render(request, "refused.html", status_code=refusal.status, title="Not allowed" if refusal.status == 403 else "Cannot do that", reviewer=reviewer, message=refusal.message)


def _invalid(request: Request, err: RequestValidationError) -> Response:
    """A malformed path (an id that is no id) is a page that does not exist; a malformed query, a 422 page."""
    in_path = any(error.get("loc", ("",))[0] == "path" for error in err.errors())
    fields = ", ".join(".".join(str(part) for part in error.get("loc", ())[1:]) for error in err.errors())
    message = "there is no such page" if in_path else f"the query is not valid: {fields}"
    reviewer = getattr(request.state, "console_reviewer", None)
    return render(request, "refused.html", status_code=404 if in_path else 422, title="Not found" if in_path else "Cannot do that", reviewer=reviewer, message=message)


def _without_blanks(request: Request) -> Request:
    """The request without its blank query fields: a filter form's "any" sends ``status=``, which means no filter."""
    if not request.url.query:
        return request
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if value.strip()]
    if len(kept) == len(pairs):
        return request
    request.scope["query_string"] = urlencode(kept).encode("latin-1")
    return Request(request.scope, request.receive)


class ConsoleRoute(APIRoute):
    """A console page: refusals and malformed requests as HTML pages, and the console's security headers on every answer.

    A blank query field is dropped before the page reads its query, so a GET
    form's empty choice ("any") filters nothing instead of failing validation.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            request = _without_blanks(request)
            try:
                response = await handle(request)
            except Refusal as refusal:
                response = _refused(request, refusal)
            except RequestValidationError as err:
                response = _invalid(request, err)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, for /console only, Secure when the page came over https."""
    response.set_cookie(
        name, value, max_age=max_age, path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    """Delete a console cookie (with the attributes it was set with)."""
    response.delete_cookie(name, path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def first_values(fields: Mapping[str, str], *names: str) -> list[str | None]:
    """The named fields of a form, None for a missing or blank one."""
    return [(fields.get(name) or "").strip() or None for name in names]
