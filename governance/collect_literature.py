"""The audit's groups as the pack declares them, and the metrics the fairness literature cites.

:func:`audit_groups` turns the pack's ``fairness`` section (audit attributes,
``bins``, ``intersections``) into one label per evaluated user for every
attribute and declared intersection (:func:`recommender.fairness.groups_for`),
and counts them (:func:`recommender.fairness.census`): a group under
``fairness.min_group_size`` is reported and marked as not judged. Without bins
or intersections nothing changes: the collector reads the attributes as before.

:func:`literature_facts` computes, on the audited lists, the figures of
:mod:`recommender.fairness` that papers report (PopREO, PopRSP, ACLT, RBP, the
rank-weighted exposure Gini, exposure entropy, aggregate diversity,
serendipity against the most popular items, each category's share of the
lists' log attention beside its share of the catalog (an item in several
categories counts in each), item MAD and bias disparity over
the provider groups, user MAD of NDCG per attribute over the judged groups, and
the exposure total variation between every pair of judged groups). They are
reported, never judged: no rule reads them yet. Exposure amortised over repeated
requests (expected exposure, equity of attention) needs a log of served
requests, which an offline audit does not have, and is not among them.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender import fairness as F
from recommender import metrics as M

__all__ = ["audit_cells", "audit_groups", "literature_facts", "wants_groups"]


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def wants_groups(section: Any) -> bool:
    """Whether the pack declares groups beyond plain attributes (or asks for the literature metrics)."""
    return bool(section.bins or section.intersections or section.literature_metrics)


def _spec(section: Any) -> F.GroupingSpec:
    bins = {name: F.Binning(name, tuple(b.edges), tuple(b.labels), b.right) for name, b in section.bins.items()}
    return F.GroupingSpec(
        attributes=tuple(section.audit_attributes),
        bins=bins,
        intersections=tuple(tuple(c) for c in section.intersections),
        min_size=section.min_group_size,
    )


def audit_groups(
    users: pd.DataFrame | None, section: Any, user_ids: np.ndarray, rows: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Labels of the evaluated users (``rows`` of ``user_ids``) per attribute and declared intersection,
    and why any attribute is unavailable (an attribute or intersection whose column the users table lacks)."""
    table = users if users is not None else pd.DataFrame()
    aligned = table.reindex(pd.Index(np.asarray(user_ids, dtype=object).astype(str)))  # as the collector aligns
    spec = _spec(section)
    labels: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    present = set(table.columns)
    for name in spec.attributes:
        if name not in present:
            unavailable[name] = f"the users table has no column {name!r}"
            continue
        labels.update(F.groups_for(aligned, F.GroupingSpec((name,), spec.bins, (), spec.min_size)))
    for combo in spec.intersections:
        key = F.INTERSECTION_JOIN.join(combo)
        missing = [a for a in combo if a not in present]
        if missing:
            unavailable[key] = f"the users table has no column {missing[0]!r}"
            continue
        labels.update(F.groups_for(aligned, F.GroupingSpec((), spec.bins, (combo,), spec.min_size)))
    return {name: values[rows] for name, values in labels.items()}, unavailable


def audit_cells(
    users: pd.DataFrame | None, section: Any, user_ids: np.ndarray, rows: np.ndarray
) -> dict[str, tuple[str, ...]]:
    """Every combination of the values the evaluated users hold, for each declared intersection whose columns the
    users table has (:func:`recommender.fairness.intersection_cells`): the census lists the empty ones with n = 0."""
    table = users if users is not None else pd.DataFrame()
    aligned = table.reindex(pd.Index(np.asarray(user_ids, dtype=object).astype(str))).iloc[np.asarray(rows)]
    spec = _spec(section)
    present = set(table.columns)
    combos = tuple(combo for combo in spec.intersections if all(a in present for a in combo))
    return F.cells_for(aligned, F.GroupingSpec((), spec.bins, combos, spec.min_size))


def literature_facts(
    recommended: np.ndarray,
    history: sp.csr_matrix,
    relevant: sp.csr_matrix,
    popularity: np.ndarray,
    ndcg: np.ndarray | None,
    user_groups: dict[str, np.ndarray],
    census: dict[str, F.GroupCensus],
    item_groups: np.ndarray | None,
    *,
    item_categories: np.ndarray | None = None,
    head_share: float = 0.8,
) -> dict[str, Any]:
    """The literature's figures of the audited lists (plain JSON types; NaN becomes None)."""
    n_items = len(popularity)
    k = recommended.shape[1]
    out: dict[str, Any] = {"k": int(k), "head_share": float(head_share)}
    reo = F.pop_reo(recommended, relevant, history, popularity=popularity, head_share=head_share)
    rsp = F.pop_rsp(recommended, history, popularity=popularity, head_share=head_share)
    for name, rep in (("pop_reo", reo), ("pop_rsp", rsp)):
        out[name] = {"value": _num(rep.value), "probability": {g: _num(v) for g, v in rep.probability.items()}}
    out["aclt"] = _num(M.defined_mean(F.aclt(recommended, popularity, head_share)))  # users with a list
    out["rbp"] = _num(M.defined_mean(F.rank_biased_precision(recommended, relevant, patience=0.85)))
    out["rank_weighted_exposure_gini"] = _num(F.rank_weighted_exposure_gini(recommended, n_items, patience=0.85))
    out["exposure_entropy"] = _num(F.exposure_entropy(recommended, n_items))
    out["aggregate_diversity"] = _num(F.aggregate_diversity(recommended, n_items))
    most_popular = np.argsort(-popularity, kind="stable")[:k]
    out["serendipity"] = _num(M.defined_mean(F.serendipity(recommended, relevant, most_popular)))
    if item_categories is not None:  # many-valued: an item counts in each of its categories
        membership = F.multi_membership(item_categories)
        shares = F.membership_exposure(recommended, membership, F.attention_weights(k, "log"))
        size = np.asarray((membership[0] > 0).sum(axis=0)).ravel() / max(n_items, 1)
        out["category_exposure"] = {
            g: {"exposure_share": _num(shares[g]), "catalog_share": _num(size[j])} for j, g in enumerate(membership[1])
        }
    if item_groups is not None:
        mad = F.item_mad(recommended, relevant, item_groups)
        out["item_mad"] = {"value": _num(mad.value), "by_group": {g: _num(v) for g, v in mad.by_group.items()}}
    by_attribute: dict[str, Any] = {}
    for name, labels in user_groups.items():
        judged = set(census[name].judged_groups())
        keep = np.array([lab is not None and str(lab) in judged for lab in labels], dtype=bool)
        entry: dict[str, Any] = {"judged_groups": sorted(judged)}
        if ndcg is not None:
            mad = F.user_mad(ndcg[keep], labels[keep].astype(str))
            by_group = {g: _num(v) for g, v in mad.by_group.items()}
            entry["user_mad_ndcg"] = {"value": _num(mad.value), "by_group": by_group}
        pairs = {}
        for a, b in itertools.combinations(sorted(judged), 2):
            pairs[f"{a} | {b}"] = _num(F.exposure_l1(recommended[keep], n_items, labels[keep].astype(str), a, b))
        entry["exposure_tv"] = pairs
        if item_groups is not None and keep.any():
            bd = F.bias_disparity(recommended[keep], history[keep], labels[keep].astype(str), item_groups)
            entry["bias_disparity"] = {
                part: {g: {c: _num(v) for c, v in row.items()} for g, row in table.items()}
                for part, table in bd.as_dict().items()
            }
        by_attribute[name] = entry
    out["by_attribute"] = by_attribute
    return out
