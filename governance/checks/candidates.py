"""Candidate generation: approximate nearest-neighbour lists hold what exact search would return.

An ANN index trades recall for speed; when served lists come from one, the
audit measures the trade (:mod:`governance.collect_ann`: the audited model's
item factors indexed as the rule's ``ann`` says, the test users' filtered
lists against exact search) and this check holds it to a floor. Filtering that
returns a blocked item or a short list fails it whatever the recall.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register
from recommender.ann import ANNConfig

__all__ = ["AnnRecall"]


@register
class AnnRecall(Check):
    """Recall@k of the ANN candidate lists against exact search stays above a floor, with no leak and no short list."""

    name: ClassVar[str] = "ann_recall"
    section: ClassVar[str] = "quality"
    needs: ClassVar[tuple[str, ...]] = ("ann",)
    summary: ClassVar[str] = "ANN candidates (faiss) keep recall@k against exact filtered search at least `min_recall`."

    class Config(CheckConfig):
        min_recall: float = Field(0.95, gt=0, le=1)
        """Lowest acceptable recall@k of the ANN lists against the exact lists of the same users."""
        k: int | None = Field(None, ge=1, le=1000)
        """List length compared; None: the pack's ``quality.k``."""
        ann: ANNConfig = Field(default_factory=ANNConfig)
        """The index the served lists come from (``index``: hnsw, ivf_flat or flat, and its parameters)."""
        n_queries: int = Field(2000, ge=1, le=1_000_000)
        """Test users compared (a seeded sample when there are more)."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        ann = facts.ann
        if ann is None:
            return skipped("no ANN recall measurement in the audit facts")
        if ann.recall_at_k is None:
            return skipped(f"no exact list to compare with ({ann.n_queries} users, {ann.n_items} items)")
        problems = []
        if ann.recall_at_k < config.min_recall:
            problems.append(f"recall@{ann.k} {ann.recall_at_k:.4f} < {config.min_recall}")
        if ann.blocked_returned:
            problems.append(f"{ann.blocked_returned} blocked item(s) returned")
        if ann.short_lists:
            problems.append(f"{ann.short_lists} list(s) shorter than exact search's")
        where = f"{ann.index} over {ann.n_items:,} items, {ann.n_queries:,} users, {_blocking(ann)}"
        message = (
            f"ANN candidates ({where}): " + "; ".join(problems)
            if problems
            else f"ANN candidates ({where}): recall@{ann.k} {ann.recall_at_k:.4f} >= {config.min_recall}, "
            + ("none of them returned, " if ann.blocking is not None and ann.blocking.n_blocked else "")
            + "no short list"
        ) + _fallbacks(ann)
        return verdict(
            not problems, message, value=ann.recall_at_k, threshold=config.min_recall, evidence=ann.model_dump(mode="json")
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("min_recall", float(config.min_recall), 0.0, 1.0)]


def _blocking(ann: Any) -> str:
    """What the lists had to leave out, as the message says it: the measurement behind "none returned"."""
    blocking = ann.blocking
    if blocking is None or not blocking.n_blocked:
        return "no blocked item given (leaks not measured)"
    if blocking.measured_on == "store":
        return f"{blocking.n_blocked:,} blocked or unavailable item(s) from the store"
    return f"{blocking.n_blocked:,} planted blocked item(s) (a seeded {blocking.share:.0%} sample of the items, not the store's)"


def _fallbacks(ann: Any) -> str:
    """How many lists exact search answered instead of the index, and the index's own recall without them: the
    recall above counts those lists, exact by construction, as the index's."""
    if not ann.exact_fallbacks:
        return ""
    own = "none left" if ann.index_recall_at_k is None else f"{ann.index_recall_at_k:.4f}"
    return (
        f"; {ann.exact_fallbacks:,} of {ann.n_queries:,} list(s) answered by exact search (the index could not fill "
        f"them), recall@{ann.k} of the index's own lists: {own}"
    )
