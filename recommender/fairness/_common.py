"""What every fairness measure shares: the checks on its inputs and the group coding.

Every measure takes the same inputs (lists as ``(n_users, k)`` item columns
with ``-1`` padding, sparse matrices whose rows are the same users, labels per
user or per item), so their validation lives here once, with the messages of
:mod:`recommender.metrics` for the lists. Group labels become integer codes
once (:func:`group_labels`) so that every per-group sum is a ``bincount``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import DataError

MISSING_GROUP = "missing"
"""The group of users (or items) whose attribute is missing."""

RESERVED_LABEL = (
    "{what}: {where} holds the value {value!r}, which reads as {missing!r}, the name of the group of those whose "
    "attribute is missing: the two would be reported as one group. Rename the value, or leave it empty if it "
    "means that the attribute is missing."
)
"""Message of the refusal of a label that would merge with the missing group (:func:`reserved_label`)."""

BAD_ROWS = "{func}: {name} has {got} rows but 'recommended' has {n_users}; row u of both must be the same user."
BAD_LENGTH = "{func}: {name} has {got} entries but {expected} were expected ({what})."


def _lists(recommended: np.ndarray, func: str, n_items: int) -> np.ndarray:
    """The lists as int64, validated against the catalog (the rules and messages of :mod:`recommender.metrics`)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not (np.issubdtype(rec.dtype, np.integer) or rec.size == 0):
        got = f"an array of shape {rec.shape} and dtype {rec.dtype}"
        raise DataError(M.BAD_RECOMMENDED.format(func=func, got=got))
    rec = rec.astype(np.int64, copy=False)
    if rec.size and (int(rec.max()) >= n_items or int(rec.min()) < -1):
        bad = int(rec.max()) if int(rec.max()) >= n_items else int(rec.min())
        raise DataError(M.BAD_ITEM.format(func=func, item=bad, n_items=n_items, last=n_items - 1))
    return rec


def _rows_match(func: str, name: str, matrix: Any, n_users: int) -> None:
    if matrix.shape[0] != n_users:
        raise DataError(BAD_ROWS.format(func=func, name=name, got=matrix.shape[0], n_users=n_users))


def _positives(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    out = sp.csr_matrix(sp.csr_matrix(matrix) > 0)
    out.sort_indices()
    return out


def _div(a: Any, b: Any) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(a, b)


def _reads_as(value: Any, missing: str) -> bool:
    return isinstance(value, str) and value.strip().casefold() == missing.casefold()


def reserved_label(values: Any, missing: str = MISSING_GROUP) -> int | None:
    """The position of the first present label that reads as ``missing`` (any case, surrounding blanks
    ignored), or None: such a value would be counted with the entities whose attribute is missing."""
    labels = pd.Series(pd.array(np.asarray(values, dtype=object), dtype="string"))
    uniques = labels.dropna().unique()
    if not any(_reads_as(str(u), missing) for u in uniques):  # the distinct values only: one pass of the column
        return None
    hit = labels.fillna("").str.strip().str.casefold() == missing.casefold()
    return int(np.flatnonzero(hit.to_numpy(dtype=bool))[0])


def read_labels(values: Any) -> pd.Series:
    """Labels as :func:`group_labels` reads them, one per value: a ``string`` series in NFC without surrounding
    blanks, a blank or absent label ``<NA>``. For code that matches labels against a name (a protected group).

    >>> read_labels(["F ", "e\\u0301", "  ", None]).tolist()
    ['F', 'é', <NA>, <NA>]
    """
    text = pd.Series(pd.array(np.asarray(values, dtype=object), dtype="string")).str.normalize("NFC").str.strip()
    return text.mask(text == "")


def read_label(label: str) -> str:
    """One name (a pack's protected group, say) as :func:`read_labels` reads a label."""
    return unicodedata.normalize("NFC", label).strip()


def group_labels(
    values: Any, missing: str = MISSING_GROUP, *, what: str = "group labels"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and sorted string names of group labels; missing labels form the group ``missing``.

    A label is read as it reads: in Unicode NFC (``"e\\u0301"`` and ``"\\u00e9"`` are one group ``é``) without
    surrounding blanks (``"F "`` is ``"F"``), and a blank one (``""``, ``"  "``) is missing, as the grouped
    path (:func:`recommender.fairness.groups_for`) and the provider labels read them: two groups that print
    alike would otherwise be judged apart, each smaller, and a blank one judged as a group.

    A present label that reads as ``missing`` is refused (:data:`RESERVED_LABEL`, naming ``what`` and its
    position): it would be counted with the missing group, which is reported and never judged.

    >>> group_labels(["M", "F", None, "F "])
    (array([1, 0, 2, 0]), ('F', 'M', 'missing'))
    """
    labels = pd.Series(pd.array(np.asarray(values, dtype=object), dtype="string"))
    raw_codes, raw_names = pd.factorize(labels, sort=False, use_na_sentinel=True)
    read = [unicodedata.normalize("NFC", str(n)).strip() for n in raw_names]  # the distinct labels only: one pass
    if any(_reads_as(n, missing) for n in read):
        at = reserved_label(values, missing)
        raise DataError(RESERVED_LABEL.format(what=what, where=f"entry {at}", value=labels.iloc[at], missing=missing))
    names = tuple(sorted({n for n in read if n}))
    place = {n: j for j, n in enumerate(names)}
    remap = np.asarray([place.get(n, -1) for n in read] + [-1], dtype=np.int64)
    codes = remap[raw_codes]  # the sentinel -1 of a missing label indexes the trailing -1
    if (codes < 0).any():  # the missing group, in its sorted place among the names
        merged = sorted({*names, missing})
        place = {n: j for j, n in enumerate(merged)}
        remap = np.asarray([place[n] for n in names] + [place[missing]], dtype=np.int64)
        return remap[codes], tuple(merged)
    return codes.astype(np.int64), names


def _per_user_groups(
    rows: np.ndarray, codes: np.ndarray, weights: np.ndarray | None, n_users: int, n_groups: int
) -> np.ndarray:
    """``(n_users, n_groups)`` sums of ``weights`` by (row, group) with one bincount."""
    flat = rows.astype(np.int64) * n_groups + codes
    return (
        np.bincount(flat, weights=weights, minlength=n_users * n_groups).reshape(n_users, n_groups).astype(np.float64)
    )
