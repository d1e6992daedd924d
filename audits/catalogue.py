"""The items recgov knows: an item id is checked against them before a harm flag, report or block is stored.

Served lists hold the ids of the model that made them and are filtered by exact comparison, so a flag on
``I00573`` or ``573`` keeps nothing out of a list that holds ``i00573``. :func:`check_item` looks for the id,
exactly, in

* the item ids of every recorded model version that is not retired (production first, then canary, shadow,
  and the :data:`MAX_UNDEPLOYED` most recent versions never deployed), read from the model files' item-id
  arrays alone (never the factors), and cached by version and artifact hash (as arrays: an exact look-up
  compares in bulk, a near-spelling search narrows by vectorized substring tests);
* then in the item availability table (an item an operator already named).

An id found nowhere whose near spelling (same text up to case, leading zeros of its numbers, Unicode
compatibility forms, or a bare number for a lettered id) a model or the availability table knows is refused
with :class:`NearItemId` ("did you mean i00573?"): nothing is written, unless the caller says it names a new
item (``new_item``: ``I9`` beside ``i9`` may be another item), which the write records on the trail with the
near spellings it was told of. :func:`look_up_item` answers the same without refusing (the listing of
stored flags marks those no catalogue holds). An id known to no catalogue at all may
still be right (an item no model has served yet): it is accepted, and the answer says
``in_catalogue: false``, so that nobody reads the flag as having removed it from a list.

A caller that checks first (to report the answer) and then writes through the store pays once: the result is
kept in the session for the id.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.models import Deployment, ItemAvailability, ModelVersion
from recommender.errors import DataError

__all__ = [
    "MAX_UNDEPLOYED",
    "CatalogueCheck",
    "NOT_A_NEW_ITEM",
    "NearItemId",
    "NotANewItem",
    "check_item",
    "look_up_item",
    "clear_catalogue_cache",
    "spelling_key",
]

MAX_UNDEPLOYED = 10
"""Recorded model versions never deployed (the newest first) whose items are looked in, besides every deployed one."""
MAX_CACHED = 8
"""Model catalogues kept in memory (by version and artifact hash), the least recently used dropped first."""
MAX_SUGGESTIONS = 5
STAGE_ORDER = ("production", "canary", "shadow")
AVAILABILITY = "the item availability table"
NEAR_ITEM_ID = (
    "{name} {value!r} is not an item of {where}, but {near} is: did you mean {first}? Lists are filtered by the "
    "exact id, so this would keep nothing out of any list; nothing was stored"
)
_SESSION_KEY = "recgov.catalogue_checks"
_NUMBER = re.compile(r"[0-9]+")
_PIECES = re.compile(r"[0-9]+|[^0-9]+")
_LETTERED = re.compile(r"^[^\W\d_]+[-_.:]?([0-9]+)$")


NOT_A_NEW_ITEM = (
    "{name} {value!r} is in {where}: it is not a new item; drop the new-item claim (it is for an id no catalogue "
    "holds, spelt like one that does); nothing was stored"
)


class NotANewItem(DataError):
    """An id claimed to name a new item is one a catalogue holds exactly (CLI exit 2, API 422; nothing written)."""


class NearItemId(DataError):
    """An item id no catalogue holds, spelt like one that a catalogue does (CLI exit 2, API 422; nothing written)."""

    def __init__(self, message: str, *, suggestions: list[str]) -> None:
        super().__init__(message)
        self.suggestions = suggestions


@dataclass(frozen=True)
class CatalogueCheck:
    """Where an item id was found, or that it was found nowhere (and what was looked in)."""

    item_id: str
    in_catalogue: bool
    found_in: str | None
    """``model VERSION (STAGE)`` or the availability table; None when the id is in no catalogue."""
    checked: tuple[str, ...] = ()
    """What was looked in, in order."""
    unreadable: tuple[str, ...] = ()
    """Model versions whose file could not be read (their items are unknown)."""
    near: tuple[str, ...] = ()
    """When no catalogue holds the id: the near spellings of it that one holds (:func:`spelling_key`)."""
    near_in: str | None = None
    """The catalogue that holds ``near``."""

    def describe(self) -> str:
        """One sentence for the answer: where the item is, or that no list holds it now."""
        if self.in_catalogue:
            return f"in {self.found_in}"
        if not self.checked and not self.unreadable:
            return "in no catalogue: recgov knows none yet (no model version is recorded, no availability change is stored)"
        unread = f"; unreadable: {', '.join(self.unreadable)}" if self.unreadable else ""
        return f"in no catalogue recgov knows (checked: {', '.join(self.checked) or 'none'}{unread})"


def spelling_key(item_id: str) -> str:
    """The id as near spellings share it: Unicode compatibility forms (NFKC), case folded, each number without its
    leading zeros (``I00573``, ``i573`` and ``ｉ００５７３`` share ``i573``)."""
    folded = (item_id if item_id.isascii() else unicodedata.normalize("NFKC", item_id)).casefold()
    return _NUMBER.sub(lambda m: m.group().lstrip("0") or "0", folded)


def _number_of(key: str) -> str | None:
    """The number of a lettered key (``i573`` -> ``573``), else None."""
    found = _LETTERED.match(key)
    return found.group(1) if found else None


def _near(key: str, other: str) -> bool:
    """Whether two spelling keys name the same item: equal, or a bare number and a lettered id with that number."""
    if key == other:
        return True
    if key.isascii() and key.isdigit():
        return _number_of(other) == key
    return other.isascii() and other.isdigit() and _number_of(key) == other


class _Ids:
    """One catalogue's ids as an array: exact look-ups compare in bulk (no per-id Python object is made, so a
    catalogue of a million ids is ready as soon as its array is read), and a near-spelling search narrows the
    ids by vectorized substring tests before keying the few left."""

    def __init__(self, ids: Any) -> None:
        array = np.asarray(ids)
        self.ids = array if array.dtype.kind == "U" else array.astype(str)
        self._lowered: np.ndarray | None = None
        self._unusual: list[str] | None = None
        self._lock = threading.Lock()

    def __contains__(self, item_id: str) -> bool:
        return bool(len(self.ids)) and bool(np.any(self.ids == item_id))

    def _prepared(self) -> tuple[np.ndarray, list[str]]:
        """The ids in lower case, and the ids that are not ASCII (keyed one by one: NFKC may change them)."""
        with self._lock:
            if self._lowered is None or self._unusual is None:
                if len(self.ids) and self.ids.dtype.itemsize:
                    codes = self.ids.view(np.uint32).reshape(len(self.ids), -1)
                    unusual = self.ids[(codes > 127).any(axis=1)].tolist()
                else:
                    unusual = []
                self._lowered, self._unusual = np.strings.lower(self.ids), unusual
            return self._lowered, self._unusual

    def near(self, item_id: str) -> list[str]:
        """Ids spelt like ``item_id`` (not itself): the same :func:`spelling_key`, or a bare number and a lettered
        id with that number (``573`` and ``i00573``, either way)."""
        if not len(self.ids):
            return []
        lowered, unusual = self._prepared()
        key = spelling_key(item_id)
        # An ASCII id with the same key is, in lower case, the key's pieces in order with zeros before its numbers:
        # it starts with the key's first piece (unless a number), ends with its last, holds every piece, and is no
        # shorter. A lettered id and a bare number with one number end with that number. Only ids passing these
        # bulk tests are keyed one by one.
        pieces = [p for p in _PIECES.findall(key) if p]
        same = (np.strings.str_len(lowered) >= len(key)) & np.strings.endswith(lowered, pieces[-1])
        if not pieces[0][0].isdigit():
            same &= np.strings.startswith(lowered, pieces[0])
        for piece in pieces[1:-1]:
            same &= np.strings.find(lowered, piece) >= 0
        number = key if key.isascii() and key.isdigit() else _number_of(key)
        if number is not None:
            same |= np.strings.endswith(lowered, number) & (np.strings.isdigit(lowered) != (number == key))
        candidates = set(self.ids[same].tolist()) | set(unusual)
        return sorted(i for i in candidates if i != item_id and _near(key, spelling_key(i)))


_cache: OrderedDict[tuple[str, str], _Ids] = OrderedDict()
_availability: dict[str, tuple[tuple[int, int], _Ids]] = {}
_cache_lock = threading.Lock()


def clear_catalogue_cache() -> None:
    """Forget every catalogue read (tests; a process that rewrote model files in place)."""
    with _cache_lock:
        _cache.clear()
        _availability.clear()


def _model_ids(version: str, artifact_hash: str, location: str) -> _Ids | None:
    """The item ids of a model version's file (cached by version and artifact hash); None if it holds none."""
    key = (version, artifact_hash)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from recommender.family import model_item_ids  # numpy and the model families load only when a model is read

    ids = model_item_ids(location)  # outside the lock: another version may be read meanwhile
    if ids is None:
        return None
    entry = _Ids(ids)
    with _cache_lock:
        _cache[key] = entry
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    return entry


def _models(session: Session) -> list[tuple[str, str, str, str]]:
    """``(version, label, artifact hash, location)`` of the model versions whose items may be served, in the order
    they are looked in: production, canary, shadow, then the newest versions never deployed."""
    stage: dict[str, str] = {}
    for version, at_stage in session.execute(select(Deployment.model_version_id, Deployment.stage).order_by(Deployment.id)):
        stage[version] = at_stage
    deployed = [v for v, s in stage.items() if s in STAGE_ORDER]
    rows = {}
    if deployed:
        query = select(ModelVersion.version_id, ModelVersion.artifact_hash, ModelVersion.artifact_location)
        rows = {v: (h, loc) for v, h, loc in session.execute(query.where(ModelVersion.version_id.in_(deployed)))}
    out = [
        (v, f"model {v} ({stage[v]})", *rows[v])
        for s in STAGE_ORDER
        for v in deployed
        if stage[v] == s and v in rows
    ]
    undeployed = (
        select(ModelVersion.version_id, ModelVersion.artifact_hash, ModelVersion.artifact_location)
        .where(ModelVersion.version_id.not_in(list(stage)) if stage else ModelVersion.version_id.is_not(None))
        .order_by(ModelVersion.created_at.desc(), ModelVersion.version_id)
        .limit(MAX_UNDEPLOYED)
    )
    out += [(v, f"model {v} (recorded, not deployed)", h, loc) for v, h, loc in session.execute(undeployed)]
    return out


def _availability_ids(session: Session) -> _Ids:
    """Every item id the availability table names (cached by the table's latest change and size)."""
    bind = session.get_bind()
    revision = tuple(int(x or 0) for x in session.execute(select(func.max(ItemAvailability.trail_seq), func.count())).one())
    cache_key = str(bind.url)
    with _cache_lock:
        cached = _availability.get(cache_key)
        if cached is not None and cached[0] == revision:
            return cached[1]
    entry = _Ids(np.asarray(list(session.scalars(select(ItemAvailability.item_id).distinct())), dtype=str))
    with _cache_lock:
        _availability[cache_key] = (revision, entry)  # type: ignore[assignment]
    return entry


def check_item(session: Session, item_id: str, *, name: str = "item_id", new_item: bool = False) -> CatalogueCheck:
    """Where ``item_id`` (already checked as stored text) is known; :class:`NearItemId` if it is known nowhere but a
    near spelling is. Reads only; the answer is kept in the session for the id.

    ``new_item``: the caller says the id names an item no catalogue holds yet, though one holds a near spelling
    (``I9`` beside ``i9``): the near spelling is not refused (the answer lists it in ``near``, for the trail), but an
    id a catalogue holds exactly is (:class:`NotANewItem`): it is no new item."""
    found = look_up_item(session, item_id)
    if new_item:
        if found.in_catalogue:
            raise NotANewItem(NOT_A_NEW_ITEM.format(name=name, value=item_id, where=found.found_in))
        return found
    if found.near:
        shown = found.near[:MAX_SUGGESTIONS]
        listed = " or ".join(repr(i) for i in shown) + (f" (and {len(found.near) - len(shown)} more)" if len(found.near) > len(shown) else "")
        raise NearItemId(
            NEAR_ITEM_ID.format(name=name, value=item_id, where=found.near_in, near=listed, first=" or ".join(shown)),
            suggestions=list(found.near),
        )
    return found


def look_up_item(session: Session, item_id: str) -> CatalogueCheck:
    """Where ``item_id`` is known, and, when no catalogue holds it, the near spellings one holds (``near``, in the
    first catalogue that holds any); never raises for a spelling. Kept in the session for the id."""
    memo: dict[str, CatalogueCheck] = session.info.setdefault(_SESSION_KEY, {})
    if item_id in memo:
        return memo[item_id]
    checked: list[str] = []
    unreadable: list[str] = []
    read: list[tuple[str, _Ids]] = []
    for version, label, artifact_hash, location in _models(session):
        try:
            ids = _model_ids(version, artifact_hash, location)
        except DataError:
            ids = None
        if ids is None:
            unreadable.append(version)
            continue
        checked.append(label)
        if item_id in ids:
            return memo.setdefault(item_id, CatalogueCheck(item_id, True, label, tuple(checked)))
        read.append((label, ids))
    for label, ids in read:
        near = ids.near(item_id)
        if near:
            return memo.setdefault(item_id, CatalogueCheck(item_id, False, None, tuple(checked), tuple(unreadable), tuple(near), label))
    in_availability = session.scalar(select(ItemAvailability.item_id).where(ItemAvailability.item_id == item_id).limit(1))
    has_availability = session.scalar(select(ItemAvailability.item_id).limit(1)) is not None
    if has_availability:
        checked.append(AVAILABILITY)
    if in_availability is not None:
        return memo.setdefault(item_id, CatalogueCheck(item_id, True, AVAILABILITY, tuple(checked), tuple(unreadable)))
    near = _availability_ids(session).near(item_id) if has_availability else []
    return memo.setdefault(
        item_id, CatalogueCheck(item_id, False, None, tuple(checked), tuple(unreadable), tuple(near), AVAILABILITY if near else None)
    )
