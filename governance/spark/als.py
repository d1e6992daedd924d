"""Spark MLlib ALS on the kept events, with recgov's ALS parameters, and candidates for every user.

The events become implicit feedback by the in-process rules
(:func:`recommender.feedback.to_implicit`): each event weighs its type's weight in the
:class:`~recommender.feedback.FeedbackConfig`, a rating below the threshold weighs 0, and a
(user, item) pair's weight is the sum of its events'. Users and items are numbered in sorted id
order, as the in-process matrix numbers them, so a model row means the same user on both engines.

The two solvers differ, and the differences are stated, not hidden:

* confidence: MLlib uses ``1 + alpha * r``, ``implicit`` uses ``alpha * r``;
* regularization: MLlib scales ``regParam`` by each user's (item's) number of ratings
  (ALS-WR), ``implicit`` does not;
* solver: MLlib solves each normal equation exactly (Cholesky), ``implicit`` uses conjugate gradient.

So the two engines give different factors for the same parameters; the parity tests compare
the audit figures within a tolerance (see ``tests/spark/test_audit.py`` and ``tests/spark/test_gate_parity.py``). The explanation tags
of an MLlib model decompose *its* scores exactly (:class:`SparkALSPersonalizer`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governance.serving import Personalizer
from governance.explain import explain_als_list
from recommender.errors import ConfigError, NotFittedError
from recommender.feedback import FeedbackConfig

__all__ = ["DEFAULT_PARAMS", "SparkALSModel", "SparkALSPersonalizer", "als_artifact", "implicit_ratings", "train_als_spark"]

DEFAULT_PARAMS: dict[str, Any] = {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15, "random_state": 0}
"""recgov's ALS defaults (:class:`recommender.als.ALSRecommender`)."""


def implicit_ratings(kept: Any, feedback: FeedbackConfig | None = None) -> Any:
    """``(user_id, item_id, weight)``: the summed implicit weight of each (user, item) pair, zero weights left out."""
    from pyspark.sql import functions as F

    config = feedback or FeedbackConfig()
    weights = [x for name, w in sorted(config.event_weights.items()) for x in (F.lit(name), F.lit(float(w)))]
    weight = F.coalesce(F.create_map(*weights)[F.col("event_type")], F.lit(0.0)) if weights else F.lit(0.0)
    if config.rating_threshold is not None:
        below = (F.col("event_type") == "rating") & ~F.coalesce(F.col("value") >= float(config.rating_threshold), F.lit(False))
        weight = F.when(below, F.lit(0.0)).otherwise(weight)
    return (
        kept.where(F.col("user_id").isNotNull() & F.col("item_id").isNotNull())
        .select("user_id", "item_id", weight.alias("weight"))
        .groupBy("user_id", "item_id")
        .agg(F.sum("weight").cast("float").alias("weight"))
        .where(F.col("weight") != 0)
    )


class _Train:
    """What the serving path reads of a model's training matrix: its item ids."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray) -> None:
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.n_items = len(item_ids)
        self.n_users = len(user_ids)


@dataclass
class SparkALSModel:
    """A fitted MLlib ALS model as recgov's serving code reads a model.

    ``item_factors_`` (``n_items x f``, on the driver) and the user factors (a Spark frame
    ``user``, ``features``: they stay on the executors) in the sorted id order of ``user_ids``
    and ``item_ids``. ``ratings`` is the cached ``(user, item, weight)`` frame it was fitted on.
    """

    params: dict[str, Any]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_factors_: np.ndarray
    user_factors: Any
    ratings: Any
    popularity_: np.ndarray
    data_hash_: str
    version_id_: str
    fit_seconds: float = 0.0
    train_: _Train = field(init=False)

    def __post_init__(self) -> None:
        self.train_ = _Train(self.user_ids, self.item_ids)

    @property
    def regularization(self) -> float:
        return float(self.params["regularization"])

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"])

    def check_fitted(self, action: str = "use") -> None:
        """Raise :class:`~recommender.errors.NotFittedError` when there are no factors (recgov's models' contract)."""
        if self.item_factors_ is None or len(self.item_factors_) == 0:
            raise NotFittedError(f"this SparkALSModel is not fitted yet; train it before you {action} it")

    def user_factor_matrix(self) -> np.ndarray:
        """All user factors on the driver (``n_users x f``; for tests and small data only)."""
        rows = self.user_factors.orderBy("user").collect()
        out = np.zeros((len(self.user_ids), self.item_factors_.shape[1]), dtype=np.float32)
        for r in rows:
            out[int(r["user"])] = np.asarray(r["features"], dtype=np.float32)
        return out


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULT_PARAMS, **(params or {})}
    unknown = set(merged) - set(DEFAULT_PARAMS)
    if unknown:
        raise ConfigError(f"unknown ALS parameter(s) {sorted(unknown)}; expected some of {sorted(DEFAULT_PARAMS)}")
    for name, kind, low in (("factors", int, 1), ("iterations", int, 1)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, kind) or value < low:
            raise ConfigError(f"The '{name}' parameter of the Spark ALS must be an int in the range [{low}, inf). Got {value!r} instead.")
    for name, strict in (("regularization", False), ("alpha", True)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (strict and value == 0):
            bracket = "(0" if strict else "[0"
            raise ConfigError(f"The '{name}' parameter of the Spark ALS must be a float in the range {bracket}, inf). Got {value!r} instead.")
    return merged


def train_als_spark(
    kept: Any, *, params: dict[str, Any] | None = None, feedback: FeedbackConfig | None = None, blocks: int | None = None
) -> SparkALSModel:
    """Fit MLlib ALS (implicit preferences) on the kept events with recgov's ALS parameters.

    ``params``: ``factors`` (rank), ``regularization`` (regParam), ``alpha``, ``iterations``
    (maxIter), ``random_state`` (seed); missing ones take :data:`DEFAULT_PARAMS`.

    Raises
    ------
    ConfigError
        A parameter out of range, or no event with a positive weight to learn from.
    """
    import time

    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from governance.spark.filters import frame_hash

    merged = _check_params(params or {})
    spark = kept.sparkSession
    ratings = implicit_ratings(kept, feedback).cache()
    user_ids = np.array(sorted(r[0] for r in ratings.select("user_id").distinct().collect()), dtype=object)
    if len(user_ids) == 0:
        ratings.unpersist()
        raise ConfigError("no event with a positive weight is left to train on (check the event weights and the rating threshold)")
    item_ids = np.array(sorted(r[0] for r in ratings.select("item_id").distinct().collect()), dtype=object)
    users = spark.createDataFrame([(str(u), i) for i, u in enumerate(user_ids)], "user_id string, user int")
    items = spark.createDataFrame([(str(v), i) for i, v in enumerate(item_ids)], "item_id string, item int")
    indexed = (
        ratings.join(F.broadcast(users), "user_id").join(F.broadcast(items), "item_id").select("user", "item", "weight").cache()
    )
    n_blocks = blocks or max(2, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=merged["factors"], maxIter=merged["iterations"], regParam=float(merged["regularization"]),
        alpha=float(merged["alpha"]), implicitPrefs=True, seed=int(merged["random_state"] or 0),
        userCol="user", itemCol="item", ratingCol="weight", coldStartStrategy="drop",
        numUserBlocks=n_blocks, numItemBlocks=n_blocks,
    )  # fmt: skip
    started = time.perf_counter()
    fitted = als.fit(indexed)
    item_factors = np.zeros((len(item_ids), merged["factors"]), dtype=np.float32)
    for row in fitted.itemFactors.collect():
        item_factors[int(row["id"])] = np.asarray(row["features"], dtype=np.float32)
    user_factors = fitted.userFactors.withColumnRenamed("id", "user").cache()
    user_factors.count()
    seconds = time.perf_counter() - started
    popularity = np.zeros(len(item_ids), dtype=np.float64)
    for row in indexed.groupBy("item").count().collect():
        popularity[int(row["item"])] = float(row["count"])
    ratings.unpersist()
    data_hash = frame_hash(indexed)
    version = _version_id(data_hash, merged, spark.version)
    return SparkALSModel(
        params=merged, user_ids=user_ids, item_ids=item_ids, item_factors_=item_factors, user_factors=user_factors,
        ratings=indexed, popularity_=popularity, data_hash_=data_hash, version_id_=version, fit_seconds=seconds,
    )  # fmt: skip


def als_artifact(model: SparkALSModel, spark_version: str) -> bytes:
    """The fitted model as a recgov ALS model file (:meth:`recommender.als.ALSRecommender.save`'s format).

    So a model trained on Spark is served, explained and unlearned by the in-process code like any
    registered ALS model: its factors, its ids in sorted order, and the training matrix (the weights it
    was fitted on, collected to the driver: the file needs them to leave seen items out when serving).
    ``meta.solver`` says the factors are MLlib's (confidence ``1 + alpha r``, regularization scaled by
    each user's count); the in-process explanations and unlearning use ``implicit``'s formulas on them.
    """
    import io

    import scipy.sparse as sp

    from recommender.als import FORMAT

    model.check_fitted("save")
    pairs = model.ratings.select("user", "item", "weight").toPandas()
    matrix = sp.csr_matrix(
        (pairs["weight"].to_numpy(np.float32), (pairs["user"].to_numpy(np.int64), pairs["item"].to_numpy(np.int64))),
        shape=(len(model.user_ids), len(model.item_ids)),
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    meta = {
        "format": FORMAT, "params": dict(model.params), "version_id": model.version_id_, "data_hash": model.data_hash_,
        "library_versions": {"pyspark": spark_version}, "solver": "mllib-als",
    }  # fmt: skip
    buffer = io.BytesIO()
    np.savez(
        buffer, meta=np.array(json.dumps(meta, sort_keys=True)), user_factors=model.user_factor_matrix(),
        item_factors=np.asarray(model.item_factors_, dtype=np.float32), user_ids=np.asarray(model.user_ids, dtype=str),
        item_ids=np.asarray(model.item_ids, dtype=str), indptr=matrix.indptr, indices=matrix.indices, data=matrix.data,
    )  # fmt: skip
    return buffer.getvalue()


def _version_id(data_hash: str, params: dict[str, Any], spark_version: str) -> str:
    """``als-spark-`` and 24 hex digits over the data, the parameters and the Spark version (as recgov names models)."""
    document = json.dumps({"kind": "als-spark", "data": data_hash, "params": params, "libraries": {"pyspark": spark_version}}, sort_keys=True)
    return "als-spark-" + hashlib.sha256(b"recgov.model-version.v1\x00" + document.encode()).hexdigest()[:24]


class SparkALSPersonalizer(Personalizer):
    """The serving path's :class:`~governance.serving.Personalizer` for an MLlib model: the same re-ranking
    and tags, with the exact decomposition of MLlib's scores (confidence ``1 + alpha * r``, regularization
    ``regParam * n_u``) in the ``because you interacted`` tags."""

    @classmethod
    def of(cls, base: Personalizer) -> SparkALSPersonalizer:
        """This personalizer with everything ``base`` holds (model, re-ranking, catalog, blocks)."""
        made = cls.__new__(cls)
        made.__dict__.update(base.__dict__)
        return made

    def explain(self, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray, n: int = 3) -> Any:
        model = self.model
        alpha = model.alpha
        values = np.asarray(history[1], dtype=np.float64)
        positive = values > 0
        # confidence 1 + alpha * r, passed as values whose alpha-multiple it is
        as_values = np.where(positive, (1.0 + alpha * np.abs(values)) / alpha, 0.0)
        yty = getattr(self, "_spark_yty", None)
        if yty is None:
            factors = model.item_factors_.astype(np.float64)
            yty = self._spark_yty = factors.T @ factors
        return explain_als_list(
            model.item_factors_, model.regularization * int(positive.sum()), alpha, history[0], as_values, ids, n=n, yty=yty
        )
