"""Item content as vectors: TF-IDF over text, one-hot category, scaled price and release time.

A content-based model compares items by what they are, not by who used them.
:class:`ItemFeaturizer` is fitted once on an item table (never on interactions:
no user's data is in it) and then turns any item table into unit-length rows of
one sparse matrix, in four weighted blocks:

``text``
    TF-IDF (scikit-learn's ``TfidfVectorizer``: smoothed idf, L2-normalised
    rows) over the text columns joined by spaces;
``category``
    one-hot of the category column (an unseen category gets no bit);
``price``, ``release``
    the price (log1p) and the release time (days), standardised with the
    fitted mean and spread and clipped to +-3.

Each block is L2-normalised and multiplied by its weight, then the whole row
is L2-normalised, so the dot product of two rows is their cosine. An item with
no usable content (empty text, no category, no price, no release) gets a zero
row: models say so rather than pretend.

The vocabulary and scalers are frozen at :meth:`ItemFeaturizer.fit`: new items
are transformed with them (words first seen in a new item carry no weight),
which is what lets a model add items without retraining. Everything is stored as
plain arrays (:meth:`ItemFeaturizer.to_arrays`), never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from recommender.errors import ConfigError, DataError

__all__ = ["MISSING_TEXT_COLUMN", "NO_TEXT", "ItemFeaturizer", "check_item_table"]

MISSING_TEXT_COLUMN = (
    "{where}: the item table has no column {column!r} (a text column the model reads); "
    "its columns are {columns}. Give text_columns that exist, e.g. ('text',)"
)
NO_TEXT = (
    "{where}: every item's text is empty in column(s) {columns} ({n} items); a content model needs "
    "words to compare items by"
)
_CLIP = 3.0
_DAY_NS = 86_400 * 10**9


def check_item_table(items: object, text_columns: Sequence[str], *, where: str) -> pd.DataFrame:
    """``items`` as a table indexed by item id, or a located :class:`DataError`.

    Checks: a DataFrame, every text column present, item ids non-empty and unique.
    """
    if not isinstance(items, pd.DataFrame):
        raise DataError(
            f"{where}: expected the item table as a pandas DataFrame indexed by item_id; got {type(items).__name__}"
        )
    missing = [c for c in text_columns if c not in items.columns]
    if missing:
        raise DataError(
            MISSING_TEXT_COLUMN.format(
                where=where, column=missing[0], columns=", ".join(map(str, items.columns)) or "none"
            )
        )
    ids = pd.Index(items.index.astype(str))
    empty = np.flatnonzero(items.index.isna() | (ids.str.strip() == ""))
    if len(empty):
        raise DataError(f"{where}: row {int(empty[0])} of the item table has an empty item id; every item needs one")
    again = np.flatnonzero(ids.duplicated())
    if len(again):
        raise DataError(
            f"{where}: item id {ids[again[0]]!r} appears twice in the item table (row {int(again[0])}); one row per item"
        )
    return items


def _joined_text(items: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    parts = [items[c].astype("string").fillna("").to_numpy(dtype=object) for c in columns]
    out = parts[0].astype(str)
    for more in parts[1:]:
        out = np.char.add(np.char.add(out, " "), more.astype(str))
    return np.char.strip(out.astype(str))


def _unit_rows(block: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ block)


@dataclass
class ItemFeaturizer:
    """Fitted content transform (see the module docstring).

    Build it with :meth:`fit`; transform tables with :meth:`transform`.
    """

    text_columns: tuple[str, ...]
    category_column: str | None
    price_column: str | None
    release_column: str | None
    weights: dict[str, float]
    vocabulary: np.ndarray  # (n_terms,) str, in column order
    idf: np.ndarray  # (n_terms,) float64
    categories: np.ndarray  # (n_categories,) str
    price_stats: np.ndarray  # (mean, std) of log1p(price)
    release_stats: np.ndarray  # (mean, std) of release days since the epoch

    # -- building --------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        items: pd.DataFrame,
        *,
        text_columns: Sequence[str] = ("text",),
        category_column: str | None = "category",
        price_column: str | None = "price",
        release_column: str | None = "release_time",
        weights: Mapping[str, float] | None = None,
        min_df: int = 1,
        max_features: int | None = None,
        where: str = "item features",
    ) -> ItemFeaturizer:
        """Learn the vocabulary, idf and scalers from ``items`` (the catalog, not interactions).

        Optional columns (category, price, release) that the table lacks are left
        out; the text columns are required.

        Raises
        ------
        DataError
            When a text column is missing, ids are empty or repeated, or every text is empty.
        ConfigError
            When a weight is negative or unknown.
        """
        text_columns = tuple(text_columns)
        if not text_columns:
            raise ConfigError(f"{where}: text_columns must name at least one column of the item table; got none")
        items = check_item_table(items, text_columns, where=where)
        w = {"text": 1.0, "category": 0.5, "price": 0.25, "release": 0.25}
        unknown = sorted(set(weights or {}) - set(w))
        if unknown:
            raise ConfigError(f"{where}: unknown feature block(s) {unknown} in weights; the blocks are {sorted(w)}")
        w.update(weights or {})
        bad = {k: v for k, v in w.items() if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0)}
        if bad:
            raise ConfigError(f"{where}: feature weights must be finite numbers >= 0; got {bad}")
        text = _joined_text(items, text_columns)
        if not (np.char.str_len(text) > 0).any():
            raise DataError(NO_TEXT.format(where=where, columns=list(text_columns), n=len(items)))
        vectorizer = TfidfVectorizer(min_df=min_df, max_features=max_features, token_pattern=r"(?u)\b[\w-]{2,}\b")
        try:
            vectorizer.fit(text)
        except ValueError as err:  # e.g. only stop words / one-letter tokens
            raise DataError(f"{where}: no usable words in column(s) {list(text_columns)}: {err}") from err
        vocab = np.asarray(vectorizer.get_feature_names_out(), dtype=str)
        category_column = category_column if category_column in items.columns else None
        price_column = price_column if price_column in items.columns else None
        release_column = release_column if release_column in items.columns else None
        categories = np.zeros(0, dtype=str)
        if category_column is not None:
            values = items[category_column].astype("string").dropna()
            categories = np.asarray(sorted(set(values[values.str.strip() != ""].tolist())), dtype=str)
        return cls(
            text_columns=text_columns,
            category_column=category_column,
            price_column=price_column,
            release_column=release_column,
            weights={k: float(v) for k, v in w.items()},
            vocabulary=vocab,
            idf=np.asarray(vectorizer.idf_, dtype=np.float64),
            categories=categories,
            price_stats=_stats(_prices(items, price_column)),
            release_stats=_stats(_release_days(items, release_column)),
        )

    # -- using -----------------------------------------------------------------
    def tfidf(self, items: pd.DataFrame) -> sp.csr_matrix:
        """The L2-normalised TF-IDF rows of ``items``' text, with the fitted vocabulary and idf."""
        text = _joined_text(items, self.text_columns)
        vectorizer = TfidfVectorizer(
            vocabulary={t: i for i, t in enumerate(self.vocabulary.tolist())}, token_pattern=r"(?u)\b[\w-]{2,}\b"
        )
        vectorizer.fit(np.array(["x"]))  # sets the vocabulary; the idf is ours
        vectorizer.idf_ = self.idf
        return sp.csr_matrix(vectorizer.transform(text), dtype=np.float64)

    def transform(self, items: pd.DataFrame, *, where: str = "item features") -> sp.csr_matrix:
        """Unit-length content rows of ``items`` (zero rows where an item has no content)."""
        items = check_item_table(items, self.text_columns, where=where)
        blocks = {"text": self.tfidf(items)}
        n = len(items)
        if self.category_column is not None and len(self.categories):
            # An optional column the table lacks is missing content for its items, not an error.
            column = (
                items[self.category_column]
                if self.category_column in items.columns
                else pd.Series(pd.NA, index=items.index)
            )
            values = column.astype("string").fillna("").to_numpy(dtype=object).astype(str)
            pos = np.minimum(np.searchsorted(self.categories, values), len(self.categories) - 1)
            hit = self.categories[pos] == values
            blocks["category"] = sp.csr_matrix(
                (np.ones(int(hit.sum())), (np.flatnonzero(hit), pos[hit])), shape=(n, len(self.categories))
            )
        for name, column in (("price", self.price_column), ("release", self.release_column)):
            if column is None:
                continue
            if column not in items.columns:
                blocks[name] = sp.csr_matrix((n, 1))
                continue
            stats = self.price_stats if name == "price" else self.release_stats
            raw = _prices(items, column) if name == "price" else _release_days(items, column)
            z = np.clip((raw - stats[0]) / stats[1], -_CLIP, _CLIP) / _CLIP
            blocks[name] = sp.csr_matrix(np.where(np.isfinite(z), z, 0.0)[:, None])
        # Text and category unit-length, the scalars in [-1, 1]; each weighted, then the whole row
        # unit-length: the dot product of two rows is their cosine.
        parts = [
            self.weights[name] * (_unit_rows(sp.csr_matrix(block)) if name in ("text", "category") else block)
            for name, block in blocks.items()
        ]
        out = _unit_rows(sp.hstack(parts, format="csr"))
        out.eliminate_zeros()
        return out

    def _block_names(self) -> list[str]:
        names = ["text"]
        if self.category_column is not None and len(self.categories):
            names.append("category")
        if self.price_column is not None:
            names.append("price")
        if self.release_column is not None:
            names.append("release")
        return names

    @property
    def width(self) -> int:
        """Columns of a transformed row (text terms, categories, price, release)."""
        return (
            len(self._block_names())
            - 1
            - (1 if "category" in self._block_names() else 0)
            + len(self.vocabulary)
            + (len(self.categories) if "category" in self._block_names() else 0)
        )

    @property
    def n_text_terms(self) -> int:
        """Columns of the text block (the first columns of every row)."""
        return len(self.vocabulary)

    # -- storage ---------------------------------------------------------------
    def to_arrays(self, prefix: str = "features_") -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (strings, floats): ``np.savez`` without pickle."""
        import json

        meta = {
            "text_columns": list(self.text_columns),
            "category_column": self.category_column,
            "price_column": self.price_column,
            "release_column": self.release_column,
            "weights": self.weights,
        }
        return {
            f"{prefix}meta": np.array(json.dumps(meta, sort_keys=True)),
            f"{prefix}vocabulary": self.vocabulary.astype(str),
            f"{prefix}idf": self.idf,
            f"{prefix}categories": self.categories.astype(str),
            f"{prefix}price_stats": self.price_stats,
            f"{prefix}release_stats": self.release_stats,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "features_") -> ItemFeaturizer:
        """Rebuild what :meth:`to_arrays` wrote."""
        import json

        meta: dict[str, Any] = json.loads(str(arrays[f"{prefix}meta"]))
        return cls(
            text_columns=tuple(meta["text_columns"]),
            category_column=meta["category_column"],
            price_column=meta["price_column"],
            release_column=meta["release_column"],
            weights={k: float(v) for k, v in meta["weights"].items()},
            vocabulary=np.asarray(arrays[f"{prefix}vocabulary"], dtype=str),
            idf=np.asarray(arrays[f"{prefix}idf"], dtype=np.float64),
            categories=np.asarray(arrays[f"{prefix}categories"], dtype=str),
            price_stats=np.asarray(arrays[f"{prefix}price_stats"], dtype=np.float64),
            release_stats=np.asarray(arrays[f"{prefix}release_stats"], dtype=np.float64),
        )


def _prices(items: pd.DataFrame, column: str | None) -> np.ndarray:
    if column is None:
        return np.zeros(0)
    values = pd.to_numeric(items[column], errors="coerce").to_numpy(dtype=np.float64)
    return np.log1p(np.where(values >= 0, values, np.nan))


def _release_days(items: pd.DataFrame, column: str | None) -> np.ndarray:
    if column is None:
        return np.zeros(0)
    stamps = pd.to_datetime(items[column], utc=True, errors="coerce")
    ns = stamps.astype("int64").to_numpy(dtype=np.float64)
    return np.where(stamps.isna().to_numpy(), np.nan, ns / _DAY_NS)


def _stats(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.array([0.0, 1.0])
    std = float(finite.std())
    return np.array([float(finite.mean()), std if std > 0 else 1.0])
