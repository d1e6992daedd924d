"""Purge a stored event log: events older than the pack's window, and the events of erased subjects.

Training already leaves both out (:func:`governance.privacy.filter_training_events`), and
with them, under a window, every event of unknown time (it cannot be shown to be within it): the purge
drops those too, counted among the events past retention and on their own (``events_of_unknown_time``);
purging removes them from the log itself, writes the log back in its own format
and puts a ``data.purged`` event on the trail (counts and content hashes only).
The file is replaced atomically: a crash leaves either the old or the new log.

The log is read as ``recgov data validate`` reads it: in the layout its files
show or the one ``format`` names (:mod:`recommender.datasets`), or as a
CSV/Parquet event log. Which events go is decided on the loaded events; the
file is then written back without them:

* a CSV/Parquet event log is rewritten from its own table, every column kept;
* a published layout keeps its events one record a line in one file
  (:data:`EVENT_FILES`: ``u.data``, ``ratings.dat``, ``ratings.csv``, the Last.fm
  TSVs, ``BX-Book-Ratings.csv``, ``events.csv``): the purge drops those lines,
  byte for byte, and leaves every other line and file as it was. Before
  anything is written each event's line is matched to it (the same number of
  records, and each line's user field names the event's user), so a file the
  purge cannot align with its events is refused and nothing changes. Amazon's
  JSON reviews are not rewritten: convert them to an event log first.

An erased subject is known only by their suppression entry (a keyed hash of
the raw id, see :mod:`audits.suppression`), which outlives the crypto-shredding
of their pseudonym: the log's user ids are hashed the same way and every event
of an erased subject up to the erasure, or of unknown time, is dropped (GDPR
Art. 17: the interactions themselves are deleted, not only kept away from models). A
layout's file of people (:data:`PROFILE_FILES`: ``u.user``, ``users.dat``,
Last.fm's and Book-Crossing's profiles) loses the erased subjects' rows the
same way (their age, gender, location: personal data with no time, so the row
goes whatever they did since); the item files are not touched. The store's
outcome events (:mod:`audits.outcomes`: clicks, dwell, ratings after a served
list) older than the window are deleted in the transaction of the trail event
(an erased subject's were deleted by the erasure itself), and the window is
recorded with it as the one the store is purged by: outcome events imported
later that are already older than it are refused, each with its line
(:func:`audits.outcomes.retention_window`), rather than kept until the next purge. Each file is
replaced atomically after the trail event; should a crash fall between two,
purging again finishes the work (a purge finds only what is left).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from audits.outcomes import count_outcomes_before, purge_outcomes, set_retention_window
from audits.private_files import replace_keeping_mode, reserve_replacement
from governance.privacy_common import as_moment
from recommender.data import Dataset
from recommender.datasets import FORMATS, UNKNOWN_FORMAT, detect_format, load_format
from recommender.errors import ConfigError, DataError
from recommender.loaders import ColumnMapping, load_event_log

__all__ = ["EVENT_FILES", "PROFILE_FILES", "EventFile", "purge_expired"]

_LOG_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")


class EventFile(NamedTuple):
    """Where a published layout keeps its events: one record a line of one file."""

    name: str
    """The file, in the layout's folder."""
    header: int
    """Lines before the first record."""
    sep: bytes
    """The field separator."""
    user_field: int
    """Which field (from 0) holds the user id, checked against each event before a line is dropped."""
    encoding: str
    """How the user field is decoded."""


EVENT_FILES: dict[str, EventFile] = {
    "movielens-100k": EventFile("u.data", 0, b"\t", 0, "ascii"),
    "movielens-1m": EventFile("ratings.dat", 0, b"::", 0, "latin-1"),
    "movielens-csv": EventFile("ratings.csv", 1, b",", 0, "utf-8"),
    "lastfm-1k": EventFile("userid-timestamp-artid-artname-traid-traname.tsv", 0, b"\t", 0, "utf-8"),
    "lastfm-360k": EventFile("usersha1-artmbid-artname-plays.tsv", 0, b"\t", 0, "utf-8"),
    "book-crossing": EventFile("BX-Book-Ratings.csv", 1, b";", 0, "latin-1"),
    "retailrocket": EventFile("events.csv", 1, b",", 1, "utf-8"),
}
"""Format name -> the file a purge rewrites, for every published layout it can write back."""

PROFILE_FILES: dict[str, EventFile] = {
    "movielens-100k": EventFile("u.user", 0, b"|", 0, "latin-1"),
    "movielens-1m": EventFile("users.dat", 0, b"::", 0, "latin-1"),
    "lastfm-1k": EventFile("userid-profile.tsv", 1, b"\t", 0, "utf-8"),
    "book-crossing": EventFile("BX-Users.csv", 1, b";", 0, "latin-1"),
}
"""Format name -> the file of its people (age, gender, location, ...), from which an erased subject's row goes."""


def _cutoff(pack: Any, now: datetime | None, erased: bool) -> datetime | None:
    moment = as_moment(now, "now")  # checked whether or not a window is set
    days = pack.minimization.retention_days
    if days is None:
        if erased:
            return None  # only the erased subjects' events go
        raise ConfigError(f"pack {pack.metadata.name!r} sets no retention window (minimization.retention_days); nothing to purge")
    return moment - timedelta(days=days)


def _erased_rows(store: Any, users: pd.Series, times: pd.Series) -> tuple[pd.Series, int]:
    """True for each event of an erased subject at or before their erasure, or of unknown time (it cannot be
    shown to follow the erasure: training leaves it out as erased too); and how many such subjects."""
    from audits.suppression import suppressions_for

    users = users.astype(str)
    with store.session() as session:
        found = suppressions_for(session, users.unique().tolist())
    if not found:
        return pd.Series(False, index=users.index), 0
    erased_at = pd.to_datetime(users.map({subject: entry.erased_at for subject, entry in found.items()}), utc=True)
    stamps = pd.to_datetime(times, utc=True)
    hit = erased_at.notna() & (stamps.isna() | (stamps <= erased_at))
    return hit.fillna(False).astype(bool), len(found)


def _layout(path: Path, format: str | None) -> str | None:
    """The published layout of ``path`` (None: a CSV/Parquet event log), refusing what a purge cannot rewrite."""
    if format == "events":
        layout = None
    else:
        layout = format or detect_format(path)
    if layout is None:
        if path.is_file() and path.suffix.lower() in _LOG_SUFFIXES:
            return None
        raise DataError(f"{path}: purge works on a CSV/Parquet event log or a data set folder ({', '.join(EVENT_FILES)}); name its layout with --format")
    if layout not in FORMATS:
        raise ConfigError(UNKNOWN_FORMAT.format(name=layout, known=", ".join([*FORMATS, "events"])))
    if layout not in EVENT_FILES:
        raise DataError(
            f"{path}: purge cannot write back the {layout} layout (its events are not one line each of one file); "
            "convert it to a CSV/Parquet event log and purge that"
        )
    return layout


_CHANGED = (
    "{file}: changed while it was purged; nothing purged (it was written to after it was read, and is as its "
    "writer left it): purge again once nothing writes to it"
)


def _log_writer(path: Path, mapping: ColumnMapping, keep: np.ndarray) -> Callable[[Path], None]:
    """Writes the kept rows of a CSV/Parquet event log, every column as it was."""
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # the file's own table, filtered: every field under its own name, its metadata as it was (pandas would
        # rename fields its metadata renames and drop the ones it makes the index)
        table = pq.read_table(path)
        if table.num_rows != len(keep):
            raise DataError(_CHANGED.format(file=path))
        return lambda tmp: pq.write_table(table.filter(pa.array(keep)), tmp)
    table = pd.read_csv(path, sep=mapping.delimiter, dtype=str, keep_default_na=False)
    if len(table) != len(keep):  # written to since its events were read: which row is which is no longer known
        raise DataError(_CHANGED.format(file=path))
    return lambda tmp: table[keep].to_csv(tmp, sep=mapping.delimiter, index=False)


def _lines(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte offsets of each line of ``raw`` (start, end past its newline) and whether it holds anything but blanks."""
    data = np.frombuffer(raw, dtype=np.uint8)
    breaks = np.flatnonzero(data == 0x0A)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks + 1, [len(data)]))
    if starts[-1] == len(data):  # the file ends with a newline: no line after it
        starts, ends = starts[:-1], ends[:-1]
    printed = np.concatenate(([0], np.cumsum(data > 0x20)))  # anything but space, tab, CR, LF and controls
    return starts, ends, printed[ends] - printed[starts] > 0


def _user_fields(raw: bytes, spec: EventFile, records: np.ndarray) -> np.ndarray:
    """The user id of each record line (stripped of blanks and quotes), as strings."""
    text = pd.Series(raw.decode(spec.encoding, errors="replace").split("\n"), dtype=object).iloc[records]
    users = text.str.split(spec.sep.decode(), n=spec.user_field + 1, regex=False).str[spec.user_field]
    return users.fillna("").str.strip().str.strip('"').str.strip().to_numpy(dtype=object)


def _without_lines(raw: bytes, starts: np.ndarray, ends: np.ndarray, dropped: np.ndarray) -> Callable[[Path], None]:
    """A writer of ``raw`` without the lines ``dropped`` (indices), every other byte as it was."""
    kept_lines = np.ones(len(starts), dtype=bool)
    kept_lines[dropped] = False
    kept_bytes = np.repeat(kept_lines, ends - starts)  # the lines cover the file, in order

    def write(tmp: Path) -> None:
        tmp.write_bytes(np.frombuffer(raw, dtype=np.uint8)[kept_bytes].tobytes())

    return write


def _record_lines(target: Path, layout: str, events: pd.DataFrame) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """The bytes of ``target``, its line offsets, and for each event the index of its line.

    Blank lines are no records (the loaders skip them). Refuses, changing
    nothing, a file whose records do not match the events one to one in order
    (a count or a user id that differs).
    """
    spec = EVENT_FILES[layout]
    raw = target.read_bytes()
    starts, ends, filled = _lines(raw)
    records = np.flatnonzero(filled)
    records = records[records >= spec.header]
    if len(records) != len(events):
        raise DataError(f"{target}: {len(records):,} records but {len(events):,} events were read from them; nothing purged")
    users = _user_fields(raw, spec, records)
    differ = np.flatnonzero(users != events["user_id"].astype(str).to_numpy(dtype=object))
    if len(differ):
        line = int(records[differ[0]]) + 1
        raise DataError(f"{target} line {line}: the record does not name the user of the event read from it; nothing purged")
    return raw, starts, ends, records


def _line_writer(path: Path, layout: str, events: pd.DataFrame, keep: np.ndarray) -> tuple[Path, Callable[[Path], None]]:
    """The layout's event file, and a writer of its bytes without the lines of the purged records."""
    spec = EVENT_FILES[layout]
    target = path / spec.name if path.is_dir() else path
    raw, starts, ends, records = _record_lines(target, layout, events)
    return target, _without_lines(raw, starts, ends, records[~keep])


def _profile_writer(path: Path, layout: str | None, store: Any) -> tuple[Path, Callable[[Path], None], int] | None:
    """The layout's file of people, a writer of it without the rows of erased subjects, and how many go.

    A row of attributes has no time: every erased subject's row goes, whatever
    they did since (events after an erasure are a new history, with no profile).
    None when the layout has no such file, or no row goes.
    """
    from audits.suppression import suppressions_for

    spec = PROFILE_FILES.get(layout or "")
    if spec is None:
        return None
    target = (path if path.is_dir() else path.parent) / spec.name
    if not target.is_file():
        return None
    raw = target.read_bytes()
    starts, ends, filled = _lines(raw)
    records = np.flatnonzero(filled)
    records = records[records >= spec.header]
    users = _user_fields(raw, spec, records)
    with store.session() as session:
        found = suppressions_for(session, sorted(set(users.tolist())))
    dropped = records[np.isin(users, list(found))] if found else records[:0]
    if not len(dropped):
        return None
    return target, _without_lines(raw, starts, ends, dropped), len(dropped)


def _signature(file: Path) -> tuple[int, int, int] | None:
    """What tells that ``file`` was written to: its inode, size and modification time (None: it is not there)."""
    try:
        stat = file.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _files_read(path: Path, layout: str | None) -> list[Path]:
    """The files a purge of ``path`` reads and may rewrite: the log, or the layout's file of events and of people."""
    if layout is None:
        return [path]
    folder = path if path.is_dir() else path.parent
    files = [path / EVENT_FILES[layout].name if path.is_dir() else path]
    if layout in PROFILE_FILES:
        files.append(folder / PROFILE_FILES[layout].name)
    return files


def _refuse_changed(before: dict[Path, tuple[int, int, int] | None]) -> None:
    """Refuse to replace files written to since the purge read them: their new events would be lost unpurged."""
    for file, signature in before.items():
        if _signature(file) != signature:
            raise DataError(_CHANGED.format(file=file))


def _outcomes_past(store: Any, cutoff: datetime | None) -> int:
    """How many of the store's outcome events (:mod:`audits.outcomes`) happened before the retention window."""
    if cutoff is None:
        return 0
    with store.session() as session:
        return count_outcomes_before(session, cutoff)


def _pack_label(pack: Any) -> str:
    return f"{pack.metadata.name} {pack.metadata.version}"


def _window_changes(store: Any, pack: Any) -> bool:
    """Whether the store was last purged by another window than ``pack``'s, or its ``store_meta`` row no longer
    says the window the trail does (then a purge that finds nothing still records, on the trail, the window outcome
    imports are held to from now on)."""
    from audits.outcomes import retention_window, retention_window_recorded

    with store.session() as session:
        window = retention_window(session)
        recorded = retention_window_recorded(session)  # its store_meta row was edited: recorded again
    days = pack.minimization.retention_days
    return not recorded or (window or {}).get("days") != days or (window is not None and window.get("pack") != _pack_label(pack))


def purge_expired(
    source: str | Path, pack: Any, store: Any, *, mapping: ColumnMapping | None = None, format: str | None = None,
    now: datetime | None = None, dry_run: bool = False, actor: str | None = None, erased: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Remove events older than the retention window, and (``erased``) every event of an erased subject
    up to their erasure, from the log at ``source``.

    ``source`` is read in ``format`` (a name of :data:`recommender.datasets.FORMATS`,
    or ``"events"``), else in the layout its files show, else as a CSV/Parquet event
    log renamed by ``mapping``. Returns the report also put on the trail.

    Raises
    ------
    ConfigError
        The pack sets no retention window and ``erased`` is off; or ``format`` is unknown.
    DataError
        The log cannot be read, is a layout the purge cannot write back, or its
        records cannot be matched to its events. Nothing is changed.
    """
    from audits import append_event

    path = Path(source)
    cutoff = _cutoff(pack, now, erased)
    layout = _layout(path, format)
    mapping = mapping or ColumnMapping()
    before = {file: _signature(file) for file in _files_read(path, layout)}  # before a byte is read
    dataset: Dataset = load_event_log(path, mapping) if layout is None else load_format(path, layout)
    events = dataset.events
    none = pd.Series(False, index=events.index)
    # an event of unknown time cannot be shown to be within the window: training leaves it out, so the log loses it
    undated = events["timestamp"].isna() if cutoff is not None else none
    old = ((events["timestamp"] < pd.Timestamp(cutoff)).fillna(False) | undated) if cutoff is not None else none
    gone, n_erased = _erased_rows(store, events["user_id"], events["timestamp"]) if erased else (none, 0)
    keep = (~old & ~gone).to_numpy(dtype=bool)
    if layout is None:
        target, write = path, _log_writer(path, mapping, keep)
    else:
        target, write = _line_writer(path, layout, events, keep)
    n_total, n_kept = int(len(keep)), int(keep.sum())
    rewrites = [(target, write)] if n_kept < n_total else []
    profiles = _profile_writer(path, layout, store) if erased else None
    if profiles is not None:
        rewrites.append(profiles[:2])
    report: dict[str, Any] = {
        "source": str(path),
        "format": layout or "events",
        "pack": pack.metadata.name,
        "pack_version": pack.metadata.version,
        "retention_days": pack.minimization.retention_days,
        "cutoff": cutoff.isoformat() if cutoff is not None else None,
        "events_total": n_total,
        "events_purged": n_total - n_kept,
        "events_past_retention": int(old.sum()),
        "events_of_unknown_time": int(undated.sum()),
        "events_of_erased_subjects": int(gone.sum()),
        "erased_subjects_found": n_erased,
        "events_kept": n_kept,
        "profiles_of_erased_subjects": profiles[2] if profiles is not None else 0,
        "dry_run": dry_run,
        "dataset_before": dataset.content_hash(),
    }
    report["outcome_events_past_retention"] = _outcomes_past(store, cutoff)
    if dry_run or not (rewrites or report["outcome_events_past_retention"] or _window_changes(store, pack)):
        return report
    temporary = [reserve_replacement(file) for file, _ in rewrites]  # each file's own permission bits, never the umask's
    try:
        for tmp, (_, write_file) in zip(temporary, rewrites):
            write_file(tmp)
        with store.session() as session:  # the record first: a purge without its trail event never lands
            if cutoff is not None:  # the store's outcome events past the window go in the same transaction
                report["outcome_events_past_retention"] = purge_outcomes(session, cutoff)
            event = append_event(session, actor=actor or "recgov", action="data.purged", objects={"dataset": report["dataset_before"]}, payload=report)
            # the window the store is purged by from now on: outcome events older than it are refused at import
            set_retention_window(session, pack.minimization.retention_days, _pack_label(pack), event.seq)
            _refuse_changed(before)  # the trail event and the outcome deletions roll back with it
            for tmp, (file, _) in zip(temporary, rewrites):  # each file at once; a crash between two: purge again
                replace_keeping_mode(tmp, file)
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    report["trail_seq"] = event.seq
    return report
