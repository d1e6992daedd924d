"""Popularity bias: how far the lists lean to popular items, and whose items they miss.

:func:`popularity_bias` sets the lists' average recommendation popularity
against the users' own profiles and the catalog, measures the long-tail share,
and pools recall on the test positives per popularity stratum
(:func:`popularity_strata`: head, mid and tail each hold about a third of the
training interactions), with the gap between strata. The per-user figures are
those of :mod:`recommender.metrics`, so the evaluation and the audit agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError
from recommender.fairness._common import _div, _lists, _per_user_groups, _positives, _rows_match
from recommender.fairness._intervals import (
    Interval,
    Seed,
    _check_boot,
    _interval,
    bootstrap_means,
    percentile_interval,
)

POPULARITY_STRATA: tuple[str, ...] = ("head", "mid", "tail")
"""The popularity strata of :func:`popularity_strata`, most popular first."""

BAD_CUTS = (
    "The 'cuts' parameter of {func} must be increasing shares in (0, 1), one fewer than the labels "
    "({n_labels}). Got {got!r} instead."
)


def popularity_strata(
    popularity: np.ndarray, cuts: Sequence[float] = (1 / 3, 2 / 3), labels: Sequence[str] = POPULARITY_STRATA
) -> np.ndarray:
    """Stratum code of every item (0 = ``labels[0]``, the most popular) by its training popularity.

    Items are ranked from the most to the least popular and cut where the
    cumulative share of training interactions *before* an item reaches each of
    ``cuts``: with the default thirds, head, mid and tail items each account for
    about a third of all training interactions (the head holds few items, the
    tail many). Items tied in popularity share the stratum of the first of
    them; items nobody interacted with are in the last stratum.

    >>> popularity_strata(np.array([6.0, 3.0, 2.0, 1.0, 0.0]), cuts=(0.5,), labels=("head", "tail")).tolist()
    [0, 1, 1, 1, 1]
    """
    func = "popularity_strata"
    cuts_arr = np.asarray(cuts, dtype=np.float64)
    if len(cuts_arr) != len(labels) - 1 or np.any((cuts_arr <= 0) | (cuts_arr >= 1)) or np.any(np.diff(cuts_arr) <= 0):
        raise ConfigError(BAD_CUTS.format(func=func, n_labels=len(labels), got=tuple(cuts)))
    pop = np.asarray(popularity, dtype=np.float64)
    last = len(labels) - 1
    total = pop.sum()
    if total <= 0:
        return np.full(len(pop), last, dtype=np.int64)
    order = np.argsort(-pop, kind="stable")
    ranked = pop[order]
    before = (np.cumsum(ranked) - ranked) / total
    stratum = np.searchsorted(cuts_arr, before, side="right")
    # ties: the first (most popular position) of each run of equal popularity decides
    first = np.r_[0, np.flatnonzero(np.diff(ranked) != 0) + 1]
    stratum = np.repeat(stratum[first], np.diff(np.r_[first, len(ranked)]))
    stratum[ranked <= 0] = last
    out = np.empty(len(pop), dtype=np.int64)
    out[order] = stratum
    return out


@dataclass(frozen=True)
class PopularityReport:
    """How much the lists lean to popular items.

    ``arp``: mean over users of the mean training popularity (users per item)
    of the listed items (Abdollahpouri et al.'s average recommendation
    popularity). ``profile_popularity``: the same over each user's training
    positives. ``arp_ratio = arp / profile_popularity`` (1: the lists are as
    popular as what the users chose themselves; above 1: the model amplifies
    popularity; Abdollahpouri et al. 2019's popularity lift is ``arp_ratio - 1``).
    ``arp_catalog_ratio = arp / catalog_popularity`` compares with the mean
    item of the catalog instead. Stratified recall is pooled per stratum:
    ``hits on the stratum's test positives / the stratum's test positives``.
    """

    arp: float
    profile_popularity: float
    catalog_popularity: float
    arp_ratio: float
    arp_ratio_ci: Interval
    arp_catalog_ratio: float
    long_tail_share: float
    long_tail_share_ci: Interval
    profile_long_tail_share: float
    strata: dict[str, dict[str, float]]
    """Stratum -> ``n_items``, ``n_positives``, ``n_hits``, ``recall``, ``recall_low``, ``recall_high``."""
    recall_gap: float
    """``max - min`` stratified recall over the strata with test positives."""
    recall_gap_ci: Interval
    head_share: float
    n_users: int
    confidence: float
    n_boot: int


def _row_means(matrix: sp.csr_matrix, per_item: np.ndarray) -> np.ndarray:
    counts = np.diff(matrix.indptr).astype(np.float64)
    return _div(matrix @ per_item, counts)


def popularity_bias(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    relevant: sp.spmatrix | sp.sparray,
    popularity: np.ndarray,
    *,
    head_share: float = 0.8,
    cuts: Sequence[float] = (1 / 3, 2 / 3),
    labels: Sequence[str] = POPULARITY_STRATA,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> PopularityReport:
    """Popularity bias of the lists (see :class:`PopularityReport`).

    Parameters
    ----------
    recommended:
        ``(n_users, k)`` item columns, ``-1`` padding.
    history:
        ``(n_users, n_items)`` the users' training positives (entries > 0).
    relevant:
        ``(n_users, n_items)`` their test positives (entries > 0).
    popularity:
        ``(n_items,)`` training popularity (:func:`recommender.metrics.item_popularity`).
    head_share:
        Defines the long tail (:func:`recommender.metrics.long_tail_items`).
    cuts, labels:
        The popularity strata (:func:`popularity_strata`).
    """
    func = "popularity_bias"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    pop = np.asarray(popularity, dtype=np.float64)
    n_items = len(pop)
    rec = _lists(recommended, func, n_items)
    n_users = rec.shape[0]
    hist, rel = _positives(history), _positives(relevant)
    for name, matrix in (("'history'", hist), ("'relevant'", rel)):
        _rows_match(func, name, matrix, n_users)
    arp_u = M.average_popularity(rec, pop)
    profile_u = _row_means(hist, pop)
    tail = M.long_tail_items(pop, head_share)
    lts_u = M.long_tail_share(rec, pop, head_share)
    strata = popularity_strata(pop, cuts, labels)
    n_strata = len(labels)
    hits = M.hit_matrix(rec, rel)
    hit_rows = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)[hits]
    hits_u = _per_user_groups(hit_rows, strata[rec[hits]], None, n_users, n_strata)
    pos_u = _per_user_groups(
        np.repeat(np.arange(n_users), np.diff(rel.indptr)), strata[rel.indices], None, n_users, n_strata
    )
    both = ~np.isnan(arp_u) & ~np.isnan(profile_u)
    columns = np.column_stack([np.where(both, arp_u, np.nan), np.where(both, profile_u, np.nan), lts_u, hits_u, pos_u])
    draws = bootstrap_means(columns, n_boot=n_boot, random_state=random_state)[:, 0, :]
    recall_draws = _div(draws[:, 3 : 3 + n_strata], draws[:, 3 + n_strata :])
    r_low, r_high = percentile_interval(recall_draws, confidence)
    n_hits, n_pos = hits_u.sum(axis=0), pos_u.sum(axis=0)
    recall = _div(n_hits, n_pos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        defined = n_pos > 0
        gap = float(recall[defined].max() - recall[defined].min()) if defined.sum() >= 2 else float("nan")
        gap_draws = (
            np.nanmax(recall_draws[:, defined], axis=1) - np.nanmin(recall_draws[:, defined], axis=1)
            if defined.sum() >= 2
            else np.full(n_boot, np.nan)
        )
    arp, profile = M.defined_mean(arp_u[both]), M.defined_mean(profile_u[both])
    catalog = float(pop.mean()) if n_items else float("nan")
    return PopularityReport(
        arp=M.defined_mean(arp_u),
        profile_popularity=M.defined_mean(profile_u),
        catalog_popularity=catalog,
        arp_ratio=float(_div(arp, profile)),
        arp_ratio_ci=_interval(_div(draws[:, 0], draws[:, 1]), confidence),
        arp_catalog_ratio=float(_div(M.defined_mean(arp_u), catalog)),
        long_tail_share=M.defined_mean(lts_u),
        long_tail_share_ci=_interval(draws[:, 2], confidence),
        profile_long_tail_share=M.defined_mean(_row_means(hist, tail.astype(np.float64))),
        strata={
            str(label): {
                "n_items": int((strata == s).sum()),
                "n_positives": int(n_pos[s]),
                "n_hits": int(n_hits[s]),
                "recall": float(recall[s]),
                "recall_low": float(r_low[s]),
                "recall_high": float(r_high[s]),
            }
            for s, label in enumerate(labels)
        },
        recall_gap=gap,
        recall_gap_ci=_interval(gap_draws, confidence),
        head_share=float(head_share),
        n_users=n_users,
        confidence=confidence,
        n_boot=n_boot,
    )
