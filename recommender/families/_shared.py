"""What the collaborative families share: block scoring, history tags, explain's fallback, npz state.

Not a family (the leading underscore keeps discovery from importing it as one).

* :func:`score_blocks` ranks users a block at a time (one dense ``block x
  n_items`` score matrix within :func:`recommender.scoring.block_rows`'s
  budget), seen items masked by index arithmetic: no Python loop per user.
* :func:`history_tags` turns an exact decomposition of each list item's score
  over the user's history items into ``because_you_interacted`` tags.
* :class:`StateModel` gives a family ``save``/``load`` without pickle and a
  content-addressed ``version_id_`` from two methods: :meth:`StateModel._state`
  (JSON meta and arrays) and :meth:`StateModel._restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.family import (
    ErasureKind,
    ForgetOutcome,
    GovernedModel,
    ModelTag,
    content_version_id,
    fallback_tag,
    load_state,
    save_state,
    train_arrays,
    train_from_arrays,
    without_users,
)
from recommender.scoring import block_rows, mask_seen, top_k_rows

__all__ = [
    "StateModel",
    "score_blocks",
    "history_tags",
    "explain_lists",
    "explain_history_batch",
    "binarised",
    "check_bool",
    "check_int",
    "check_number",
    "check_choice",
]


def binarised(matrix: sp.spmatrix, binary: bool) -> sp.csr_matrix:
    """``matrix`` as float64 CSR, its stored values set to 1.0 when ``binary`` (the 0/1 pattern a family learns
    from instead of summed confidence weights)."""
    x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    if binary:
        x.data = (x.data > 0).astype(np.float64)
    return x


def check_bool(family: str, name: str, value: Any) -> None:
    """A ``ConfigError`` unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"The {name!r} parameter of {family} must be a bool. Got {value!r} instead.")


def check_int(family: str, name: str, value: Any, low: int) -> None:
    """A ``ConfigError`` in scikit-learn's words unless ``value`` is an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"The {name!r} parameter of {family} must be an int in the range [{low}, inf). Got {value!r} instead.")


def check_number(family: str, name: str, value: Any, low: float, *, inclusive: bool = True) -> None:
    """A ``ConfigError`` unless ``value`` is a finite real number >= ``low`` (> with ``inclusive=False``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= low if inclusive else value > low)
    if not ok:
        bracket = "[" if inclusive else "("
        raise ConfigError(f"The {name!r} parameter of {family} must be a float in the range {bracket}{low}, inf). Got {value!r} instead.")


def check_choice(family: str, name: str, value: Any, choices: Sequence[str]) -> None:
    """A ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"The {name!r} parameter of {family} must be one of {sorted(choices)}. Got {value!r} instead.")


def score_blocks(
    score: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    *,
    n_items: int,
    seen: sp.csr_matrix | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(indices, scores)`` of ``users``: ``score(rows)`` gives a dense ``(len(rows), n_items)`` block.

    Blocks hold at most :func:`block_rows` users; with ``seen`` the stored items of each user's row are masked.
    """
    users = np.asarray(users, dtype=np.int64)
    idx = np.full((len(users), k), -1, dtype=np.int64)
    val = np.full((len(users), k), np.nan, dtype=np.float32)
    step = max(1, block_rows(2 * n_items))
    for start in range(0, len(users), step):
        rows = users[start : start + step]
        block = np.array(score(rows), dtype=np.float64, copy=True, order="C")
        if seen is not None:
            mask_seen(block, seen, rows)
        idx[start : start + len(rows)], val[start : start + len(rows)] = top_k_rows(block, k)
    return idx, val


def history_tags(
    contributions: np.ndarray, history: np.ndarray, item_ids: np.ndarray, *, n: int = 3, exact: bool = True
) -> list[ModelTag]:
    """One tag per list item from ``contributions`` ``(L, |H|)``: the term each history item adds to the score.

    The tag names the (up to ``n``) history items adding most, with their terms and their share of the
    score; an item no history item raises gets ``no_history_signal`` (it fills the list at its score).
    """
    tags: list[ModelTag] = []
    history = np.asarray(history)
    contributions = np.asarray(contributions, dtype=np.float64)
    # (L, 0) for a user whose training row is empty: every item gets no_history_signal
    contributions = contributions.reshape(contributions.shape[0] if contributions.ndim == 2 else -1, len(history))
    totals = contributions.sum(axis=1)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :n]
    for row in range(contributions.shape[0]):
        best = [j for j in order[row] if contributions[row, j] > 0]
        total = float(totals[row])
        if not best:
            tags.append(
                ModelTag(
                    "no_history_signal",
                    "Nothing in your history raises its score; it fills the list",
                    (),
                    exact,
                    {"score": round(total, 6)},
                )
            )
            continue
        names = tuple(str(item_ids[history[j]]) for j in best)
        terms = [float(contributions[row, j]) for j in best]
        positive = float(contributions[row][contributions[row] > 0].sum())
        tags.append(
            ModelTag(
                "because_you_interacted",
                f"Because you interacted with {', '.join(names)}",
                names,
                exact,
                {
                    "score": round(total, 6),
                    "contributions": [round(t, 6) for t in terms],
                    "share_of_positive": round(sum(terms) / positive, 6) if positive > 0 else None,
                },
            )
        )
    return tags


def explain_history_batch(
    model: GovernedModel,
    user_ids: Sequence[str],
    item_lists: Sequence[Sequence[str]],
    weight_columns: Callable[[np.ndarray], np.ndarray],
    values: Callable[[sp.csr_matrix], sp.csr_matrix],
    *,
    n: int = 3,
) -> list[list[list[ModelTag]]]:
    """:func:`explain_lists` + :func:`history_tags` for many lists at once: the tags ``explain`` gives, list by list.

    For a family whose score is ``s_ui = sum_j x_uj W_ji`` over the history: ``weight_columns(cols)`` is the
    dense ``W[:, cols]`` ``(n_items, len(cols))`` and ``values(rows)`` the ``x`` the family scores with. A block
    of users at a time, the terms of every (list item, history item) pair are one gather into a padded
    ``(users, list length, longest history)`` array (padding adds 0 terms, never named); the top terms come
    from one stable sort. Only the tag objects are built one by one.
    """
    model.check_fitted("explain")
    train = model.train_
    if len(user_ids) != len(item_lists):
        raise ConfigError(f"explain_batch: {len(user_ids)} users but {len(item_lists)} lists")
    rows = train.user_index(np.asarray(list(user_ids), dtype=object)) if len(user_ids) else np.empty(0, dtype=np.int64)
    out: list[list[list[ModelTag]]] = [[] for _ in range(len(user_ids))]
    lengths = np.array([len(items) for items in item_lists], dtype=np.int64)
    flat = [str(i) for items in item_lists for i in items]
    cols_flat = train.item_index(np.asarray(flat, dtype=object)) if flat else np.empty(0, dtype=np.int64)
    missing = int((cols_flat < 0).sum())
    if missing:
        raise ConfigError(f"explain: {missing} of {len(cols_flat)} item(s) are not in the model's catalogue")
    starts = np.concatenate([[0], np.cumsum(lengths)])
    fallback = model.fallback_mask(rows)  # unknown, or known with an empty history
    for u in np.flatnonzero(fallback):
        out[u] = [[fallback_tag(model.popularity_[c])] for c in cols_flat[starts[u] : starts[u + 1]]]
    known = np.flatnonzero(~fallback & (lengths > 0))
    x = values(train.matrix[rows[known]]) if len(known) else None
    width = int(lengths.max()) if len(lengths) else 0
    step = max(1, block_rows(max(1, width) * max(1, int(np.diff(train.matrix.indptr).max(initial=0)))) // 4)
    for start in range(0, len(known), step):
        block = known[start : start + step]
        sub = x[start : start + len(block)]
        counts = np.diff(sub.indptr)
        hmax = int(counts.max(initial=0))
        # padded histories: hist[b, h] the h-th history item of user b (0 where padded, with value 0)
        pos = np.arange(hmax)[None, :] < counts[:, None]
        hist = np.zeros((len(block), hmax), dtype=np.int64)
        vals = np.zeros((len(block), hmax), dtype=np.float64)
        hist[pos], vals[pos] = sub.indices, sub.data
        lists = np.zeros((len(block), width), dtype=np.int64)
        lpos = np.arange(width)[None, :] < lengths[block][:, None]
        lists[lpos] = np.concatenate([cols_flat[starts[u] : starts[u + 1]] for u in block])
        cols, where = np.unique(lists, return_inverse=True)
        w = np.asarray(weight_columns(cols), dtype=np.float64)  # (n_items, len(cols))
        terms = w[hist[:, None, :], where.reshape(lists.shape)[:, :, None]] * vals[:, None, :]  # (B, L, H)
        totals = terms.sum(axis=2)
        positive = np.where(terms > 0, terms, 0.0).sum(axis=2)
        order = np.argsort(-terms, axis=2, kind="stable")[:, :, :n]
        top = np.take_along_axis(terms, order, axis=2)
        for b, u in enumerate(block):
            tags = []
            for j in range(int(lengths[u])):
                keep = top[b, j] > 0
                total = float(totals[b, j])
                if not keep.any():
                    tags.append([ModelTag("no_history_signal", "Nothing in your history raises its score; it fills the list", (), True, {"score": round(total, 6)})])
                    continue
                names = tuple(str(train.item_ids[hist[b, h]]) for h in order[b, j][keep])
                chosen = [float(t) for t in top[b, j][keep]]
                share = round(sum(chosen) / float(positive[b, j]), 6) if positive[b, j] > 0 else None
                tags.append(
                    [
                        ModelTag(
                            "because_you_interacted",
                            f"Because you interacted with {', '.join(names)}",
                            names,
                            True,
                            {"score": round(total, 6), "contributions": [round(t, 6) for t in chosen], "share_of_positive": share},
                        )
                    ]
                )
            out[u] = tags
    return out


def explain_lists(
    model: GovernedModel,
    user_id: str,
    item_ids: Sequence[str],
    known: Callable[[int, np.ndarray], list[list[ModelTag]]],
) -> list[list[ModelTag]]:
    """Shared front of ``explain``: checks, the cold-start tag, then ``known(row, item_indices)``.

    An item id the model does not hold is a :class:`ConfigError` (a list can only hold the model's items).
    """
    model.check_fitted("explain")
    train = model.train_
    items = train.item_index(np.asarray(list(item_ids), dtype=object)) if len(item_ids) else np.empty(0, dtype=np.int64)
    missing = int((items < 0).sum())
    if missing:
        raise ConfigError(f"explain: {missing} of {len(items)} item(s) are not in the model's catalogue")
    row = int(train.user_index(np.asarray([user_id], dtype=object))[0])
    if model.fallback_mask(np.array([row]))[0]:  # unknown, or known with an empty history
        return [[fallback_tag(model.popularity_[i])] for i in items]
    return known(row, np.asarray(items, dtype=np.int64))


class StateModel(GovernedModel):
    """A family whose fitted state is JSON meta plus arrays: ``save``/``load`` without pickle, ``version_id_``.

    Subclasses set ``FORMAT`` and implement :meth:`_state` and :meth:`_restore`; :meth:`_seal` (called at
    the end of a fit and after ``forget``) sets ``version_id_`` from exactly what :meth:`save` writes.
    """

    FORMAT: ClassVar[str] = "recgov.family.v1"

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-ready meta (besides the parameters) and the learned arrays (besides the training matrix)."""
        return {}, {}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Set the learned attributes from what :meth:`_state` gave (``train_`` is already set)."""

    def _check_params(self) -> None:
        """Raise a :class:`ConfigError` naming a parameter outside its range (a fit checks them too; so does
        :meth:`load`, whose file may have been edited)."""

    def _full_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self._state()
        return {"family": self.family, "params": self.get_params(), **meta}, {**arrays, **train_arrays(self.train_)}

    def fit(self, train: InteractionMatrix, *, show_progress: bool = False) -> Self:
        """Learn from ``train``, return ``self`` and set ``version_id_`` from the fitted content."""
        super().fit(train, show_progress=show_progress)
        self._seal()
        return self

    def _forget_by_refit(self, user_ids: Sequence[str], method: str) -> ForgetOutcome:
        """Exact erasure by a fit on ``train_`` without the subjects' rows (and the items only they had):
        the model is then what a fit on the rest gives; ``method`` names how in the outcome's detail."""
        self.check_fitted("forget")
        new_train, rows = without_users(self.train_, user_ids)
        ids = tuple(str(u) for u in self.train_.user_ids[rows])
        self._fit(new_train, show_progress=False)
        self.train_ = new_train
        self.popularity_ = popularity_of(new_train)
        self._seal()
        return ForgetOutcome(ErasureKind.exact, ids, 0.0, False, {"method": method})

    def _seal(self) -> None:
        meta, arrays = self._full_state()
        self.version_id_ = content_version_id(self.family, meta, arrays)

    def save(self, path: str | Path) -> str:
        """Write the fitted model to ``path`` (``.npz``, JSON meta, no pickle) and return the file's SHA-256."""
        self.check_fitted("save")
        meta, arrays = self._full_state()
        return save_state(path, format=self.FORMAT, meta={**meta, "version_id": self.version_id_}, arrays=arrays)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model :meth:`save` wrote; it recommends and explains exactly as the saved one."""
        meta, arrays = load_state(path, format=cls.FORMAT)
        try:
            model = cls(**meta["params"])
            model._check_params()
            train = train_from_arrays(arrays)
            model.train_ = train
            model.popularity_ = _popularity(train)
            model._restore(meta, arrays)
            if train.n_users:
                # lists of the first and the last user from the restored arrays: shapes that do not fit the
                # catalogue or the users (a factor matrix a row short) fail here, located
                model._recommend_known(np.unique([0, train.n_users - 1]).astype(np.int64), 1, filter_seen=True)
        except (KeyError, TypeError, ValueError, IndexError, ConfigError) as err:
            raise DataError(
                f"{path}: a {cls.FORMAT} file with missing, invalid or inconsistent content ({type(err).__name__}: {err})"
            ) from err
        model._seal()
        if model.version_id_ != meta.get("version_id"):
            raise DataError(f"{path}: the content does not match its version id (the file was altered or is damaged)")
        return model


def _popularity(train: InteractionMatrix) -> np.ndarray:
    return np.asarray((train.matrix > 0).sum(axis=0)).ravel().astype(np.float64)


def popularity_of(train: InteractionMatrix) -> np.ndarray:
    """Users per item (the cold-start ranking), as :meth:`Recommender.fit` computes it."""
    return _popularity(train)
