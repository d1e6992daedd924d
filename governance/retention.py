"""Retention: purge events older than the pack's window from a stored event log.

Training already leaves such events out (:func:`governance.privacy.filter_training_events`);
purging removes them from the log itself, writes the log back in its own format
and puts a ``data.purged`` event on the trail (counts and content hashes only).
The file is replaced atomically: a crash leaves either the old or the new log.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.loaders import ColumnMapping, is_movielens_dir, load_event_log, load_movielens_100k

__all__ = ["purge_expired"]


def _cutoff(pack: Any, now: datetime | None) -> datetime:
    days = pack.minimization.retention_days
    if days is None:
        raise ConfigError(f"pack {pack.metadata.name!r} sets no retention window (minimization.retention_days); nothing to purge")
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment - timedelta(days=days)


def purge_expired(
    source: str | Path, pack: Any, store: Any, *, mapping: ColumnMapping | None = None, now: datetime | None = None,
    dry_run: bool = False, actor: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Remove events older than the retention window from the log at ``source`` (CSV, Parquet or a MovieLens directory)."""
    from audits import append_event

    path = Path(source)
    cutoff = _cutoff(pack, now)
    if path.is_dir() and is_movielens_dir(path):
        target = path / "u.data"
        raw = pd.read_csv(target, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
        seconds = pd.to_numeric(raw["timestamp"], errors="coerce")
        keep = (seconds >= cutoff.timestamp()).to_numpy()
        before = load_movielens_100k(path).content_hash()

        def write(tmp: Path) -> None:
            raw[keep].to_csv(tmp, sep="\t", header=False, index=False)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt", ".parquet"):
        target = path
        mapping = mapping or ColumnMapping()
        dataset: Dataset = load_event_log(path, mapping)
        before = dataset.content_hash()
        keep = (dataset.events["timestamp"] >= pd.Timestamp(cutoff)).to_numpy()
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
    report: dict[str, Any] = {
        "source": str(path),
        "pack": pack.metadata.name,
        "pack_version": pack.metadata.version,
        "retention_days": pack.minimization.retention_days,
        "cutoff": cutoff.isoformat(),
        "events_total": n_total,
        "events_purged": n_total - n_kept,
        "events_kept": n_kept,
        "dry_run": dry_run,
        "dataset_before": before,
    }
    if dry_run or n_kept == n_total:
        return report
    tmp = target.with_name(f".{target.name}.{os.getpid()}.purge")
    try:
        write(tmp)
        with store.session() as session:  # the record first: a purge without its trail event never lands
            event = append_event(session, actor=actor or "recgov", action="data.purged", objects={"dataset": before}, payload=report)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    report["trail_seq"] = event.seq
    return report
