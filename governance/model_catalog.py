"""The item table a recorded model version is served with: its dataset's, read from where the dataset came from.

The API's engines (:mod:`governance.api.services.engines`) and ``recgov online-store warm``
(:mod:`governance.online_warm`) read it the same way, so a list cached by one is made over the same item
metadata (provider groups, categories, flags) as the other's (:mod:`governance.online_store` keys lists by it).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, select

from audits.models import DatasetVersion, ModelVersion
from recommender.loaders import load_data

__all__ = ["MAX_DERIVATIONS", "dataset_sources", "read_catalog"]

_DATASET_OF = (
    select(DatasetVersion.source, DatasetVersion.data_schema)
    .join(ModelVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
    .where(ModelVersion.version_id == bindparam("version"))
)
_DATASET_BY_HASH = select(DatasetVersion.source, DatasetVersion.data_schema).where(DatasetVersion.content_hash == bindparam("hash"))
MAX_DERIVATIONS = 8
"""Unlearned datasets followed back to the one a catalog can be read from (each erasure adds one)."""


def dataset_sources(read: Connection, model_version: str) -> list[str]:
    """Where the dataset of ``model_version`` came from: its recorded source, then (an unlearned model's
    dataset is a matrix derived from another) the sources of the datasets it derives from."""
    sources: list[str] = []
    seen: set[str] = set()
    row = read.execute(_DATASET_OF, {"version": model_version}).one_or_none()
    for _ in range(MAX_DERIVATIONS):
        if row is None:
            break
        source, schema = row
        if source and source not in sources:
            sources.append(source)
        parent = schema.get("derived_from") if isinstance(schema, dict) else None
        if not isinstance(parent, str) or parent in seen:
            break
        seen.add(parent)
        row = read.execute(_DATASET_BY_HASH, {"hash": parent}).one_or_none()
    return sources


def read_catalog(model: Any, sources: list[str]) -> tuple[pd.DataFrame | None, list[str]]:
    """The item table of the first of ``sources`` that loads and names every item of ``model`` (None: none does),
    and what was wrong with the others (for the caller's warning)."""
    problems: list[str] = []
    needed = pd.Index(model.train_.item_ids.astype(str))
    for source in sources:
        try:
            table = load_data(source).items
        except Exception as err:  # noqa: BLE001 - a catalog that cannot be read degrades to no metadata, loudly
            problems.append(f"{source[:200]!r}: {type(err).__name__}: {str(err)[:200]}")
            continue
        missing = needed.difference(table.index.astype(str))
        if len(missing):
            problems.append(f"{source[:200]!r}: {len(missing)} of the model's {len(needed)} items are not in its item table")
            continue
        return table, problems
    return None, problems
