"""``/v1/packs/{name}/{version}/text``: a pack's exact text, as stored or shipped.

A reviewer reads the rules that were in force, byte for byte, beside the
content hash every result and decision stamps (``X-Pack-Hash``; recomputed on
every read from those very bytes). This router shares the ``/v1/packs`` prefix
with :mod:`governance.api.routes.packs`; its only path has three segments under
the prefix, which none of that router's paths has, so neither shadows the other.

A stored version is answered first; a shipped pack is answered when its own
``metadata.version`` is the one asked for (audits of ``baseline`` name it so).
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from governance import packs as pack_store
from governance.api.deps import ReadKey, SettingsDep
from governance.api.errors import Problem, problems
from governance.api.schemas import IDENTIFIER
from governance.policy import load_pack

__all__ = ["YAML", "router"]

router = APIRouter(prefix="/v1/packs", tags=["packs"], responses=problems(401, 403, 500))

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
        **problems(404, 422),
    },
    summary="A pack's exact text, stored or shipped (viewer)",
)
def pack_text(name: Segment, version: Segment, settings: SettingsDep, key: ReadKey) -> Response:
    path, content_hash = _source(settings.packs_dir, name, version)
    return Response(path.read_bytes(), media_type=YAML, headers={"X-Pack-Hash": content_hash})
