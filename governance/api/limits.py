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

import zlib
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from governance.api.errors import Problem, problem_response

__all__ = ["BODY_TOO_LARGE", "GZIP_BROKEN", "UNSUPPORTED_ENCODING", "BodyLimit", "BodyTooLarge", "read_body"]

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


UNSUPPORTED_ENCODING = (
    "the body's Content-Encoding {encoding!r} is not one this route reads; send the body as it is, or gzip-compressed "
    "(Content-Encoding: gzip)"
)
GZIP_BROKEN = "the body says Content-Encoding: gzip but is not a whole gzip stream ({detail}); send it again, compressed whole"


async def read_body(request: Request, limit: int, detail: str) -> bytes:
    """The body of ``request``, or :class:`BodyTooLarge` with ``detail`` as soon as it passes ``limit`` bytes.

    A gzip body (``Content-Encoding: gzip``) is decompressed, held to ``limit`` as it is decompressed: a small body
    that would inflate past it (a zip bomb) is a 413 after ``limit`` bytes of output, never more. Another encoding is
    a 415 naming it (its bytes are not the text the route reads); a gzip stream cut short or corrupt, a 400."""
    codings = [c.strip().lower() for c in request.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if codings and codings != ["gzip"] and codings != ["x-gzip"]:
        raise Problem(415, UNSUPPORTED_ENCODING.format(encoding=request.headers["content-encoding"].strip()))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, detail)
        chunks.append(chunk)
    body = b"".join(chunks)
    return _gunzip(body, limit, detail) if codings else body


def _gunzip(data: bytes, limit: int, detail: str) -> bytes:
    """``data`` decompressed (every gzip member of it), or :class:`BodyTooLarge` once the output passes ``limit``."""
    out: list[bytes] = []
    size = 0
    rest = data
    try:
        while True:
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = stream.decompress(rest, limit + 1 - size)  # at most one byte past the limit, however it inflates
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit, detail)
            out.append(chunk)
            if not stream.eof:
                raise Problem(400, GZIP_BROKEN.format(detail="the stream is cut short"))
            rest = stream.unused_data
            if not rest:
                return b"".join(out)
    except zlib.error as err:
        raise Problem(400, GZIP_BROKEN.format(detail=str(err))) from None
