"""The offline evaluation of an audit on Spark: MLlib ALS and the popularity baseline, scored on the executors.

The in-process audit (:func:`recommender.pipeline.run_evaluation`) splits the data, fits ALS and
the baselines on the training part and ranks every test user's items. Here the same split is made
(:func:`recommender.split.split`, on the driver: the data the command loaded is there already, and
the same split is what makes the two engines' figures comparable), and then:

* MLlib ALS is fitted on Spark on the training matrix's ``(user, item, weight)`` triples, with the
  audited model's parameters (see :mod:`governance.spark.als` for how its solver differs);
* the popularity baseline (training users per item) is counted on Spark;
* every evaluated user's list (and, when the pack re-ranks, its ``reranking.candidates`` candidates)
  is ranked on the executors by :func:`recommender.base.top_k_from_scores`, the in-process ranking
  primitive, and the popularity lists by the in-process popularity recommender, seen items left
  out: scoring, the ``users x items`` part, never runs on the driver.

Only the lists (``users x candidates`` item numbers) and the user factors (``users x factors``, for
the proxy-leakage check) come back to the driver. There they are wrapped as recommenders that
serve those lists (:class:`SparkLists`), and the in-process reductions compute the figures from
them: the per-user metrics, segments, re-ranking, bootstrap intervals and gaps of the fairness
checks are thus computed by the same code on both engines, and only the lists differ.

Not computed on Spark: the ``item_knn`` and ``random`` baselines and hyper-parameter tuning
(:data:`NOT_ON_SPARK`); an audit says so for every rule that would have read them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.base import Recommender, top_k_from_scores
from recommender.data import Dataset, InteractionMatrix
from recommender.errors import ConfigError, DataError

__all__ = ["NOT_ON_SPARK", "SparkLists", "spark_evaluation_run"]

NOT_ON_SPARK = {
    "models.item_knn": "the item-kNN baseline is not computed on the spark engine",
    "models.random": "the random baseline is not computed on the spark engine",
}
"""What the in-process evaluation has and the Spark one does not, and why (keys name the facts)."""

_SCORE_BLOCK = 2048
"""Users scored at once on an executor (a block's score matrix is ``block x items`` floats)."""


class SparkLists(Recommender):
    """Lists ranked on Spark, served by training row: how the in-process evaluation reads them.

    ``lists`` (``n x width``, ``-1`` padded) and ``scores`` are the lists of ``rows`` best first; a
    request for more than ``width`` items or for another row is an error, never a silent short list.
    ``user_factors_`` (``n_users x f``) are MLlib's, for the proxy-leakage check.
    """

    def __init__(
        self, name: str, train: InteractionMatrix, popularity: np.ndarray, rows: np.ndarray, lists: np.ndarray,
        scores: np.ndarray, params: dict[str, Any], user_factors: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.name = name  # type: ignore[misc]  # "popularity" marks the baseline for compare_models
        self.train_ = train
        self.popularity_ = popularity
        self._rows, self._lists, self._scores, self._params = rows, lists, scores, params
        if user_factors is not None:
            self.user_factors_ = user_factors

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        raise ConfigError("lists ranked on Spark are computed by spark_evaluation_run, not fitted")

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        if not filter_seen:
            raise ConfigError("lists ranked on Spark leave seen items out; they cannot be asked with filter_seen=False")
        if k > self._lists.shape[1]:
            raise ConfigError(f"{self._lists.shape[1]} items per list were ranked on Spark; {k} were asked")
        pos = np.minimum(np.searchsorted(self._rows, user_index), max(len(self._rows) - 1, 0))
        if len(self._rows) == 0 or not np.array_equal(self._rows[pos], user_index):
            raise DataError("lists were asked for users that were not ranked on Spark")
        return self._lists[pos, :k].copy(), self._scores[pos, :k].copy()

    def get_params(self) -> dict[str, Any]:
        return dict(self._params)


def _triples(spark: Any, matrix: sp.csr_matrix) -> Any:
    """The training matrix as a Spark frame ``(user int, item int, weight float)``."""
    coo = matrix.tocoo()
    frame = pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32), "weight": coo.data.astype(np.float32)})
    return spark.createDataFrame(frame, schema="user int, item int, weight float")


def _fit_mllib(triples: Any, n_users: int, n_items: int, params: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray]:
    """MLlib ALS on ``triples``: ``(user factor frame, item factors n_items x f, user factors n_users x f)``.

    A user or item without a training interaction has no MLlib factor: its row stays zero (it
    scores every item 0, as a user with an empty history does in ``implicit``)."""
    from pyspark.ml.recommendation import ALS

    spark = triples.sparkSession
    blocks = max(2, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=params["factors"], maxIter=params["iterations"], regParam=float(params["regularization"]),
        alpha=float(params["alpha"]), implicitPrefs=True, seed=int(params["random_state"] or 0),
        userCol="user", itemCol="item", ratingCol="weight", coldStartStrategy="drop",
        numUserBlocks=blocks, numItemBlocks=blocks,
    )  # fmt: skip
    fitted = als.fit(triples)
    items = np.zeros((n_items, params["factors"]), dtype=np.float32)
    for row in fitted.itemFactors.collect():
        items[int(row["id"])] = np.asarray(row["features"], dtype=np.float32)
    user_frame = fitted.userFactors.withColumnRenamed("id", "user").cache()
    users = np.zeros((n_users, params["factors"]), dtype=np.float32)
    for row in user_frame.collect():
        users[int(row["user"])] = np.asarray(row["features"], dtype=np.float32)
    return user_frame, items, users


def _rank_on_spark(
    triples: Any, rows: np.ndarray, n_items: int, width: int, k: int, item_factors: np.ndarray, user_frame: Any, popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """For every user in ``rows``: the ``width`` best unseen items by MLlib's scores ``u . y`` and the ``k``
    best by popularity, ranked on the executors in one pass: ``(als_lists, als_scores, pop_lists, pop_scores)``.

    :func:`recommender.base.top_k_from_scores` ranks, with each user's training items excluded,
    exactly as the in-process ALS ranks scores, and :class:`recommender.baselines.PopularityRecommender`
    ranks the popularity lists (its own ties and all). A user without an MLlib factor scores every item 0.
    """
    from types import SimpleNamespace

    from pyspark.sql import functions as F

    from recommender.baselines import PopularityRecommender

    spark = triples.sparkSession
    wanted = spark.createDataFrame(pd.DataFrame({"user": rows.astype(np.int32)}), schema="user int")
    seen = triples.groupBy("user").agg(F.collect_list("item").alias("seen"))
    frame = wanted.join(seen, "user", "left").join(user_frame, "user", "left").select("user", "seen", "features")
    tables = spark.sparkContext.broadcast((np.asarray(item_factors, dtype=np.float32), np.asarray(popularity, dtype=np.float64)))
    f = item_factors.shape[1]

    def rank(batches: Any) -> Any:
        Y, pop = tables.value
        for batch in batches:
            for start in range(0, len(batch), _SCORE_BLOCK):
                block = batch.iloc[start : start + _SCORE_BLOCK]
                n = len(block)
                U = np.stack([np.zeros(f, np.float32) if v is None else np.asarray(v, np.float32) for v in block["features"]])
                seen_lists = [np.zeros(0, np.int64) if v is None else np.asarray(v, np.int64) for v in block["seen"]]
                lengths = np.array([len(x) for x in seen_lists], dtype=np.int64)
                cols = np.concatenate(seen_lists) if lengths.sum() else np.zeros(0, np.int64)
                exclude = sp.csr_matrix((np.ones(len(cols), np.float32), (np.repeat(np.arange(n), lengths), cols)), shape=(n, n_items))
                exclude.sum_duplicates()
                exclude.sort_indices()
                idx, val = top_k_from_scores(U @ Y.T, width, exclude)
                # the in-process popularity recommender itself ranks, on this block's histories
                baseline = PopularityRecommender()
                baseline.popularity_, baseline.train_ = pop, SimpleNamespace(matrix=exclude)  # type: ignore[assignment]
                pidx, pval, _ = baseline.recommend_index(np.arange(n), k, filter_seen=True)
                yield pd.DataFrame({
                    "user": block["user"].to_numpy(), "items": list(idx.astype(np.int32)), "scores": list(val.astype(np.float32)),
                    "pop_items": list(pidx.astype(np.int32)), "pop_scores": list(pval.astype(np.float32)),
                })  # fmt: skip

    schema = "user int, items array<int>, scores array<float>, pop_items array<int>, pop_scores array<float>"
    ranked = frame.mapInPandas(rank, schema=schema).toPandas()
    order = np.argsort(ranked["user"].to_numpy(), kind="stable")
    got = ranked["user"].to_numpy()[order]
    if not np.array_equal(got, rows):
        raise DataError(f"Spark ranked {len(got)} users' lists for {len(rows)} evaluated users")

    def stacked(column: str, n_cols: int, dtype: Any) -> np.ndarray:
        values = ranked[column].to_numpy()[order]
        return np.stack(values).astype(dtype).reshape(len(rows), n_cols) if len(rows) else np.zeros((0, n_cols), dtype)

    return stacked("items", width, np.int64), stacked("scores", width, np.float32), stacked("pop_items", k, np.int64), stacked("pop_scores", k, np.float32)


def spark_evaluation_run(
    spark: Any, dataset: Dataset, pack: Any, *, als_params: dict[str, Any] | None, random_state: int = 0,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The offline evaluation the pack's quality section asks for, with MLlib ALS and the popularity baseline on Spark.

    Returns ``(run, engine)``: an :class:`~recommender.pipeline.EvaluationRun` that every in-process
    reduction reads (its models serve the Spark-ranked lists), and what ran where (the fit's and the
    ranking's seconds, the figures Spark computed itself as a cross-check, what was not evaluated).
    """
    from governance.spark.als import _check_params
    from governance.spark.audit import list_figures
    from governance.tradeoff import reranking_enabled
    from recommender.evaluate import compare_models
    from recommender.feedback import FeedbackConfig
    from recommender.pipeline import EvaluationRun, dataset_summary, item_categories_for, user_segments
    from recommender.split import SplitConfig, split, train_test_matrices

    pack = getattr(pack, "pack", pack)
    q = pack.quality
    started = time.perf_counter()
    split_config = SplitConfig(kind=q.split, test_fraction=q.test_fraction, random_state=random_state)
    feedback = FeedbackConfig(rating_threshold=q.rating_threshold)
    mats = train_test_matrices(*split(dataset.events, split_config), feedback)
    train, test = mats.train, mats.test
    params = _check_params({**(als_params or {}), "random_state": random_state})
    relevant = sp.csr_matrix(test.matrix > 0)
    rows = np.flatnonzero(np.diff(relevant.indptr) > 0).astype(np.int64)  # the users compare_models evaluates
    k = int(q.k)
    width = min(max(k, int(pack.reranking.candidates)), train.n_items) if reranking_enabled(pack) else k
    width = max(width, k)

    mark = time.perf_counter()
    triples = _triples(spark, train.matrix).cache()
    user_frame, item_factors, user_factors = _fit_mllib(triples, train.n_users, train.n_items, params)
    fit_seconds = time.perf_counter() - mark
    mark = time.perf_counter()
    popularity = np.zeros(train.n_items, dtype=np.float64)
    for row in triples.where("weight > 0").groupBy("item").count().collect():
        popularity[int(row["item"])] = float(row["count"])
    als_lists, als_scores, pop_lists, pop_scores = _rank_on_spark(triples, rows, train.n_items, width, k, item_factors, user_frame, popularity)
    rank_seconds = time.perf_counter() - mark
    # Spark's own NDCG and recall of the ALS lists, beside the driver's reduction (they must agree).
    lists_frame = spark.createDataFrame(
        pd.DataFrame({"user_id": rows.astype(str), "items": [r[r >= 0][:k].astype(str).tolist() for r in als_lists]}),
        schema="user_id string, items array<string>",
    )
    rel = relevant[rows].tocoo()
    relevant_frame = spark.createDataFrame(
        pd.DataFrame({"user_id": rows[rel.row].astype(str), "item_id": rel.col.astype(str)}), schema="user_id string, item_id string"
    )
    on_spark = list_figures(lists_frame, relevant_frame, k)
    user_frame.unpersist()
    triples.unpersist()

    solver = "mllib-als (confidence 1 + alpha r, regularization x n_u)"
    models: dict[str, Recommender] = {
        "als": SparkLists("als", train, popularity, rows, als_lists, als_scores, {**params, "solver": solver}, user_factors),
        "popularity": SparkLists("popularity", train, popularity, rows, pop_lists, pop_scores, {}),
    }
    comparison = compare_models(
        models, train, test, k, segments=user_segments(dataset, train), item_categories=item_categories_for(dataset, train)
    )
    run = EvaluationRun(
        dataset=dataset_summary(dataset), split={**split_config.model_dump(), **mats.to_dict()}, feedback=feedback.model_dump(),
        tuning={}, comparison=comparison, seconds=time.perf_counter() - started, models=models, matrices=mats,
    )  # fmt: skip
    engine = {
        "fit_seconds": round(fit_seconds, 3),
        "rank_seconds": round(rank_seconds, 3),
        "ranked_users": int(len(rows)),
        "candidates": int(width),
        "spark_figures": {"als": {"ndcg": on_spark["ndcg"], "recall": on_spark["recall"], "users": on_spark["users"]}},
    }
    return run, engine
