"""Serving a model of any family: the same governed path, with the family's own explanation tags.

:class:`~governance.serving.ServingEngine` governs a list (consent, erasure and
standing decisions, blocked and unavailable items, the pack's re-ranking, the
decision record); its :class:`~governance.serving.Personalizer` is the model's
part, written for ALS (candidates from ``implicit``, tags from the exact ALS
decomposition). :class:`FamilyServingEngine` runs the same engine with
:class:`FamilyPersonalizer`: candidates from the family's own ranking
(``_recommend_known``, seen items filtered), and tags from the family's
:meth:`~recommender.family.GovernedModel.explain` (their ``kind``, ``text``,
``items``, whether the reason is exact, and its evidence), after the tag of any
move the re-ranking made.

:func:`load_served_model` reads a recorded version's artifact with the loader
its ``kind`` names (ALS, or the family's own ``load``; never pickle), after
checking that the file still has the SHA-256 recorded with the version
(:mod:`governance.artifacts`), and refuses a file of another family with a
located error.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

from governance.artifacts import verify_artifact
from governance.explain import TagKind
from governance.serving import PersonalizedList, Personalizer, ServingEngine
from recommender.errors import ConfigError, DataError
from recommender.family import GovernedModel

__all__ = ["ALS_KINDS", "FamilyPersonalizer", "FamilyServingEngine", "load_served_model"]

ALS_KINDS = frozenset({"als", "als-spark"})
"""Recorded kinds whose artifact is an ALS model file (``recgov train``, the Spark batch trainer, unlearning)."""

_BECAUSE = TagKind.because_you_interacted.value


class _NoDecomposition(NamedTuple):
    """What the ALS tag builder reads (no contributor per item): the family's tags replace it."""

    contributors: np.ndarray
    weights: np.ndarray


class FamilyPersonalizer(Personalizer):
    """The model's part of a list for a non-ALS family: its own ranking and its own tags."""

    def _candidates_single_thread(
        self, row: int, k: int, allowed: np.ndarray | None
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        model: GovernedModel = self.model
        history = self.history_of(row)
        n_items = model.train_.n_items
        drop = np.zeros(n_items, dtype=bool)
        drop[self._blocked_idx] = True
        if allowed is not None:
            drop |= ~allowed
        drop[history[0]] = False  # seen items are filtered by the model itself
        # the family's ranking of the unseen items, long enough that the candidates survive the dropped ones
        want = min(n_items, self.n_candidates(k) + int(drop.sum()))
        ids, scores = model._recommend_known(np.array([row], dtype=np.int64), want, filter_seen=True)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        valid = (ids >= 0) & np.isfinite(scores)
        ids, scores = ids[valid], scores[valid]
        keep = ~drop[ids]
        n = self.n_candidates(k)
        return history, ids[keep][:n], scores[keep][:n].astype(np.float32)

    def explain(self, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray, n: int = 0) -> Any:
        """No ALS decomposition: :meth:`govern` puts the family's tags in its place."""
        return _NoDecomposition(np.full((len(ids), 0), -1, dtype=np.int64), np.zeros((len(ids), 0)))

    def govern(
        self, row: int, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray, scores: np.ndarray, k: int, *, tag_all: bool = True
    ) -> PersonalizedList:
        """The pack's re-ranking of the candidates (as for ALS), each item tagged by the family's ``explain``
        after the tag of any move the re-ranking made."""
        made = super().govern(row, history, ids, scores, k, tag_all=True)
        model: GovernedModel = self.model
        user = str(model.train_.user_ids[row])
        item_ids = [str(i) for i in self._item_ids[np.asarray(made.items, dtype=np.int64)]]
        family_tags = model.explain(user, item_ids) if item_ids else []
        hidden = {str(i) for i in self._item_ids[self._blocked_idx]}
        tags = [
            [t for t in base if t.get("kind") != _BECAUSE] + [_without(tag.to_dict(), hidden) for tag in own]
            for base, own in zip(made.tags, family_tags)
        ]
        return PersonalizedList(made.items, made.scores, tags)


WITHHELD = "an item no longer shown"
"""What a family's tag text says in place of a named item no list may hold."""


def _without(tag: dict[str, Any], hidden: set[str]) -> dict[str, Any]:
    """``tag`` (a family's, as a dict) naming none of ``hidden``, the items no list may hold (blocked, under
    review): they leave its ``items``, the evidence lists that run beside them and its text; ``evidence``
    says how many were ``withheld``. A tag naming none of them is returned as it is."""
    items = [str(i) for i in tag.get("items") or ()]
    keep = [i not in hidden for i in items]
    if all(keep):
        return tag
    kept = [i for i, k in zip(items, keep) if k]
    text = str(tag.get("text", ""))
    listed = ", ".join(items)
    if listed and listed in text:
        text = text.replace(listed, ", ".join(kept) or "your history")
    for item in (i for i, k in zip(items, keep) if not k):  # a text that lists them otherwise
        text = re.sub(rf"(?<![\w.-]){re.escape(item)}(?![\w.-])", WITHHELD, text)
    evidence = {
        key: [v for v, k in zip(value, keep) if k] if isinstance(value, list) and len(value) == len(items) else value
        for key, value in (tag.get("evidence") or {}).items()
    }
    evidence["withheld"] = len(items) - len(kept)
    return {**tag, "text": text, "items": kept, "evidence": evidence}


class FamilyServingEngine(ServingEngine):
    """:class:`~governance.serving.ServingEngine` for a model of a non-ALS family."""

    personalizer_class = FamilyPersonalizer

    @staticmethod
    def _explanation_gram(model: Any) -> None:
        return None


def load_served_model(kind: str, location: str, version: str, *, artifact_hash: str | None) -> tuple[Any, type[ServingEngine]]:
    """The model recorded as ``kind`` at ``location``, and the engine class that serves it.

    The file must have ``artifact_hash``, the SHA-256 recorded with the version (None: the caller checked it, or
    nothing was recorded): one changed on disk since is refused with
    :class:`~governance.artifacts.ArtifactChanged`, naming the version and the file, before it is read. A file
    that is not the family's (another family's artifact under this version) is a :class:`ConfigError` naming the
    file, the recorded family and what the file is.
    """
    from governance.family_training import family_for_kind, family_model_class
    from recommender.family import families

    if artifact_hash is not None:
        verify_artifact(version, location, artifact_hash)

    family = family_for_kind(kind)
    if family is None:
        from recommender.als import ALSRecommender

        try:
            return ALSRecommender.load(location), ServingEngine
        except DataError as err:
            if kind in ALS_KINDS:
                raise
            # a kind no installed family answers to (a family since removed, or a name mistyped in the store)
            raise ConfigError(
                f"model version {version} is recorded as model family {kind!r}, which is not installed here "
                f"(installed: {', '.join(sorted(families())) or 'none'}), and its file is not an ALS model either: {err}"
            ) from err
    try:
        model = family_model_class(family).load(location)
    except DataError as err:
        raise ConfigError(f"model version {version} is recorded as model family {family.name}, but {err}") from err
    return model, FamilyServingEngine
