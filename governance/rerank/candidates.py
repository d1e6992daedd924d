"""What every re-ranker reads and returns: candidate lists, the catalog beside them, re-ranked lists.

A re-ranker works per user on a model's candidate list: ``items (n_users, c)``
best first, ``-1`` padding at the end, with the model's scores and the side
arrays some steps read (provider groups, popularity, categories, each user's
history mix). :class:`Candidates` checks them once (:meth:`Candidates.validate`);
a :class:`CheckedCatalog` checks the catalog's arrays once per engine so that a
served list checks only its own rows. :class:`Reranked` is what a pipeline
returns: the lists, each place's :class:`Reason` and the step that promoted it,
and which constraints the final lists meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.errors import ConfigError, DataError

__all__ = [
    "BAD_K",
    "MISSING_INPUT",
    "Candidates",
    "CheckedCatalog",
    "Reason",
    "Reranked",
    "check_k",
    "n_provider_groups",
]

BAD_K = "The 'k' parameter of {func} must be an int in the range [1, inf). Got {got!r} instead."
MISSING_INPUT = (
    "re-ranker {name!r} needs '{field}' in the Candidates, but none was given; "
    "pass {field}= when building the Candidates."
)
BAD_SHAPE = "Candidates: '{field}' must have shape {expected}. Got {got} instead."
BAD_PADDING = "Candidates: row {row} has a candidate after a -1 pad; padding (-1) must come only at the end of a list."
BAD_ITEM = "Candidates: row {row} holds item index {item}, outside the catalog of {n_items} items (0..{last}, -1 pads)."
DUPLICATE_ITEM = "Candidates: row {row} lists item {item} more than once; candidates must be distinct."
BAD_SCORE = "Candidates: row {row} has a non-finite score at position {pos} for item {item}; scores must be finite."
BAD_VALUES = "Candidates: '{field}' {problem}."


class Reason(IntEnum):
    """Why an item sits where it is (``Reranked.moves``)."""

    model = 0
    """Model order: no step promoted the item."""
    diversity = 1
    """Promoted for diversity (MMR)."""
    provider_fairness = 2
    """From an under-exposed or protected provider (FA*IR)."""
    calibration = 3
    """Promoted to calibrate the list's categories to the user's history."""
    popularity_debias = 4
    """Promoted by long-tail / popularity de-biasing."""
    exposure_cap = 5
    """Replacement for an item whose group reached its exposure cap."""
    exploration = 6
    """Placed by controlled randomness (exploration)."""
    provider_calibration = 7
    """Promoted to calibrate the list's provider mix to the user's history."""


def _as_2d(name: str, value: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise DataError(BAD_SHAPE.format(field=name, expected="(n_users, n_candidates)", got=arr.shape))
    return arr.astype(dtype, copy=False)


def n_provider_groups(item_group: np.ndarray) -> int:
    """The number of provider-group columns for ``item_group`` codes: the largest code + 1, at least 2."""
    group = np.asarray(item_group)
    return max(2, int(group.max()) + 1 if group.size else 2)


def _distribution(name: str, value: Any, n_users: int, n_cat: int | None) -> np.ndarray:
    """``value`` as ``(n_users, n_cat)`` float64 rows summing to 1 (all-zero rows stay zero)."""
    dist = np.asarray(value, dtype=np.float64)
    expected = (n_users, (dist.shape[-1] if dist.ndim else 0) if n_cat is None else n_cat)
    if dist.shape != expected:
        raise DataError(BAD_SHAPE.format(field=name, expected=expected, got=dist.shape))
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise DataError(BAD_VALUES.format(field=name, problem="must be finite and non-negative"))
    total = dist.sum(axis=1, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


def _checked_catalog(item_group: Any, item_popularity: Any, item_categories: Any, n_items: int) -> dict[str, Any]:
    """The catalog's side arrays checked against ``n_items`` and converted to their working dtypes."""
    out: dict[str, Any] = {}
    if item_group is not None:
        group = np.asarray(item_group)
        if group.shape != (n_items,) or not np.issubdtype(group.dtype, np.integer):
            raise DataError(
                BAD_SHAPE.format(field="item_group", expected=f"({n_items},) of int", got=f"{group.shape} of {group.dtype}")
            )
        if group.size and int(group.min()) < -1:
            raise DataError(BAD_VALUES.format(field="item_group", problem="holds codes below -1 (-1 = unknown group)"))
        out["item_group"] = group.astype(np.int64, copy=False)
    if item_popularity is not None:
        pop = np.asarray(item_popularity, dtype=np.float64)
        if pop.shape != (n_items,):
            raise DataError(BAD_SHAPE.format(field="item_popularity", expected=(n_items,), got=pop.shape))
        if not np.isfinite(pop).all() or (pop < 0).any():
            raise DataError(BAD_VALUES.format(field="item_popularity", problem="must be finite and non-negative"))
        out["item_popularity"] = pop
    if item_categories is not None and item_categories.shape[0] != n_items:
        raise DataError(
            BAD_SHAPE.format(field="item_categories", expected=f"({n_items}, n_categories)", got=item_categories.shape)
        )
    return out


@dataclass(frozen=True, eq=False)
class CheckedCatalog:
    """A catalog's side arrays, checked once and kept as copies of its own, for many :class:`Candidates`.

    A serving engine re-ranks one list per request over the same catalog.
    :meth:`Candidates.validate` checks every side array it is given (a pass over
    the whole catalog for each: at a million items that is most of a request);
    candidates made by :meth:`candidates` carry these arrays, which were checked
    here and are not shared with the caller (the numpy arrays are read-only), so
    their validation checks only their own rows.

    >>> catalog = CheckedCatalog.check(item_group=np.array([0, 1, 1]))
    >>> cands = catalog.candidates(items=np.array([[2, 0]]), scores=np.array([[0.9, 0.5]]))
    """

    item_group: np.ndarray | None
    item_popularity: np.ndarray | None
    item_categories: sp.csr_matrix | None
    n_items: int
    n_groups: int | None
    """:func:`n_provider_groups` of ``item_group`` (None without one)."""

    @classmethod
    def check(
        cls,
        *,
        item_group: Any = None,
        item_popularity: Any = None,
        item_categories: Any = None,
    ) -> CheckedCatalog:
        """Check the arrays as :meth:`Candidates.validate` does (raises its errors) and keep copies of them."""
        template = Candidates(
            items=np.zeros((0, 0), dtype=np.int64), scores=np.zeros((0, 0), dtype=np.float32),
            item_group=item_group, item_popularity=item_popularity, item_categories=item_categories,
        )  # fmt: skip
        n_items = template.n_items
        out = _checked_catalog(template.item_group, template.item_popularity, template.item_categories, n_items)
        group, pop = out.get("item_group"), out.get("item_popularity")
        categories = template.item_categories
        frozen = []
        for array in (group, pop):
            if array is not None:
                array = np.array(array, copy=True)
                array.flags.writeable = False
            frozen.append(array)
        if categories is not None:  # a copy of its own (scipy may sort a matrix's indices in place: not frozen)
            categories = categories.copy()
        n_groups = n_provider_groups(frozen[0]) if frozen[0] is not None else None
        return cls(item_group=frozen[0], item_popularity=frozen[1], item_categories=categories, n_items=n_items, n_groups=n_groups)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled (e.g. in another process): the copies are read-only again, as check() left them.
        self.__dict__.update(state)
        for array in (self.item_group, self.item_popularity):
            if array is not None:
                array.flags.writeable = False

    def candidates(self, items: Any, scores: Any, **per_user: Any) -> Candidates:
        """:class:`Candidates` of ``items`` and ``scores`` (and ``user_group_dist``, ``user_category_dist``,
        ``seeds``) over this catalog; their validation checks only their own rows."""
        cands = Candidates(
            items=items, scores=scores, item_group=self.item_group, item_popularity=self.item_popularity,
            item_categories=self.item_categories, **per_user,
        )  # fmt: skip
        object.__setattr__(cands, "_catalog", self)
        return cands


@dataclass(frozen=True, eq=False)
class Candidates:
    """A batch of candidate lists and the side data the re-rankers read.

    Attributes
    ----------
    items:
        ``(n_users, c)`` int64 candidate item indices (catalog columns), best
        first; ``-1`` pads a short list, only at the end.
    scores:
        ``(n_users, c)`` float32 model scores (anything where padded).
    item_group:
        ``(n_items,)`` int provider-group code of every catalog item; ``1`` is
        the protected group by default, ``-1`` an unknown group (never counted
        as protected, never capped).
    item_popularity:
        ``(n_items,)`` non-negative popularity (e.g. training users per item).
    item_categories:
        ``(n_items, n_categories)`` sparse indicator of item categories
        (see :func:`recommender.metrics.item_category_matrix`).
    user_category_dist:
        ``(n_users, n_categories)`` each user's category distribution in their
        history (calibration's target ``p``; see
        :func:`governance.rerank.calibration.history_category_distribution`).
        Rows are normalized to sum 1; an all-zero row means no history.
    user_group_dist:
        ``(n_users, n_groups)`` each user's provider mix in their history, one
        column per ``item_group`` code in code order (``n_groups`` is the
        largest code + 1, at least 2; needs ``item_group``), the target of
        provider calibration (see
        :func:`governance.rerank.calibration.history_group_distribution`, which
        counts every distinct history item once). Normalized like
        ``user_category_dist``.
    seeds:
        ``(n_users,)`` int per-user seed of the randomness: the same seed gives
        the same list, whatever else is in the batch. Without seeds the row
        number is used, which is reproducible for the same batch only.
    model_scores:
        Internal: the model's scores while ``scores`` holds a step's adjusted
        scores (``None``: same as ``scores``).
    reasons, moved_by:
        Internal: the :class:`Reason` and step index carried from earlier steps.
    """

    items: np.ndarray
    scores: np.ndarray
    item_group: np.ndarray | None = None
    item_popularity: np.ndarray | None = None
    item_categories: sp.csr_matrix | None = None
    user_category_dist: np.ndarray | None = None
    user_group_dist: np.ndarray | None = None
    seeds: np.ndarray | None = None
    model_scores: np.ndarray | None = field(default=None, repr=False)
    reasons: np.ndarray | None = field(default=None, repr=False)
    moved_by: np.ndarray | None = field(default=None, repr=False)
    row_offset: int = field(default=0, repr=False)
    _catalog: ClassVar[CheckedCatalog | None] = None
    """Set (on the instance) by :meth:`CheckedCatalog.candidates`: the catalog whose arrays these are."""

    def __post_init__(self) -> None:
        raw = np.asarray(self.items)
        if raw.size and raw.dtype.kind not in "iu":  # np.issubdtype(.., np.integer), without its cost
            raise DataError(
                BAD_VALUES.format(
                    field="items", problem=f"must hold integer item indices. Got dtype {raw.dtype} instead"
                )
            )
        items = _as_2d("items", raw, np.int64)
        scores = _as_2d("scores", self.scores, np.float32)
        if scores.shape != items.shape:
            raise DataError(BAD_SHAPE.format(field="scores", expected=items.shape, got=scores.shape))
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        if self.item_categories is not None and not isinstance(self.item_categories, sp.csr_matrix):
            if not sp.issparse(self.item_categories):
                raise DataError(BAD_VALUES.format(field="item_categories", problem="must be a scipy sparse matrix"))
            object.__setattr__(self, "item_categories", sp.csr_matrix(self.item_categories))
        for name in ("user_category_dist", "user_group_dist"):
            value = getattr(self, name)
            if value is not None and sp.issparse(value):
                object.__setattr__(self, name, value.toarray())

    # -- sizes -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.items.shape[0]

    @property
    def width(self) -> int:
        """``c``, the number of candidate columns."""
        return self.items.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """``(n_users, c)`` True where a candidate is present."""
        return self.items >= 0

    @property
    def n_items(self) -> int:
        """The catalog size, from the side arrays (or the largest item index + 1)."""
        for arr in (self.item_group, self.item_popularity, self.item_categories):
            if arr is not None:
                return int(arr.shape[0])
        return int(self.items.max()) + 1 if self.items.size else 0

    @classmethod
    def from_batch(cls, batch: Any, **side: Any) -> Candidates:
        """Candidates from a :class:`recommender.base.RecommendationBatch` (its indices and scores)."""
        return cls(items=batch.item_indices, scores=batch.scores, **side)

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> Candidates:
        """Check the content (padding at the end, catalog range, distinct items, finite scores).

        Returns a copy with side arrays converted to their working dtypes; raises
        :class:`~recommender.errors.DataError` naming the first bad row.
        """
        items, n_users = self.items, self.n_users
        valid = items >= 0
        n_items = self.n_items
        if items.size and int(items.min()) < -1:
            row = int(np.argmax((items < -1).any(axis=1)))
            raise DataError(BAD_ITEM.format(row=row, item=int(items[items < -1][0]), n_items=n_items, last=n_items - 1))
        if items.size and int(items.max()) >= n_items:
            row = int(np.argmax((items >= n_items).any(axis=1)))
            raise DataError(BAD_ITEM.format(row=row, item=int(items[row].max()), n_items=n_items, last=n_items - 1))
        late = valid[:, 1:] & ~valid[:, :-1]
        if late.any():
            raise DataError(BAD_PADDING.format(row=int(np.argmax(late.any(axis=1)))))
        if items.shape[1] > 1:
            ordered = np.sort(items, axis=1)
            dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
            if dup.any():
                row = int(np.argmax(dup.any(axis=1)))
                raise DataError(DUPLICATE_ITEM.format(row=row, item=int(ordered[row, 1:][dup[row]][0])))
        bad_score = valid & ~np.isfinite(self.scores)
        if bad_score.any():
            row = int(np.argmax(bad_score.any(axis=1)))
            pos = int(np.argmax(bad_score[row]))
            raise DataError(BAD_SCORE.format(row=row, pos=pos, item=int(items[row, pos])))
        checked = self._catalog
        if (
            checked is not None
            and self.item_group is checked.item_group
            and self.item_popularity is checked.item_popularity
            and self.item_categories is checked.item_categories
        ):
            out: dict[str, Any] = {}  # the catalog's own copies, checked once
            n_groups = checked.n_groups
        else:
            out = _checked_catalog(self.item_group, self.item_popularity, self.item_categories, n_items)
            n_groups = n_provider_groups(out["item_group"]) if "item_group" in out else None
        if self.user_category_dist is not None:
            n_cat = self.item_categories.shape[1] if self.item_categories is not None else None
            out["user_category_dist"] = _distribution("user_category_dist", self.user_category_dist, n_users, n_cat)
        if self.user_group_dist is not None:
            if self.item_group is None:
                raise DataError(
                    BAD_VALUES.format(
                        field="user_group_dist", problem="needs item_group: its columns are the item_group codes"
                    )
                )
            out["user_group_dist"] = _distribution("user_group_dist", self.user_group_dist, n_users, n_groups)
        if self.seeds is not None:
            seeds = np.asarray(self.seeds)
            if seeds.shape != (n_users,) or not np.issubdtype(seeds.dtype, np.integer):
                raise DataError(
                    BAD_SHAPE.format(
                        field="seeds", expected=f"({n_users},) of int", got=f"{seeds.shape} of {seeds.dtype}"
                    )
                )
            out["seeds"] = seeds.astype(np.int64, copy=False)
        return self._evolve(**out)

    # -- internal ------------------------------------------------------------------------
    def _evolve(self, **changes: Any) -> Candidates:
        """A copy with ``changes``, which are already in their working shapes and dtypes.

        For the pipeline's own updates (a step's order applied, a chunk of rows):
        ``dataclasses.replace`` would run ``__post_init__``'s conversions again on
        every field, which for one served list costs more than the step itself.
        """
        new = object.__new__(Candidates)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def rows(self, start: int, stop: int) -> Candidates:
        """The users ``start:stop`` (per-user arrays sliced, catalog arrays shared)."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return self._evolve(
            items=self.items[start:stop],
            scores=self.scores[start:stop],
            user_category_dist=cut(self.user_category_dist),
            user_group_dist=cut(self.user_group_dist),
            seeds=cut(self.seeds),
            model_scores=cut(self.model_scores),
            reasons=cut(self.reasons),
            moved_by=cut(self.moved_by),
            row_offset=self.row_offset + start,
        )

    def user_seeds(self) -> np.ndarray:
        """``(n_users,)`` uint64 seeds: the given ones, else the row numbers."""
        if self.seeds is not None:
            return self.seeds.astype(np.uint64)
        return np.arange(self.row_offset, self.row_offset + self.n_users, dtype=np.uint64)


@dataclass(frozen=True, eq=False)
class Reranked:
    """Re-ranked lists, with what moved and which constraints hold.

    Attributes
    ----------
    items:
        ``(n_users, k)`` int64 item indices, best first, ``-1`` padding at the end.
    scores:
        ``(n_users, k)`` float32 the *model's* score of each placed item (NaN
        where padded); after re-ranking they need not be sorted.
    moves:
        ``(n_users, k)`` int8 :class:`Reason` code of each place (0 = model order).
    moved_by:
        ``(n_users, k)`` int8 index into ``steps`` of the step that promoted the
        item to its place; ``-1`` for model order and for padding.
    steps:
        The labels of the pipeline's steps, in order (a name, suffixed ``_2``,
        ``_3`` when a step is repeated).
    constraints_met:
        Step label -> ``(n_users,)`` bool, for the steps that state a
        constraint (FA*IR's ranked group fairness test, the exposure cap),
        evaluated on the final lists.
    """

    items: np.ndarray
    scores: np.ndarray
    moves: np.ndarray
    moved_by: np.ndarray
    steps: tuple[str, ...]
    constraints_met: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.items.shape[0]

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: places per reason, and per constraint the share of lists meeting it."""
        filled = self.items >= 0
        codes = np.bincount(self.moves[filled].astype(np.int64), minlength=len(Reason))
        return {
            "n_users": int(self.items.shape[0]),
            "k": int(self.items.shape[1]),
            "steps": list(self.steps),
            "places_by_reason": {r.name: int(codes[r]) for r in Reason},
            "constraints_met_share": {
                name: (float(met.mean()) if met.size else float("nan")) for name, met in self.constraints_met.items()
            },
        }


def check_k(k: Any, func: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(BAD_K.format(func=func, got=k))
    return int(k)
