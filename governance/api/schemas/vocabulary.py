"""The packs' vocabularies in the OpenAPI document: the harm categories a flag may name, the purposes a consent record may.

``POST /v1/items/{item_id}/flags`` takes a category only if its pack knows it
(``harmful_content.categories`` and ``blocked_categories``), and ``POST
/v1/consent`` with a ``pack`` takes a purpose only if the pack lists it
(``consent.purposes``). A request schema that said "any string" there would be a
document that lies: it allows what the server refuses with a 422. Which values
are right depends on the pack the request names, and the packs a server knows
are its state: the shipped ones, and the versions ``POST /v1/packs`` stored
(``NAME@VERSION``; a stored version never changes, a conflicting one is a 409).

So the document is completed when it is served (:func:`install`): ``FlagCreate``
and ``ConsentCreate`` get an ``anyOf`` with one branch per known pack that has a
vocabulary (``pack`` is that pack, and the field is one of its values), a branch
for a request that names no pack (a flag is judged under ``baseline``, its
default; a consent record without a pack is not judged against any purposes),
and a branch for a pack the server does not know (that request is a 404, which
says the pack is missing, not that the body is malformed). A pack with no
vocabulary has no branch: nothing a request could name under it is accepted,
and the document says so.

Each pack file is read once (keyed by path, size and modification time); a
document is rebuilt only when the set of pack files changed, so serving it costs
a directory listing. A stored file that no longer loads (edited by hand) is
left out and logged: its requests answer what loading it answers.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from governance import packs as pack_store
from governance.policy import load_pack
from recommender.errors import RecgovError

__all__ = ["DEFAULT_FLAG_PACK", "Vocabulary", "install", "known_vocabularies", "with_vocabularies"]

log = logging.getLogger("recgov.api")

DEFAULT_FLAG_PACK = "baseline"
"""The pack a flag is judged under when it names none (``FlagCreate.pack``'s default)."""


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What one pack lets a request name."""

    purposes: tuple[str, ...]
    """``consent.purposes``, sorted."""
    harm_categories: tuple[str, ...]
    """``harmful_content.categories`` and ``blocked_categories``, sorted."""


_Key = tuple[str, int, int]  # path, size, mtime_ns
_read: dict[_Key, Vocabulary | None] = {}
_lock = threading.Lock()


def _pack_files(packs_dir: Path) -> list[tuple[str, Path]]:
    """(ref, file) of every pack a request may name: shipped by name, stored as NAME@VERSION (as ``load_ref`` finds them)."""
    files = [(name, pack_store.shipped_pack_path(name)) for name in pack_store.shipped_pack_names()]
    if packs_dir.is_dir():
        files += [(f"{path.parent.name}@{path.stem}", path) for path in sorted(packs_dir.glob("*/*.yaml"))]
    return files


def _vocabulary(path: Path, key: _Key) -> Vocabulary | None:
    with _lock:
        if key in _read:
            return _read[key]
    try:
        pack = load_pack(path).pack
        found: Vocabulary | None = Vocabulary(tuple(sorted(pack.consent.purposes)), tuple(pack.harmful_content.known_categories()))
    except (RecgovError, OSError) as err:
        log.warning("pack file %s is left out of the OpenAPI document: it does not load (%s)", path, type(err).__name__)
        found = None
    with _lock:
        _read[key] = found
    return found


def _keys(packs_dir: Path) -> list[tuple[str, Path, _Key]]:
    out = []
    for ref, path in _pack_files(packs_dir):
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile
            continue
        out.append((ref, path, (str(path), stat.st_size, stat.st_mtime_ns)))
    return out


def known_vocabularies(packs_dir: Path) -> dict[str, Vocabulary]:
    """Every pack a request may name (shipped name or NAME@VERSION) with its vocabulary; packs that do not load left out."""
    out = {}
    for ref, path, key in _keys(packs_dir):
        found = _vocabulary(path, key)
        if found is not None:
            out[ref] = found
    return out


def _branches(vocabularies: dict[str, Vocabulary], field: str, values: Callable[[Vocabulary], tuple[str, ...]], default: str | None) -> list[dict[str, Any]]:
    """``anyOf`` branches: each known pack with its values of ``field``, no pack (``default``'s values, or any), an unknown pack."""
    branches: list[dict[str, Any]] = [
        {"required": ["pack"], "properties": {"pack": {"const": ref}, field: {"enum": list(values(v))}}}
        for ref, v in sorted(vocabularies.items())
        if values(v)
    ]
    absent: dict[str, Any] = {"not": {"required": ["pack"]}}
    if default is not None:
        if default in vocabularies and values(vocabularies[default]):
            branches.append({**absent, "properties": {field: {"enum": list(values(vocabularies[default]))}}})
    else:
        branches.append(absent)
    branches.append({"required": ["pack"], "properties": {"pack": {"not": {"enum": sorted(vocabularies)}}}})
    return branches


def with_vocabularies(document: dict[str, Any], vocabularies: dict[str, Vocabulary]) -> dict[str, Any]:
    """``document`` with ``FlagCreate.category`` and ``ConsentCreate.purpose`` tied to the packs' vocabularies.

    The input is not changed: the two schemas are copied (the rest of the document is shared).
    """
    schemas = dict(document.get("components", {}).get("schemas", {}))
    tied = {
        "FlagCreate": ("category", lambda v: v.harm_categories, DEFAULT_FLAG_PACK),
        "ConsentCreate": ("purpose", lambda v: v.purposes, None),
    }
    for name, (field, values, default) in tied.items():
        if name not in schemas:
            continue
        schema = copy.deepcopy(schemas[name])
        schema["anyOf"] = _branches(vocabularies, field, values, default)
        schemas[name] = schema
    return {**document, "components": {**document.get("components", {}), "schemas": schemas}}


def install(app: FastAPI, packs_dir: Path) -> None:
    """Serve ``app``'s OpenAPI document completed with the vocabularies of the packs under ``packs_dir`` (and shipped).

    FastAPI builds its document once (``app.openapi_schema``); this wraps
    ``app.openapi`` so that each call returns that document completed for the
    pack files present now, rebuilt only when they changed.
    """
    build = app.openapi
    served: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        base = build()
        keys = tuple(key for _, _, key in _keys(packs_dir))
        cached = served.get("doc")
        if cached is not None and served.get("keys") == keys and served.get("base") is base:
            return cached
        document = with_vocabularies(base, known_vocabularies(packs_dir))
        served.update(doc=document, keys=keys, base=base)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
