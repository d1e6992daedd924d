"""Groups as a fairness audit declares them: binned numbers, many values, intersections, a minimum size.

Every measure of this package takes one label per user (or per item). This
module makes those labels from a table of attributes, the way a policy pack
declares them, so that the measures never see raw attribute values:

* **numeric attributes binned** (:class:`Binning`, :func:`bin_values`): age in
  bands, release year in decades. Bins are half-open ``[edge_j, edge_j+1)``
  (``right=True``: ``(edge_j, edge_j+1]``), one label per bin; a value outside
  every bin, or not a number, is *missing* (the group ``"missing"``, reported,
  never judged) and counted, so that a typo in the edges shows up in the census.
* **many-valued attributes** keep all their values (a group per value, not
  "protected vs the rest"); an attribute holding several values per entity
  (an item's categories ``"drama|comedy"``) becomes a sparse membership matrix
  (:func:`multi_membership`): an entity belongs to each of its groups.
* **intersections** (:func:`intersect`): ``gender x age band`` is one label per
  user, ``"F x 25-34"``, missing when any part is missing; the intersection's
  name is its attributes joined by ``_x_`` (``gender_x_age``). A pack lists which
  intersections matter; :func:`groups_for` builds exactly those.
* **minimum group size** (:func:`census`): a group with fewer members than
  ``min_size`` is reported with its figures but not judged, and its entry says
  so (``judged=False`` and the reason). The missing group is never judged.
* **provider and category groups from the item table**
  (:func:`item_groups`): the item table's ``provider``, ``provider_group``,
  ``release_decade`` (one label per item) or ``categories`` (several per item)
  columns, aligned with the model's item columns.

Labels are strings (``"F x 25-34"``); the raw attribute values never leave
this module except as the bin labels the pack chose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import ConfigError, DataError
from recommender.fairness._common import MISSING_GROUP, RESERVED_LABEL, group_labels, reserved_label

__all__ = [
    "INTERSECTION_JOIN",
    "INTERSECTION_SEPARATOR",
    "Binning",
    "GroupingSpec",
    "GroupCensus",
    "bin_values",
    "intersect",
    "multi_membership",
    "census",
    "cells_for",
    "groups_for",
    "intersection_cells",
    "item_groups",
    "membership_exposure",
]

INTERSECTION_SEPARATOR = " x "
"""Between the parts of an intersectional label (``"F x 25-34"``)."""

INTERSECTION_JOIN = "_x_"
"""Between the attribute names of an intersection (``gender_x_age``: still a name a rule can give)."""

BAD_BINNING = "binning of {attribute!r}: {problem}. Got edges={edges!r}, labels={labels!r}."
UNKNOWN_ATTRIBUTE = "{what}: no attribute {name!r}; the table has: {known}."
BAD_MIN_SIZE = "The 'min_size' of a group census must be an int in the range [1, inf). Got {got!r} instead."


@dataclass(frozen=True)
class Binning:
    """How a numeric attribute is cut into labelled bins (``len(labels) == len(edges) - 1``).

    >>> Binning("age", (18, 25, 35, float("inf")), ("18-24", "25-34", "35+")).labels
    ('18-24', '25-34', '35+')
    """

    attribute: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]
    right: bool = False
    """False: bins are ``[a, b)``; True: ``(a, b]``."""

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        labels = tuple(str(label) for label in self.labels)

        def bad(problem: str) -> ConfigError:
            text = BAD_BINNING.format(attribute=self.attribute, problem=problem, edges=self.edges, labels=self.labels)
            return ConfigError(text)

        if len(edges) < 2:
            raise bad("at least two edges are needed (one bin)")
        if any(np.isnan(edges)) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise bad("edges must be numbers in strictly increasing order")
        if len(labels) != len(edges) - 1:
            raise bad(f"{len(edges) - 1} bins need {len(edges) - 1} labels, one per bin")
        if len(set(labels)) != len(labels) or any(not label or label.strip().casefold() == MISSING_GROUP for label in labels):
            raise bad(f"labels must be distinct, non-empty and not {MISSING_GROUP!r} (in any case)")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "labels", labels)


def bin_values(values: Any, binning: Binning) -> np.ndarray:
    """``(n,)`` object array of bin labels (``None`` for missing, non-numeric or out-of-range values).

    >>> b = Binning("age", (18, 25, 35), ("18-24", "25-34"))
    >>> bin_values([17, 18, 24.9, 25, 34, 35, None, "x"], b).tolist()
    [None, '18-24', '18-24', '25-34', '25-34', None, None, None]
    """
    x = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(dtype=np.float64)
    edges = np.asarray(binning.edges)
    side = "left" if binning.right else "right"
    idx = np.searchsorted(edges, x, side=side) - 1
    inside = ~np.isnan(x) & (idx >= 0) & (idx < len(binning.labels))
    if binning.right:
        inside &= x > edges[0]
    else:
        inside &= x < edges[-1]
    labels = np.asarray(binning.labels, dtype=object)
    return np.where(inside, labels[np.clip(idx, 0, len(labels) - 1)], None)


def _as_labels(values: Any) -> np.ndarray:
    """Strings as :func:`group_labels` reads them (NFC, without surrounding blanks), ``None`` for missing (NaN,
    None, pandas NA, a blank string): an intersection joins the labels its parts' groups have, so that ``"F "``
    crossed with an age is the cell of ``"F"``, not a cell apart."""
    s = pd.Series(np.asarray(values, dtype=object))
    text = s.astype("string").str.normalize("NFC").str.strip().fillna("")
    missing = s.isna().to_numpy() | (text == "").to_numpy()
    return np.where(missing, None, text.to_numpy(dtype=object))


def intersect(columns: Mapping[str, Any], separator: str = INTERSECTION_SEPARATOR) -> np.ndarray:
    """One label per row joining the columns' labels (``None`` where any part is missing).

    >>> intersect({"gender": ["F", "M", None], "age": ["18-24", "25-34", "18-24"]}).tolist()
    ['F x 18-24', 'M x 25-34', None]
    """
    parts = [_as_labels(v) for v in columns.values()]
    if not parts:
        raise ConfigError("intersect: give at least one attribute.")
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise DataError(f"intersect: the attributes {list(columns)} have different lengths {[len(p) for p in parts]}.")
    missing = np.zeros(n, dtype=bool)
    for p in parts:
        missing |= pd.isna(p)
    joined = pd.Series(parts[0]).fillna("").astype(str)
    for p in parts[1:]:
        joined = joined + separator + pd.Series(p).fillna("").astype(str)
    out = np.where(missing, None, joined.to_numpy(dtype=object))
    present = ~missing
    n_tuples = len(pd.DataFrame({i: p[present] for i, p in enumerate(parts)}).drop_duplicates())
    if len(pd.unique(out[present])) != n_tuples:
        raise DataError(
            f"intersect: a value of {list(columns)} contains the separator {separator!r}, so two different "
            "combinations would get the same label; rename the value or choose another separator."
        )
    return out


def multi_membership(values: Any, separator: str = "|") -> tuple[sp.csr_matrix, tuple[str, ...]]:
    """Sparse ``(n, n_groups)`` 0/1 membership of a many-valued attribute (``"drama|comedy"``) and the group names.

    An entity with no value is in no group (a row of zeros): a measure that
    splits attention among groups leaves it out and can count it.

    >>> m, names = multi_membership(["drama|comedy", "drama", None])
    >>> names, m.toarray().tolist()
    (('comedy', 'drama'), [[1, 1], [0, 1], [0, 0]])
    """
    labels = _as_labels(values)
    rows, vals = [], []
    for r, text in enumerate(labels):  # splitting strings: one pass over the table, not a hot path
        if text is None:
            continue
        for part in {p.strip() for p in str(text).split(separator)} - {""}:
            rows.append(r)
            vals.append(part)
    names = tuple(sorted(set(vals)))
    col = {g: j for j, g in enumerate(names)}
    matrix = sp.csr_matrix(
        (
            np.ones(len(rows), dtype=np.int64),
            (np.asarray(rows, dtype=np.int64), np.asarray([col[v] for v in vals], dtype=np.int64)),
        ),
        shape=(len(labels), len(names)),
    )
    return matrix, names


@dataclass(frozen=True)
class GroupCensus:
    """The size of every group, and which of them a rule may judge."""

    groups: tuple[str, ...]
    n: dict[str, int]
    judged: dict[str, bool]
    reason: dict[str, str]
    """Why a group is not judged (empty for judged groups)."""
    min_size: int

    def judged_groups(self) -> tuple[str, ...]:
        """The groups a rule may judge (in group order)."""
        return tuple(g for g in self.groups if self.judged[g])

    def as_dict(self) -> dict[str, Any]:
        """Plain types for reports and the trail."""
        return {
            "min_size": self.min_size,
            "groups": {g: {"n": self.n[g], "judged": self.judged[g], "reason": self.reason[g]} for g in self.groups},
        }


def census(labels: Any, min_size: int = 1, cells: Sequence[str] = ()) -> GroupCensus:
    """Count each group's members; below ``min_size`` (or the missing group) is reported but not judged.

    ``labels`` is one label per entity, or a sparse membership matrix with its
    names as ``(matrix, names)`` (:func:`multi_membership`). ``cells`` are groups
    to list even when no entity is in them (an intersection's combinations of
    values, :func:`intersection_cells`): an empty one is listed with ``n = 0``,
    not judged, so that an auditor sees which combinations no one represents.

    >>> c = census(["a", "a", "b", None], min_size=2)
    >>> c.judged, c.reason["b"]
    ({'a': True, 'b': False, 'missing': False}, 'reported, not judged: 1 member, fewer than the minimum of 2')
    """
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ConfigError(BAD_MIN_SIZE.format(got=min_size))
    if isinstance(labels, tuple) and len(labels) == 2 and sp.issparse(labels[0]):
        matrix, names = labels
        counts = np.asarray((matrix > 0).sum(axis=0)).ravel()
    else:
        codes, names = group_labels(labels)
        counts = np.bincount(codes, minlength=len(names))
    sizes = {str(g): int(c) for g, c in zip(names, counts)}
    for cell in cells:
        sizes.setdefault(str(cell), 0)
    names = tuple(sorted(sizes)) if len(sizes) > len(counts) else tuple(names)
    n, judged, reason = {}, {}, {}
    for g in names:
        c = n[g] = sizes[g]
        if g == MISSING_GROUP:
            judged[g], reason[g] = False, "reported, not judged: the attribute is missing"
        elif c == 0:
            judged[g], reason[g] = False, "reported, not judged: no members (a combination of values no one has)"
        elif c < min_size:
            word = "member" if c == 1 else "members"
            judged[g], reason[g] = False, f"reported, not judged: {c} {word}, fewer than the minimum of {min_size}"
        else:
            judged[g], reason[g] = True, ""
    return GroupCensus(groups=tuple(names), n=n, judged=judged, reason=reason, min_size=int(min_size))


@dataclass(frozen=True)
class GroupingSpec:
    """What a pack declares about groups: the attributes, their bins, the intersections that matter, the minimum size.

    ``attributes`` are judged one by one; each entry of ``intersections`` is a
    tuple of attribute names judged jointly (``("gender", "age")``).
    """

    attributes: tuple[str, ...] = ()
    bins: Mapping[str, Binning] = field(default_factory=dict)
    intersections: tuple[tuple[str, ...], ...] = ()
    min_size: int = 1

    def __post_init__(self) -> None:
        for name, b in self.bins.items():
            if b.attribute != name:
                raise ConfigError(f"bins: the binning under {name!r} is for attribute {b.attribute!r}.")
        names = set(self.attributes)
        for j, combo in enumerate(self.intersections):
            if len(combo) < 2 or len(set(combo)) != len(combo):
                raise ConfigError(f"intersections: {list(combo)} must name two or more distinct attributes.")
            key = INTERSECTION_JOIN.join(combo)
            if key in names:  # groups_for keys its labels by name: a clash would replace one grouping by another
                raise ConfigError(
                    f"intersections.{j}: {list(combo)} is labelled {key!r}, a name already taken by an attribute "
                    "or an earlier intersection; rename the attribute so the two groupings stay apart."
                )
            names.add(key)
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int) or self.min_size < 1:
            raise ConfigError(BAD_MIN_SIZE.format(got=self.min_size))


def _column(table: pd.DataFrame, name: str, spec: GroupingSpec, what: str) -> np.ndarray:
    if name not in table.columns:
        known = ", ".join(map(str, table.columns)) or "no columns"
        raise DataError(UNKNOWN_ATTRIBUTE.format(what=what, name=name, known=known))
    values = table[name].to_numpy(dtype=object)
    if name in spec.bins:
        return bin_values(values, spec.bins[name])
    labels = _as_labels(values)
    at = reserved_label(labels)
    if at is not None:
        where = f"column {name!r}, row {table.index[at]!r}"
        raise DataError(RESERVED_LABEL.format(what=what, where=where, value=labels[at], missing=MISSING_GROUP))
    return labels


def intersection_cells(columns: Mapping[str, Any], separator: str = INTERSECTION_SEPARATOR) -> tuple[str, ...]:
    """Every combination of the values the columns hold (missing left out), labelled as :func:`intersect` labels
    a row: what :func:`census` lists for an intersection, including the combinations no row has.

    >>> intersection_cells({"gender": ["F", "M", "F"], "age": ["18-24", "18-24", "25-34"]})
    ('F x 18-24', 'F x 25-34', 'M x 18-24', 'M x 25-34')
    """
    import itertools

    parts = [sorted({str(v) for v in _as_labels(values) if v is not None}) for values in columns.values()]
    return tuple(sorted(separator.join(combo) for combo in itertools.product(*parts)))


def cells_for(table: pd.DataFrame, spec: GroupingSpec, *, what: str = "user attributes") -> dict[str, tuple[str, ...]]:
    """The cells (:func:`intersection_cells`) of every intersection the spec declares, from the rows of ``table``."""
    return {
        INTERSECTION_JOIN.join(combo): intersection_cells({n: _column(table, n, spec, what) for n in combo})
        for combo in spec.intersections
    }


def groups_for(table: pd.DataFrame, spec: GroupingSpec, *, what: str = "user attributes") -> dict[str, np.ndarray]:
    """Labels (one per row of ``table``) for every attribute and intersection the spec declares.

    Keys are the attribute name, or the intersection's names joined by
    :data:`INTERSECTION_JOIN` (``"gender_x_age"``). Values are object arrays
    of labels (``"F x 30+"``), ``None`` for missing.

    >>> users = pd.DataFrame({"gender": ["F", "M", "F"], "age": [19, 40, 31]})
    >>> spec = GroupingSpec(("gender",), {"age": Binning("age", (18, 30, 120), ("18-29", "30+"))}, (("gender", "age"),))
    >>> {k: v.tolist() for k, v in groups_for(users, spec).items()}
    {'gender': ['F', 'M', 'F'], 'gender_x_age': ['F x 18-29', 'M x 30+', 'F x 30+']}
    """
    out: dict[str, np.ndarray] = {}
    for name in spec.attributes:
        out[name] = _column(table, name, spec, what)
    for combo in spec.intersections:
        out[INTERSECTION_JOIN.join(combo)] = intersect({n: _column(table, n, spec, what) for n in combo})
    return out


def item_groups(
    items: pd.DataFrame, item_ids: Sequence[Any], column: str, *, binning: Binning | None = None
) -> np.ndarray | tuple[sp.csr_matrix, tuple[str, ...]]:
    """Provider, category or release groups of the model's item columns, from the item table.

    ``items`` is the item table (indexed by ``item_id``, e.g. ``Dataset.items``
    after :func:`recommender.item_table.attach_items`); ``item_ids`` the id of
    each model item column. ``categories`` gives a membership matrix and its
    names (:func:`multi_membership`); any other column one label per item
    (``None`` where the table has no row or no value), binned when a
    ``binning`` is given (``release_year`` in custom periods).

    >>> table = pd.DataFrame({"provider": ["A", "B"], "categories": ["x|y", "y"]}, index=["i1", "i2"])
    >>> item_groups(table, ["i2", "i1", "i9"], "provider").tolist()
    ['B', 'A', None]
    >>> item_groups(table, ["i2", "i1"], "categories")[0].toarray().tolist()
    [[0, 1], [1, 1]]
    """
    if column not in items.columns:
        known = ", ".join(map(str, items.columns)) or "no columns"
        raise DataError(UNKNOWN_ATTRIBUTE.format(what="item table", name=column, known=known))
    ids = pd.Index(np.asarray(item_ids).astype(str))
    aligned = items[column].copy()
    aligned.index = aligned.index.astype(str)
    values = aligned.reindex(ids).to_numpy(dtype=object)
    if column == "categories":
        return multi_membership(values)
    if binning is not None:
        return bin_values(values, binning)
    return _as_labels(values)


def membership_exposure(
    recommended: np.ndarray, membership: tuple[sp.csr_matrix, tuple[str, ...]], weights: np.ndarray
) -> dict[str, float]:
    """Share of all the lists' attention that lands on each group of a many-valued item attribute.

    ``membership`` is :func:`multi_membership`'s ``(matrix, names)`` over the
    item columns; ``weights`` the attention of ranks ``1..k``
    (:func:`recommender.fairness.attention_weights`). An item in two categories
    gives its whole attention to both, so the shares may sum above 1 (and items
    in no category count in the total, in no group).

    >>> m = multi_membership(["x|y", "y", None])
    >>> membership_exposure(np.array([[0, 2], [1, -1]]), m, np.ones(2))
    {'x': 0.3333333333333333, 'y': 0.6666666666666666}
    """
    from recommender.fairness._common import _lists
    from recommender.fairness._exposure import item_exposure

    matrix, names = membership
    rec = _lists(recommended, "membership_exposure", matrix.shape[0])
    per_item = item_exposure(rec, matrix.shape[0], weights)
    total = per_item.sum()
    per_group = np.asarray(sp.csr_matrix(matrix > 0).T.astype(np.float64) @ per_item).ravel()
    return {g: float(per_group[j] / total) if total > 0 else float("nan") for j, g in enumerate(names)}
