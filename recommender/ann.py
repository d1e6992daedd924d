"""Approximate nearest-neighbour candidate generation over item vectors (faiss, CPU).

A factor model scores an item for a user by the inner product of their vectors
(``implicit``'s CPU ALS: ``user_factors[u] @ item_factors.T``, no bias term).
Scoring every item is exact but linear in the catalog; an ANN index finds the
best items of a query by visiting a small part of it. This module:

* builds an index over the item vectors (:class:`ItemIndex`): ``hnsw`` (faiss
  ``IndexHNSWFlat``) or ``ivf_flat`` (``IndexIVFFlat``), with their parameters
  exposed, or ``flat`` (``IndexFlatIP``: exact, the reference and a control);
* searches with filtering so that no list comes back short: blocked or
  unavailable items (one mask for the whole batch) are excluded inside faiss
  by an ``IDSelectorBitmap`` in the search parameters, and each user's own seen
  items are removed from an over-fetched candidate set, refilled by a bounded
  loop that fetches more for the rows still short, and finally by exact search
  for any row the index could not fill; a list is shorter than ``k`` only when
  fewer than ``k`` items are eligible at all;
* returns the model's own scores: candidates are re-scored by the exact inner
  product and re-sorted, so a list's scores are the factor model's, whatever
  the index approximated;
* measures recall@k of the index against the exact filtered top-k, items tied at
  the k-th place all counting as right
  (:func:`recall_against_exact`), the figure the audit records;
* wraps a fitted factor model (:class:`ANNRecommender`: ALS by default) so its
  lists come from the index.

HNSW is a graph built for a metric; inner product is not one. faiss builds the
graph under the inner product directly (``hnsw_metric: inner_product``, the
default), or over the item vectors augmented by one coordinate
``sqrt(max_norm^2 - |v|^2)`` with queries padded by 0 (``l2_augmented``;
Bachrach et al. 2014, "Speeding up the Xbox recommender system using a
Euclidean transformation for inner-product spaces"), whose L2 order is exactly
the inner-product order. On ALS factors, whose norms spread over an order of
magnitude (popular items are long), the augmented vectors crowd near one pole
and the graph navigates them badly: measured on a small ALS model, recall@10
0.47 augmented against 1.00 direct at the same ``ef_search``; the
augmentation stays available for vectors of even norms.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommender.base import Recommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError, NotFittedError

__all__ = [
    "ANNConfig",
    "ANNRecommender",
    "ItemIndex",
    "RecallReport",
    "exact_search",
    "recall_against_exact",
    "recall_with_ties",
    "TIE_TOLERANCE",
    "recall_at_k",
]

_EXACT_CHUNK = 1 << 25
"""Scores held at once by the exact search (query rows x items): 32M float32, 128 MB."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "approximate nearest-neighbour search needs faiss: install recgov's 'ann' extra "
            "(pip install 'recgov[ann]', which installs faiss-cpu)"
        ) from err
    return faiss


class ANNConfig(BaseModel):
    """The index and its search parameters (validated on the way in)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    index: Literal["hnsw", "ivf_flat", "flat"] = "hnsw"
    """``hnsw`` (graph), ``ivf_flat`` (inverted lists over k-means cells) or ``flat`` (exact inner product)."""
    hnsw_m: int = Field(32, ge=4, le=256)
    """HNSW: neighbours per node (more: better recall, more memory, slower build)."""
    ef_construction: int = Field(100, ge=8, le=4096)
    """HNSW: candidate list while building."""
    hnsw_metric: Literal["inner_product", "l2_augmented"] = "inner_product"
    """HNSW: build the graph under the inner product, or under L2 over norm-augmented vectors (see the module)."""
    ef_search: int = Field(64, ge=1, le=65536)
    """HNSW: candidate list while searching (raised to the number fetched when that is larger)."""
    nlist: int | None = Field(None, ge=1)
    """IVF: k-means cells; None: ``4 * sqrt(n_items)``, at most ``n_items // 39``, at least 1."""
    nprobe: int = Field(16, ge=1)
    """IVF: cells visited per query."""
    train_sample: int = Field(100_000, ge=1000)
    """IVF: this many item vectors (at least 40 per cell) train the k-means, a seeded sample of the catalog."""
    overfetch: float = Field(1.0, ge=0)
    """Seen-item filtering: fetch ``k + ceil(overfetch * seen)`` candidates per user before removing the seen ones."""
    max_rounds: int = Field(3, ge=1, le=10)
    """Rounds of fetching more (4x the previous) for rows still short before exact search fills them."""
    random_state: int = Field(0, ge=0)
    """Seed of the IVF training sample and k-means."""


def parse_ann_config(config: ANNConfig | dict[str, Any] | None, where: str = "ANN config") -> ANNConfig:
    """An :class:`ANNConfig` from a mapping (a located :class:`ConfigError` on a bad field)."""
    if config is None:
        return ANNConfig()
    if isinstance(config, ANNConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigError(f"{where} must be a mapping of ANNConfig fields. Got {type(config).__name__} instead.")
    try:
        return ANNConfig(**config)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "config"
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown field {loc!r}; the fields are {', '.join(ANNConfig.model_fields)}") from err
        raise ConfigError(f"{where}.{loc}: {first['msg']}. Got {first.get('input')!r} instead.") from err


def _as_vectors(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 matrix, or a located :class:`DataError`."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} must be a 2-D array of numbers: {err}") from err
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (rows x dimensions). Got {arr.ndim} dimension(s) instead.")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{name} has {arr.shape[1]} dimension(s); the index has {dim}.")
    if arr.shape[1] == 0:
        raise DataError(f"{name} has no dimensions.")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{name} has a non-finite value at row {int(bad[0])}, column {int(bad[1])}.")
    return np.ascontiguousarray(arr)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter of search must be an int in the range [1, inf). Got {k!r} instead.")
    return int(k)


def _blocked_mask(blocked: Any, n_items: int) -> np.ndarray | None:
    """A boolean mask over the items from a mask or an array of item positions (None: nothing blocked)."""
    if blocked is None:
        return None
    arr = np.asarray(blocked)
    if arr.dtype == bool:
        if arr.shape != (n_items,):
            raise DataError(f"blocked: a mask must have one entry per item ({n_items}). Got shape {arr.shape} instead.")
        return arr if arr.any() else None
    if arr.size == 0:
        return None
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise DataError(f"blocked must be a boolean mask or a 1-D array of item positions. Got dtype {arr.dtype} instead.")
    if arr.min() < 0 or arr.max() >= n_items:
        bad = arr[(arr < 0) | (arr >= n_items)][0]
        raise DataError(f"blocked: item position {int(bad)} is outside the index's {n_items} items.")
    mask = np.zeros(n_items, dtype=bool)
    mask[arr] = True
    return mask


def _exclude_matrix(exclude: Any, n_rows: int, n_items: int) -> sp.csr_matrix | None:
    if exclude is None:
        return None
    if not sp.issparse(exclude):
        raise DataError("exclude must be a scipy sparse matrix (one row per query, one column per item).")
    m = sp.csr_matrix(exclude)
    if m.shape != (n_rows, n_items):
        raise DataError(f"exclude has shape {m.shape}; expected ({n_rows}, {n_items}) (queries x items).")
    m = m.copy()
    m.data = np.ones_like(m.data, dtype=np.float32)
    m.eliminate_zeros()
    m.sum_duplicates()
    m.sort_indices()
    return m if m.nnz else None


def _is_seen(ids: np.ndarray, rows: np.ndarray, exclude: sp.csr_matrix | None, n_items: int) -> np.ndarray:
    """Whether each candidate ``ids[i, j]`` is in row ``rows[i]`` of ``exclude`` (vectorised, no per-row loop)."""
    if exclude is None:
        return np.zeros(ids.shape, dtype=bool)
    coo_rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
    keys = coo_rows * n_items + exclude.indices.astype(np.int64)  # sorted: csr rows ascending, indices sorted
    probe = rows[:, None].astype(np.int64) * n_items + np.maximum(ids, 0)
    pos = np.searchsorted(keys, probe)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    return (keys[pos] == probe) & (ids >= 0) if len(keys) else np.zeros(ids.shape, dtype=bool)


def _top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (ids, scores) of each row of a dense score block; -inf entries become -1/NaN."""
    n, m = scores.shape
    k_eff = min(k, m)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    bad = ~np.isfinite(vals)
    ids[bad], vals[bad] = -1, np.nan
    if k_eff < k:
        ids = np.hstack([ids, np.full((n, k - k_eff), -1, dtype=np.int64)])
        vals = np.hstack([vals, np.full((n, k - k_eff), np.nan, dtype=np.float32)])
    return ids, vals.astype(np.float32)


def exact_search(
    items: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    blocked: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact filtered top-``k`` by inner product: numpy batched matmul over the whole catalog.

    The reference every approximate list is measured against. Queries are
    scored in chunks (at most ``_EXACT_CHUNK`` scores at once), blocked items
    and each row's ``exclude`` entries are set to ``-inf`` before the top-k, and
    rows with fewer than ``k`` eligible items are padded with ``-1``/NaN.
    """
    items = _as_vectors(items, "items")
    queries = _as_vectors(queries, "queries", items.shape[1])
    k = _check_k(k)
    n_items = items.shape[0]
    mask = _blocked_mask(blocked, n_items)
    excl = _exclude_matrix(exclude, len(queries), n_items)
    chunk = max(1, _EXACT_CHUNK // max(n_items, 1))
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_sc = np.full((len(queries), k), np.nan, dtype=np.float32)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        scores = queries[start:stop] @ items.T
        if mask is not None:
            scores[:, mask] = -np.inf
        if excl is not None:
            sub = excl[start:stop].tocoo()
            scores[sub.row, sub.col] = -np.inf
        out_ids[start:stop], out_sc[start:stop] = _top_rows(scores, k)
    return out_ids, out_sc


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float | None:
    """Share of the exact lists' items that the approximate lists hold (pooled over rows).

    ``-1`` entries are padding and count for nothing; None when the exact lists are all empty.
    """
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0]:
        raise DataError(f"recall_at_k: {approx.shape[0]} approximate lists for {exact.shape[0]} exact ones.")
    n = max(int(approx.max(initial=-1)), int(exact.max(initial=-1))) + 2
    rows = np.arange(len(exact), dtype=np.int64)[:, None] * n
    truth = (rows + exact)[exact >= 0]
    found = np.intersect1d(truth, (rows + approx)[approx >= 0], assume_unique=False)
    return float(len(found) / len(truth)) if len(truth) else None


TIE_TOLERANCE = 1e-5
"""Relative gap (to the query's best exact score) within which two inner products tie: float32 products of the
same vectors summed in another order (faiss, the re-scoring, numpy's matmul) differ by about this much."""


def recall_with_ties(
    approx: np.ndarray, approx_scores: np.ndarray, exact: np.ndarray, exact_scores: np.ndarray
) -> float | None:
    """Recall@k where an approximate item counts when its (exact) score reaches the exact list's ``k``-th score.

    Items that tie at the ``k``-th place are all right answers, and which of them a list holds is the search's
    choice (ann-benchmarks counts a neighbour within the ``k``-th true distance alike): counted by ids, an exact
    index over equal vectors (items never interacted with, factors all 0) scored 0.36. Without ties it is
    :func:`recall_at_k`. Pooled over rows, at most the exact list's length per row; None when every exact list
    is empty."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0]:
        raise DataError(f"recall_with_ties: {approx.shape[0]} approximate lists for {exact.shape[0]} exact ones.")
    counts = (exact >= 0).sum(axis=1)
    total = int(counts.sum())
    if not total:
        return None
    exact_scores = np.asarray(exact_scores, dtype=np.float64)
    rows = np.arange(len(exact))
    kth = exact_scores[rows, np.maximum(counts - 1, 0)]
    best = np.abs(exact_scores[rows, 0])
    threshold = kth - TIE_TOLERANCE * np.where(np.isfinite(best), np.maximum(best, np.finfo(np.float32).tiny), 1.0)
    scores = np.asarray(approx_scores, dtype=np.float64)
    hits = ((approx >= 0) & (np.nan_to_num(scores, nan=-np.inf) >= threshold[:, None])).sum(axis=1)
    return float(np.minimum(hits, counts).sum() / total)


@dataclass(frozen=True)
class RecallReport:
    """An index's approximate lists against the exact filtered lists of the same queries."""

    recall_at_k: float | None
    k: int
    index: str
    n_items: int
    n_queries: int
    ann_seconds: float
    exact_seconds: float
    short_lists: int
    """Approximate lists shorter than the exact one of the same query (0 when filtering refills as it should)."""
    blocked_returned: int
    """Blocked items that came back in an approximate list (0 when filtering works)."""
    params: dict[str, Any]
    exact_fallbacks: int = 0
    """Queries whose list the index could not fill in ``max_rounds`` rounds, so that exact search answered them:
    those lists are exact search's, and ``recall_at_k`` counts them as the index's."""
    index_recall_at_k: float | None = None
    """Recall@k over the queries the index answered itself (None when exact search answered every one)."""

    @property
    def speedup(self) -> float | None:
        """Exact time over approximate time."""
        return self.exact_seconds / self.ann_seconds if self.ann_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "recall_at_k": self.recall_at_k, "k": self.k, "index": self.index, "n_items": self.n_items,
            "n_queries": self.n_queries, "ann_seconds": round(self.ann_seconds, 6), "exact_seconds": round(self.exact_seconds, 6),
            "speedup": None if self.speedup is None else round(self.speedup, 3), "short_lists": self.short_lists,
            "blocked_returned": self.blocked_returned, "params": self.params, "exact_fallbacks": self.exact_fallbacks,
            "index_recall_at_k": self.index_recall_at_k,
        }  # fmt: skip


class ItemIndex:
    """An ANN index over item vectors, searched by inner product with filtering.

    Parameters
    ----------
    config:
        An :class:`ANNConfig` or a mapping of its fields.

    Examples
    --------
    >>> index = ItemIndex({"index": "hnsw", "ef_search": 128}).fit(item_factors)  # doctest: +SKIP
    >>> ids, scores = index.search(user_factors, 10, blocked=blocked_mask)  # doctest: +SKIP
    """

    def __init__(self, config: ANNConfig | dict[str, Any] | None = None) -> None:
        self.config = config

    # -- build ------------------------------------------------------------------
    def fit(self, items: Any) -> ItemIndex:
        """Index ``items`` (n_items x d); sets ``vectors_``, ``index_``, ``build_seconds_``."""
        faiss = _faiss()
        config = parse_ann_config(self.config, "ItemIndex config")
        vectors = _as_vectors(items, "items")
        n, d = vectors.shape
        if n == 0:
            raise DataError("items: cannot index an empty catalog (0 item vectors).")
        started = time.perf_counter()
        if config.index == "flat":
            index = faiss.IndexFlatIP(d)
            index.add(vectors)
            self.max_norm_ = None
        elif config.index == "hnsw" and config.hnsw_metric == "inner_product":
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
            index.add(vectors)
            self.max_norm_ = None
        elif config.index == "hnsw":
            norms2 = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
            max_norm2 = float(norms2.max())
            extra = np.sqrt(np.maximum(max_norm2 - norms2, 0.0)).astype(np.float32)
            index = faiss.IndexHNSWFlat(d + 1, config.hnsw_m, faiss.METRIC_L2)
            index.hnsw.efConstruction = config.ef_construction
            index.add(np.ascontiguousarray(np.hstack([vectors, extra[:, None]])))
            self.max_norm_ = float(np.sqrt(max_norm2))
        else:
            nlist = config.nlist if config.nlist is not None else int(min(max(1, 4 * np.sqrt(n)), max(1, n // 39)))
            if nlist > n:
                raise ConfigError(f"The 'nlist' parameter of ItemIndex must be at most the number of items ({n}). Got {nlist} instead.")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = config.random_state
            rng = np.random.default_rng(config.random_state)
            size = max(config.train_sample, 40 * nlist)  # faiss asks for 39 points per cell at least
            sample = vectors if n <= size else vectors[np.sort(rng.choice(n, size, replace=False))]
            index.train(sample)
            index.add(vectors)
            index.nprobe = config.nprobe
            self._quantizer = quantizer  # faiss does not own it from Python: keep it alive with the index
            self.max_norm_ = None
            self.nlist_ = nlist
        self.build_seconds_ = time.perf_counter() - started
        self.config_ = config
        self.vectors_ = vectors
        self.index_ = index
        self.n_items_ = n
        self.dim_ = d
        return self

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` before :meth:`fit`."""
        if not hasattr(self, "index_"):
            raise NotFittedError("ItemIndex is not fitted yet: call fit(items) before search().")

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that shape this index's results (for the audit's record)."""
        self.check_fitted()
        c = self.config_
        if c.index == "hnsw":
            return {"index": "hnsw", "hnsw_metric": c.hnsw_metric, "hnsw_m": c.hnsw_m, "ef_construction": c.ef_construction, "ef_search": c.ef_search}
        if c.index == "ivf_flat":
            return {"index": "ivf_flat", "nlist": self.nlist_, "nprobe": c.nprobe}
        return {"index": "flat"}

    def memory_bytes(self) -> int:
        """Bytes of the serialised faiss index (the vectors it holds plus its structure)."""
        self.check_fitted()
        return int(_faiss().serialize_index(self.index_).nbytes)

    # -- search -----------------------------------------------------------------
    def _raw(self, queries: np.ndarray, fetch: int, selector: Any) -> np.ndarray:
        """Candidate ids (``-1`` where the index found none) of ``fetch`` per query."""
        faiss = _faiss()
        c = self.config_
        fetch = min(fetch, self.n_items_)
        if c.index == "hnsw" and self.max_norm_ is None:
            q = queries
            params = faiss.SearchParametersHNSW(efSearch=max(c.ef_search, fetch))
        elif c.index == "hnsw":
            q = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)]))
            params = faiss.SearchParametersHNSW(efSearch=max(c.ef_search, fetch))
        elif c.index == "ivf_flat":
            q = queries
            params = faiss.SearchParametersIVF(nprobe=min(c.nprobe, self.nlist_))
        else:
            q = queries
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        _, ids = self.index_.search(q, fetch, params=params)
        return ids.astype(np.int64)

    def _rescored(self, queries: np.ndarray, ids: np.ndarray, ok: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of each row's valid candidates by the exact inner product (the model's scores)."""
        scores = np.empty(ids.shape, dtype=np.float32)
        step = max(1, _EXACT_CHUNK // 4 // max(ids.shape[1] * self.dim_, 1))  # gathered vectors held at once: 32 MB
        for start in range(0, len(ids), step):
            gathered = self.vectors_[np.maximum(ids[start : start + step], 0)]  # (rows, fetch, d)
            scores[start : start + step] = np.einsum("nd,nfd->nf", queries[start : start + step], gathered)
        scores[~ok] = -np.inf
        top_ids, top_scores = _top_rows(scores, k)
        cols = np.maximum(top_ids, 0)
        out = np.where(top_ids >= 0, np.take_along_axis(ids, cols, axis=1), -1)
        return out, top_scores

    def search(
        self, queries: Any, k: int, *, exclude: sp.csr_matrix | None = None, blocked: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product for each query, never a blocked one nor one of the row's ``exclude``.

        Parameters
        ----------
        queries:
            ``(n, d)`` query vectors (user factors).
        k:
            List length.
        exclude:
            ``(n, n_items)`` sparse; a row's non-zero columns are never returned for that query (seen items).
        blocked:
            A boolean mask over the items or an array of item positions never returned for any query
            (blocked or unavailable items).

        Returns
        -------
        (ids, scores):
            ``(n, k)`` item positions and their exact inner products, best first; a row is padded with
            ``-1``/NaN only when fewer than ``k`` items are eligible for it.
        """
        self.check_fitted()
        faiss = _faiss()
        k = _check_k(k)
        q = _as_vectors(queries, "queries", self.dim_)
        n, n_items = len(q), self.n_items_
        mask = _blocked_mask(blocked, n_items)
        excl = _exclude_matrix(exclude, n, n_items)
        selector, bitmap = None, None
        if mask is not None:
            bitmap = np.packbits(~mask, bitorder="little")  # kept alive while faiss reads it
            selector = faiss.IDSelectorBitmap(n_items, faiss.swig_ptr(bitmap))
        seen = np.diff(excl.indptr) if excl is not None else np.zeros(n, dtype=np.int64)
        n_allowed = n_items - (int(mask.sum()) if mask is not None else 0)
        if excl is not None and mask is not None:
            blocked_seen = np.asarray(excl[:, np.flatnonzero(mask)].sum(axis=1)).ravel().astype(np.int64)
        else:
            blocked_seen = np.zeros(n, dtype=np.int64)
        eligible = n_allowed - (seen - blocked_seen)  # items a row can get at all
        want = np.minimum(k, eligible)
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), np.nan, dtype=np.float32)
        # Fetch sizes rounded up to powers of two: one faiss call per size, not per user.
        fetch = k + np.ceil(self.config_.overfetch * seen).astype(np.int64)
        fetch = np.minimum(2 ** np.ceil(np.log2(np.maximum(fetch, 1))).astype(np.int64), max(n_allowed, 1))
        pending = np.flatnonzero(want > 0)
        for _ in range(self.config_.max_rounds):
            if not len(pending):
                break
            still = []
            for size in np.unique(fetch[pending]):
                rows = pending[fetch[pending] == size]
                cand = self._raw(q[rows], int(size), selector)
                ok = (cand >= 0) & ~_is_seen(cand, rows, excl, n_items)
                got_ids, got_scores = self._rescored(q[rows], cand, ok, k)
                ids[rows], scores[rows] = got_ids, got_scores
                short = (got_ids >= 0).sum(axis=1) < want[rows]
                still.append(rows[short])
            pending = np.concatenate(still) if still else np.zeros(0, dtype=np.int64)
            fetch[pending] = np.minimum(fetch[pending] * 4, max(n_allowed, 1))
        if len(pending):  # the index could not fill these rows: exact search does
            sub = excl[pending] if excl is not None else None
            ids[pending], scores[pending] = exact_search(self.vectors_, q[pending], k, exclude=sub, blocked=mask)
        self.last_exact_rows_ = int(len(pending))
        self.last_exact_queries_ = np.sort(pending)  # which queries: an audit tells their lists from the index's
        return ids, scores


def recall_against_exact(
    index: ItemIndex,
    queries: Any,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    blocked: Any = None,
) -> RecallReport:
    """Recall@k of ``index``'s filtered lists against the exact filtered lists of the same queries, both timed."""
    index.check_fitted()
    k = _check_k(k)
    q = _as_vectors(queries, "queries", index.dim_)
    mask = _blocked_mask(blocked, index.n_items_)
    started = time.perf_counter()
    approx, approx_scores = index.search(q, k, exclude=exclude, blocked=mask)
    ann_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exact, exact_scores = exact_search(index.vectors_, q, k, exclude=exclude, blocked=mask)
    exact_seconds = time.perf_counter() - started
    fell_back = index.last_exact_queries_
    answered = np.ones(len(q), dtype=bool)
    answered[fell_back] = False
    short = int(((approx >= 0).sum(axis=1) < (exact >= 0).sum(axis=1)).sum())
    leaked = int(mask[approx[approx >= 0]].sum()) if mask is not None else 0
    return RecallReport(
        recall_at_k=recall_with_ties(approx, approx_scores, exact, exact_scores), k=k, index=index.config_.index, n_items=index.n_items_,
        n_queries=len(q), ann_seconds=ann_seconds, exact_seconds=exact_seconds, short_lists=short,
        blocked_returned=leaked, params=index.params, exact_fallbacks=len(fell_back),
        index_recall_at_k=(
            recall_with_ties(approx[answered], approx_scores[answered], exact[answered], exact_scores[answered]) if answered.any() else None
        ),
    )  # fmt: skip


class ANNRecommender(Recommender):
    """A fitted factor model whose lists come from an ANN index over its item factors, with its own scores.

    Parameters
    ----------
    base:
        A factor model with ``user_factors_`` and ``item_factors_`` whose score is their inner product
        (:class:`~recommender.als.ALSRecommender`; ``implicit``'s CPU ALS has no bias term). Fitted or not:
        :meth:`fit` fits it on ``train``; :meth:`from_fitted` indexes a fitted one as it is.
    ann:
        An :class:`ANNConfig` or a mapping of its fields.
    blocked_items:
        Item ids never recommended (blocked or unavailable); ids unknown to the model are ignored.
    """

    name: ClassVar[str] = "als+ann"

    def __init__(
        self, base: Recommender, ann: ANNConfig | dict[str, Any] | None = None, blocked_items: Sequence[str] | None = None
    ) -> None:
        self.base = base
        self.ann = ann
        self.blocked_items = blocked_items

    def get_params(self) -> dict[str, Any]:
        return {"base": self.base.get_params(), "ann": parse_ann_config(self.ann).model_dump()}

    @classmethod
    def from_fitted(
        cls, base: Recommender, ann: ANNConfig | dict[str, Any] | None = None, blocked_items: Sequence[str] | None = None
    ) -> ANNRecommender:
        """Index an already fitted ``base`` (no refit)."""
        base.check_fitted()
        model = cls(base, ann, blocked_items)
        model._index_base()
        model.train_ = base.train_
        return model

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self.base.fit(train, show_progress=show_progress)
        self._index_base()

    def _index_base(self) -> None:
        for attr in ("user_factors_", "item_factors_"):
            if getattr(self.base, attr, None) is None:
                raise ConfigError(f"ANNRecommender needs a factor model with {attr}; {type(self.base).__name__} has none.")
        self.index_ = ItemIndex(self.ann).fit(self.base.item_factors_)
        train = self.base.train_
        blocked = train.item_index(list(self.blocked_items)) if self.blocked_items else np.zeros(0, dtype=np.int64)
        blocked = np.asarray(blocked, dtype=np.int64)
        self.blocked_mask_ = _blocked_mask(blocked[blocked >= 0], train.n_items)
        # the fallback lists (an unknown user or item gets the popularity ranking) never serve a blocked item either
        popularity = np.array(self.base.popularity_, dtype=np.float64, copy=True)
        if self.blocked_mask_ is not None:
            popularity[self.blocked_mask_] = -np.inf
        self.popularity_ = popularity

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(self.base.user_factors_, dtype=np.float32)[user_index]
        exclude = self.base.train_.matrix[user_index] if filter_seen else None
        return self.index_.search(queries, k, exclude=exclude, blocked=self.blocked_mask_)

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items like the item at ``col`` (the base's similarity), never a blocked item."""
        if self.blocked_mask_ is None:
            return super()._similar_known(col, k)
        idx, scores = super()._similar_known(col, k + int(self.blocked_mask_.sum()))
        keep = (idx >= 0) & ~self.blocked_mask_[np.maximum(idx, 0)]
        out_idx = np.full((1, k), -1, dtype=np.int64)
        out_scores = np.full((1, k), np.nan, dtype=np.float32)
        kept = idx[keep][:k]
        out_idx[0, : len(kept)], out_scores[0, : len(kept)] = kept, scores[keep][:k]
        return out_idx, out_scores

    def recall(self, user_index: np.ndarray, k: int, *, filter_seen: bool = True) -> RecallReport:
        """Recall@k of this model's ANN lists against its exact lists for the given users (row indices)."""
        self.check_fitted("recall")
        user_index = np.asarray(user_index, dtype=np.int64)
        if len(user_index) and (user_index.min() < 0 or user_index.max() >= self.train_.n_users):
            raise DataError(f"recall: user rows must be in [0, {self.train_.n_users}).")
        queries = np.asarray(self.base.user_factors_, dtype=np.float32)[user_index]
        exclude = self.base.train_.matrix[user_index] if filter_seen else None
        return recall_against_exact(self.index_, queries, k, exclude=exclude, blocked=self.blocked_mask_)
