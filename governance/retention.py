"""Purge a stored event log: events older than the pack's window, and the events of erased subjects.

Training already leaves both out (:func:`governance.privacy.filter_training_events`);
purging removes them from the log itself, writes the log back in its own format
and puts a ``data.purged`` event on the trail (counts and content hashes only).
The file is replaced atomically: a crash leaves either the old or the new log.

An erased subject is known only by their suppression entry (a keyed hash of
the raw id, see :mod:`audits.suppression`), which outlives the crypto-shredding
of their pseudonym: the log's user ids are hashed the same way and every event
of an erased subject up to the erasure is dropped (GDPR Art. 17: the
interactions themselves are deleted, not only kept away from models).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from audits.private_files import replace_keeping_mode, reserve_replacement
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.loaders import ColumnMapping, is_movielens_dir, load_event_log, load_movielens_100k

__all__ = ["purge_expired"]


def _cutoff(pack: Any, now: datetime | None, erased: bool) -> datetime | None:
    days = pack.minimization.retention_days
    if days is None:
        if erased:
            return None  # only the erased subjects' events go
        raise ConfigError(f"pack {pack.metadata.name!r} sets no retention window (minimization.retention_days); nothing to purge")
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment - timedelta(days=days)


def _erased_rows(store: Any, users: pd.Series, times: pd.Series) -> tuple[pd.Series, int]:
    """True for each event of an erased subject at or before their erasure; and how many such subjects."""
    from audits.suppression import suppressions_for

    users = users.astype(str)
    with store.session() as session:
        found = suppressions_for(session, users.unique().tolist())
    if not found:
        return pd.Series(False, index=users.index), 0
    erased_at = pd.to_datetime(users.map({subject: entry.erased_at for subject, entry in found.items()}), utc=True)
    hit = erased_at.notna() & (pd.to_datetime(times, utc=True) <= erased_at)
    return hit.fillna(False).astype(bool), len(found)


def purge_expired(
    source: str | Path, pack: Any, store: Any, *, mapping: ColumnMapping | None = None, now: datetime | None = None,
    dry_run: bool = False, actor: str | None = None, erased: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Remove events older than the retention window, and (``erased``) every event of an erased subject
    up to their erasure, from the log at ``source`` (CSV, Parquet or a MovieLens directory)."""
    from audits import append_event

    path = Path(source)
    cutoff = _cutoff(pack, now, erased)
    if path.is_dir() and is_movielens_dir(path):
        target = path / "u.data"
        raw = pd.read_csv(target, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
        seconds = pd.to_numeric(raw["timestamp"], errors="coerce")
        old = (seconds < cutoff.timestamp()) if cutoff is not None else pd.Series(False, index=raw.index)
        times = pd.to_datetime(seconds, unit="s", utc=True)
        gone, n_erased = _erased_rows(store, raw["user"], times) if erased else (pd.Series(False, index=raw.index), 0)
        keep = (~old & ~gone).to_numpy()
        before = load_movielens_100k(path).content_hash()

        def write(tmp: Path) -> None:
            raw[keep].to_csv(tmp, sep="\t", header=False, index=False)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt", ".parquet"):
        target = path
        mapping = mapping or ColumnMapping()
        dataset: Dataset = load_event_log(path, mapping)
        before = dataset.content_hash()
        events = dataset.events
        old = (events["timestamp"] < pd.Timestamp(cutoff)) if cutoff is not None else pd.Series(False, index=events.index)
        gone, n_erased = _erased_rows(store, events["user_id"], events["timestamp"]) if erased else (pd.Series(False, index=events.index), 0)
        keep = (~old.fillna(False) & ~gone).to_numpy()
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)

            def write(tmp: Path) -> None:
                table[keep].to_parquet(tmp, index=False)
        else:
            table = pd.read_csv(path, sep=mapping.delimiter, dtype=str, keep_default_na=False)

            def write(tmp: Path) -> None:
                table[keep].to_csv(tmp, sep=mapping.delimiter, index=False)
    else:
        raise DataError(f"{path}: purge works on a CSV/Parquet event log or a MovieLens-100K directory")
    n_total, n_kept = int(len(keep)), int(keep.sum())
    n_old, n_gone = int(old.fillna(False).sum()), int(gone.sum())
    report: dict[str, Any] = {
        "source": str(path),
        "pack": pack.metadata.name,
        "pack_version": pack.metadata.version,
        "retention_days": pack.minimization.retention_days,
        "cutoff": cutoff.isoformat() if cutoff is not None else None,
        "events_total": n_total,
        "events_purged": n_total - n_kept,
        "events_past_retention": n_old,
        "events_of_erased_subjects": n_gone,
        "erased_subjects_found": n_erased,
        "events_kept": n_kept,
        "dry_run": dry_run,
        "dataset_before": before,
    }
    if dry_run or n_kept == n_total:
        return report
    tmp = reserve_replacement(target)  # the log's own permission bits, never the umask's
    try:
        write(tmp)
        with store.session() as session:  # the record first: a purge without its trail event never lands
            event = append_event(session, actor=actor or "recgov", action="data.purged", objects={"dataset": before}, payload=report)
            replace_keeping_mode(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    report["trail_seq"] = event.seq
    return report
