"""Item availability: items out of stock, withdrawn or restricted in a region, kept out of every list.

An item is unavailable to a request when it is unavailable everywhere (region
``*``) or in the region the request's context names. Every change appends a
trail event (``item.unavailable`` / ``item.available`` for one item,
``availability.imported`` for a file, with the file's hash and counts) and stamps
the rows it changed with that event, so the largest ``trail_seq`` of the table
is a revision of what is unavailable (:func:`availability_revision`): the
service rebuilds its engines only when it moved.

Files (:func:`read_availability_file`) are CSV, JSON Lines or Parquet with the
columns ``item_id``, ``status`` (``available``, ``out_of_stock``, ``withdrawn``,
``geo_restricted``) and optionally ``region`` (empty: everywhere;
``geo_restricted`` needs one). Every row is checked before anything is stored:
a bad file is refused with each problem located (line or row, column) and
changes nothing; so is a file that sets one item in one region twice.

Region codes are case-insensitive: they are stored, matched and reported in
upper case (:func:`canonical_region`), and rows stored before that are read so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits._common import actor_name, aware
from audits._common import item_id as _item
from audits.models import AVAILABILITY_REASONS, EVERYWHERE, ItemAvailability
from audits.models.availability import REGION_LENGTH
from audits.online_store import invalidate_everyone_after_commit
from audits.trail import append_event, lock_head
from recommender.errors import ConfigError

__all__ = [
    "AVAILABLE",
    "STATUSES",
    "AvailabilityChange",
    "AvailabilityFileError",
    "Unavailable",
    "apply_changes",
    "availability_revision",
    "canonical_region",
    "read_availability_file",
    "set_availability",
    "unavailable_items",
]

AVAILABLE = "available"
STATUSES = (AVAILABLE, *AVAILABILITY_REASONS)
"""What a change may say of an item: available again, or why it is not."""
REGION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_ERRORS_SHOWN = 20
MAX_FILE_ROWS = 5_000_000


def canonical_region(region: Any) -> str:
    """A region code as it is stored and matched: stripped, upper case (``de``, `` DE`` and ``DE`` are one region)."""
    return str(region).strip().upper()


@dataclass(frozen=True)
class AvailabilityChange:
    """One item's availability in one region (``*``: everywhere)."""

    item_id: str
    status: str
    region: str = EVERYWHERE


@dataclass(frozen=True)
class Unavailable:
    """What is unavailable now: everywhere, and per region (what a request naming that region must also leave out)."""

    everywhere: frozenset[str] = frozenset()
    by_region: Mapping[str, frozenset[str]] = field(default_factory=dict)
    revision: int = 0
    """The trail event of the latest change read (0: none ever)."""

    def for_region(self, region: str | None) -> frozenset[str]:
        """The items a request in ``region`` (None: none named) may not be given."""
        if not region or region == EVERYWHERE:
            return self.everywhere
        return self.everywhere | self.by_region.get(canonical_region(region), frozenset())


class AvailabilityFileError(ConfigError):
    """A file of changes that cannot be imported; ``errors`` holds every located problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        super().__init__(f"{source}: {len(errors)} problem(s); nothing was imported:\n{shown}{more}")


def check_change(item_id: Any, status: Any, region: Any) -> AvailabilityChange:
    """A checked change, or a ConfigError saying which field is wrong, what was expected and what to do."""
    if isinstance(item_id, float) or isinstance(item_id, bool):
        raise ConfigError(f"item_id must be a string or an integer, got a {type(item_id).__name__}")
    try:
        item = _item(item_id)
    except Exception:  # noqa: BLE001 - re-raised with the column's name
        raise ConfigError("item_id must be a non-empty string of at most 200 characters") from None
    if item != item.strip() or any(not c.isprintable() for c in item):
        raise ConfigError("item_id must not hold surrounding spaces or invisible characters")
    if not isinstance(status, str) or status.strip() not in STATUSES:
        raise ConfigError(f"status must be one of {', '.join(STATUSES)}")
    status = status.strip()
    if region is None or (isinstance(region, str) and region.strip() in ("", EVERYWHERE)):
        region = EVERYWHERE
    elif not isinstance(region, str) or not REGION_PATTERN.match(region.strip()):
        raise ConfigError(f"region must be a code of letters, digits and _.:- (at most {REGION_LENGTH} characters), or empty for everywhere")
    else:
        region = canonical_region(region)
    if status == "geo_restricted" and region == EVERYWHERE:
        raise ConfigError("status geo_restricted needs a region (an item unavailable everywhere is out_of_stock or withdrawn)")
    return AvailabilityChange(item, status, region)


def apply_changes(
    session: Session,
    changes: Iterable[AvailabilityChange],
    *,
    actor: str | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Store ``changes`` (checked, see :func:`check_change`) in the caller's transaction, the last one of an
    (item, region) winning (a file that names one twice is refused before: :func:`read_availability_file`), under one trail event; returns how many rows changed. A change to what is
    already stored changes nothing and is not counted; with nothing changed no event is appended.
    """
    latest: dict[tuple[str, str], AvailabilityChange] = {}
    for change in changes:
        latest[(change.item_id, change.region)] = change
    if not latest:
        return {"changed": 0, "unavailable": 0, "available": 0}
    lock_head(session)
    # Rows stored before region codes were canonical may name one region in several cases: all are read as
    # the upper-case code; a change keeps one of them (renamed to that code) and deletes the others.
    existing: dict[tuple[str, str], list[ItemAvailability]] = {}
    items = sorted({item for item, _ in latest})
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        for row in session.scalars(select(ItemAvailability).where(ItemAvailability.item_id.in_(chunk)).with_for_update()):
            existing.setdefault((row.item_id, canonical_region(row.region) if row.region != EVERYWHERE else EVERYWHERE), []).append(row)
    todo = []
    for key, change in latest.items():
        rows = sorted(existing.get(key, []), key=lambda r: r.region != key[1])  # the canonical one first
        unavailable = change.status != AVAILABLE
        if not rows and not unavailable:
            continue  # available, and never made otherwise
        if len(rows) == 1 and rows[0].region == key[1] and rows[0].unavailable == unavailable and (
            not unavailable or rows[0].reason == change.status
        ):
            continue
        todo.append((key, change, rows))
    counts = {
        "changed": len(todo),
        "unavailable": sum(1 for _, c, _ in todo if c.status != AVAILABLE),
        "available": sum(1 for _, c, _ in todo if c.status == AVAILABLE),
    }
    if not todo:
        return counts
    now = aware(None, "at")
    if len(todo) == 1 and source is None:
        (item, region), change, _ = todo[0]
        unavailable = change.status != AVAILABLE
        event = append_event(
            session, actor=actor_name(actor), action="item.unavailable" if unavailable else "item.available",
            objects={"item": item}, payload={"region": region, "status": change.status},
        )  # fmt: skip
    else:
        event = append_event(
            session, actor=actor_name(actor), action="availability.imported", payload={**counts, **(source or {})}
        )
    for (item, region), change, rows in todo:
        if rows:
            row, *others = rows
            for other in others:
                session.delete(other)
            if others:
                session.flush()  # the duplicates are gone before the kept row takes their code
            row.region = region
        else:
            row = ItemAvailability(item_id=item, region=region)
            session.add(row)
        unavailable = change.status != AVAILABLE
        row.unavailable = unavailable
        if unavailable:
            row.reason = change.status
        row.changed_at, row.trail_seq = now, event.seq
    session.flush()
    invalidate_everyone_after_commit(session)  # the online store's cached lists were made under the old availability
    return counts


def set_availability(
    session: Session, *, item_id: Any, status: Any, region: Any = None, actor: str | None = None
) -> dict[str, int]:
    """Set one item's availability in one region (None: everywhere); ``item.unavailable`` / ``item.available``."""
    return apply_changes(session, [check_change(item_id, status, region)], actor=actor)


def unavailable_items(session: Session | Any) -> Unavailable:
    """What is unavailable now, read in one query (for the serving path's filter)."""
    everywhere: set[str] = set()
    regions: dict[str, set[str]] = {}
    query = select(ItemAvailability.item_id, ItemAvailability.region).where(ItemAvailability.unavailable.is_(True))
    for item, region in session.execute(query):
        if region == EVERYWHERE:
            everywhere.add(item)
        else:  # a row stored before region codes were canonical is read under its upper-case code
            regions.setdefault(canonical_region(region), set()).add(item)
    return Unavailable(frozenset(everywhere), {r: frozenset(s) for r, s in regions.items()}, availability_revision(session))


_REVISION = select(func.coalesce(func.max(ItemAvailability.trail_seq), 0))


def availability_revision(read: Session | Any) -> int:
    """The trail event of the latest availability change (0: none): it moves with every change."""
    return int(read.execute(_REVISION).scalar_one())


# -- files --------------------------------------------------------------------------------------------
COLUMNS = ("item_id", "status", "region")


def _rows_of(path: Path, data: bytes) -> Iterable[tuple[str, dict[str, Any]]]:
    """(where, row) for each row of the file, by its suffix: CSV, JSON Lines or Parquet."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as err:  # noqa: BLE001 - any unreadable Parquet is one located problem
            raise AvailabilityFileError(str(path), [f"not a readable Parquet file ({type(err).__name__})"]) from None
        _check_columns(path, table.column_names)
        for n, row in enumerate(table.to_pylist(), start=1):
            yield f"row {n}", row
    elif suffix in (".jsonl", ".ndjson", ".json"):
        text = _decode(path, data)
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield f"line {n}", {"__error__": f"not valid JSON ({err.msg} at column {err.colno})"}
                continue
            if not isinstance(row, dict):
                yield f"line {n}", {"__error__": "each line must be a JSON object"}
                continue
            yield f"line {n}", row
    elif suffix in (".csv", ".txt"):
        reader = csv.reader(io.StringIO(_decode(path, data), newline=""))
        header = next(reader, None)
        if header is None:
            raise AvailabilityFileError(str(path), ["line 1: the file is empty; expected a header with item_id,status[,region]"])
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise AvailabilityFileError(str(path), ["line 1: a column is named twice in the header"])
        _check_columns(path, header)
        for values in reader:
            where = f"line {reader.line_num}"
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield where, {"__error__": f"{len(values)} fields, the header has {len(header)}"}
                continue
            yield where, dict(zip(header, values, strict=True))
    else:
        raise AvailabilityFileError(str(path), [f"unknown file type {suffix!r}; expected .csv, .jsonl or .parquet"])


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AvailabilityFileError(str(path), [f"byte {err.start}: not UTF-8 text"]) from None


def _check_columns(path: Path, columns: Iterable[str]) -> None:
    columns = list(columns)
    missing = [c for c in ("item_id", "status") if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"header: missing column(s) {', '.join(missing)}; expected item_id,status[,region]")
    if unknown:
        problems.append(f"header: unknown column(s) {', '.join(repr(c)[:60] for c in unknown)}; expected item_id,status[,region]")
    if problems:
        raise AvailabilityFileError(str(path), problems)


def read_availability_file(path: str | Path) -> tuple[list[AvailabilityChange], dict[str, Any]]:
    """The checked changes of a CSV, JSON Lines or Parquet file, and what the trail records of it (name, hash,
    rows); raises :class:`AvailabilityFileError` with every problem located (cell values are never repeated, but
    for the item id of a row that sets an item already set in the same region)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or type(err).__name__})") from None
    changes: list[AvailabilityChange] = []
    errors: list[str] = []
    first: dict[tuple[str, str], str] = {}  # (item, region) -> where it was first set
    for where, row in _rows_of(path, data):
        if len(changes) + len(errors) >= MAX_FILE_ROWS:
            errors.append(f"{where}: more than {MAX_FILE_ROWS:,} rows; split the file")
            break
        if "__error__" in row:
            errors.append(f"{where}: {row['__error__']}")
            continue
        unknown = [k for k in row if k not in COLUMNS]
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(repr(k)[:60] for k in unknown)}; expected item_id,status[,region]")
            continue
        field_name = "item_id"
        try:
            if "item_id" not in row or "status" not in row:
                field_name = "item_id" if "item_id" not in row else "status"
                raise ConfigError("is missing")
            field_name = "row"
            change = check_change(row.get("item_id"), row.get("status"), row.get("region"))
            seen = first.setdefault((change.item_id, change.region), where)
            if seen != where:
                region = "everywhere" if change.region == EVERYWHERE else f"in {change.region}"
                errors.append(f"{where}: item {change.item_id[:60]} ({region}) already set on {seen}; set each item once per region")
                continue
            changes.append(change)
        except ConfigError as err:
            message = str(err)
            errors.append(f"{where}: {field_name} {message}" if field_name != "row" else f"{where}: {message}")
    if errors:
        raise AvailabilityFileError(str(path), errors)
    if not changes:
        raise AvailabilityFileError(str(path), ["no rows; expected a header and at least one row"])
    source = {"file": path.name[:200], "sha256": hashlib.sha256(data).hexdigest(), "rows": len(changes)}
    return changes, source
