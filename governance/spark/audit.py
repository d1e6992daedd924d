"""Audit figures of a batch of lists, computed on Spark: quality against held-out events and exposure by group.

The definitions are recgov's (:mod:`recommender.metrics`): NDCG@k with binary gains, the
``1/log2(rank+1)`` discount and the ideal over ``min(k, n_relevant)``; recall@k as hits over all
of a user's relevant items; both averaged over the users with at least one relevant item (and a
list). Exposure counts each appearance at rank ``i`` as ``1/log2(i+1)`` (``position_weighted``)
and gives each provider group's share of the total. The test suite checks these against
:mod:`recommender.metrics` on the same lists.
"""

from __future__ import annotations

from typing import Any

__all__ = ["list_figures"]


def list_figures(lists: Any, relevant: Any, k: int, item_groups: Any | None = None) -> dict[str, Any]:
    """``lists``: ``(user_id, items array<string>)`` best first; ``relevant``: ``(user_id, item_id)`` held-out
    positives; ``item_groups``: ``(item_id, group string)`` or None. Returns ``ndcg``, ``recall``,
    ``users`` (evaluated) and, with groups, ``exposure_share`` per group (position weighted), items
    without a group counting for ``missing``. A group that reads as ``missing`` (any case, surrounding
    blanks ignored) is a :class:`~recommender.errors.DataError` naming the item, before any figure."""
    from pyspark.sql import functions as F

    from recommender.fairness import MISSING_GROUP, RESERVED_LABEL

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        from recommender.errors import ConfigError

        raise ConfigError(f"The 'k' parameter of list_figures must be an int in the range [1, inf). Got {k!r} instead.")
    if item_groups is not None:
        groups = item_groups.select("item_id", F.col("group").cast("string").alias("group"))
        reads_missing = F.lower(F.regexp_replace("group", r"^\s+|\s+$", "")) == MISSING_GROUP.casefold()
        reserved = groups.where(reads_missing).orderBy("item_id").limit(1).collect()
        if reserved:
            from recommender.errors import DataError

            where = f"the group of item {reserved[0]['item_id']!r}"
            value = reserved[0]["group"]
            raise DataError(RESERVED_LABEL.format(what="list_figures", where=where, value=value, missing=MISSING_GROUP))
    ranked = lists.select("user_id", F.posexplode(F.slice("items", 1, k)).alias("pos", "item_id"))
    rel = relevant.select("user_id", "item_id").distinct()
    n_rel = rel.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_rel"))
    hits = ranked.join(rel, ["user_id", "item_id"]).groupBy("user_id").agg(
        F.sum(1.0 / F.log2(F.col("pos") + 2)).alias("dcg"), F.count(F.lit(1)).alias("hits")
    )
    ideal = F.aggregate(F.sequence(F.lit(0), F.least(F.col("n_rel"), F.lit(k)) - 1), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 2))
    per_user = (
        lists.select("user_id").distinct().join(n_rel, "user_id").join(hits, "user_id", "left")
        .select(
            (F.coalesce(F.col("dcg"), F.lit(0.0)) / ideal).alias("ndcg"),
            (F.coalesce(F.col("hits"), F.lit(0)) / F.col("n_rel")).alias("recall"),
        )
    )  # fmt: skip
    row = per_user.agg(F.avg("ndcg").alias("ndcg"), F.avg("recall").alias("recall"), F.count(F.lit(1)).alias("users")).collect()[0]
    out: dict[str, Any] = {"k": k, "ndcg": row["ndcg"], "recall": row["recall"], "users": int(row["users"])}
    if item_groups is not None:
        weighted = ranked.join(groups, "item_id", "left")
        by_group = weighted.groupBy(F.coalesce("group", F.lit(MISSING_GROUP)).alias("group"))
        shares = by_group.agg(F.sum(1.0 / F.log2(F.col("pos") + 2)).alias("w")).collect()
        total = sum(r["w"] for r in shares) or 1.0
        out["exposure_share"] = {r["group"]: r["w"] / total for r in sorted(shares, key=lambda r: r["group"])}
    return out
