"""The two baselines as model families: popularity and (seeded) random.

Both are exact in what they say: a popularity list is the count of users per
item, a random list is a draw. Erasure is exact: popularity counts are computed
again without the subjects' rows; a random list depends only on the seed and
the user's row, so the model without the subjects is the one fitted without
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from recommender.baselines import PopularityRecommender, RandomRecommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._shared import StateModel, explain_lists
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family

__all__ = ["PopularityModel", "RandomModel"]


class _DropRows(StateModel):
    """Forget by dropping the subjects' rows: exact for models whose state is the matrix itself."""

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: the rows go and the model is what a fit on the rest gives."""
        return self._forget_by_refit(user_ids, "drop_rows")


class PopularityModel(PopularityRecommender, _DropRows):
    """:class:`~recommender.baselines.PopularityRecommender` with the family declarations."""

    family: ClassVar[str] = "popularity"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.popularity.v1"

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``popular_overall``: how many users interacted with the item (the score, exact)."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            return [
                [ModelTag("popular_overall", f"Popular: {int(self.popularity_[i])} people interacted with it", (), True, {"users_who_interacted": int(self.popularity_[i])})]
                for i in items
            ]

        return explain_lists(self, user_id, item_ids, known)


class RandomModel(RandomRecommender, _DropRows):
    """:class:`~recommender.baselines.RandomRecommender` with the family declarations."""

    family: ClassVar[str] = "random"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.random.v1"

    def _check_params(self) -> None:
        seed = self.random_state
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigError(f"The 'random_state' parameter of RandomModel must be None or an int in the range [0, inf). Got {seed!r} instead.")

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._check_params()
        super()._fit(train, show_progress=show_progress)

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``random_pick``: chosen by a seeded draw among the items the user has not seen (exact)."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            tag = ModelTag("random_pick", "Chosen at random among items you have not seen (a baseline, not from your tastes)", (), True, {"random_state": self.random_state})
            return [[tag] for _ in items]

        return explain_lists(self, user_id, item_ids, known)


register_family(
    Family(
        name="popularity",
        build=PopularityModel,
        description="Most popular unseen items (count of users per item): exact tags; exact erasure",
        inputs=PopularityModel.inputs,
        erasure=PopularityModel.erasure,
    )
)
register_family(
    Family(
        name="random",
        build=RandomModel,
        description="Seeded uniformly random unseen items (the floor): exact tags; exact erasure",
        inputs=RandomModel.inputs,
        erasure=RandomModel.erasure,
        default_params={"random_state": 0},
        small_params={"random_state": 5},
        broken_params={"random_state": "seed"},
    )
)
