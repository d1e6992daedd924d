"""``/v1/recommendations``: one governed list (operator), honouring ``Sec-GPC: 1`` and a TC string (``tcf``); ``/v1/ping`` beside it.

The route does HTTP only: it parses the body, decides where the list is made
(on the event loop when everything is loaded and its reads are local, on an
embedded store, or one statement awaited there, on PostgreSQL; else on a worker
thread; see :mod:`governance.api.services.lists`), awaits the
decision's commit, counts it, hands the request to the shadow versions
(:mod:`governance.api.services.shadows`) and encodes the answer once, in the
shape of :class:`~governance.api.schemas.recommendations.GovernedList`. Packs,
models and engines are cached by :mod:`governance.api.services.engines`, whose
decision log records each list with the call's trail record
(:mod:`governance.api.services.call_sink`).

``GET /v1/ping`` answers an operator key with no other work: a liveness check for
authenticated clients, and the baseline against which ``bench/bench_http.py``
measures what governance costs per request.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from governance.api.deps import ListsKey, ListsToken, Token
from governance.api.errors import problems
from governance.api.schemas.recommendations import GovernedList, Pong, RecommendationCreate, governed_list_json
from governance.api.services.engines import engines_of
from governance.api.services.lists import ListContext, NotReady, Prepared, committed, decide_on_loop, prepare_awaited
from governance.api.services.lists import prepare_on_loop, prepare_on_thread

__all__ = ["router"]



class KeyFirstRoute(APIRoute):
    """A route whose key is verified by the route itself (:class:`~governance.api.deps.Token`), answering a bad key
    401 and a role without the scope 403 before a 422 for a body that fails validation, as every other route does.

    FastAPI validates the body before the route runs; when that fails, the key is read here (in a snapshot of its
    own, on a worker thread: a rare path) and its 401 or 403 answers instead of the 422.

    A list request in the one shape clients send (``Content-Type: application/json``, a bearer token, a body that
    orjson reads and :class:`RecommendationCreate` validates) goes to the endpoint directly: the same model
    validates the same JSON value, and the token is taken as the bearer dependency takes it, without FastAPI's
    per-request dependency solving. Anything else (another content type, no or another scheme, a body that does not
    parse or validate) takes FastAPI's path, whose answers, 401, 403 and 422 among them, are the reference
    (``tests/api/test_list_fast_path_api.py`` compares the two byte for byte).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        endpoint = self.endpoint

        async def key_first(request: Request) -> Response:
            if FAST_PATH and (direct := await _direct(request)) is not None:
                return await endpoint(*direct)
            try:
                return await handle(request)
            except RequestValidationError:
                scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
                if scheme.lower() == "bearer" and token:  # a missing key is a 401 before the body is read
                    await anyio.to_thread.run_sync(_verify, Token(token, "lists", request))
                raise

        return key_first


FAST_PATH = True
"""Whether well-formed list requests skip FastAPI's dependency solving (see :class:`KeyFirstRoute`); tests switch it."""


async def _direct(request: Request) -> tuple[RecommendationCreate, Request, Token] | None:
    """The endpoint's arguments for a request in the usual shape, or None: FastAPI's path answers it."""
    headers = request.headers
    if headers.get("content-type") != "application/json":
        return None
    scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
    if not scheme or not credentials or scheme.lower() != "bearer":
        return None
    try:
        body = await request.body()  # kept on the request: FastAPI's path reads it from there
    except HTTPException:
        raise  # the body limit's 413, which FastAPI's path lets through too
    except Exception:  # noqa: BLE001 - a body that cannot be read (the client went away): FastAPI's path answers it
        return None
    try:
        value = orjson.loads(body)
        create = RecommendationCreate.model_validate(value) if type(value) is dict else None
    except (orjson.JSONDecodeError, ValidationError):
        return None
    return None if create is None else (create, request, Token(credentials, "lists", request))


def _verify(token: Token) -> None:
    with token.request.app.state.reads.snapshot() as read:
        token.key(read)


router = APIRouter(tags=["recommendations"], responses=problems(401, 403, 500), route_class=KeyFirstRoute)


_SEC_GPC = "Global Privacy Control: '1' opts the subject out."
_SEC_GPC_PARAMETER = {
    "name": "Sec-GPC",
    "in": "header",
    "required": False,
    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": _SEC_GPC, "title": "Sec-Gpc"},
    "description": _SEC_GPC,
}


# ``Sec-GPC`` is documented here rather than declared as a header parameter: the list reads it from the raw
# headers (:class:`~governance.api.services.lists.ListContext`), and a declared parameter would be parsed and
# validated again by FastAPI on every list, for nothing.
@router.post(
    "/v1/recommendations", response_model=GovernedList, responses=problems(404, 409, 422, 503), summary="Serve one governed list",
    openapi_extra={"parameters": [_SEC_GPC_PARAMETER]},
)  # fmt: skip
async def recommend(body: RecommendationCreate, request: Request, token: ListsToken) -> Response:
    """A ``Sec-GPC: 1`` header is recorded as an opt-out (under a pack that honours GPC) before serving; a TC string
    (``tcf``) is recorded and judged under the pack's ``consent.tcf`` (a string that does not decode, or a pack that
    names no vendor id, is a 422 naming ``tcf``). A model file that no longer has the SHA-256 recorded with its
    version (changed on disk since) is a 409 ``artifact-changed`` naming the version and the file: it is not served.

    The key is read in the list's own read-only snapshot, before anything else is read or answered
    (:class:`~governance.api.deps.Token`): one snapshot and one thread hop fewer than a key check of its own."""
    app = request.app
    state = app.state  # the store and settings as StoreDep and SettingsDep give them, without two dependencies to solve
    cache = engines_of(app)
    awaited = state.awaited_reads
    ctx = ListContext(cache, state.reads, state.store, state.settings, request.headers.raw, token, awaited)
    prepared: Prepared | None = None
    try:
        if app.state.reads.embedded:  # local reads: a list that needs nothing loaded or written is prepared on the loop
            prepared = prepare_on_loop(body, ctx)
            cache.decided_inline += 1
        elif awaited is not None:  # network reads: one statement awaited on the loop, when it answers every read
            prepared = await prepare_awaited(body, ctx)
            cache.decided_inline += 1
    except NotReady:
        pass
    if prepared is None:  # reads beyond one statement, a consent record to write, something to load: on a worker thread
        prepared = await anyio.to_thread.run_sync(prepare_on_thread, body, ctx)
        cache.decided_on_threads += 1
    decided = await decide_on_loop(prepared, cache)
    await committed(decided, ctx)
    served, prepared = decided.served, decided.prepared
    app.state.metrics.decisions.labels(outcome=served.mode).inc()
    cache.shadows.mirror(prepared.request, served.decision_id, prepared.loaded, prepared.shadows)
    return Response(governed_list_json(served, prepared.signals, prepared.deployment), media_type="application/json")


@router.get("/v1/ping", response_model=Pong, tags=["health"], summary="Liveness for authenticated clients (lists: operator, admin, serving)")
def ping(key: ListsKey) -> Pong:
    """Checks the key (as every /v1 endpoint does) and nothing else: no store write, no trail record."""
    return Pong(key_id=key.id)
