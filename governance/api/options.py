"""``OPTIONS`` on any path, and the ``Allow`` header of every 405, from the routes the app has.

A path's methods are spread over several routes (``GET /v1/audits`` and
``POST /v1/audits`` are two), and Starlette's own 405 names only the methods of
the first route whose path matched; FastAPI serves no ``OPTIONS`` at all. Both
answers are made here from every route whose path matches:

* ``OPTIONS <path>`` is a 204 with ``Allow`` listing them (and ``OPTIONS``),
  without authentication: it says what the path offers, never what it holds.
  A path no route has falls through to the app's own 404 problem.
* a 405 carries the same ``Allow`` (:func:`allowed_methods`, read by the error
  handler in :mod:`governance.api.errors`).

The scan of the routes runs only for ``OPTIONS`` and for 405s, never on the
paths that serve.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["OptionsAnswer", "allowed_methods"]


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
"""The methods asked about: those a route of the API could serve."""


def allowed_methods(scope: Scope) -> list[str]:
    """The methods the routes of ``scope["app"]`` serve on the scope's path, sorted; empty when no route has it.

    Each method is asked of every top-level route through its public ``matches``
    (included routers answer for the routes they hold), on a copy of the scope.
    """
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
    served = []
    for method in METHODS:
        if any(route.matches({**scope, "type": "http", "method": method})[0] is Match.FULL for route in routes):
            served.append(method)
    return served


class OptionsAnswer:
    """Answer ``OPTIONS`` with 204 and ``Allow`` for every path a route has; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        methods = allowed_methods(scope)
        if not methods or "OPTIONS" in methods:  # unknown path (the app's 404), or a route serving OPTIONS itself
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted({*methods, "OPTIONS"}))
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allow.encode("latin-1"))]})
        await send({"type": "http.response.body", "body": b""})
