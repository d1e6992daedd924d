"""Bulk consent import: a consent export from another system becomes consent records, in batches, once.

:func:`import_consent` reads the file (:mod:`governance.consent.import_table`),
judges every row (:mod:`governance.consent.import_rows`), and appends the valid
rows in batches (:func:`audits.consent_import.write_prepared_batch`; on PostgreSQL each
batch is prepared in a second thread while the one before it is written), each batch one
transaction anchored on the trail by one ``consent.imported`` event that
carries the file's sha256, the batch's first and last line, and counts, never a
subject id. Rows already imported are skipped, so a second import of the same
file adds nothing, and an import cut short is finished by running it again.

A file that is not a table, or lacks a mapped column, raises before anything is
written. Rows at fault are reported (:class:`~governance.consent.import_rows.RowProblem`),
never written; the others are. So are the rows of an erased subject dated
before their erasure: importing them again would give the history back to the
person the erasure unlinked (the erasure's suppression record says when).

Unlike ``recgov consent set --pack``, an import does not open erasure requests
for the withdrawals it carries (``erase_on_withdrawal``): it brings a history
that another system already acted on, and each of its withdrawals stops
profiling from the moment it is in the store, at training and at serving alike.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from audits.consent import BatchOutcome
from audits.consent_import import BATCH_COLUMNS, PreparedBatch, prepare_consent_batch, write_prepared_batch
from audits.models import Suppression
from audits.suppression import suppressions_for
from governance.consent.import_rows import RowProblem, check_consent_rows
from governance.consent.import_table import ConsentImportMapping, ConsentTable, read_consent_table
from governance.policy import LoadedPack
from recommender.errors import ConfigError

__all__ = ["DEFAULT_BATCH_SIZE", "ConsentImportReport", "import_consent", "import_consent_table"]

DEFAULT_BATCH_SIZE = 200_000
"""Records appended per transaction (and per trail anchor).

Each batch inserts its subjects' keys (sorted) into indexes keyed by random
digests, so a batch rewrites nearly every page of those indexes it reaches:
with more, smaller batches the same pages are written again and again. At a
million records on SQLite, batches of 50,000 wrote about 10 GB (WAL and
checkpoints), batches of 250,000 about 4.8 GB and 5% less CPU time. 200,000
keeps a batch's write transaction near ten seconds on two cores, well inside
the store's 30-second busy timeout for a writer waiting on it."""
MAX_BATCH_SIZE = 1_000_000
BAD_BATCH_SIZE = "the batch size must be an integer from 1 to {max}; got {value!r}"
ERASED_BEFORE = (
    "the subject was erased at {erased_at}; a record from before the erasure is not imported again (GDPR Art. 17)"
)


@dataclass(frozen=True)
class ConsentImportReport:
    """What an import did: the file, the counts, each batch's anchor, and every row at fault."""

    file: str
    sha256: str
    format: str
    pack: str | None
    rows: int
    valid: int
    invalid: int
    added: int
    already_recorded: int
    batches: list[dict[str, Any]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; problems as ``{"line" | "row", "field", "reason"}``."""
        return {
            "file": self.file, "sha256": self.sha256, "format": self.format, "pack": self.pack,
            "rows": self.rows, "valid": self.valid, "invalid": self.invalid, "added": self.added,
            "already_recorded": self.already_recorded, "batches": self.batches,
            "problems": [p.to_dict() for p in self.problems],
        }  # fmt: skip


def _batch_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ConfigError(BAD_BATCH_SIZE.format(max=MAX_BATCH_SIZE, value=value))
    return value


def _without_erased(store: Any, valid: pd.DataFrame, located_by: Any) -> tuple[pd.DataFrame, list[RowProblem]]:
    """The valid rows less those of erased subjects dated before their erasure, and a problem for each of those.

    An erasure crypto-shreds the subject; importing their old history again would
    give it back to them under a new pseudonym. The suppression record the
    erasure left (:mod:`audits.suppression`, one query for the whole file) says when.
    """
    if valid.empty:
        return valid, []
    # A read-only snapshot: on SQLite a session would begin with the write lock, and wait behind (or hold up)
    # another import's batch for a read.
    with store.snapshot() as connection, Session(bind=connection) as session:
        if session.scalar(select(Suppression.id).limit(1)) is None:
            return valid, []  # no erasure ever: no keyed hash of a million ids to look for one
        suppressed = suppressions_for(session, valid["subject"].unique().tolist())
    if not suppressed:
        return valid, []
    erased_at = valid["subject"].map({s: pd.Timestamp(e.erased_at) for s, e in suppressed.items()})
    before = (valid["recorded_at"] <= erased_at).to_numpy(dtype=bool, na_value=False)
    problems = [
        RowProblem(int(position), located_by, "time", ERASED_BEFORE.format(erased_at=moment.isoformat()))
        for position, moment in zip(valid["position"][before], erased_at[before], strict=True)
    ]
    return valid[~before].reset_index(drop=True), problems


_PAUSES = {"imports": 0, "was_enabled": False}
_PAUSES_LOCK = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while an import runs (and on again after the last one ends).

    An import builds millions of small objects (a tuple a record, strings a
    field) that live until their batch is written. Each few hundred of them
    start a collection, and every so often a full one walks all of them:
    about 8% of the CPU time of a million-row import, spent finding no
    garbage (the objects are freed by their reference counts). Imports that
    overlap in one process (the API's workers) count themselves in and out,
    so the collector is on again when the last one ends, if it was on before.
    """
    with _PAUSES_LOCK:
        if _PAUSES["imports"] == 0:
            _PAUSES["was_enabled"] = gc.isenabled()
            gc.disable()
        _PAUSES["imports"] += 1
    try:
        yield
    finally:
        with _PAUSES_LOCK:
            _PAUSES["imports"] -= 1
            if _PAUSES["imports"] == 0 and _PAUSES["was_enabled"]:
                gc.enable()


def import_consent_table(
    store: Any,
    table: ConsentTable,
    *,
    pack: LoadedPack | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None = None,
    show_progress: bool = False,
    prepare_ahead: bool | None = None,
) -> ConsentImportReport:
    """Judge the rows of ``table`` and append the valid ones in batches of ``batch_size``; see the module docstring.

    ``prepare_ahead``: prepare each batch in a second thread while the one before it is written (the stored
    rows, trail events and report are the same without). By default on PostgreSQL only: there the importer
    mostly waits on the server while a batch is written, and a million rows took about a fifth less time; on
    SQLite the database works in the importing process itself, letting go of the interpreter at every row,
    and the two threads taking turns made the import slower (see BENCHMARKS.md)."""
    if prepare_ahead is None:
        prepare_ahead = store.engine.dialect.name == "postgresql"
    batch_size = _batch_size(batch_size)
    with _collector_paused():
        return _import_rows(
            store, table, pack=pack, batch_size=batch_size, actor=actor, show_progress=show_progress, prepare_ahead=prepare_ahead
        )


def _prepared_in_turn(
    chunks: Sequence[pd.DataFrame], prepare: Callable[[pd.DataFrame], PreparedBatch], *, ahead: bool
) -> Iterator[PreparedBatch]:
    """Each chunk prepared, in order; with ``ahead``, the next one is prepared in a second thread while the caller
    writes this one (psycopg and sqlite3 let go of the interpreter while the database works).

    An error preparing a chunk is raised where the caller asks for that chunk, after the chunks before it were
    written, as without ``ahead``. The thread only computes: it holds no connection and writes nothing.
    """
    if not ahead:
        for chunk in chunks:
            yield prepare(chunk)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-import-prepare")
    pending: Future[PreparedBatch] | None = None
    try:
        for number, chunk in enumerate(chunks):
            current = (pending or pool.submit(prepare, chunk)).result()
            pending = pool.submit(prepare, chunks[number + 1]) if number + 1 < len(chunks) else None
            yield current
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def _import_rows(
    store: Any,
    table: ConsentTable,
    *,
    pack: LoadedPack | None,
    batch_size: int,
    actor: str | None,
    show_progress: bool,
    prepare_ahead: bool,
) -> ConsentImportReport:
    section = pack.pack.consent if pack is not None else None
    checked = check_consent_rows(table, section=section, pack=None if pack is None else pack.name)
    valid, erased = _without_erased(store, checked.valid, table.located_by)
    problems = sorted([*checked.problems, *erased], key=lambda p: p.position)
    located = table.located_by
    outcomes: list[dict[str, Any]] = []
    starts = range(0, len(valid), batch_size)
    chunks = [valid.iloc[start : start + batch_size] for start in starts]
    vocabulary = () if section is None else section.purposes
    postgres = store.engine.dialect.name == "postgresql"

    def prepare(chunk: pd.DataFrame) -> PreparedBatch:
        return prepare_consent_batch(
            chunk[list(BATCH_COLUMNS)], postgres=postgres, vocabulary=vocabulary, as_if_new=prepare_ahead
        )

    batches = closing(_prepared_in_turn(chunks, prepare, ahead=prepare_ahead))
    bar = tqdm(total=len(valid), disable=not show_progress, unit="record", desc="import consent", file=sys.stderr)
    with bar, batches as prepared_batches:
        for number, (chunk, prepared) in enumerate(zip(chunks, prepared_batches, strict=True), start=1):
            anchor = {
                "file_sha256": table.sha256, "format": table.format, "pack": None if pack is None else pack.name,
                "batch": number, "batches": len(starts),
                f"first_{located}": int(chunk["position"].iloc[0]), f"last_{located}": int(chunk["position"].iloc[-1]),
            }  # fmt: skip
            with store.session() as session:
                outcome: BatchOutcome = write_prepared_batch(session, prepared, anchor=anchor, actor=actor)
            outcomes.append({"batch": number, **{k: anchor[k] for k in (f"first_{located}", f"last_{located}")}, **outcome.to_dict()})
            bar.update(len(chunk))
    return ConsentImportReport(
        file=table.name, sha256=table.sha256, format=table.format, pack=None if pack is None else pack.name,
        rows=len(table.rows) + len(table.broken), valid=len(valid), invalid=checked.invalid_rows + len(erased),
        added=sum(o["added"] for o in outcomes), already_recorded=sum(o["already_recorded"] for o in outcomes),
        batches=outcomes, problems=problems,
    )  # fmt: skip


def import_consent(
    store: Any,
    source: str | Path | bytes,
    *,
    mapping: ConsentImportMapping | None = None,
    fmt: str | None = None,
    name: str | None = None,
    pack: LoadedPack | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None = None,
    show_progress: bool = False,
    prepare_ahead: bool | None = None,
) -> ConsentImportReport:
    """Import a consent export (a path, or the bytes of a file called ``name``) into ``store``.

    Example
    -------
    >>> report = import_consent(store, "consent.csv", pack=load_pack(resolve_pack("eu-gdpr-dsa")),  # doctest: +SKIP
    ...                         mapping=ConsentImportMapping.parse("subject=user_id,time=updated_at"))
    >>> report.added, [str(p) for p in report.problems]                                              # doctest: +SKIP
    """
    _batch_size(batch_size)  # refused before the file is read
    with _collector_paused():
        table = read_consent_table(source, mapping, fmt=fmt, name=name)
        return import_consent_table(
            store, table, pack=pack, batch_size=batch_size, actor=actor, show_progress=show_progress, prepare_ahead=prepare_ahead
        )
