"""A consent export to match a data set: what a consent platform would hand over for its users.

The synthetic generator (:mod:`recommender.synthetic`) makes interactions, not
consent; without consent records a pack with an opt-in purpose trains on no
one. :func:`synthetic_consent_export` writes, for every user of a data set, the
history a consent banner would have left, as a table
:func:`governance.consent.imports.import_consent` reads without a mapping:

* every user answers the banner before their first event: a grant of each
  opt-in purpose, except a share ``refusals`` who refuse (``denied``);
* a share ``withdrawals`` of those who granted withdraw later, at a time
  between their grant and the data set's last event;
* a share ``gpc`` of all users send the Global Privacy Control signal, an
  ``opted_out`` record (source ``gpc``) of each opt-out purpose.

Banner records carry ``banner_version`` as their evidence. Everything is drawn
from one seeded generator on whole columns, so the same data set and seed give
the same export, and a million users take seconds. After importing it, a pack
whose training purpose is opt-in trains on exactly the users who granted and
did not withdraw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = ["BANNER_VERSION", "EXPORT_COLUMNS", "synthetic_consent_export", "write_consent_export"]

BANNER_VERSION = "synthetic-banner-v1"
"""The evidence of the synthetic banner records."""
EXPORT_COLUMNS = ("subject", "purpose", "status", "time", "source", "banner_version")
BAD_SHARE = "--{name} must be a share from 0 to 1; got {value!r}"
NO_USERS = "the data set has no users with an id; nothing to export consent for"
_HOUR = np.int64(3_600_000_000_000)  # nanoseconds


def _share(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(BAD_SHARE.format(name=name, value=value))
    return float(value)


def _rows(subjects: np.ndarray, purpose: str, status: np.ndarray | str, times: np.ndarray, source: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": subjects,
            "purpose": purpose,
            "status": status,
            "time": pd.to_datetime(times, utc=True),
            "source": source,
            "banner_version": BANNER_VERSION if source == "banner" else "",
        }
    )


def synthetic_consent_export(
    dataset: Dataset,
    *,
    refusals: float = 0.1,
    withdrawals: float = 0.05,
    gpc: float = 0.02,
    opt_in_purposes: Sequence[str] = ("personalization",),
    opt_out_purposes: Sequence[str] = ("analytics",),
    random_state: int = 0,
) -> pd.DataFrame:
    """The consent history of every user of ``dataset`` (columns :data:`EXPORT_COLUMNS`), ordered by time.

    ``refusals`` and ``gpc`` are shares of all users, ``withdrawals`` a share of
    those who granted; see the module docstring.
    """
    refusals, withdrawals, gpc = _share(refusals, "refusals"), _share(withdrawals, "withdrawals"), _share(gpc, "gpc")
    events = dataset.events[dataset.events["user_id"].notna()]
    if events.empty:
        raise DataError(NO_USERS)
    first = events.groupby("user_id", observed=True)["timestamp"].min()
    subjects = first.index.astype(str).to_numpy(dtype=object)
    starts = first.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    end = np.int64(events["timestamp"].max().value)
    rng = np.random.default_rng(random_state)
    n = len(subjects)
    answered = starts - rng.integers(1, 24 * 30, size=n) * _HOUR  # the banner, up to a month before the first event
    refused = rng.random(n) < refusals
    withdrew = ~refused & (rng.random(n) < withdrawals)
    sends_gpc = rng.random(n) < gpc
    withdrawn_at = answered + (rng.random(n) * (end - answered)).astype(np.int64) + 1
    frames = []
    for purpose in opt_in_purposes:
        frames.append(_rows(subjects, purpose, np.where(refused, "denied", "granted"), answered, "banner"))
        frames.append(_rows(subjects[withdrew], purpose, "withdrawn", withdrawn_at[withdrew], "banner"))
    for purpose in opt_out_purposes:
        frames.append(_rows(subjects[sends_gpc], purpose, "opted_out", answered[sends_gpc], "gpc"))
    export = pd.concat(frames, ignore_index=True)
    return export.sort_values(["time", "subject", "purpose"], kind="stable", ignore_index=True)[list(EXPORT_COLUMNS)]


def write_consent_export(export: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``export`` as CSV, JSON Lines or Parquet (``fmt``, default from the suffix); times in ISO 8601 UTC."""
    from governance.consent.import_table import format_of

    target = Path(path)
    kind = format_of(str(target), fmt)
    plain = export.assign(time=export["time"].map(lambda t: t.isoformat()))
    if kind == "parquet":
        plain.to_parquet(target, index=False)
    elif kind == "jsonl":
        plain.to_json(target, orient="records", lines=True, force_ascii=False)
    else:
        plain.to_csv(target, index=False)
    return target
