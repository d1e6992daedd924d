"""What validation reports: one :class:`Finding` per problem, and the :class:`ValidationReport` of a table.

The report keeps, beside the findings, a boolean mask of the rows behind each
finding code, so that a caller can drop them (:meth:`ValidationReport.clean`)
or refuse the data; :mod:`recommender.validate` runs the checks that fill it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = ["CODES", "UNKNOWN_CODES", "WRONG_LENGTH", "Finding", "ValidationReport"]

CODES: tuple[str, ...] = (
    "missing_user_id",
    "missing_item_id",
    "missing_timestamp",
    "unknown_event_type",
    "unknown_user",
    "unknown_item",
    "duplicate_events",
    "value_out_of_range",
    "future_timestamp",
    "pre_epoch_timestamp",
    "bot_users",
)
"""Every finding code, in report order. Codes are stable and never reused."""

WRONG_LENGTH = "this report is for {expected} rows; the events given have {got}. Validate these events first."
UNKNOWN_CODES = "unknown finding code(s) {codes}; the codes are {known}"


@dataclass(frozen=True)
class Finding:
    """One kind of problem in an events table.

    Attributes
    ----------
    code:
        Stable snake_case code (one of :data:`CODES`).
    count:
        Number of rows concerned.
    share:
        ``count`` divided by the number of rows.
    message:
        One plain sentence saying what is wrong.
    examples:
        A few flagged rows: their 0-based row number and the values that matter
        (never a user id).
    details:
        Extra numbers, such as the number of bot users or a breakdown by reason.
    """

    code: str
    count: int
    share: float
    message: str
    examples: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "count": self.count,
            "share": self.share,
            "message": self.message,
            "examples": [dict(e) for e in self.examples],
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate_events`.

    Attributes
    ----------
    n_rows:
        Rows validated.
    findings:
        One :class:`Finding` per code with at least one row, in :data:`CODES` order.
    row_flags:
        For each code of :data:`CODES` that ran, a boolean array of length
        ``n_rows``: True where the row has that problem.
    now:
        The time timestamps were compared with.
    skipped:
        Checks that could not run, with the reason (say, no users table).
    parameters:
        The thresholds used.
    """

    n_rows: int
    findings: list[Finding]
    row_flags: dict[str, np.ndarray]
    now: datetime
    skipped: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check found anything (skipped checks aside)."""
        return not self.findings

    @property
    def codes(self) -> list[str]:
        """The codes of the findings, in report order."""
        return [f.code for f in self.findings]

    def finding(self, code: str) -> Finding | None:
        """The finding with ``code``, or None when that check found nothing."""
        return next((f for f in self.findings if f.code == code), None)

    def count(self, code: str) -> int:
        """Rows flagged with ``code`` (0 when none)."""
        found = self.finding(code)
        return found.count if found else 0

    def flagged(self, codes: Iterable[str] | None = None) -> np.ndarray:
        """Boolean mask of the rows flagged by any of ``codes`` (all codes by default)."""
        selected = self._check_codes(codes)
        mask = np.zeros(self.n_rows, dtype=bool)
        for code in selected:
            if code in self.row_flags:
                mask |= self.row_flags[code]
        return mask

    def clean(self, events: pd.DataFrame, codes: Iterable[str] | None = None) -> pd.DataFrame:
        """``events`` without the rows flagged by ``codes`` (all codes by default).

        ``events`` must be the table that was validated (same rows, same order).

        Raises
        ------
        DataError
            When ``events`` does not have the number of rows the report is for.
        ConfigError
            When a code is unknown.
        """
        if isinstance(events, Dataset):
            events = events.events
        if len(events) != self.n_rows:
            raise DataError(WRONG_LENGTH.format(expected=self.n_rows, got=len(events)))
        return events.iloc[np.flatnonzero(~self.flagged(codes))]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the row masks are summarized as a count)."""
        return {
            "n_rows": self.n_rows,
            "ok": self.ok,
            "n_flagged_rows": int(self.flagged().sum()),
            "now": self.now.isoformat(),
            "findings": [f.to_dict() for f in self.findings],
            "skipped": dict(self.skipped),
            "parameters": dict(self.parameters),
        }

    def summary_table(self) -> list[dict[str, str]]:
        """One row per finding, as strings, for a command-line table.

        Keys: ``code``, ``rows``, ``share`` (a percentage) and ``message``.
        """
        return [
            {"code": f.code, "rows": f"{f.count:,}", "share": f"{100 * f.share:.2f}%", "message": f.message}
            for f in self.findings
        ]

    def _check_codes(self, codes: Iterable[str] | None) -> list[str]:
        if codes is None:
            return list(CODES)
        selected = [codes] if isinstance(codes, str) else list(codes)
        unknown = sorted(set(selected) - set(CODES))
        if unknown:
            raise ConfigError(UNKNOWN_CODES.format(codes=", ".join(unknown), known=", ".join(CODES)))
        return selected
