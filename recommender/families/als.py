"""ALS (:class:`recommender.als.ALSRecommender`, ``implicit``) as a model family.

Tags are the exact ALS decomposition of a score over the user's history (Hu,
Koren and Volinsky 2008, section 5; :func:`recommender.als_explain.explain_als_list`):
``s_ui = sum_j (y_i^T W_u y_j) c_uj``. It decomposes the score of the user's
exact least-squares factor; ``implicit``'s served score comes from the
conjugate-gradient factor of ``fit``, a close approximation of it (a few per
cent apart on MovieLens-like data), so each tag carries both (``score`` and
``served_score``) and says ``exact`` only where the two agree to
:data:`EXACT_TOLERANCE`: a decomposition of another number than the served
score is an approximation of it.

Erasure is exact: :func:`recommender.unlearning.refit_without_users` fits the
model's recipe (parameters and seed) on its matrix without the subjects' rows
and the items only they touched, which is the model a training without them
makes, at the cost of one fit. The fast update
(:func:`recommender.unlearning.forget_users`) is an approximation the erasure
uses only when asked to (``erase_subject(..., exact=False)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from recommender.als import ALSRecommender
from recommender.als_explain import explain_als_list, regularized_gram
from recommender.families._shared import explain_lists
from recommender.family import ErasureKind, Family, ForgetOutcome, GovernedModel, ModelTag, register_family

__all__ = ["ALSModel", "EXACT_TOLERANCE"]

EXACT_TOLERANCE = 1e-6
"""Relative gap between the decomposed and the served score under which an ALS tag says ``exact``."""


class ALSModel(ALSRecommender, GovernedModel):
    """:class:`~recommender.als.ALSRecommender` with the family declarations (same parameters, save format and
    ``version_id_``)."""

    family: ClassVar[str] = "als"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``because_you_interacted``: the top three terms of the exact ALS decomposition of each score
        (``exact`` only where it reproduces the served score, see the module docstring)."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            hist = self.train_.matrix[row]
            y = np.asarray(self.item_factors_)
            cached = getattr(self, "_explain_gram", None)
            if cached is None or cached[0] is not self.item_factors_:
                # Y^T Y + lambda I depends on the model only: once per fitted (or unlearned) model, not per list
                cached = (self.item_factors_, regularized_gram(y.T.astype(np.float64) @ y.astype(np.float64), float(self.regularization)))
                self._explain_gram = cached
            gram = cached[1]
            ex = explain_als_list(y, float(self.regularization), float(self.alpha), hist.indices, hist.data, items, n=3, gram=gram)
            served = y[items].astype(np.float64) @ np.asarray(self.user_factors_[row], dtype=np.float64)
            out = []
            for j in range(len(items)):
                mask = ex.contributors[j] >= 0
                positive = mask & (ex.weights[j] > 0)
                names = tuple(str(self.train_.item_ids[c]) for c in ex.contributors[j][positive])
                evidence = {
                    "score": round(float(ex.scores[j]), 6),
                    "served_score": round(float(served[j]), 6),
                    "contributions": [round(float(w), 6) for w in ex.weights[j][positive]],
                }
                exact = bool(abs(ex.scores[j] - served[j]) <= EXACT_TOLERANCE * max(1.0, abs(float(served[j]))))
                if names:
                    out.append([ModelTag("because_you_interacted", f"Because you interacted with {', '.join(names)}", names, exact, evidence)])
                else:
                    out.append([ModelTag("no_history_signal", "Nothing in your history raises its score; it fills the list", (), exact, evidence)])
            return out

        return explain_lists(self, user_id, item_ids, known)

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: :func:`~recommender.unlearning.refit_without_users`, the model its recipe trains without them."""
        from recommender.unlearning import refit_without_users

        self.check_fitted("forget")
        requested = [user_ids] if isinstance(user_ids, str) else list(user_ids)
        rows = np.unique(self.train_.user_index(np.asarray(requested, dtype=object)))
        ids = tuple(str(u) for u in self.train_.user_ids[rows[rows >= 0]])
        result = refit_without_users(self, requested)
        detail = result.as_dict()
        self.__dict__.update(result.model.__dict__)
        # derived from the item factors before the subjects left: never reused (nor held) afterwards
        self.__dict__.pop("_explain_gram", None)
        return ForgetOutcome(ErasureKind.exact, ids, 0.0, False, detail)


register_family(
    Family(
        name="als",
        build=ALSModel,
        description="Implicit-feedback ALS (implicit): tags from the ALS score decomposition of the exact solve (approximate where the served CG score differs); exact erasure (a refit without the subjects)",
        inputs=ALSModel.inputs,
        erasure=ALSModel.erasure,
        default_params={"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15},
        small_params={"factors": 8, "iterations": 8, "regularization": 0.01, "num_threads": 1},
        broken_params={"factors": 0},
    )
)
