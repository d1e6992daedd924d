"""Audits from logged recommendation slates alone, without the model artifact.

A slate log says what was shown to whom, in which order. That is enough for the
checks that need only outputs: catalog coverage, exposure concentration,
popularity bias and diversity. Accuracy needs held-out truth and a model, so
rules on accuracy metrics are ``skipped`` in a slate audit, with the reason.

Formats: CSV with columns ``user_id,item_id`` and an optional ``rank`` (else the
file order within a user), or JSON lines ``{"user_id": ..., "items": [...]}``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from governance.facts import EvaluationFacts, ModelFacts
from recommender import metrics as M
from recommender.data import Dataset
from recommender.errors import DataError
from recommender.feedback import to_implicit

__all__ = ["load_slates", "slate_facts"]

SUBJECT = "logged"


def load_slates(path: str | Path) -> pd.DataFrame:
    """Read a slate log into ``user_id, item_id, rank`` rows (rank from 1)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a slate log (CSV user_id,item_id[,rank] or JSON lines)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path} line {line}: byte 0x{raw[err.start]:02x} is not UTF-8; a slate log is UTF-8 text") from err
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a slate log")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {number}: not JSON ({err.msg} at column {err.colno})") from err
            if not isinstance(doc, dict) or "user_id" not in doc or not isinstance(doc.get("items"), list):
                raise DataError(f"{path} line {number}: expected an object with 'user_id' and an 'items' list")
            rows.extend((str(doc["user_id"]), str(item), rank) for rank, item in enumerate(doc["items"], start=1))
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    else:
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str)
        except (pd.errors.ParserError, ValueError) as err:
            raise DataError(f"{path}: malformed CSV ({str(err).strip()})") from err
        missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}")
        if "rank" in frame.columns:
            ranks = pd.to_numeric(frame["rank"], errors="coerce")
            if ranks.isna().any() or (ranks < 1).any():
                line = int(np.flatnonzero((ranks.isna() | (ranks < 1)).to_numpy())[0]) + 2
                raise DataError(f"{path} line {line}: rank {frame['rank'].iloc[line - 2]!r} is not a positive integer")
            frame["rank"] = ranks.astype(int)
        else:
            frame["rank"] = frame.groupby("user_id", sort=False).cumcount() + 1
    if frame.empty:
        raise DataError(f"{path}: no slates in the file")
    return frame[["user_id", "item_id", "rank"]]


def slate_facts(slates: pd.DataFrame, dataset: Dataset, head_share: float = 0.8) -> EvaluationFacts:
    """Beyond-accuracy figures of logged slates, popularity taken from ``dataset``."""
    train = to_implicit(dataset.events)
    catalog = pd.Index(train.item_ids.astype(str))
    extra = pd.Index(sorted(set(slates["item_id"].astype(str)) - set(catalog)))
    items = catalog.append(extra)
    popularity = np.concatenate([M.item_popularity(train.matrix), np.zeros(len(extra))])
    ordered = slates.sort_values(["user_id", "rank"], kind="stable")
    users, user_pos = np.unique(ordered["user_id"].astype(str).to_numpy(), return_inverse=True)
    position = ordered.groupby("user_id", sort=False).cumcount().to_numpy()
    k = int(position.max()) + 1
    recommended = np.full((len(users), k), -1, dtype=np.int64)
    recommended[user_pos, position] = items.get_indexer(ordered["item_id"].astype(str))
    beyond = {
        "coverage": M.catalog_coverage(recommended, len(items)),
        "exposure_gini": M.exposure_gini(recommended, len(items)),
        "exposure_gini_weighted": M.exposure_gini(recommended, len(items), position_weighted=True),
        "novelty": float(np.nanmean(M.novelty(recommended, popularity, train.n_users))),
        "average_popularity": float(np.nanmean(M.average_popularity(recommended, popularity))),
        "long_tail_share": float(np.nanmean(M.long_tail_share(recommended, popularity, head_share))),
    }
    if dataset.items is not None and "categories" in dataset.items.columns:
        cats = dataset.items["categories"].reindex(items)
        ild = M.intra_list_diversity(recommended, [None if pd.isna(c) else str(c) for c in cats])
        beyond["intra_list_diversity"] = float(np.nanmean(ild)) if np.isfinite(ild).any() else None
    return EvaluationFacts(k=k, subject=SUBJECT, models={SUBJECT: ModelFacts(beyond={m: (None if v is None or not np.isfinite(v) else float(v)) for m, v in beyond.items()}, n_test_users=len(users))})
