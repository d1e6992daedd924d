"""``/v1/packs``: validate, store, list and diff policy packs (YAML bodies), and read a pack's exact text.

A posted pack is read no further than the YAML size limit (413 past it) and
parsed in the pack parser's process within ``RECGOV_PACK_PARSE_TIMEOUT_S``
(:mod:`governance.api.pack_parser`): a hostile pack costs that process a bounded
time and never the event loop (see :mod:`governance.located` for the limits it
must pass first).

A reviewer reads the rules that were in force byte for byte
(``GET /v1/packs/{name}/{version}/text``), beside the content hash every result
and decision stamps (``X-Pack-Hash``, recomputed on every read from those very
bytes). A stored version is answered first; a shipped pack is answered when its
own ``metadata.version`` is the one asked for (audits of ``baseline`` name it so).
"""

from __future__ import annotations

import functools
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response

from governance import packs as pack_store
from governance.api.deps import GovernKey, ReadKey, SessionDep, SettingsDep
from governance.api.errors import Problem, problems
from governance.api.limits import read_body
from governance.api.pack_parser import PackParser, PackTooSlow
from governance.api.call_record import record_call
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.packs import PackDiff, PackList, PackStored, PackValidation
from governance.api.settings import ApiSettings
from governance.located import YAML_LIMITS
from governance.policy import load_pack

router = APIRouter(prefix="/v1/packs", tags=["packs"], responses=problems(401, 413, 500))

EXAMPLE_PACK = """apiVersion: recgov/v1
metadata:
  name: example
  version: 1.0.0
  owner: compliance team
"""
YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}, "example": EXAMPLE_PACK}},
    }
}


PACK_TOO_LARGE = "the pack is larger than {limit} bytes, the most a policy pack may be; split it or remove what it does not need"
PACK_TOO_SLOW = "the pack could not be parsed and validated within {budget:g} s (RECGOV_PACK_PARSE_TIMEOUT_S); simplify it"


async def _text(request: Request) -> str:
    """The body as text, read no further than a pack may be (413 past it)."""
    limit = YAML_LIMITS.max_bytes
    raw = await read_body(request, limit, PACK_TOO_LARGE.format(limit=limit))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Problem(422, f"the body is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); send the pack as UTF-8 YAML") from None


async def _checked(request: Request, settings: ApiSettings, text: str) -> dict[str, Any]:
    """The pack's identity, parsed in the pack parser's process within the time budget (a 422 past it)."""
    parser = getattr(request.app.state, "pack_parser", None)
    if parser is None:  # an app started without its lifespan
        parser = request.app.state.pack_parser = PackParser()
    try:
        return await parser.identity(text, "<request body>", budget_s=settings.pack_parse_timeout_s)
    except PackTooSlow:
        raise Problem(422, PACK_TOO_SLOW.format(budget=settings.pack_parse_timeout_s), kind="invalid-pack") from None


def _identity(loaded) -> dict[str, Any]:
    return {**loaded.stamp(), "rules": len(loaded.pack.rules()), "warnings": [w.to_dict() for w in loaded.warnings]}


@router.post("/validate", response_model=PackValidation, openapi_extra=YAML_BODY, responses=problems(400, 415, 422), summary="Validate a pack (YAML body)")
async def validate_pack(request: Request, settings: SettingsDep, key: ReadKey) -> dict[str, Any]:
    """200 with the pack's name, version and hash, or 422 with every located issue."""
    return {"valid": True, **await _checked(request, settings, await _text(request))}


@router.post(
    "",
    response_model=PackStored,
    openapi_extra=YAML_BODY,
    status_code=201,
    responses={200: {"description": "That exact version is stored already.", "model": PackStored}, **problems(400, 403, 409, 415, 422)},
    summary="Store a pack version (admin)",
)
async def create_pack(request: Request, response: Response, session: SessionDep, settings: SettingsDep, key: GovernKey) -> dict[str, Any]:
    """Store the pack at ``$RECGOV_HOME/packs/<name>/<version>.yaml``; 200 if that exact version is stored already."""
    text = await _text(request)
    await _checked(request, settings, text)  # parsed in the pack parser first: only a pack within the limits gets here
    try:
        loaded, created = await anyio.to_thread.run_sync(functools.partial(pack_store.store_pack, settings.packs_dir, text=text))
    except pack_store.PackConflict as err:
        raise Problem(409, str(err)) from None
    record_call(session, key, "packs.create", objects={"policy": loaded.content_hash}, payload={**loaded.stamp(), "created": created})
    if not created:
        response.status_code = 200
    return {"created": created, **_identity(loaded)}


@router.get("", response_model=PackList, summary="List shipped and stored packs")
def list_packs(settings: SettingsDep, key: ReadKey) -> dict[str, Any]:
    return {"packs": pack_store.list_packs(settings.packs_dir)}


@router.get("/{name}/diff", response_model=PackDiff, responses=problems(404, 422), summary="Diff two stored versions of a pack")
def diff_pack(
    name: str,
    settings: SettingsDep,
    key: ReadKey,
    from_version: str = Query(alias="from", description="The version before.", examples=["1.0.0"]),
    to_version: str = Query(alias="to", description="The version after.", examples=["1.1.0"]),
) -> dict[str, Any]:
    try:
        return pack_store.diff_versions(settings.packs_dir, name, before=from_version, after=to_version)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None

YAML = "application/yaml"
Segment = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER)]


def _source(packs_dir: FilePath, name: str, version: str) -> tuple[FilePath, str]:
    """The file of pack ``name`` at ``version`` and its content hash; 404 when neither stored nor shipped."""
    try:
        loaded = pack_store.load_stored(packs_dir, name, version)
        return packs_dir / name / f"{version}.yaml", loaded.content_hash
    except pack_store.PackNotFound as err:
        missing = err
    if name in pack_store.shipped_pack_names():
        path = pack_store.shipped_pack_path(name)
        shipped = load_pack(path)
        if shipped.version == version:
            return path, shipped.content_hash
    raise Problem(404, str(missing))


@router.get(
    "/{name}/{version}/text",
    response_class=Response,
    responses={
        200: {
            "description": "The pack's exact bytes.",
            "content": {YAML: {"schema": {"type": "string"}, "example": "apiVersion: recgov/v1\nmetadata:\n  name: example\n  version: 1.0.0\n"}},
            "headers": {"X-Pack-Hash": {"description": "The SHA-256 of the pack's canonical content.", "schema": {"type": "string"}}},
        },
        **problems(403, 404, 422),
    },
    summary="A pack's exact text, stored or shipped (viewer)",
)
def pack_text(name: Segment, version: Segment, settings: SettingsDep, key: ReadKey) -> Response:
    path, content_hash = _source(settings.packs_dir, name, version)
    return Response(path.read_bytes(), media_type=YAML, headers={"X-Pack-Hash": content_hash})
