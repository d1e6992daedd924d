"""The request body limit, enforced while the body streams in (an ASGI middleware).

A body is a hostile input until it is known to be small: a client can declare
ten gigabytes, or send chunks without end. :class:`BodyLimit` answers a declared
``Content-Length`` above ``RECGOV_MAX_BODY_BYTES`` with a 413 problem document
before reading a byte of it, and counts the bytes of every other body as the
route reads them: the chunk that passes the limit raises :class:`BodyTooLarge`
(an ``HTTPException``, so FastAPI's body parsing lets it through and the error
handlers answer it as a 413 problem), and nothing more is read.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from governance.api.errors import problem_response

__all__ = ["BODY_TOO_LARGE", "BodyLimit", "BodyTooLarge"]

BODY_TOO_LARGE = "the request body is larger than {limit} bytes, the most this installation accepts (RECGOV_MAX_BODY_BYTES); send less"


class BodyTooLarge(HTTPException):
    """A request body past the limit (answered 413)."""

    def __init__(self, limit: int, detail: str | None = None) -> None:
        super().__init__(413, detail or BODY_TOO_LARGE.format(limit=limit))
        self.limit = limit


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, before or while they are read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = problem_response(Request(scope), 413, BODY_TOO_LARGE.format(limit=self.max_bytes), headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message  # type: ignore[return-value]

        await self.app(scope, limited, send)


async def read_body(request: Request, limit: int, detail: str) -> bytes:
    """The body of ``request``, or :class:`BodyTooLarge` with ``detail`` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, detail)
        chunks.append(chunk)
    return b"".join(chunks)
