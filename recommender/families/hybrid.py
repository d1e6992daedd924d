"""A hybrid of collaborative filtering (ALS) and content (TF-IDF) (family ``hybrid``).

Two parents score every item: :class:`recommender.als.ALSRecommender` (who liked
what) and :class:`recommender.families.content.ContentRecommender` (what items
are). ALS knows nothing of an item without interactions; for such an item the
hybrid maps its content vector into the ALS factor space with a ridge
regression learned on the warm items (an attribute-to-feature mapping, Gantner
et al. 2010), so that the collaborative part still speaks for new items.

Fusion (``fusion``):

``linear``
    ``s = w * a / sd_a + (1 - w) * c / sd_c`` with ``a`` the ALS (or mapped) score,
    ``c`` the content cosine, ``sd`` their spreads; one weight ``w_warm`` for items
    with interactions and one ``w_cold`` for items without, each chosen on a grid
    by NDCG@10 on a validation split carved from the training data;
``learned``
    a logistic regression (scikit-learn) on per-candidate features: both
    parents' scores, the item's log popularity, whether it has interactions, and
    the scores times that flag; trained on each validation user's top
    candidates from each parent (what a ranker sees), labelled by the
    validation split. The score is the logit, a sum of the features' terms.

Validation: a share of the warm items (``cold_fraction``) lose all their
interactions (they play the new items) and a share of the other interactions
(``validation_fraction``) are held out; the parents are fitted on the rest, the
fusion is tuned, then the parents are refitted on the whole training data.

Tags (``hybrid_blend``) give each part's share of the score, exactly (the
score is a sum of the parts). Erasure is ``retrain``: the content parent
forgets exactly and ALS approximately, but the fusion weights and the mapping
were learned from everyone's rows, with no measured residual, so only a retrain
removes a subject's influence; :meth:`HybridRecommender.forget` drops the
subject's rows and factors at once and says a retrain is owed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge

from recommender.als import ALSRecommender
from recommender.als_explain import explain_als_list, regularized_gram
from recommender.base import top_k_from_scores
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.families.content import ContentRecommender, block_users, explain_start
from recommender.family import ErasureKind, Family, ForgetOutcome, GovernedModel, ModelTag, read_model_file, register_family, save_state, subject_rows
from recommender.item_features import check_item_table
from recommender.metrics import ranking_metrics

__all__ = ["FEATURES", "HybridRecommender"]

FORMAT = "recgov.hybrid.v1"
EXACT_TOLERANCE = 1e-6
"""A ``hybrid_blend`` tag is exact only where its parts sum to the served score to this (relative above 1)."""
FEATURES = ("als", "content", "log_popularity", "has_interactions", "als_x_warm", "content_x_warm")
"""The learned fusion's per-candidate features, in order."""
_PART_OF = {
    "als": "als",
    "als_x_warm": "als",
    "content": "content",
    "content_x_warm": "content",
    "log_popularity": "popularity",
    "has_interactions": "popularity",
}
_GRID = np.linspace(0.0, 1.0, 11)
_CANDIDATES = 50  # per parent, side and validation user: what the learned fusion is trained on
_MAX_VALIDATION_USERS = 3000  # and at most what block_users allows twice over (two dense score matrices)
_K = 10


class HybridRecommender(GovernedModel):
    """ALS and content blended, linearly or by a learned fusion (see the module docstring).

    Parameters
    ----------
    fusion:
        ``"linear"`` or ``"learned"``.
    als_params:
        Parameters of the ALS parent (:class:`recommender.als.ALSRecommender`).
    content_params:
        Parameters of the content parent (:class:`~recommender.families.content.ContentRecommender`).
    validation_fraction:
        Share of the warm interactions held out to tune the fusion.
    cold_fraction:
        Share of the warm items whose interactions are all held out (they play new items).
    mapping_alpha:
        Ridge penalty of the content-to-factor mapping.
    random_state:
        Seed of the validation carve-out and the negatives (ALS has its own in ``als_params``).
    """

    name: ClassVar[str] = "hybrid"
    family: ClassVar[str] = "hybrid"
    inputs: ClassVar[frozenset[str]] = ContentRecommender.inputs
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain

    def __init__(
        self,
        fusion: str = "linear",
        als_params: Mapping[str, Any] | None = None,
        content_params: Mapping[str, Any] | None = None,
        validation_fraction: float = 0.2,
        cold_fraction: float = 0.1,
        mapping_alpha: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.fusion = fusion
        self.als_params = als_params
        self.content_params = content_params
        self.validation_fraction = validation_fraction
        self.cold_fraction = cold_fraction
        self.mapping_alpha = mapping_alpha
        self.random_state = random_state

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The item-table columns the content parent reads."""
        columns = (self.content_params or {}).get("text_columns", ("text",))
        return (columns,) if isinstance(columns, str) else tuple(columns)

    def get_params(self) -> dict[str, Any]:
        content = dict(self.content_params or {})
        if "text_columns" in content and not isinstance(content["text_columns"], str):
            content["text_columns"] = list(content["text_columns"])
        return {
            "fusion": self.fusion,
            "als_params": dict(self.als_params or {}),
            "content_params": content,
            "validation_fraction": self.validation_fraction,
            "cold_fraction": self.cold_fraction,
            "mapping_alpha": self.mapping_alpha,
            "random_state": self.random_state,
        }

    def _validate_params(self) -> None:
        if self.fusion not in ("linear", "learned"):
            raise ConfigError(
                f"The 'fusion' parameter of HybridRecommender must be 'linear' or 'learned'. Got {self.fusion!r} instead."
            )
        for name in ("validation_fraction", "cold_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
                raise ConfigError(
                    f"The {name!r} parameter of HybridRecommender must be a float in the range (0, 1). Got {value!r} instead."
                )
        if not isinstance(self.mapping_alpha, (int, float)) or not self.mapping_alpha > 0:
            raise ConfigError(
                f"The 'mapping_alpha' parameter of HybridRecommender must be a float > 0. Got {self.mapping_alpha!r} instead."
            )
        for name in ("als_params", "content_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(
                    f"The {name!r} parameter of HybridRecommender must be a mapping of parameters. Got {value!r} instead."
                )
        try:
            ALSRecommender(**(self.als_params or {}))._validate_params()
            ContentRecommender(**(self.content_params or {}))._validate_params()
        except TypeError as err:
            raise ConfigError(f"HybridRecommender: a parent got an unknown parameter: {err}") from err

    # -- fitting -----------------------------------------------------------------
    def fit(
        self, train: InteractionMatrix, *, show_progress: bool = False, items: pd.DataFrame | None = None
    ) -> HybridRecommender:
        """Learn from ``train`` and the item table ``items`` (see :meth:`ContentRecommender.fit`)."""
        self._items_in = items
        try:
            super().fit(train, show_progress=show_progress)
        finally:
            self._items_in = None
        self.train_ = self.content_.train_  # the content parent's items: the catalog's too
        self.popularity_ = self.content_.popularity_
        return self

    def _parents(
        self, train: InteractionMatrix, items: pd.DataFrame | None
    ) -> tuple[ALSRecommender, ContentRecommender, np.ndarray]:
        als = ALSRecommender(**{"num_threads": 1, **(self.als_params or {})}).fit(train)
        content = ContentRecommender(**(self.content_params or {})).fit(train, items=items)
        mapping = self._mapping(als, content)
        return als, content, mapping

    def _mapping(self, als: ALSRecommender, content: ContentRecommender) -> np.ndarray:
        """Ridge weights ``(content width, factors)`` from content vectors to ALS item factors (warm items)."""
        n_warm = als.train_.n_items
        warm = np.flatnonzero(als.popularity_ > 0)
        x = content.item_vectors_[:n_warm][warm]
        if x.shape[1] == 0 or len(warm) == 0:
            return np.zeros((x.shape[1], als.item_factors_.shape[1]))
        ridge = Ridge(alpha=float(self.mapping_alpha), fit_intercept=False)
        ridge.fit(x, np.asarray(als.item_factors_)[warm])
        return np.asarray(ridge.coef_, dtype=np.float64).T

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._validate_params()
        items = getattr(self, "_items_in", None)
        if items is not None:  # a broken table fails before any fitting
            check_item_table(items, ContentRecommender(**(self.content_params or {})).text_columns, where="hybrid.fit")
        sub, val_warm, val_cold = self._carve(train)
        als, content, mapping = self._parents(sub, items)
        parts_sub = _Parts(als, content, mapping)
        self._tune(parts_sub, sub, val_warm, val_cold)
        self.als_, self.content_, self.mapping_ = self._parents(train, items)
        self.spread_ = _Parts(self.als_, self.content_, self.mapping_).spreads(train)
        self.data_hash_ = train.content_hash()
        self._stamp()

    def _carve(self, train: InteractionMatrix) -> tuple[InteractionMatrix, sp.csr_matrix, sp.csr_matrix]:
        """``(sub-train, validation on warm items, validation on pseudo-new items)``."""
        rng = np.random.default_rng(self.random_state)
        m = sp.csr_matrix(train.matrix)
        warm = np.flatnonzero(np.asarray((m > 0).sum(axis=0)).ravel() > 0)
        n_cold = max(1, round(self.cold_fraction * len(warm)))
        cold = np.zeros(m.shape[1], dtype=bool)
        cold[rng.choice(warm, size=min(n_cold, len(warm) - 1), replace=False)] = True
        coo = m.tocoo()
        on_cold = cold[coo.col]
        held = ~on_cold & (rng.random(coo.nnz) < self.validation_fraction)
        keep = ~on_cold & ~held

        def part(mask: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=m.shape)

        sub = InteractionMatrix(matrix=part(keep), user_ids=train.user_ids, item_ids=train.item_ids)
        if sub.nnz == 0:
            raise DataError(
                "hybrid.fit: the training data is too small to carve a validation split from; give more interactions"
            )
        self.validation_ = {
            "cold_items": int(cold.sum()),
            "held_interactions": int(held.sum()),
            "cold_interactions": int(on_cold.sum()),
        }
        return sub, part(held), part(on_cold)

    def _tune(self, parts: _Parts, sub: InteractionMatrix, val_warm: sp.csr_matrix, val_cold: sp.csr_matrix) -> None:
        rng = np.random.default_rng(self.random_state + 1)
        spread = parts.spreads(sub)
        has = parts.content.popularity_ > 0
        users = np.flatnonzero(np.diff(val_warm.indptr) + np.diff(val_cold.indptr) > 0)
        most = block_users(sub.n_items, cap=_MAX_VALIDATION_USERS)
        if len(users) > most:
            users = np.sort(rng.choice(users, most, replace=False))
        n = sub.n_items
        warm_cols, cold_cols = np.flatnonzero(has[:n]), np.flatnonzero(~has[:n])
        a, c = parts.scores(users, spread)
        a, c = a[:, :n], c[:, :n]
        self.weights_ = {"warm": 1.0, "cold": 0.0}
        self.coef_ = np.zeros(len(FEATURES))
        self.intercept_ = 0.0
        if self.fusion == "linear":
            seen = sub.matrix[users]
            for side, cols, val in (("warm", warm_cols, val_warm), ("cold", cold_cols, val_cold)):
                rel = sp.csr_matrix(val[users])[:, cols]
                if rel.nnz == 0 or len(cols) == 0:
                    continue
                exclude = sp.csr_matrix(seen[:, cols]) if side == "warm" else None
                best = max(
                    (
                        (
                            float(
                                np.nanmean(
                                    ranking_metrics(
                                        top_k_from_scores(w * a[:, cols] + (1 - w) * c[:, cols], _K, exclude=exclude)[
                                            0
                                        ],
                                        rel,
                                    ).per_user["ndcg"]
                                )
                            ),
                            -abs(w - 0.5),
                            w,
                        )
                        for w in _GRID
                    ),
                )
                self.weights_[side] = float(best[2])
            return
        # learned: each validation user's candidates, as a ranker sees them: the top items of each parent
        # on each side (seen items excluded), labelled by the validation split.
        seen = sp.csr_matrix(sub.matrix[users])
        rows, cols, labels = [], [], []
        for cand, val, exclude in ((warm_cols, val_warm, seen), (cold_cols, val_cold, None)):
            if len(cand) == 0:
                continue
            rel = sp.csr_matrix(val[users])
            top = [
                top_k_from_scores(
                    score[:, cand], _CANDIDATES, exclude=None if exclude is None else sp.csr_matrix(exclude[:, cand])
                )[0]
                for score in (a, c)
            ]
            picked = np.concatenate(top, axis=1)
            r = np.repeat(np.arange(len(users)), picked.shape[1])
            flat = picked.ravel()
            ok = flat >= 0
            key = np.unique(r[ok] * np.int64(len(cand) + 1) + flat[ok])
            r_u, local = key // (len(cand) + 1), key % (len(cand) + 1)
            item = cand[local]
            rows.append(r_u), cols.append(item)
            labels.append(np.asarray(rel[r_u, item]).ravel() > 0)
        r, col, y = np.concatenate(rows), np.concatenate(cols), np.concatenate(labels).astype(np.int64)
        if len(np.unique(y)) < 2:
            raise DataError(
                "hybrid.fit: the validation split has no positives among the candidates to learn the fusion from; give more interactions"
            )
        x = _features(a[r, col], c[r, col], parts.content.popularity_[col], has[col])
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
        self.coef_ = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept_ = float(model.intercept_[0])

    # -- new items ---------------------------------------------------------------
    def add_items(self, items: pd.DataFrame) -> HybridRecommender:
        """Add new items (content only); the mapping gives them an ALS-side score at once, nothing is retrained."""
        self.check_fitted("add_items")
        self.content_.add_items(items)
        self.train_ = self.content_.train_
        self.popularity_ = self.content_.popularity_
        self.data_hash_ = self.train_.content_hash()
        self._stamp()
        return self

    # -- scoring -------------------------------------------------------------------
    def parts(self, user_index: np.ndarray, item_index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each part of the score ``(n_users, n_items)`` for known users; the score is their sum."""
        self.check_fitted("parts")
        a, c = _Parts(self.als_, self.content_, self.mapping_).scores(
            np.asarray(user_index, dtype=np.int64), self.spread_, item_index
        )
        has = self.popularity_ > 0
        if item_index is not None:
            has = has[np.asarray(item_index, dtype=np.int64)]
        if self.fusion == "linear":
            w = np.where(has, self.weights_["warm"], self.weights_["cold"])[None, :]
            return {"als": w * a, "content": (1 - w) * c}
        pop = self.popularity_ if item_index is None else self.popularity_[np.asarray(item_index, dtype=np.int64)]
        terms = {
            "als": self.coef_[0] * a + self.coef_[4] * a * has,
            "content": self.coef_[1] * c + self.coef_[5] * c * has,
            "popularity": np.broadcast_to(self.coef_[2] * np.log1p(pop) + self.coef_[3] * has, a.shape),
        }
        return terms

    def score_items(self, user_index: np.ndarray, item_index: np.ndarray | None = None) -> np.ndarray:
        """Hybrid scores ``(n_users, n_items)`` of known users (row indices); for ``learned``, logits less the intercept."""
        return sum(self.parts(user_index, item_index).values())  # type: ignore[return-value]

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(user_index)
        idx = np.full((n, k), -1, dtype=np.int64)
        out = np.full((n, k), np.nan, dtype=np.float32)
        step = block_users(self.train_.n_items)
        for lo in range(0, n, step):
            block = user_index[lo : lo + step]
            exclude = self.train_.matrix[block] if filter_seen else None
            top, val = top_k_from_scores(self.score_items(block), k, exclude=exclude)
            idx[lo : lo + len(block)], out[lo : lo + len(block)] = top, val
        return idx, out

    # -- explanations ----------------------------------------------------------------
    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """A ``hybrid_blend`` tag per item with each part's share of the score, then the content parent's tag.

        The tag says ``exact`` only where its parts sum to the served score (to :data:`EXACT_TOLERANCE`) and each
        non-zero part's own decomposition is exact: the ALS part's over the user's history (which decomposes the
        exact least-squares factor, not ``implicit``'s iterative one, see :mod:`recommender.families.als`; and
        not at all for an item scored through the content mapping), the content part's as its parent's tag says,
        the popularity part (a closed form of the item's popularity) always."""
        cols, row, fallback = explain_start(self, user_id, item_ids)
        if fallback is not None:
            return fallback
        parts = self.parts(np.array([row]), cols)
        content_tags = self.content_.explain(user_id, list(item_ids))
        served = self.score_items(np.array([row]))[0, cols]  # the scores recommend ranks by, whole catalogue
        als_exact = self._als_part_exact(row, cols)
        words = {"als": "people with similar tastes", "content": "its content", "popularity": "its popularity"}
        out = []
        for pos, col in enumerate(cols.tolist()):
            values = {name: float(v[0, pos]) for name, v in parts.items()}
            total = sum(abs(v) for v in values.values())
            shares = {name: (abs(v) / total if total > 0 else 0.0) for name, v in values.items()}
            lead = max(shares, key=lambda name: shares[name])
            text = "Blend of " + ", ".join(
                f"{round(100 * shares[name])}% {words[name]}" for name in sorted(shares, key=lambda n: -shares[n])
            )
            evidence = {
                "fusion": self.fusion,
                "parts": {k: round(v, 6) for k, v in values.items()},
                "shares": {k: round(v, 6) for k, v in shares.items()},
                "score": round(sum(values.values()), 6),
                "served_score": round(float(served[pos]), 6),
                "lead": lead,
                "has_interactions": bool(self.popularity_[col] > 0),
            }
            if self.fusion == "learned":
                evidence["intercept"] = round(self.intercept_, 6)
            sums = abs(sum(values.values()) - float(served[pos])) <= EXACT_TOLERANCE * max(1.0, abs(float(served[pos])))
            part_exact = {
                "als": values["als"] == 0.0 or bool(als_exact[pos]),
                "content": values["content"] == 0.0 or bool(content_tags[pos] and content_tags[pos][0].exact),
                "popularity": True,
            }
            exact = bool(sums and all(part_exact[name] for name in values))
            evidence["exact_parts"] = sorted(name for name in values if part_exact[name])
            out.append([ModelTag("hybrid_blend", text, exact=exact, evidence=evidence), *content_tags[pos]])
        return out

    def _als_part_exact(self, row: int, cols: np.ndarray) -> np.ndarray:
        """Per item of ``cols``: whether the ALS decomposition over the user's history reproduces the ALS score
        the blend uses (items scored through the content mapping have no such decomposition: False)."""
        als = self.als_
        y = np.asarray(als.item_factors_)
        n_warm = als.train_.n_items
        warm = cols < n_warm
        warm[warm] = als.popularity_[cols[warm]] > 0
        out = np.zeros(len(cols), dtype=bool)
        if not warm.any():
            return out
        items = cols[warm]
        hist = als.train_.matrix[row]
        reg = float(als.regularization)
        gram = regularized_gram(y.T.astype(np.float64) @ y.astype(np.float64), reg)
        ex = explain_als_list(y, reg, float(als.alpha), hist.indices, hist.data, items, n=1, gram=gram)
        served = y[items].astype(np.float64) @ np.asarray(als.user_factors_[row], dtype=np.float64)
        out[warm] = np.abs(np.asarray(ex.scores, dtype=np.float64) - served) <= EXACT_TOLERANCE * np.maximum(1.0, np.abs(served))
        return out

    # -- erasure -------------------------------------------------------------------------
    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Drop the users' rows and factors now; the fusion and mapping keep their influence until a retrain."""
        self.check_fitted("forget")
        present = subject_rows(self.train_, user_ids)
        removed = tuple(str(self.train_.user_ids[r]) for r in present)
        keep = np.setdiff1d(np.arange(self.train_.n_users), present)
        self.content_.forget(list(removed), keep_columns=True)  # the collaborative part is aligned on every column
        self.als_.user_factors_ = np.asarray(self.als_.user_factors_)[keep]
        m = sp.csr_matrix(self.als_.train_.matrix[keep])
        self.als_.train_ = InteractionMatrix(
            matrix=m,
            user_ids=np.asarray(self.als_.train_.user_ids, dtype=object)[keep],
            item_ids=self.als_.train_.item_ids,
        )
        self.als_.model_.user_factors = self.als_.user_factors_
        self.train_ = self.content_.train_
        self.popularity_ = self.content_.popularity_
        self.data_hash_ = self.train_.content_hash()
        self._stamp()
        return ForgetOutcome(
            ErasureKind.retrain,
            removed,
            retrain_required=True,
            detail={"rows_dropped": len(present), "still_influenced": ["als_item_factors", "mapping", "fusion"]},
        )

    # -- persistence -------------------------------------------------------------------
    def _stamp(self) -> None:
        h = hashlib.sha256(FORMAT.encode())
        for part in (
            json.dumps(self.get_params(), sort_keys=True).encode(),
            self.data_hash_.encode(),
            self.content_.version_id_.encode(),
            np.ascontiguousarray(self.als_.user_factors_, dtype="<f4").tobytes(),
            np.ascontiguousarray(self.als_.item_factors_, dtype="<f4").tobytes(),
            self.mapping_.tobytes(),
            json.dumps(self.weights_, sort_keys=True).encode(),
            self.coef_.tobytes(),
            np.float64(self.intercept_).tobytes(),
            json.dumps(self.spread_).encode(),
        ):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        self.version_id_ = h.hexdigest()

    def save(self, path: str | Path) -> str:
        """Write the model (both parents inside, as bytes of their own ``.npz``; no pickle); return the SHA-256."""
        self.check_fitted("save")
        path = Path(path)
        with tempfile.TemporaryDirectory() as tmp:
            self.als_.save(Path(tmp) / "als.npz")
            self.content_.save(Path(tmp) / "content.npz")
            als_bytes, content_bytes = ((Path(tmp) / n).read_bytes() for n in ("als.npz", "content.npz"))
        meta = {
            "format": FORMAT,
            "params": self.get_params(),
            "version_id": self.version_id_,
            "data_hash": self.data_hash_,
            "weights": self.weights_,
            "intercept": self.intercept_,
            "spread": self.spread_,
            "validation": self.validation_,
        }
        arrays = {
            "als": np.frombuffer(als_bytes, dtype=np.uint8),
            "content": np.frombuffer(content_bytes, dtype=np.uint8),
            "mapping": self.mapping_,
            "coef": self.coef_,
        }
        return save_state(path, format=meta.pop("format"), meta=meta, arrays=arrays)

    @classmethod
    def load(cls, path: str | Path) -> HybridRecommender:
        """Read a model :meth:`save` wrote; it recommends exactly as the original.

        An empty, truncated or non-zip file, a missing array or parent, an out-of-range parameter or content
        that does not hash to the saved version id is a :class:`DataError` naming the file."""
        path = Path(path)
        meta, arrays = read_model_file(path, kind="hybrid", format=FORMAT)
        try:
            model = cls(**meta["params"])
            model._validate_params()
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "als.npz").write_bytes(arrays["als"].tobytes())
                (Path(tmp) / "content.npz").write_bytes(arrays["content"].tobytes())
                try:
                    model.als_ = ALSRecommender.load(Path(tmp) / "als.npz")
                    model.content_ = ContentRecommender.load(Path(tmp) / "content.npz")
                except DataError as err:  # the parent's message names a temporary file: name this one
                    raise ValueError(f"embedded parent model: {str(err).split(': ', 1)[-1]}") from err
            model.mapping_ = np.asarray(arrays["mapping"], dtype=np.float64)
            model.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
            model.weights_ = {k: float(v) for k, v in meta["weights"].items()}
            model.intercept_ = float(meta["intercept"])
            model.spread_ = {k: float(v) for k, v in meta["spread"].items()}
            model.validation_ = meta["validation"]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ConfigError) as err:
            raise DataError(
                f"{path}: a hybrid model file with missing, invalid or inconsistent content ({type(err).__name__}: {err})"
            ) from err
        model.train_ = model.content_.train_
        model.popularity_ = model.content_.popularity_
        # the content address is recomputed from what was read: an edited parameter or weight is caught
        model.data_hash_ = model.train_.content_hash()
        model._stamp()
        if model.data_hash_ != meta.get("data_hash") or model.version_id_ != meta.get("version_id"):
            raise DataError(f"{path}: the content does not match its version id (the file was altered or is damaged)")
        return model


def _features(a: np.ndarray, c: np.ndarray, pop: np.ndarray, has: np.ndarray) -> np.ndarray:
    h = has.astype(np.float64)
    return np.column_stack([a, c, np.log1p(pop), h, a * h, c * h])


class _Parts:
    """The parents' scores on one scale: ALS (mapped for items without interactions) and content."""

    def __init__(self, als: ALSRecommender, content: ContentRecommender, mapping: np.ndarray) -> None:
        self.als, self.content, self.mapping = als, content, mapping
        n_warm = als.train_.n_items
        factors = np.asarray(als.item_factors_, dtype=np.float64)
        mapped = np.asarray(content.item_vectors_ @ mapping)
        warm = np.zeros(content.train_.n_items, dtype=bool)
        warm[:n_warm] = als.popularity_ > 0
        full = mapped.copy()
        full[:n_warm][warm[:n_warm]] = factors[warm[:n_warm]]
        self.item_factors = full

    def scores(
        self, users: np.ndarray, spread: Mapping[str, float], items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        v = self.item_factors if items is None else self.item_factors[items]
        a = np.asarray(self.als.user_factors_, dtype=np.float64)[users] @ v.T
        c = self.content.score_items(users, items)
        return a / spread["als"], c / spread["content"]

    def spreads(self, train: InteractionMatrix) -> dict[str, float]:
        """Standard deviations of each parent's scores over (up to) 500 users x all items: the common scale."""
        users = np.arange(min(train.n_users, 500))
        a, c = self.scores(users, {"als": 1.0, "content": 1.0})
        return {"als": float(a.std()) or 1.0, "content": float(c.std()) or 1.0}


register_family(
    Family(
        name="hybrid",
        build=HybridRecommender,
        description="ALS and content_tfidf blended (linear weights or a learned logistic fusion tuned on a validation split); content maps new items into ALS space",
        inputs=HybridRecommender.inputs,
        erasure=ErasureKind.retrain,
        default_params={"fusion": "linear", "als_params": {"factors": 32, "iterations": 15}},
        small_params={"fusion": "linear", "als_params": {"factors": 8, "iterations": 5, "random_state": 0}},
        broken_params={"fusion": "magic"},
    )
)
