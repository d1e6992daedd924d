"""Provider side: how the users' attention over the lists is shared among groups of items.

Attention falls off with rank (:func:`attention_weights`: the NDCG discount,
a geometric patience model, or plain counts). :func:`provider_exposure`
compares each provider group's share of that attention with its share of the
users' relevant items (disparate exposure after Singh & Joachims 2018), per
user and then averaged, with bootstrap intervals; it adds the exposure Gini
and the catalog coverage within each group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError, DataError
from recommender.fairness._common import (
    BAD_LENGTH,
    _div,
    _lists,
    _per_user_groups,
    _positives,
    _rows_match,
    group_labels,
)
from recommender.fairness._intervals import Interval, Seed, _check_boot, bootstrap_means, percentile_interval

ATTENTION_MODELS: tuple[str, ...] = ("log", "geometric", "uniform")
"""Position-based attention models (see :func:`attention_weights`)."""

BAD_ATTENTION = "The 'attention' parameter of {func} must be one of {known}. Got {got!r} instead."
BAD_PATIENCE = "The 'patience' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."


def attention_weights(k: int, attention: str = "log", patience: float = 0.8) -> np.ndarray:
    """The attention a user gives to ranks ``1..k`` (``(k,)`` float64).

    ``log``
        ``1 / log2(rank + 1)``, the NDCG discount (Singh & Joachims 2018).
    ``geometric``
        ``patience ** (rank - 1)``: the user of rank-biased precision (Moffat &
        Zobel 2008), who looks at the next item with probability ``patience``.
    ``uniform``
        1 at every rank (plain counts of appearances).

    >>> attention_weights(3).round(4).tolist(), attention_weights(3, "geometric", 0.5).tolist()
    ([1.0, 0.6309, 0.5], [1.0, 0.5, 0.25])
    """
    func = "attention_weights"
    if attention not in ATTENTION_MODELS:
        raise ConfigError(BAD_ATTENTION.format(func=func, known=", ".join(ATTENTION_MODELS), got=attention))
    ranks = np.arange(1, int(k) + 1, dtype=np.float64)
    if attention == "log":
        return 1.0 / np.log2(ranks + 1.0)
    if attention == "uniform":
        return np.ones_like(ranks)
    if isinstance(patience, bool) or not isinstance(patience, (int, float)) or not 0 < patience < 1:
        raise ConfigError(BAD_PATIENCE.format(func=func, got=patience))
    return float(patience) ** (ranks - 1.0)


def attention_key(attention: str = "log", patience: float = 0.8) -> str:
    """A stable name for an attention model: ``log``, ``uniform`` or ``geometric(0.8)``."""
    return f"geometric({float(patience):g})" if attention == "geometric" else attention


@dataclass(frozen=True)
class ExposureReport:
    """Exposure of provider groups under one attention model.

    Every evaluated user counts equally: a user's *exposure share* of a group is
    the share of the user's attention (over the list) falling on the group's
    items, and the user's *relevance share* the share of the user's test
    positives that are the group's items. The report averages both over the
    users with a non-empty list and at least one positive; the *exposure ratio*
    ``exposure_share / relevance_share`` is 1 for every group exactly when
    exposure is proportional to relevance (Singh & Joachims 2018's disparate
    treatment constraint, amortised over users); above 1 the group is
    over-exposed.
    """

    attention: str
    groups: tuple[str, ...]
    n_items: dict[str, int]
    item_share: dict[str, float]
    exposure_share: dict[str, float]
    exposure_share_ci: dict[str, Interval]
    relevance_share: dict[str, float]
    relevance_share_ci: dict[str, Interval]
    exposure_ratio: dict[str, float]
    exposure_ratio_ci: dict[str, Interval]
    coverage: dict[str, float]
    """Share of the group's items shown to at least one user."""
    gini_by_group: dict[str, float]
    """Gini of item exposure within the group's items."""
    gini: float
    """Gini of item exposure over the whole catalog (never-shown items count 0)."""
    coverage_all: float
    n_users: int
    confidence: float
    n_boot: int


def item_exposure(recommended: np.ndarray, n_items: int, weights: np.ndarray) -> np.ndarray:
    """Attention received by each item, summed over all lists (``(n_items,)``)."""
    rec = _lists(recommended, "item_exposure", n_items)
    valid = rec >= 0
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64)[: rec.shape[1]], rec.shape)
    return np.bincount(rec[valid], weights=w[valid], minlength=n_items).astype(np.float64)


def provider_exposure(
    recommended: np.ndarray,
    item_groups: Any,
    relevant: sp.spmatrix | sp.sparray,
    *,
    attention: str = "log",
    patience: float = 0.8,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> ExposureReport:
    """Exposure share of each provider group against its share of relevance (see :class:`ExposureReport`).

    Parameters
    ----------
    recommended:
        ``(n_users, k)`` item columns, ``-1`` padding.
    item_groups:
        ``(n_items,)`` provider group of every item column (missing -> ``"missing"``).
    relevant:
        ``(n_users, n_items)`` sparse relevance, rows aligned with ``recommended``:
        entries > 0 are relevant (each counts 1). recgov passes the users' test
        positives, so "relevance" is the demand observed in held-out data.
    attention, patience:
        The attention model (:func:`attention_weights`).
    n_boot, confidence, random_state:
        The bootstrap over users behind the intervals.

    Examples
    --------
    >>> rel = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]]))
    >>> rep = provider_exposure(np.array([[0, 1], [0, 2]]), ["a", "a", "b", "b"], rel, attention="uniform", n_boot=20)
    >>> rep.exposure_share, rep.relevance_share, rep.exposure_ratio
    ({'a': 0.75, 'b': 0.25}, {'a': 0.5, 'b': 0.5}, {'a': 1.5, 'b': 0.5})
    """
    func = "provider_exposure"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    item_codes, names = group_labels(item_groups)
    n_items, n_groups = len(item_codes), len(names)
    rec = _lists(recommended, func, n_items)
    n_users, k = rec.shape
    rel = _positives(relevant)
    _rows_match(func, "'relevant'", rel, n_users)
    if rel.shape[1] != n_items:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'item_groups'", got=n_items, expected=rel.shape[1], what="one per item column"
            )
        )
    weights = np.broadcast_to(attention_weights(k, attention, patience), rec.shape)
    valid = rec >= 0
    rows = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)
    seen = _per_user_groups(rows[valid], item_codes[rec[valid]], weights[valid], n_users, n_groups)
    rel_rows = np.repeat(np.arange(n_users), np.diff(rel.indptr))
    wanted = _per_user_groups(rel_rows, item_codes[rel.indices], None, n_users, n_groups)
    seen_total, wanted_total = seen.sum(axis=1), wanted.sum(axis=1)
    keep = (seen_total > 0) & (wanted_total > 0)
    shares = np.concatenate([seen[keep] / seen_total[keep, None], wanted[keep] / wanted_total[keep, None]], axis=1)
    exposure_share = shares[:, :n_groups].mean(axis=0) if keep.any() else np.full(n_groups, np.nan)
    relevance_share = shares[:, n_groups:].mean(axis=0) if keep.any() else np.full(n_groups, np.nan)
    draws = bootstrap_means(shares, n_boot=n_boot, random_state=random_state)[:, 0, :]
    e_draws, r_draws = draws[:, :n_groups], draws[:, n_groups:]
    e_low, e_high = percentile_interval(e_draws, confidence)
    r_low, r_high = percentile_interval(r_draws, confidence)
    q_low, q_high = percentile_interval(_div(e_draws, r_draws), confidence)
    ratio = _div(exposure_share, relevance_share)
    per_item = item_exposure(rec, n_items, attention_weights(k, attention, patience))
    n_in = np.bincount(item_codes, minlength=n_groups)
    shown = np.bincount(item_codes, weights=(per_item > 0).astype(np.float64), minlength=n_groups)

    def by(values: np.ndarray) -> dict[str, float]:
        return {g: float(values[i]) for i, g in enumerate(names)}

    def ci(low: np.ndarray, high: np.ndarray) -> dict[str, Interval]:
        return {g: (float(low[i]), float(high[i])) for i, g in enumerate(names)}

    return ExposureReport(
        attention=attention_key(attention, patience),
        groups=names,
        n_items={g: int(n_in[i]) for i, g in enumerate(names)},
        item_share=by(_div(n_in, max(n_items, 1))),
        exposure_share=by(exposure_share),
        exposure_share_ci=ci(e_low, e_high),
        relevance_share=by(relevance_share),
        relevance_share_ci=ci(r_low, r_high),
        exposure_ratio=by(ratio),
        exposure_ratio_ci=ci(q_low, q_high),
        coverage=by(_div(shown, n_in)),
        gini_by_group={g: M.gini_index(per_item[item_codes == i]) for i, g in enumerate(names)},
        gini=M.gini_index(per_item),
        coverage_all=float((per_item > 0).mean()) if n_items else float("nan"),
        n_users=int(keep.sum()),
        confidence=confidence,
        n_boot=n_boot,
    )
