"""Which rows of a consent export make valid consent records, and why the others do not (pure, no I/O).

:func:`check_consent_rows` takes a :class:`~governance.consent.import_table.ConsentTable`
and the pack's ``consent`` section and returns :class:`CheckedRows`: the valid
rows as a batch ready for :func:`audits.consent.append_consent_batch`, and a
:class:`RowProblem` for each other row (its first fault, in the order below), located by its line
(CSV, JSONL) or row (Parquet), naming the field and saying why. A row is judged
as one record of ``recgov consent set`` would be:

* subject, purpose (with a pack: one of its purposes), status, lawful basis
  (default with a pack: the purpose's), source (default ``import``);
* a time, ISO 8601 or Unix seconds, not in the future (a future record would
  outrank every later choice);
* the evidence its source claims, by the one rule the CLI and the API apply,
  :func:`governance.consent.evidence.check_consent_evidence`, a TC string
  decoded as the serving path decodes it and judged at the row's own time;
  an ``import`` row without an origin column is from the file itself;
* no evidence that holds the subject's id.

The checks run on whole columns (pandas masks); the evidence rule runs once per
distinct combination of what it reads, so a million banner rows cost a handful
of calls, and only TC strings, judged at each row's time, cost one call a row.
No message repeats a subject id.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from audits._common import holds_raw_id
from audits.models import CONSENT_SOURCES, CONSENT_STATUSES, LAWFUL_BASES
from governance.consent.evidence import EvidenceError, check_consent_evidence
from governance.consent.import_table import ConsentTable
from governance.policy import ConsentSection

__all__ = ["CheckedRows", "RowProblem", "check_consent_rows"]

MAX_SUBJECT, MAX_PURPOSE, MAX_JURISDICTION = 200, 100, 32

NO_VALUE = "no {field}"
TOO_LONG = "the {field} is longer than {limit} characters"
CONTROL_CHARACTER = "the {field} holds a control character"
_SHOWN_CHARS = 60


class _Shown:
    """A cell's value in a message: as itself, or cut to its first characters when it is long (a cell may be
    megabytes long, and every bad row's reason is printed, stored in the import's report and answered by the API)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def _cut(self) -> str | None:
        text = self.value
        return f"{text[:_SHOWN_CHARS]!r}... ({len(text):,} characters)" if isinstance(text, str) and len(text) > _SHOWN_CHARS else None

    def __repr__(self) -> str:
        return self._cut() or repr(self.value)

    def __str__(self) -> str:
        return self._cut() or str(self.value)


NOT_IN_PACK = "purpose {value!r} is not one of pack {pack}'s consent purposes ({listed})"
NOT_ONE_OF = "{field} {value!r} is not one of {allowed}"
NO_BASIS = "no lawful basis: map a basis column, or import under a pack (the purpose's basis is the default)"
BAD_TIME = "time {value!r} is not an ISO 8601 time (e.g. 2026-03-01T09:30:00Z) nor Unix seconds"
FUTURE_TIME = "time {value!r} is in the future; a future record would outrank every later choice"
PRE_EPOCH_TIME = (
    "time {value!r} is before 1970-01-01T00:00:00Z (a negative Unix time): no consent dates from then; "
    "it is a placeholder, a sign error or the wrong unit"
)
RAW_ID_IN_EVIDENCE = "evidence.{key} holds the subject's id; evidence must never name the subject"
RAW_ID_IN_FIELD = "the {field} holds the subject's id; a consent record names the subject only by its pseudonym"
_CONTROL = r"[\x00-\x1f\x7f]"
_EVIDENCE_COLUMNS = ("banner_version", "origin", "tc_string", "vendor_id")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One fault of one row: where it is, which field, why."""

    position: int
    located_by: Literal["line", "row"]
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """``{"line": 7, "field": "purpose", "reason": ...}`` (``row`` for Parquet)."""
        return {self.located_by: self.position, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.located_by} {self.position}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class CheckedRows:
    """The valid rows as a batch (:data:`audits.consent_import.BATCH_COLUMNS` and ``position``), and one problem per refused row."""

    valid: pd.DataFrame
    problems: list[RowProblem]
    invalid_rows: int


class _Faults:
    """Problems collected column by column: a mask of the rows at fault, a field, a reason per row."""

    def __init__(self, table: ConsentTable) -> None:
        self.table = table
        self.bad = np.zeros(len(table.rows), dtype=bool)
        self.problems: list[RowProblem] = []

    def add(self, mask: np.ndarray | pd.Series, field: str, reason: str, values: pd.Series | None = None) -> None:
        """Record ``reason`` for the rows in ``mask`` not at fault yet; ``{value}`` in it is each row's value in ``values``."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad  # one fault a row: the first found
        where = np.flatnonzero(mask)
        if not len(where):
            return
        if values is None:
            reasons = [reason] * len(where)
        else:
            reasons = [reason.format(value=_Shown(v)) for v in values.to_numpy(dtype=object)[where]]
        positions = self.table.positions[where]
        located_by = self.table.located_by
        self.problems.extend(RowProblem(int(p), located_by, field, r) for p, r in zip(positions, reasons, strict=True))
        self.bad |= mask


def _column(table: ConsentTable, field: str) -> pd.Series:
    rows = table.rows
    return rows[field] if field in rows.columns else pd.Series([""] * len(rows), index=rows.index, dtype=object)


def _text(faults: _Faults, values: pd.Series, field: str, limit: int, *, required: bool = True) -> None:
    if required:
        faults.add(values == "", field, NO_VALUE.format(field=field))
    faults.add(values.str.len() > limit, field, TOO_LONG.format(field=field, limit=limit))
    faults.add(values.str.contains(_CONTROL, regex=True), field, CONTROL_CHARACTER.format(field=field))


def _choice(faults: _Faults, values: pd.Series, field: str, allowed: tuple[str, ...]) -> None:
    template = NOT_ONE_OF.replace("{field}", field).replace("{allowed}", ", ".join(allowed))
    faults.add(values == "", field, NO_VALUE.format(field=field))
    faults.add(~values.isin(allowed), field, template, values)


def _times(faults: _Faults, values: pd.Series, now: datetime) -> pd.Series:
    """The ``time`` column as UTC timestamps (NaT where it is at fault)."""
    seconds = values.str.fullmatch(r"-?\d+(\.\d+)?")
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")  # microseconds: what the store keeps
    if seconds.any():
        numbers = values[seconds].astype(float)
        numbers = numbers.where(numbers.abs() < 1e11)  # beyond year 5138: not a time anyone consented at
        parsed[seconds] = pd.to_datetime(numbers, unit="s", utc=True, errors="coerce").astype(parsed.dtype)
    if (~seconds).any():
        parsed[~seconds] = pd.to_datetime(values[~seconds], utc=True, errors="coerce", format="ISO8601").astype(parsed.dtype)
    parsed = parsed.dt.floor("us")  # what the store keeps
    faults.add(values == "", "time", NO_VALUE.format(field="time"))
    faults.add(parsed.isna(), "time", BAD_TIME, values)
    faults.add(parsed > pd.Timestamp(now), "time", FUTURE_TIME, values)
    faults.add(parsed < pd.Timestamp(0, tz="UTC"), "time", PRE_EPOCH_TIME, values)
    return parsed


def _purposes(faults: _Faults, purposes: pd.Series, section: ConsentSection | None, pack: str | None) -> None:
    _text(faults, purposes, "purpose", MAX_PURPOSE)
    if section is None:
        return
    listed = ", ".join(sorted(section.purposes)) or "none"
    template = NOT_IN_PACK.replace("{pack}", str(pack)).replace("{listed}", listed)
    faults.add(~purposes.isin(list(section.purposes)), "purpose", template, purposes)


def _bases(faults: _Faults, table: ConsentTable, purposes: pd.Series, section: ConsentSection | None) -> pd.Series:
    given = _column(table, "basis")
    defaults = {name: purpose.lawful_basis for name, purpose in (section.purposes if section else {}).items()}
    bases = given.where(given != "", purposes.map(defaults).astype(object).fillna(""))
    faults.add(bases == "", "basis", NO_BASIS)
    _choice(faults, bases, "basis", LAWFUL_BASES)
    return bases


def _evidence_frame(table: ConsentTable, sources: pd.Series, default_origin: str) -> pd.DataFrame:
    frame = pd.DataFrame({key: _column(table, key) for key in _EVIDENCE_COLUMNS})
    frame["origin"] = frame["origin"].where((frame["origin"] != "") | (sources != "import"), default_origin)
    return frame


def _evidence_of(row: dict[str, str]) -> dict[str, Any]:
    evidence: dict[str, Any] = {key: row[key] for key in _EVIDENCE_COLUMNS if row[key] != ""}
    if "vendor_id" in evidence and evidence["vendor_id"].isdigit():
        evidence["vendor_id"] = int(evidence["vendor_id"])
    return evidence


def _evidence(
    faults: _Faults, ok: np.ndarray, frame: pd.DataFrame, fields: pd.DataFrame, section: ConsentSection | None
) -> list[dict[str, Any] | None]:
    """The evidence to store of each row in ``ok``, checked once per distinct combination of what the rule reads."""
    keyed = pd.concat([fields, frame], axis=1)
    keyed["at"] = keyed["at"].where(keyed["source"] == "tcf", pd.NaT)  # only a TC string is judged at a time
    groups = keyed.groupby(list(keyed.columns), sort=False, dropna=False).ngroup().to_numpy()
    firsts = pd.Series(np.arange(len(keyed))).groupby(groups).first().to_numpy()
    results: list[dict[str, Any] | None] = []
    errors: dict[int, EvidenceError] = {}
    for group, index in enumerate(firsts):
        row = keyed.iloc[int(index)]
        try:
            results.append(
                check_consent_evidence(
                    source=row["source"], status=row["status"], lawful_basis=row["basis"], purpose=row["purpose"],
                    evidence=_evidence_of(row), section=section,
                    now=None if pd.isna(row["at"]) else row["at"].to_pydatetime(),
                )  # fmt: skip
            )
        except EvidenceError as err:
            errors[group] = err
            results.append(None)
    rows = np.flatnonzero(ok)
    for group, err in errors.items():
        mask = np.zeros(len(ok), dtype=bool)
        mask[rows[groups == group]] = True
        faults.add(mask, err.field, str(err))
    return [results[g] for g in groups]


def _raw_ids(
    faults: _Faults, subjects: pd.Series, frame: pd.DataFrame, clear: dict[str, pd.Series], vocabulary: Collection[str]
) -> None:
    """Evidence holding the subject's id (whole, or inside a longer text for ids of six characters or more), and
    the fields kept in clear (``clear``: purpose, jurisdiction) holding it by the rule of ``record_consent`` (a word
    of ``vocabulary``, the pack's purposes, is the pack's)."""
    for field, values in clear.items():
        holds = [holds_raw_id(v, s, vocabulary) for s, v in zip(subjects.tolist(), values.tolist(), strict=True)]
        faults.add(np.asarray(holds, dtype=bool), field, RAW_ID_IN_FIELD.format(field=field))
    for key in _EVIDENCE_COLUMNS:
        holds = [
            bool(v) and (v == s or (len(s) >= 6 and s in v))
            for s, v in zip(subjects.tolist(), frame[key].tolist(), strict=True)
        ]
        faults.add(np.asarray(holds, dtype=bool), "evidence", RAW_ID_IN_EVIDENCE.format(key=key))


def check_consent_rows(
    table: ConsentTable,
    *,
    section: ConsentSection | None = None,
    pack: str | None = None,
    now: datetime | None = None,
) -> CheckedRows:
    """Judge every row of ``table``; see the module docstring. ``pack`` names the pack in messages."""
    now = now or datetime.now(UTC)
    faults = _Faults(table)
    subjects = _column(table, "subject")
    _text(faults, subjects, "subject", MAX_SUBJECT)
    purposes = _column(table, "purpose")
    _purposes(faults, purposes, section, pack)
    statuses = _column(table, "status")
    _choice(faults, statuses, "status", CONSENT_STATUSES)
    bases = _bases(faults, table, purposes, section)
    given_sources = _column(table, "source")
    sources = given_sources.where(given_sources != "", "import")
    _choice(faults, sources, "source", CONSENT_SOURCES)
    jurisdictions = _column(table, "jurisdiction")
    _text(faults, jurisdictions, "jurisdiction", MAX_JURISDICTION, required=False)
    times = _times(faults, _column(table, "time"), now)
    frame = _evidence_frame(table, sources, f"{table.name} (sha256 {table.sha256})")
    _raw_ids(faults, subjects, frame, {"purpose": purposes, "jurisdiction": jurisdictions}, frozenset(section.purposes) if section is not None else frozenset())
    ok = ~faults.bad
    fields = pd.DataFrame({"source": sources, "status": statuses, "basis": bases, "purpose": purposes, "at": times})[ok]
    evidence = _evidence(faults, ok, frame[ok], fields, section) if ok.any() else []
    checked = pd.Series(evidence, index=fields.index, dtype=object)
    ok = ~faults.bad
    valid = pd.DataFrame(
        {
            "subject": subjects,
            "purpose": purposes,
            "status": statuses,
            "lawful_basis": bases,
            "source": sources,
            "jurisdiction": jurisdictions.where(jurisdictions != "", None),
            "recorded_at": times,
            "evidence": checked.reindex(subjects.index),
            "position": table.positions,
        }
    )[ok].reset_index(drop=True)
    broken = [RowProblem(position, table.located_by, fld, reason) for position, fld, reason in table.broken]
    problems = sorted([*faults.problems, *broken], key=lambda p: p.position)
    return CheckedRows(valid=valid, problems=problems, invalid_rows=int(faults.bad.sum()) + len(broken))
