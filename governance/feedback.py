"""Feedback ingest: outcome events from a file (CSV, JSON Lines, Parquet) or a JSON list, checked, then stored.

:func:`import_feedback` reads a file as ``recgov consent import`` reads a
consent export (:mod:`governance.consent.import_table`: the same formats, the
same ``--map`` of field=column pairs, each row located by its CSV/JSONL line or
Parquet row), judges every row (:func:`check_outcome_rows`), and stores the
valid ones in batches through :func:`audits.outcomes.record_outcomes`, each
batch one transaction anchored on the trail by one ``outcomes.recorded`` event
carrying the file's sha256 and the batch's first and last line. Rows already
stored (same event key) are skipped, so a second import of the same file adds
nothing and an import cut short is finished by running it again. A file that
is not a table, or lacks a mapped column, raises before anything is written;
rows at fault are reported with their line and never written; the others are.

:func:`record_feedback` takes a JSON list of events (``POST /v1/feedback``) and
stores it whole or not at all: any event at fault refuses the list, each fault
located as ``events[i]``.

A row is judged on its own (pure, column-wise): a subject (the raw id, stored
only as its pseudonym), an item, a kind of :data:`~audits.models.OUTCOME_KINDS`,
a time (ISO 8601, UTC when no zone is given, or Unix seconds) from 1970 (the Unix
epoch, as the event loaders read times) to 2261 and not in the future, a value where the kind has one (``dwell``: seconds, zero or more;
``rating``: a finite number; ``conversion``: optionally an amount, zero or
more; none for ``impression`` and ``click``), a decision id that is a UUID if
given, an event id of at most 200 characters if given (it is only hashed with
the pseudonym, never stored), and an item that does not hold the subject's id
(items are kept in the clear), none of them holding a control or an invisible
(zero-width, bidirectional) character. A reason never repeats the cell it
refuses (a column mapped by mistake may hold a person's id). Then the store judges
the join (:mod:`audits.outcomes`): a decision id must name a list served to
that subject holding that item, and the events of an erased subject from
before the erasure are refused, and so are events older than the retention window
the store was last purged by (:func:`audits.outcomes.retention_window`, read from the trail): the
next purge would delete them.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from tqdm.auto import tqdm

from audits.models import OUTCOME_KINDS
from audits.outcomes import (
    BATCH_COLUMNS,
    BEFORE_EPOCH,
    DEFAULT_WINDOW,
    EARLIEST,
    LATEST,
    TIME_OUT_OF_RANGE,
    OutcomeBatch,
    OutcomesRefused,
    Refusal,
    record_outcomes,
)
from governance.consent.import_rows import _CONTROL
from governance.consent.import_table import _csv, _jsonl, _parquet, format_of, nested_values
from governance.column_map import ColumnMap
from recommender.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FeedbackImportReport",
    "FeedbackMapping",
    "FeedbackTable",
    "RowProblem",
    "check_outcome_rows",
    "import_feedback",
    "parse_window",
    "read_feedback_table",
    "record_feedback",
]

DEFAULT_BATCH_SIZE = 50_000
"""Events stored per transaction (and per trail anchor)."""
MAX_BATCH_SIZE = 1_000_000
MAX_WINDOW = timedelta(days=365)
MAX_TEXT = 200
_REQUIRED = ("subject", "item", "kind", "time")
_INVISIBLE = "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
"""Characters that print as nothing: an id holding one is an invisible variant of another id."""
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

BAD_BATCH_SIZE = "the batch size must be an integer from 1 to {max}; got {value!r}"
BAD_WINDOW = "--window {value!r}: give a positive duration of at most 365 days, a number and a unit: 90s, 30m, 24h or 7d"
MISSING_COLUMN = (
    "{name}: no column {column!r} for the field {field}; the file's columns: {columns}; "
    "map the field to one of them with --map {field}=COLUMN"
)
EMPTY_FILE = "{name}: the file is empty; expected outcome events with a header row (CSV) or one JSON object a line"
NO_ROWS = "{name}: no rows, only a header; expected outcome events, one a row"
NO_SUCH_FILE = "{name}: no such file; expected outcome events (.csv, .jsonl or .parquet)"
NO_VALUE = "no {field}"
TOO_LONG = "the {field} is longer than {limit} characters"
CONTROL_CHARACTER = "the {field} holds a control character"
INVISIBLE_CHARACTER = "the {field} holds an invisible character (zero-width, bidirectional or other format character)"
# The reasons below never repeat the cell: with a column mapped by mistake it may be a person's id.
NOT_A_KIND = "the kind is not one of " + ", ".join(OUTCOME_KINDS)
BAD_TIME = "the time is not an ISO 8601 time (e.g. 2026-03-01T09:30:00Z) nor Unix seconds"
FUTURE_TIME = "the time is in the future"
NOT_A_NUMBER = "the value is not a finite number"
NEEDS_VALUE = "a {kind} needs a value ({what})"
NEGATIVE = "a {kind}'s value must be zero or more"
NO_VALUE_FOR = "a {kind} has no value; leave the value empty"
NOT_A_UUID = "the decision_id is not a decision id (a UUID)"
RAW_ID_IN_ITEM = "the item holds the subject's id; an outcome event is stored under the pseudonym and must never name the subject"
_VALUE_NEEDED = {"dwell": "seconds", "rating": "the rating"}


class FeedbackMapping(ColumnMap):
    """The file's column for each outcome field (default: the column named like the field)."""

    subject: str = Field("subject", min_length=1, description="The subject's id as your systems know it (stored only as its pseudonym).")
    item: str = Field("item", min_length=1, description="The item the event is about.")
    kind: str = Field("kind", min_length=1, description="impression, click, conversion, dwell or rating.")
    time: str = Field("time", min_length=1, description="When it happened: ISO 8601 (UTC when no zone is given) or Unix seconds.")
    value: str | None = Field(None, description="Dwell seconds, the rating, or a conversion's amount.")
    decision_id: str | None = Field(None, description="The decision that served the item; without it the event is joined by subject, item and window.")
    event_id: str | None = Field(None, description="Your id of the event: what makes it the same event on a second import.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="The CSV field separator.")


_FIELDS = FeedbackMapping.fields()
"""An outcome event's fields, in the order a table holds them."""


@dataclass(frozen=True)
class FeedbackTable:
    """Outcome events read as strings: one column per mapped field, and where each row is in its source."""

    name: str
    sha256: str
    format: Literal["csv", "jsonl", "parquet", "json"]
    rows: pd.DataFrame
    """One string column per field (empty cells are ``""``), in source order."""
    positions: np.ndarray
    """Each row's CSV/JSONL line (the header is line 1), Parquet row (from 1), or JSON list index (from 0)."""
    broken: tuple[tuple[int, str, str], ...] = ()
    """Lines that are no row (a CSV line with more values than the header names columns, a JSONL line that is no
    JSON object), as ``(line, field, reason)``: each refused in its turn (:mod:`governance.consent.import_table`)."""

    @property
    def located_by(self) -> Literal["line", "row", "index"]:
        """How :attr:`positions` count."""
        return {"parquet": "row", "json": "index"}.get(self.format, "line")  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One fault of one event: where it is, which field, why (never a subject id)."""

    position: int
    located_by: str
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """``{"line": 7, "field": "kind", "reason": ...}`` (``row`` for Parquet, ``index`` for a JSON list)."""
        return {self.located_by: self.position, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        where = f"events[{self.position}]" if self.located_by == "index" else f"{self.located_by} {self.position}"
        return f"{where}: {self.field}: {self.reason}"


def parse_window(text: str | timedelta | None) -> timedelta:
    """An attribution window: a ``timedelta``, or ``90s``, ``30m``, ``24h``, ``7d`` (None: :data:`DEFAULT_WINDOW`)."""
    if text is None:
        return DEFAULT_WINDOW
    if isinstance(text, timedelta):
        window = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(text))
        if match is None:
            raise DataError(BAD_WINDOW.format(value=text))
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        if not seconds <= MAX_WINDOW.total_seconds():  # before timedelta, which overflows on 99999999999d
            raise DataError(BAD_WINDOW.format(value=text))
        window = timedelta(seconds=seconds)
    if not timedelta(0) < window <= MAX_WINDOW:
        raise DataError(BAD_WINDOW.format(value=str(text)))
    return window


def _batch_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ConfigError(BAD_BATCH_SIZE.format(max=MAX_BATCH_SIZE, value=value))
    return value


def _strings(column: pd.Series) -> pd.Series:
    plain = column.astype(object)
    return plain.where(plain.notna(), "").astype(str).str.strip().astype(object)


def read_feedback_table(
    source: str | Path | bytes, mapping: FeedbackMapping | None = None, *, fmt: str | None = None, name: str | None = None
) -> FeedbackTable:
    """Read outcome events (a path, or the bytes of a file called ``name``) into a :class:`FeedbackTable`.

    Raises :class:`~recommender.errors.DataError` naming the file (and the line
    where there is one) when it is not a table of its format or lacks a mapped column.
    """
    mapping = mapping or FeedbackMapping()
    if isinstance(source, bytes):
        label, data = name or "upload", source
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise DataError(NO_SUCH_FILE.format(name=label))
        data = path.read_bytes()
    kind = format_of(label, fmt)
    if kind == "csv" and Path(label).suffix.lower() == ".tsv" and "delimiter" not in mapping.model_fields_set:
        mapping = mapping.model_copy(update={"delimiter": "\t"})  # tab-separated, as the name says (as consent imports read it)
    if not data.strip():
        raise DataError(EMPTY_FILE.format(name=label))
    if kind == "csv":
        raw, positions, broken = _csv(label, data, mapping)  # type: ignore[arg-type] - it reads the delimiter only
    elif kind == "jsonl":
        raw, positions, broken = _jsonl(label, data)
    else:
        raw, positions, broken = _parquet(label, data)
    wanted = mapping.columns(map(str, raw.columns))
    for fld, column in wanted.items():
        if column not in raw.columns:
            columns = ", ".join(map(str, raw.columns)) or "none"
            raise DataError(MISSING_COLUMN.format(name=label, column=column, field=fld, columns=columns))
    refused, refusals = nested_values(raw, wanted, positions)
    rows = pd.DataFrame({fld: _strings(raw[column]) for fld, column in wanted.items()}, index=raw.index)
    keep = (rows != "").any(axis=1).to_numpy()  # a blank line is no row
    if not keep.any():
        raise DataError(NO_ROWS.format(name=label))
    keep = keep & ~refused
    broken = tuple(sorted((*broken, *refusals)))
    return FeedbackTable(label, hashlib.sha256(data).hexdigest(), kind, rows[keep].reset_index(drop=True), positions[keep], broken)  # type: ignore[arg-type]


def table_of_events(events: Sequence[Mapping[str, Any]], *, name: str = "body") -> FeedbackTable:
    """A JSON list of events (``POST /v1/feedback``: fields as :class:`FeedbackMapping` names them) as a table."""
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return repr(value)
        return str(value).strip()

    rows = pd.DataFrame({f: pd.Series([text(e.get(f)) for e in events], dtype=object) for f in _FIELDS})
    digest = hashlib.sha256(repr([sorted(e.items()) for e in events]).encode("utf-8")).hexdigest()
    return FeedbackTable(name, digest, "json", rows, np.arange(len(events), dtype=np.int64))


class _Faults:
    """Problems collected column by column: one fault a row, the first found."""

    def __init__(self, table: FeedbackTable) -> None:
        self.table = table
        self.bad = np.zeros(len(table.rows), dtype=bool)
        self.problems: list[RowProblem] = []

    def add(self, mask: Any, fld: str, reason: str, values: pd.Series | None = None, **more: pd.Series) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        where = np.flatnonzero(mask)
        if not len(where):
            return
        columns = {"value": values, **more} if values is not None else more
        arrays = {k: v.to_numpy(dtype=object)[where] for k, v in columns.items()}
        reasons = [reason.format(**{k: a[i] for k, a in arrays.items()}) for i in range(len(where))]
        for position, why in zip(self.table.positions[where], reasons, strict=True):
            self.problems.append(RowProblem(int(position), self.table.located_by, fld, why))
        self.bad |= mask


def _column(table: FeedbackTable, name: str) -> pd.Series:
    rows = table.rows
    return rows[name] if name in rows.columns else pd.Series([""] * len(rows), index=rows.index, dtype=object)


def _text(faults: _Faults, values: pd.Series, fld: str, *, required: bool = True) -> None:
    if required:
        faults.add(values == "", fld, NO_VALUE.format(field=fld))
    faults.add(values.str.len() > MAX_TEXT, fld, TOO_LONG.format(field=fld, limit=MAX_TEXT))
    faults.add(values.str.contains(_CONTROL, regex=True), fld, CONTROL_CHARACTER.format(field=fld))
    faults.add(values.str.contains(_INVISIBLE, regex=True), fld, INVISIBLE_CHARACTER.format(field=fld))


def _times(faults: _Faults, values: pd.Series, now: datetime) -> pd.Series:
    seconds = values.str.fullmatch(r"-?\d+(\.\d+)?").fillna(False).astype(bool)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if seconds.any():
        numbers = values[seconds].astype(float)
        numbers = numbers.where(numbers.abs() < 1e11)
        parsed[seconds] = pd.to_datetime(numbers, unit="s", utc=True, errors="coerce").astype(parsed.dtype)
    if (~seconds).any():
        parsed[~seconds] = pd.to_datetime(values[~seconds], utc=True, errors="coerce", format="ISO8601").astype(parsed.dtype)
    parsed = parsed.dt.floor("us")
    faults.add(values == "", "time", NO_VALUE.format(field="time"))
    faults.add(parsed.isna(), "time", BAD_TIME)
    faults.add(parsed < EARLIEST, "time", BEFORE_EPOCH)
    faults.add(parsed >= LATEST, "time", TIME_OUT_OF_RANGE.format(lo=EARLIEST.year, hi=LATEST.year - 1))
    faults.add(parsed > pd.Timestamp(now), "time", FUTURE_TIME)
    return parsed


def _values(faults: _Faults, values: pd.Series, kinds: pd.Series) -> pd.Series:
    given = values != ""
    numbers = pd.to_numeric(values.where(given, None), errors="coerce").astype(float)
    faults.add(given & ~np.isfinite(numbers.fillna(np.inf)), "value", NOT_A_NUMBER)
    for kind, what in _VALUE_NEEDED.items():
        faults.add((kinds == kind) & ~given, "value", NEEDS_VALUE.format(kind=kind, what=what))
    for kind in ("dwell", "conversion"):
        faults.add((kinds == kind) & (numbers < 0), "value", NEGATIVE.format(kind=kind))
    faults.add(kinds.isin(["impression", "click"]) & given, "value", NO_VALUE_FOR, kind=kinds)
    return numbers


def check_outcome_rows(table: FeedbackTable, *, now: datetime | None = None) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Judge every row of ``table`` (see the module docstring): the valid rows as a batch of
    :data:`audits.outcomes.BATCH_COLUMNS`, and one problem per refused row."""
    now = now or datetime.now(UTC)
    faults = _Faults(table)
    subjects, items, kinds = _column(table, "subject"), _column(table, "item"), _column(table, "kind")
    _text(faults, subjects, "subject")
    _text(faults, items, "item")
    holds = [bool(s) and (i == s or (len(s) >= 6 and s in i)) for s, i in zip(subjects.tolist(), items.tolist(), strict=True)]
    faults.add(np.asarray(holds, dtype=bool), "item", RAW_ID_IN_ITEM)  # items are kept in the clear
    faults.add(kinds == "", "kind", NO_VALUE.format(field="kind"))
    faults.add(~kinds.isin(OUTCOME_KINDS), "kind", NOT_A_KIND)
    times = _times(faults, _column(table, "time"), now)
    numbers = _values(faults, _column(table, "value"), kinds)
    decisions = _column(table, "decision_id")
    faults.add((decisions != "") & ~decisions.str.fullmatch(_UUID.pattern).fillna(False).astype(bool), "decision_id", NOT_A_UUID)
    event_ids = _column(table, "event_id")
    _text(faults, event_ids, "event_id", required=False)
    ok = ~faults.bad
    batch = pd.DataFrame(
        {
            "line": table.positions, "subject": subjects.to_numpy(dtype=object), "kind": kinds.to_numpy(dtype=object),
            "item_id": items.to_numpy(dtype=object), "occurred_at": times, "value": numbers.to_numpy(dtype=float),
            "decision_id": decisions.str.lower().to_numpy(dtype=object), "event_id": event_ids.to_numpy(dtype=object),
        },
        index=table.rows.index,
    )[list(BATCH_COLUMNS)]  # fmt: skip
    broken = [RowProblem(position, table.located_by, fld, reason) for position, fld, reason in table.broken]
    return batch[ok].reset_index(drop=True), sorted([*faults.problems, *broken], key=lambda p: p.position)


@dataclass(frozen=True)
class FeedbackImportReport:
    """What an import did: the file, the counts, each batch's anchor, every refused row and every unattributed one."""

    file: str
    sha256: str
    format: str
    window_seconds: float
    rows: int
    valid: int
    invalid: int
    added: int
    already_recorded: int
    by_attribution: dict[str, int] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    unattributed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; problems as ``{"line" | "row" | "index", "field", "reason"}``."""
        return {
            "file": self.file, "sha256": self.sha256, "format": self.format, "window_seconds": self.window_seconds,
            "rows": self.rows, "valid": self.valid, "invalid": self.invalid, "added": self.added,
            "already_recorded": self.already_recorded, "by_attribution": self.by_attribution, "batches": self.batches,
            "problems": [p.to_dict() for p in self.problems], "unattributed": self.unattributed,
        }  # fmt: skip


def _as_problems(refusals: list[Refusal], located_by: str) -> list[RowProblem]:
    return [RowProblem(r.line, located_by, r.field, r.reason) for r in refusals]


def import_feedback_table(
    store: Any,
    table: FeedbackTable,
    *,
    window: timedelta | str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None = None,
    show_progress: bool = False,
    whole: bool = False,
    source: Literal["api", "import"] = "import",
) -> FeedbackImportReport:
    """Judge the rows of ``table`` and store the valid ones in batches of ``batch_size``; see the module docstring.

    With ``whole``, one fault anywhere stores nothing (:class:`~audits.outcomes.OutcomesRefused`
    or :class:`FeedbackRefused` is raised).
    """
    batch_size = _batch_size(batch_size)
    span = parse_window(window)
    valid, problems = check_outcome_rows(table)
    located = table.located_by
    if whole:
        batch_size = max(len(valid), 1)  # one transaction: all or nothing
    outcomes: list[tuple[dict[str, Any], OutcomeBatch]] = []
    starts = range(0, len(valid), batch_size)
    with tqdm(total=len(valid), disable=not show_progress, unit="event", desc="import feedback", file=sys.stderr) as bar:
        for number, start in enumerate(starts, start=1):
            chunk = valid.iloc[start : start + batch_size]
            anchor = {
                "file_sha256": table.sha256, "format": table.format, "batch": number, "batches": len(starts),
                f"first_{located}": int(chunk["line"].iloc[0]), f"last_{located}": int(chunk["line"].iloc[-1]),
            }  # fmt: skip
            if whole:
                outcome = _whole(store, chunk, problems, source=source, anchor=anchor, window=span, actor=actor)
            else:
                with store.session() as session:
                    outcome = record_outcomes(session, chunk, source=source, anchor=anchor, window=span, actor=actor)
            outcomes.append(({"batch": number, f"first_{located}": anchor[f"first_{located}"], f"last_{located}": anchor[f"last_{located}"]}, outcome))
            bar.update(len(chunk))
    if whole and problems:  # no valid row at all: nothing was tried in the store
        raise FeedbackRefused(problems)
    refused = [p for _, o in outcomes for p in _as_problems(o.refused, located)]
    by_attribution: dict[str, int] = {}
    for _, o in outcomes:
        for k, v in o.by_attribution.items():
            by_attribution[k] = by_attribution.get(k, 0) + v
    unattributed = [{located: u["line"], "reason": u["reason"]} for _, o in outcomes for u in o.unattributed]
    return FeedbackImportReport(
        file=table.name, sha256=table.sha256, format=table.format, window_seconds=span.total_seconds(),
        rows=len(table.rows) + len(table.broken), valid=len(valid) - len(refused), invalid=len(problems) + len(refused),
        added=sum(o.added for _, o in outcomes), already_recorded=sum(o.already_recorded for _, o in outcomes),
        by_attribution=dict(sorted(by_attribution.items())), batches=[{**b, **o.to_dict()} for b, o in outcomes],
        problems=sorted([*problems, *refused], key=lambda p: p.position), unattributed=unattributed,
    )  # fmt: skip


class _RollBack(Exception):
    """Raised inside a transaction to undo what it stored: the list had faults the store did not see."""


def _whole(store: Any, chunk: pd.DataFrame, problems: list[RowProblem], **options: Any) -> OutcomeBatch:
    """Store ``chunk`` only if neither the row checks (``problems``) nor the store refuse anything; else raise
    :class:`FeedbackRefused` with every fault, the store's included, and nothing stored."""
    refused: list[Refusal] = []
    outcome: OutcomeBatch | None = None
    try:
        with store.session() as session:
            outcome = record_outcomes(session, chunk, whole=True, **options)
            if problems:
                raise _RollBack
    except OutcomesRefused as err:
        refused = err.refusals
    except _RollBack:
        pass
    faults = sorted([*problems, *_as_problems(refused, "index")], key=lambda p: p.position)
    if faults or outcome is None:
        raise FeedbackRefused(faults)
    return outcome


class FeedbackRefused(DataError):
    """A list of events to be stored whole had faults; nothing was stored."""

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}; nothing was stored")


def import_feedback(
    store: Any,
    source: str | Path | bytes,
    *,
    mapping: FeedbackMapping | None = None,
    fmt: str | None = None,
    name: str | None = None,
    window: timedelta | str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None = None,
    show_progress: bool = False,
) -> FeedbackImportReport:
    """Import outcome events from a file (a path, or the bytes of a file called ``name``) into ``store``.

    Example
    -------
    >>> report = import_feedback(store, "clicks.csv", window="2h",                  # doctest: +SKIP
    ...                          mapping=FeedbackMapping.parse("subject=user_id,item=movie,time=ts"))
    >>> report.added, report.by_attribution, [str(p) for p in report.problems]     # doctest: +SKIP
    """
    _batch_size(batch_size)
    span = parse_window(window)  # refused before the file is read
    table = read_feedback_table(source, mapping, fmt=fmt, name=name)
    return import_feedback_table(store, table, window=span, batch_size=batch_size, actor=actor, show_progress=show_progress)


def record_feedback(
    store: Any, events: Sequence[Mapping[str, Any]], *, window: timedelta | str | None = None, actor: str | None = None
) -> FeedbackImportReport:
    """Store a JSON list of events whole, or nothing: a fault anywhere raises :class:`FeedbackRefused` (or
    :class:`~audits.outcomes.OutcomesRefused` for a join the store refuses), each fault located as ``events[i]``."""
    table = table_of_events(events)
    return import_feedback_table(store, table, window=window, batch_size=MAX_BATCH_SIZE, actor=actor, whole=True, source="api")
