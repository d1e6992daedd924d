"""Explanation tags: why each served item is there.

For ALS the reason is exact (Hu, Koren and Volinsky 2008, section 5, and
``implicit``'s ``explain``): with ``W_u = (Y^T C_u Y + lambda I)^-1`` the score of
item ``i`` decomposes over the user's history as
``s_ui = sum_j (y_i^T W_u y_j) c_uj``, so each past item ``j`` contributes its
own term. ``implicit`` computes it one item at a time; here one Cholesky
factorization per user serves the whole list: ``W_u Y_L^T`` is solved for all
list items at once and the contributions of every history item to every list
item come out of a single matrix product.

Other reasons are tags too: the popularity fallback ("popular in your context",
"not personalized"), re-ranking moves ("shown for diversity", "from an
under-exposed provider") and exploration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from recommender.als_explain import ListExplanation, explain_als_list, regularized_gram

__all__ = ["TagKind", "Tag", "ListExplanation", "explain_als_list", "regularized_gram", "because_tags", "fallback_tags", "TAG_TEXT"]


class TagKind(str, Enum):
    """Why an item is in a list."""

    because_you_interacted = "because_you_interacted"
    popular_in_context = "popular_in_context"
    not_personalized = "not_personalized"
    diversity = "diversity"
    under_exposed_provider = "under_exposed_provider"
    calibration = "calibration"
    long_tail = "long_tail"
    exposure_cap = "exposure_cap"
    exploration = "exploration"
    provider_calibration = "provider_calibration"
    provider_balance = "provider_balance"


TAG_TEXT: dict[TagKind, str] = {
    TagKind.because_you_interacted: "Because you interacted with {items}",
    TagKind.popular_in_context: "Popular in your context",
    TagKind.not_personalized: "Not personalized: chosen without your history",
    TagKind.diversity: "Shown for diversity",
    TagKind.under_exposed_provider: "From an under-exposed provider",
    TagKind.provider_balance: "Shown to keep each provider group's share of this list at its target",
    TagKind.calibration: "Shown to match the mix of your interests",
    TagKind.provider_calibration: "Shown to match the mix of providers you engage with",
    TagKind.long_tail: "A less popular item you may not have seen",
    TagKind.exposure_cap: "Shown to keep exposure balanced across providers",
    TagKind.exploration: "Exploratory: shown to learn what you like",
}
"""Plain-language text of each tag (``{items}`` is filled with item ids)."""


@dataclass(frozen=True)
class Tag:
    """One reason for one served item."""

    kind: TagKind
    text: str
    items: tuple[str, ...] = ()
    """For ``because_you_interacted``: the history items that contributed most."""
    weights: tuple[float, ...] = ()
    """Their contributions to the score (same order as ``items``)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "text": self.text}
        if self.items:
            out["items"] = list(self.items)
            out["weights"] = [round(w, 6) for w in self.weights]
        return out


def because_tags(explanation: ListExplanation, item_ids: np.ndarray) -> list[Tag]:
    """One ``because_you_interacted`` tag per list item, naming its top contributors."""
    tags = []
    for row in range(len(explanation.scores)):
        mask = explanation.contributors[row] >= 0
        ids = tuple(str(item_ids[i]) for i in explanation.contributors[row][mask])
        weights = tuple(float(w) for w in explanation.weights[row][mask])
        text = TAG_TEXT[TagKind.because_you_interacted].format(items=", ".join(ids) or "your history")
        tags.append(Tag(TagKind.because_you_interacted, text, ids, weights))
    return tags


def fallback_tags(n: int, *, profiling_allowed: bool) -> list[Tag]:
    """Tags for a non-personalized list: popular in context, and why it is not personalized."""
    if profiling_allowed:
        return [Tag(TagKind.popular_in_context, TAG_TEXT[TagKind.popular_in_context]) for _ in range(n)]
    return [Tag(TagKind.not_personalized, TAG_TEXT[TagKind.not_personalized]) for _ in range(n)]
