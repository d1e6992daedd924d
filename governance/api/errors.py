"""Every error as RFC 9457 problem details (``application/problem+json``).

A problem has ``type``, ``title``, ``status``, ``detail`` and ``instance`` (the
request path). Validation problems add ``errors``: one entry per problem, naming
where (``location``/``field``, or ``line``/``column``/``path`` in a policy pack)
and why (``message``), never the value received.

Every problem passes :func:`governance.api.disclosure.disclosed` on its way
out: no raw subject id reaches any caller (not in ``detail``, ``errors`` nor
``instance``), and server paths and values read from data files reach only the
roles that run the service.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from governance.api.disclosure import disclosed
from governance.api.options import allowed_methods
from governance.located import PolicyError
from recommender.errors import ConfigError, DataError, RecgovError

__all__ = ["BODY_NOT_PARSED", "PROBLEM_BASE", "PROBLEM_JSON", "UNKNOWN_MODEL", "Problem", "install_error_handlers", "problem_response", "problems"]

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://recgov.dev/problems/"
log = logging.getLogger("recgov.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Validation failed",
    500: "Internal server error",
    503: "Service unavailable",
}
_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not-found", 409: "conflict", 413: "too-large", 422: "validation", 500: "internal", 503: "unavailable"}


# FastAPI raises a 400 with this text when a JSON body is not even UTF-8 (malformed UTF-8
# JSON is a 422 ``json_invalid``); both are answered alike, as a 422 naming the body.
_FASTAPI_BODY_ERROR = "There was an error parsing the body"
UNKNOWN_MODEL = "model version {version!r} is not in the store; GET /v1/models lists the versions it holds"
"""The 404 of every resource addressed by a model version (models, reports, records)."""
BODY_NOT_PARSED = "the body is not JSON: send a JSON object, encoded as UTF-8, with 'Content-Type: application/json'"

_DESCRIPTIONS = {
    400: "The body cannot be read as sent (a gzip body cut short or corrupt).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role does not hold the scope this endpoint needs (see the operation's security).",
    404: "A named resource (model version, pack, case) is not in the store.",
    409: "The request conflicts with what is stored.",
    413: "The body is larger than the installation accepts (a gzip body: once decompressed).",
    415: "The body's Content-Encoding is not one the route reads (it reads gzip, or the body as it is).",
    422: "The request is invalid: ``errors`` says where and why.",
    500: "An internal error; it has been logged.",
    503: "The service is shutting down: retry on another instance.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the problem documents a route may answer with.

    Routes and routers pass it as ``responses=`` so that the document names every
    error status with its media type and schema (schema-driven fuzzing holds the
    API to it).

    >>> sorted(problems(401, 404))
    [401, 404]
    """
    from governance.api.schemas import ProblemDetail  # schemas import nothing from here

    schema = ProblemDetail.model_json_schema()  # flat: no references to resolve
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "description": _DESCRIPTIONS.get(status, _TITLES.get(status, "Error")),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
    return out


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.headers = headers


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> JSONResponse:
    """A problem+json response for ``request``, as its caller may see it (:func:`~governance.api.disclosure.disclosed`).

    ``body``: the request's parsed JSON body, when the caller has it (a validation error carries it).
    """
    problem: dict[str, Any] = {
        "type": PROBLEM_BASE + (kind or _TYPES.get(status, str(status))),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        problem["errors"] = errors
    return JSONResponse(disclosed(request, problem, body=body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if e.get("type") == "json_invalid":  # its location is a character offset, not a field: the body is at fault
            at = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = str((e.get("ctx") or {}).get("error", "")) or "unreadable"
            out.append({"location": "body", "field": "", "message": f"{BODY_NOT_PARSED} ({reason}{at})", "type": "json_invalid"})
            continue
        where, field = (loc[0], ".".join(loc[1:])) if loc else ("body", "")
        out.append({"location": where, "field": field, "message": e.get("msg", ""), "type": e.get("type", "")})
    return out


def _not_sent_as_json(errors: list[dict[str, Any]], content_type: str | None) -> list[dict[str, Any]]:
    """Say why a JSON body was not read: it was sent under another media type (``curl -d`` sends a form's).

    The body of a JSON route is parsed only when the request declares JSON; under another declared type
    it reaches validation as bytes, and the bare "Input should be a valid list" hides the cause.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        return errors
    hint = f"the body was sent as {media[:80]!r}, not read as JSON: send it with Content-Type: application/json"
    return [{**e, "message": f"{e['message']} ({hint})"} if (e["location"], e["field"]) == ("body", "") else e for e in errors]


def pack_issues(err: PolicyError) -> list[dict[str, Any]]:
    """A pack's located issues as problem ``errors``."""
    return [{"line": i.line, "column": i.column, "path": i.path, "message": i.message, "severity": i.severity} for i in err.issues]


def install_error_handlers(app: FastAPI, *, expose_errors: bool = False) -> None:
    """Answer every error with problem details."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
            errors = [{"location": "body", "field": "", "message": BODY_NOT_PARSED, "type": "json_invalid"}]
            return problem_response(request, 422, f"the request is invalid: body ({BODY_NOT_PARSED})", errors=errors)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method the path has, not only those of the first route that matched it
            headers = {**(headers or {}), "Allow": ", ".join(sorted({*allowed_methods(request.scope), "OPTIONS"}))}
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _not_sent_as_json(_validation_errors(exc), request.headers.get("content-type"))
        names = ", ".join(f"{e['location']}.{e['field']}".rstrip(".") for e in errors)
        return problem_response(request, 422, f"the request is invalid: {names}", errors=errors, body=exc.body)

    @app.exception_handler(PolicyError)
    async def _policy(request: Request, exc: PolicyError) -> JSONResponse:
        n = sum(1 for i in exc.issues if i.severity == "error")
        return problem_response(request, 422, f"the policy pack is invalid: {n} error(s)", kind="invalid-pack", errors=pack_issues(exc))

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem_response(request, 422, str(exc), kind="invalid-input")

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return problem_response(request, 422, str(exc), kind="invalid-data")

    @app.exception_handler(RecgovError)
    async def _recgov(request: Request, exc: RecgovError) -> JSONResponse:
        return problem_response(request, 422, str(exc), kind="invalid-input")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # The route template, never the raw path: a path can hold a subject id.
        route = getattr(request.scope.get("route"), "path", "<unmatched>")
        log.exception("unhandled error on %s %s", request.method, route)
        detail = f"{type(exc).__name__}: {exc}" if expose_errors else "an internal error occurred; it has been logged"
        return problem_response(request, 500, detail)
