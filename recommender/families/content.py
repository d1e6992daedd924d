"""Content-based recommendation: items liked for what they are, compared by TF-IDF (family ``content_tfidf``).

Every item is a unit-length content vector (:class:`recommender.item_features.ItemFeaturizer`:
TF-IDF over its text, one-hot category, scaled price and release time). A
user's profile is the confidence-weighted sum of the vectors of the items in
their history, and an item's score is the cosine of the profile and the item:

    s(u, i) = sum_j w_uj <x_j, x_i> / ||sum_j w_uj x_j||

so the score decomposes exactly over the history items j, and the tags say
which liked item an item shares its themes with, naming the TF-IDF terms they
share. Items are never learned from interactions: the vectors come from the
catalog alone, and a user's profile from that user's rows alone, which is why
erasure is exact (drop the rows) and why new items can be added at any time
(:meth:`ContentRecommender.add_items`) and recommended at once, without
retraining. An item with no content (no text, category, price or release) gets
score 0 and is ranked by popularity among such items; its tag says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.base import top_k_from_scores
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.family import (
    ErasureKind,
    Family,
    ForgetOutcome,
    GovernedModel,
    ModelTag,
    open_model_file,
    read_model_file,
    register_family,
    subject_rows,
    train_arrays,
    csr_from_arrays,
    train_from_arrays,
)
from recommender.item_features import ItemFeaturizer, check_item_table

__all__ = ["KNOWN_ITEMS", "UNKNOWN_ITEMS", "ContentModel", "ContentRecommender", "block_users", "explain_start"]

FORMAT = "recgov.content.v1"
UNKNOWN_ITEMS = "{where}: {n} item id(s) are not in the model, e.g. {example}; the model knows {n_items} items"
KNOWN_ITEMS = (
    "add_items: {n} item id(s) are already in the model, e.g. {example}; add_items takes new items only "
    "(refit to change an item's content)"
)
_TIEBREAK = 1e-6  # popularity breaks ties in the ranking only; reported scores are the cosines
_BLOCK_CELLS = 4_000_000  # users x items scored per dense block (32 MB of float64), whatever the catalog size


def block_users(n_items: int, cap: int = 1024) -> int:
    """Users per dense scoring block: at most ``cap``, and at most :data:`_BLOCK_CELLS` cells."""
    return max(1, min(cap, _BLOCK_CELLS // max(n_items, 1)))


_TOP_TERMS = 3


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _csr_bytes(m: sp.csr_matrix) -> bytes:
    m = sp.csr_matrix(m)
    m.sort_indices()
    return b"".join(
        np.ascontiguousarray(a, dtype=d).tobytes()
        for a, d in ((m.shape, "<i8"), (m.indptr, "<i8"), (m.indices, "<i4"), (m.data, "<f8"))
    )


class ContentModel(GovernedModel):
    """What content families share: item vectors, profiles from a user's own rows, cosine scores.

    Subclasses say how an item table becomes unit-length vectors
    (:meth:`_fit_vectors`, :meth:`_vectors`) and how a match is worded (:meth:`_match_tag`).
    """

    family: ClassVar[str] = "content"
    erasure: ClassVar[ErasureKind] = ErasureKind.exact

    item_vectors_: sp.csr_matrix
    has_content_: np.ndarray
    titles_: np.ndarray

    text_columns: tuple[str, ...]

    # -- to implement ----------------------------------------------------------
    def _fit_vectors(self, items: pd.DataFrame) -> None:
        """Learn the transform from the catalog (never from interactions)."""
        raise NotImplementedError

    def _vectors(self, items: pd.DataFrame, *, where: str) -> sp.csr_matrix:
        """Unit-length rows (or zero rows) for ``items``, with the fitted transform."""
        raise NotImplementedError

    def _match_tag(self, item: int, liked: int, share: float, evidence: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The sentence for "item is here because of liked", and more evidence."""
        raise NotImplementedError

    # -- fitting -----------------------------------------------------------------
    def fit(
        self, train: InteractionMatrix, *, show_progress: bool = False, items: pd.DataFrame | None = None
    ) -> ContentModel:
        """Learn from ``train`` and the item table ``items`` (indexed by item id).

        The model's items are the training items and every item of the table
        (items in the table without interactions can be recommended at once).
        Without a table no item has content: every list is the popularity
        ranking and every tag says so.
        """
        self._items_in = items
        self._grown: InteractionMatrix | None = None
        try:
            super().fit(train, show_progress=show_progress)
        finally:
            self._items_in = None
        if self._grown is not None:  # the catalog's items without interactions are columns too
            self.train_, self._grown = self._grown, None
        return self

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._validate_params()
        items = getattr(self, "_items_in", None)
        item_ids = np.asarray(train.item_ids, dtype=object).astype(str)
        if items is None:
            self.featurizer_ready_ = False
            vectors = sp.csr_matrix((len(item_ids), 1), dtype=np.float64)
            titles = np.asarray(item_ids, dtype=str)
        else:
            items = check_item_table(items, self.text_columns, where=f"{self.family}.fit")
            table_ids = items.index.astype(str)
            extra = table_ids[~table_ids.isin(item_ids)].sort_values()  # by id: a fit without a subject lays them out alike
            if len(extra):
                item_ids = np.concatenate([item_ids, np.asarray(extra, dtype=str)])
                n_new = len(extra)
                matrix = sp.hstack(
                    [train.matrix, sp.csr_matrix((train.n_users, n_new), dtype=train.matrix.dtype)], format="csr"
                )
                train = InteractionMatrix(matrix=matrix, user_ids=train.user_ids, item_ids=item_ids.astype(object))
                self.popularity_ = np.concatenate([self.popularity_, np.zeros(n_new)])
            self._fit_vectors(items)
            self.featurizer_ready_ = True
            aligned = items.reindex(pd.Index(item_ids))
            vectors = self._aligned_vectors(
                aligned, present=np.asarray(pd.Index(item_ids).isin(table_ids)), where=f"{self.family}.fit"
            )
            titles = _titles(aligned, item_ids)
        self.item_vectors_ = sp.csr_matrix(vectors, dtype=np.float64)
        self.has_content_ = np.asarray(self.item_vectors_.getnnz(axis=1) > 0)
        self.titles_ = titles
        self._grown = train
        self.data_hash_ = train.content_hash()
        self._stamp()

    def _aligned_vectors(self, aligned: pd.DataFrame, *, present: np.ndarray, where: str) -> sp.csr_matrix:
        vectors = sp.csr_matrix((len(aligned), self._width()), dtype=np.float64)
        if present.any():
            part = self._vectors(aligned.loc[present], where=where)
            rows = np.flatnonzero(present)
            coo = part.tocoo()
            vectors = sp.csr_matrix((coo.data, (rows[coo.row], coo.col)), shape=(len(aligned), part.shape[1]))
        return vectors

    def _width(self) -> int:
        raise NotImplementedError

    def _validate_params(self) -> None:
        if (
            isinstance(self.text_columns, str)
            or not all(isinstance(c, str) for c in self.text_columns)
            or not self.text_columns
        ):
            raise ConfigError(
                f"The 'text_columns' parameter of {type(self).__name__} must be a non-empty sequence of column names. "
                f"Got {self.text_columns!r} instead."
            )

    # -- new items -----------------------------------------------------------------
    def add_items(self, items: pd.DataFrame) -> ContentModel:
        """Add new items from an item table; they are recommended at once, nothing is retrained.

        Their vectors use the transform fitted on the catalog (words first seen
        here carry no weight). Returns ``self``.

        Raises
        ------
        DataError
            When the table is broken (missing text column, empty or repeated ids)
            or names an item the model already has; nothing is changed then.
        """
        self.check_fitted("add_items")
        if not self.featurizer_ready_:
            raise ConfigError(
                f"add_items: this {self.family} model was fitted without an item table; refit with fit(train, items=...)"
            )
        items = check_item_table(items, self.text_columns, where="add_items")
        ids = np.asarray(items.index.astype(str), dtype=str)
        known = self.train_.item_index(ids) >= 0
        if known.any():
            raise DataError(KNOWN_ITEMS.format(n=int(known.sum()), example=repr(str(ids[known][0]))))
        if len(ids) == 0:
            return self
        vectors = self._vectors(items, where="add_items")
        train = self.train_
        matrix = sp.hstack(
            [train.matrix, sp.csr_matrix((train.n_users, len(ids)), dtype=train.matrix.dtype)], format="csr"
        )
        self.train_ = InteractionMatrix(
            matrix=matrix,
            user_ids=train.user_ids,
            item_ids=np.concatenate([np.asarray(train.item_ids, dtype=object), ids.astype(object)]),
        )
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(ids))])
        self.item_vectors_ = sp.vstack([self.item_vectors_, vectors], format="csr")
        self.has_content_ = np.concatenate([self.has_content_, vectors.getnnz(axis=1) > 0])
        self.titles_ = np.concatenate([self.titles_, _titles(items, ids)])
        self.data_hash_ = self.train_.content_hash()
        self._stamp()
        return self

    # -- scoring -------------------------------------------------------------------
    def profiles(self, user_index: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """``(profiles, norms)`` of users (row indices): the weighted sums of their items' vectors."""
        rows = self.train_.matrix[np.asarray(user_index, dtype=np.int64)]
        profile = sp.csr_matrix(rows @ self.item_vectors_)
        norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        return profile, norms

    def score_items(self, user_index: np.ndarray, item_index: np.ndarray | None = None) -> np.ndarray:
        """Cosine scores ``(n_users, n_items)`` of known users (row indices) for items (all by default)."""
        self.check_fitted("score_items")
        vectors = (
            self.item_vectors_ if item_index is None else self.item_vectors_[np.asarray(item_index, dtype=np.int64)]
        )
        profile, norms = self.profiles(user_index)
        dots = np.asarray((profile @ vectors.T).todense(), dtype=np.float64)
        return dots / np.where(norms > 0, norms, 1.0)[:, None]

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(user_index)
        idx = np.full((n, k), -1, dtype=np.int64)
        out = np.full((n, k), np.nan, dtype=np.float32)
        tiebreak = _TIEBREAK * self.popularity_ / max(float(self.popularity_.max(initial=0.0)), 1.0)
        step = block_users(self.train_.n_items)
        for lo in range(0, n, step):
            block = user_index[lo : lo + step]
            scores = self.score_items(block)
            exclude = self.train_.matrix[block] if filter_seen else None
            top, _ = top_k_from_scores(scores + tiebreak[None, :], k, exclude=exclude)
            idx[lo : lo + len(block)] = top
            taken = np.take_along_axis(scores, np.maximum(top, 0), axis=1)
            out[lo : lo + len(block)] = np.where(top >= 0, taken, np.nan)
        return idx, out

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = np.asarray((self.item_vectors_ @ self.item_vectors_[col].T).todense()).ravel()
        sims[col] = -np.inf
        return top_k_from_scores(sims[None, :], k)

    # -- explanations ----------------------------------------------------------------
    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """One tag per item: the liked item it shares the most content with, and the shared terms.

        ``exact`` is True: the evidence's ``contributions`` are the exact terms
        ``w_uj <x_j, x_i> / ||p_u||`` of the score, over the user's history.
        Items without content and users unknown to the model get a fallback tag
        that says so.
        """
        cols, row, fallback = explain_start(self, user_id, item_ids)
        if fallback is not None:
            return fallback
        history = self.train_.user_row(row)
        liked, weights = history.indices, history.data.astype(np.float64)
        _, norms = self.profiles(np.array([row]))
        norm = float(norms[0])
        sims = (
            np.asarray((self.item_vectors_[liked] @ self.item_vectors_[cols].T).todense())
            if len(liked)
            else np.zeros((0, len(cols)))
        )
        contrib = weights[:, None] * sims / (norm if norm > 0 else 1.0)
        tags: list[list[ModelTag]] = []
        for pos, col in enumerate(cols.tolist()):
            score = float(contrib[:, pos].sum())
            if not self.has_content_[col] or norm == 0 or score <= 0:
                why = (
                    "no_content" if not self.has_content_[col] else ("no_liked_content" if norm == 0 else "no_overlap")
                )
                text = {
                    "no_content": "We know nothing of this item's content: it is here for its popularity",
                    "no_liked_content": "Nothing you liked has content we know: this item is here for its popularity",
                    "no_overlap": "It shares no content with what you liked: it is here for its popularity",
                }[why]
                tags.append(
                    [
                        ModelTag(
                            "content_fallback",
                            text,
                            exact=False,
                            evidence={"fallback": why, "score": score, "popularity": float(self.popularity_[col])},
                        )
                    ]
                )
                continue
            order = np.argsort(-contrib[:, pos], kind="stable")
            best = int(liked[order[0]])
            top = {
                str(self.train_.item_ids[liked[j]]): round(float(contrib[j, pos]), 6)
                for j in order[:3]
                if contrib[j, pos] > 0
            }
            evidence: dict[str, Any] = {
                "score": round(score, 6),
                "contributions": top,
                "share": round(float(contrib[order[0], pos]) / score, 6),
                "n_history": len(liked),
            }
            text, more = self._match_tag(col, best, evidence["share"], evidence)
            evidence.update(more)
            tags.append(
                [
                    ModelTag(
                        "shares_content", text, items=(str(self.train_.item_ids[best]),), exact=True, evidence=evidence
                    )
                ]
            )
        return tags

    # -- erasure -------------------------------------------------------------------------
    def forget(self, user_ids: Sequence[str], *, keep_columns: bool = False) -> ForgetOutcome:
        """Drop the users' rows: their profiles go with them, item vectors never held them (exact).

        An item only the users interacted with and that has no content leaves the model too (a fit without
        them has no such column); a catalogue item with content stays, moved among the catalogue items without
        interactions (by id), where a fit with the item table puts it.
        ``keep_columns`` keeps every column (a model whose other parts are aligned on them)."""
        self.check_fitted("forget")
        present = subject_rows(self.train_, user_ids)
        keep = np.setdiff1d(np.arange(self.train_.n_users), present)
        train = self.train_
        matrix = sp.csr_matrix(train.matrix[keep])
        cols = np.arange(train.n_items)
        if not keep_columns:
            used = matrix.getnnz(axis=0) > 0
            cols = np.flatnonzero(used | (train.matrix.getnnz(axis=0) == 0) | self.has_content_)
            if self.featurizer_ready_:  # catalogue items without interactions follow the others, by id, as in a fit
                unused = cols[~used[cols]]
                cols = np.concatenate([cols[used[cols]], unused[np.argsort(train.item_ids[unused].astype(str), kind="stable")]])
        if len(cols) < train.n_items or (cols != np.arange(train.n_items)).any():
            matrix = sp.csr_matrix(matrix[:, cols])
            self.item_vectors_ = sp.csr_matrix(self.item_vectors_[cols])
            self.has_content_, self.titles_ = self.has_content_[cols], self.titles_[cols]
        self.train_ = InteractionMatrix(
            matrix=matrix, user_ids=np.asarray(train.user_ids, dtype=object)[keep], item_ids=train.item_ids[cols]
        )
        self.popularity_ = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float64)
        self.data_hash_ = self.train_.content_hash()
        self._stamp()
        removed = tuple(str(train.user_ids[r]) for r in present)
        return ForgetOutcome(ErasureKind.exact, removed, residual=0.0, detail={"rows_dropped": len(present)})

    # -- persistence -------------------------------------------------------------------
    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_extra(self, arrays: dict[str, np.ndarray]) -> None:
        return None

    def _stamp(self) -> None:
        """Set ``version_id_``: a SHA-256 of the parameters, the training data, the vectors and the transform."""
        extra = self._extra_arrays()
        self.version_id_ = _sha256(
            FORMAT.encode(),
            self.family.encode(),
            json.dumps(self.get_params(), sort_keys=True, default=str).encode(),
            self.data_hash_.encode(),
            _csr_bytes(self.item_vectors_),
            *(name.encode() + np.ascontiguousarray(extra[name]).tobytes() for name in sorted(extra)),
        )

    def save(self, path: str | Path) -> str:
        """Write the fitted model to ``path`` (``.npz``, no pickle) and return the file's SHA-256."""
        self.check_fitted("save")
        path = Path(path)
        meta = {
            "format": FORMAT,
            "family": self.family,
            "params": self.get_params(),
            "version_id": self.version_id_,
            "data_hash": self.data_hash_,
            "featurizer_ready": bool(self.featurizer_ready_),
        }
        v = self.item_vectors_
        with open_model_file(path) as fh:
            np.savez(
                fh,
                meta=np.array(json.dumps(meta, sort_keys=True, default=list)),
                **train_arrays(self.train_, prefix=""),
                v_indptr=v.indptr,
                v_indices=v.indices,
                v_data=v.data,
                v_shape=np.asarray(v.shape),
                titles=self.titles_.astype(str),
                **self._extra_arrays(),
            )
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> ContentModel:
        """Read a model :meth:`save` wrote; it recommends exactly as the original.

        An empty, truncated or non-zip file, a missing array, an out-of-range parameter or content that does
        not hash to the saved version id is a :class:`DataError` naming the file."""
        path = Path(path)
        meta, arrays = read_model_file(path, kind="content")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("family") != cls.family:
            found = (meta.get("family"), meta.get("format")) if isinstance(meta, dict) else (None, None)
            raise DataError(f"{path}: a {found[0]!r} model of format {found[1]!r}; expected {cls.family!r}, {FORMAT!r}")
        try:
            params = dict(meta["params"])
            if "text_columns" in params:
                params["text_columns"] = tuple(params["text_columns"])
            model = cls(**params)
            model._validate_params()
            model.train_ = train_from_arrays(arrays, prefix="")
            item_ids, matrix = model.train_.item_ids, model.train_.matrix
            v_shape = np.asarray(arrays["v_shape"])
            if v_shape.shape != (2,) or v_shape.dtype.kind not in "iu" or (v_shape < 0).any():
                raise ValueError(f"v_shape must be two non-negative integers, got {v_shape.tolist()!r}")
            model.item_vectors_ = csr_from_arrays(
                arrays["v_data"], arrays["v_indices"], arrays["v_indptr"], tuple(v_shape), name="the item vectors (v_*)"
            )
            if model.item_vectors_.shape[0] != len(item_ids):
                raise ValueError(f"{model.item_vectors_.shape[0]} item vectors for {len(item_ids)} items")
            model.has_content_ = np.asarray(model.item_vectors_.getnnz(axis=1) > 0)
            model.titles_ = arrays["titles"].astype(str)
            model.popularity_ = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float64)
            model.featurizer_ready_ = bool(meta["featurizer_ready"])
            model._load_extra(arrays)
        except (KeyError, TypeError, ValueError, IndexError, ConfigError) as err:
            raise DataError(
                f"{path}: a {cls.family} model file with missing, invalid or inconsistent content "
                f"({type(err).__name__}: {err})"
            ) from err
        # the content address is recomputed from what was read: an edited parameter, id or vector is caught
        model.data_hash_ = model.train_.content_hash()
        model._stamp()
        if model.data_hash_ != meta.get("data_hash") or model.version_id_ != meta.get("version_id"):
            raise DataError(f"{path}: the content does not match its version id (the file was altered or is damaged)")
        return model


def explain_start(
    model: GovernedModel, user_id: str, item_ids: Sequence[str]
) -> tuple[np.ndarray, int, list[list[ModelTag]] | None]:
    """The item columns and user row an ``explain`` works on, and the whole answer when the model does not know
    the user (or knows them with an empty history): a ``popularity_fallback`` tag per item.

    An item id the model does not hold is a :class:`ConfigError` (the content and hybrid families share it)."""
    model.check_fitted("explain")
    cols = model.train_.item_index(list(item_ids))
    if (cols < 0).any():
        bad = [str(i) for i, c in zip(item_ids, cols) if c < 0]
        raise ConfigError(
            UNKNOWN_ITEMS.format(where="explain", n=len(bad), example=repr(bad[0]), n_items=model.train_.n_items)
        )
    row = int(model.train_.user_index(user_id)[0])
    if not model.fallback_mask(np.array([row]))[0]:
        return cols, row, None
    # unknown, or known with an empty history
    fallback = [
        [
            ModelTag(
                "popularity_fallback",
                "Popular with everyone (we know nothing of your tastes yet)",
                exact=False,
                evidence={"fallback": "unknown_user", "popularity": float(model.popularity_[c])},
            )
        ]
        for c in cols
    ]
    return cols, row, fallback


def _titles(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    if "title" in items.columns:
        titles = items["title"].astype("string").to_numpy(dtype=object)
        return np.asarray(
            [t if isinstance(t, str) and t.strip() else str(i) for t, i in zip(titles, item_ids)], dtype=str
        )
    return np.asarray(item_ids, dtype=str)


class ContentRecommender(ContentModel):
    """TF-IDF content-based recommender (family ``content_tfidf``; see the module docstring).

    Parameters
    ----------
    text_columns:
        Item-table columns whose words describe an item (joined).
    category_column, price_column, release_column:
        Optional item-table columns (left out when absent from the table).
    text_weight, category_weight, price_weight, release_weight:
        Weights of the feature blocks before the final normalisation.
    min_df:
        Words in fewer items are ignored.
    max_features:
        Keep only the most frequent words (None: all).
    """

    name: ClassVar[str] = "content_tfidf"
    family: ClassVar[str] = "content_tfidf"
    inputs: ClassVar[frozenset[str]] = frozenset(
        {"interactions", "item_text", "item_category", "item_price", "item_release"}
    )

    featurizer_: ItemFeaturizer

    def __init__(
        self,
        text_columns: Sequence[str] = ("text",),
        category_column: str | None = "category",
        price_column: str | None = "price",
        release_column: str | None = "release_time",
        text_weight: float = 1.0,
        category_weight: float = 0.5,
        price_weight: float = 0.25,
        release_weight: float = 0.25,
        min_df: int = 1,
        max_features: int | None = None,
    ) -> None:
        self.text_columns = tuple(text_columns) if not isinstance(text_columns, str) else text_columns
        self.category_column = category_column
        self.price_column = price_column
        self.release_column = release_column
        self.text_weight = text_weight
        self.category_weight = category_weight
        self.price_weight = price_weight
        self.release_weight = release_weight
        self.min_df = min_df
        self.max_features = max_features

    def get_params(self) -> dict[str, Any]:
        return {
            "text_columns": list(self.text_columns) if not isinstance(self.text_columns, str) else self.text_columns,
            "category_column": self.category_column,
            "price_column": self.price_column,
            "release_column": self.release_column,
            "text_weight": self.text_weight,
            "category_weight": self.category_weight,
            "price_weight": self.price_weight,
            "release_weight": self.release_weight,
            "min_df": self.min_df,
            "max_features": self.max_features,
        }

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.min_df, int) or isinstance(self.min_df, bool) or self.min_df < 1:
            raise ConfigError(
                f"The 'min_df' parameter of ContentRecommender must be an int in the range [1, inf). Got {self.min_df!r} instead."
            )
        if self.max_features is not None and (not isinstance(self.max_features, int) or self.max_features < 1):
            raise ConfigError(
                f"The 'max_features' parameter of ContentRecommender must be None or an int >= 1. Got {self.max_features!r} instead."
            )

    def _fit_vectors(self, items: pd.DataFrame) -> None:
        self.featurizer_ = ItemFeaturizer.fit(
            items,
            text_columns=self.text_columns,
            category_column=self.category_column,
            price_column=self.price_column,
            release_column=self.release_column,
            weights={
                "text": self.text_weight,
                "category": self.category_weight,
                "price": self.price_weight,
                "release": self.release_weight,
            },
            min_df=self.min_df,
            max_features=self.max_features,
            where="content_tfidf.fit",
        )

    def _vectors(self, items: pd.DataFrame, *, where: str) -> sp.csr_matrix:
        return self.featurizer_.transform(items, where=where)

    def _width(self) -> int:
        return self.featurizer_.width

    def _match_tag(self, item: int, liked: int, share: float, evidence: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        n_terms = self.featurizer_.n_text_terms
        a = self.item_vectors_[item, :n_terms].toarray().ravel()
        b = self.item_vectors_[liked, :n_terms].toarray().ravel()
        overlap = a * b
        order = np.argsort(-overlap, kind="stable")
        terms = [str(self.featurizer_.vocabulary[t]) for t in order[:_TOP_TERMS] if overlap[t] > 0]
        title = self.titles_[liked]
        if terms:
            text = f"Shares the themes {', '.join(terms)} with {title}, which you liked"
        else:
            text = f"Close in category, price or release to {title}, which you liked"
        return text, {"terms": terms}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return self.featurizer_.to_arrays() if getattr(self, "featurizer_ready_", False) else {}

    def _load_extra(self, arrays: dict[str, np.ndarray]) -> None:
        if self.featurizer_ready_:
            self.featurizer_ = ItemFeaturizer.from_arrays(arrays)


register_family(
    Family(
        name="content_tfidf",
        build=ContentRecommender,
        description="Content-based: TF-IDF of item text, one-hot category, scaled price and release; cosine to the user's liked items",
        inputs=ContentRecommender.inputs,
        erasure=ErasureKind.exact,
        default_params={},
        small_params={"text_columns": ("text",)},
        broken_params={"min_df": 0},
    )
)
