"""The data sets an audit may use: what ``data``, ``slates`` and ``baseline`` of ``POST /v1/audits`` may name.

An audit asked for over the API reads files only from ``$RECGOV_HOME/data``
(:func:`governance.api.audit_jobs.resolve_input`), within the installation's
limits (:func:`governance.api.audit_jobs.check_input_size`), or generates
``synthetic:...`` data. :func:`audit_inputs` lists, with those same two
functions, so the list cannot promise what an audit then refuses:

* the files and folders under ``$RECGOV_HOME/data``, each with the name to
  give an audit, the layout it will be read in
  (:func:`recommender.datasets.detect_format`, else an event log by its
  suffix), its size and whether it is within the limit. A folder without a
  known layout is opened one level down, since its files are what an audit can
  name; hidden entries and entries that lead outside the folder (symbolic
  links) are left out, as an audit would refuse them;
* the synthetic generator, with the limits on its sizes;
* the data sets recorded in the store (those models were trained on, by
  ``recgov train``), newest first, each with whether an audit can load it
  again and under which name. A recorded source that is a server path is shown
  as the API shows paths to the key's role
  (:func:`governance.api.disclosure.shown_to`).

The listing is bounded (:data:`MAX_ENTRIES` entries, :data:`MAX_RECORDED`
recorded sets; folder sizes counted until they pass the limit), so a data
folder of any size costs a page a bounded amount of work. It reads file sizes
and times, never contents, and names no subject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.models import DatasetVersion
from governance.api.audit_jobs import check_input_size, resolve_input
from governance.api.audit_jobs.work import SYNTHETIC
from governance.api.disclosure import shown_to
from recommender.datasets import detect_format
from recommender.errors import DataError

__all__ = ["MAX_ENTRIES", "MAX_RECORDED", "DataEntry", "RecordedSet", "audit_inputs"]

MAX_ENTRIES = 500
"""Files and folders listed at most (the page says when there are more)."""
MAX_RECORDED = 100
"""Recorded data sets listed at most, newest first."""
MAX_FILES_COUNTED = 10_000
EVENT_LOG_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
"""The suffixes :func:`recommender.loaders.load_event_log` reads an event log from."""
SYNTHETIC_SPEC = "synthetic:n_users=...,n_items=...,n_interactions=...,seed=..."


@dataclass(frozen=True)
class DataEntry:
    """A file or folder under ``$RECGOV_HOME/data``: the name an audit takes, its layout, size and whether an audit may load it."""

    name: str
    kind: str
    layout: str
    size_bytes: int
    over_limit: bool
    modified: datetime
    usable: bool


@dataclass(frozen=True)
class RecordedSet:
    """A data set recorded in the store, and the ``data`` an audit would give to load it again (None: it cannot)."""

    id: int
    name: str
    source: str
    content_hash: str
    n_events: int
    n_users: int
    n_items: int
    recorded_at: datetime | None
    audit_data: str | None
    why_not: str | None


def _layout(path: Path) -> str | None:
    """The layout an audit reads ``path`` in, or None when it cannot read it."""
    known = detect_format(path)
    if known is not None:
        return known
    if path.is_file() and path.name.lower().endswith(EVENT_LOG_SUFFIXES):
        return "event log"
    return None


def _bytes(path: Path, limit: int) -> int:
    """Bytes of a file, or of a folder's files counted until they pass ``limit`` (as the audit's own check counts them)."""
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for n, inner in enumerate(path.rglob("*")):
        if n >= MAX_FILES_COUNTED:
            return limit + 1
        if inner.is_file():
            total += inner.stat().st_size
            if total > limit:
                break
    return total


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


def _children(folder: Path) -> list[Path]:
    try:
        return sorted((Path(e.path) for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda p: p.name)
    except OSError:
        return []


def _entries(root: Path, limit: int) -> tuple[list[DataEntry], bool]:
    """The entries under ``root`` an audit may name (a folder of no known layout opened one level), and whether the list was cut."""
    entries: list[DataEntry] = []
    queue = [(path, 1) for path in _children(root)]
    while queue:
        path, depth = queue.pop(0)
        if not _inside(path, root):
            continue
        if len(entries) >= MAX_ENTRIES:
            return entries, True
        layout = _layout(path)
        is_dir = path.is_dir()
        if is_dir and layout is None and depth < 2:
            queue[0:0] = [(inner, depth + 1) for inner in _children(path)]
            continue
        try:
            size = _bytes(path, limit)
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            continue
        entries.append(
            DataEntry(
                name=path.relative_to(root).as_posix(), kind="folder" if is_dir else "file",
                layout=layout or ("a folder of no known layout" if is_dir else "not a layout recgov reads"),
                size_bytes=size, over_limit=size > limit, modified=modified, usable=layout is not None and size <= limit,
            )
        )  # fmt: skip
    return entries, False


def _recorded(session: Session, settings: Any, data_dir: Path, role: str) -> list[RecordedSet]:
    rows = session.scalars(select(DatasetVersion).order_by(DatasetVersion.created_at.desc(), DatasetVersion.id.desc()).limit(MAX_RECORDED))
    found = []
    for row in rows:
        audit_data: str | None = None
        why_not: str | None = None
        try:
            resolved = resolve_input(row.source, data_dir)
            check_input_size("data", row.source, resolved, settings)
            synthetic = row.source == SYNTHETIC or row.source.startswith(SYNTHETIC + ":")
            audit_data = row.source if synthetic else Path(resolved).relative_to(data_dir.resolve()).as_posix()
        except (DataError, ValueError, OSError) as err:
            why_not = shown_to(role, str(err), settings.home)
        found.append(
            RecordedSet(
                id=row.id, name=row.name, source=shown_to(role, row.source, settings.home), content_hash=row.content_hash,
                n_events=row.n_events, n_users=row.n_users, n_items=row.n_items, recorded_at=row.created_at,
                audit_data=audit_data, why_not=why_not,
            )
        )  # fmt: skip
    return found


def audit_inputs(session: Session, settings: Any, *, role: str) -> dict[str, Any]:
    """What an audit may read on this installation: the data folder's entries, the generator's limits, the recorded sets.

    ``settings`` is the app's :class:`~governance.api.ApiSettings` (home and
    limits); ``role`` the reading key's, for how server paths are shown.
    """
    data_dir = settings.home / "data"
    limit = settings.audit_max_file_bytes
    root = data_dir.resolve() if data_dir.is_dir() else None
    entries, truncated = _entries(root, limit) if root is not None else ([], False)
    return {
        "data_dir": "$RECGOV_HOME/data",
        "data_dir_exists": root is not None,
        "entries": entries,
        "truncated": truncated,
        "max_entries": MAX_ENTRIES,
        "max_file_bytes": limit,
        "synthetic": {
            "spec": SYNTHETIC_SPEC,
            "max_interactions": settings.audit_max_interactions,
            "max_subjects": settings.audit_max_subjects,
        },
        "recorded": _recorded(session, settings, data_dir, role),
        "max_recorded": MAX_RECORDED,
    }
