"""The Spark engine: the pack's batch work on PySpark, with the in-process path's rules and code.

* :mod:`governance.spark.session`: the session (master from ``RECGOV_SPARK_MASTER``, ``local[2]``
  by default) and a clear error when PySpark or Java is missing.
* :mod:`governance.spark.filters`: consent, suppression, retention and minimisation as a
  broadcast join and a filter before the model reads a row (the rules of
  :mod:`governance.training_filter`, read from the store once).
* :mod:`governance.spark.als`: MLlib ALS with recgov's ALS parameters, and the serving path's
  personalizer with the exact explanation of MLlib's scores.
* :mod:`governance.spark.lists`: candidates for every user, the serving path's re-rankers and tags
  per user through ``applyInPandas``, decision records written as Parquet partitions.
* :mod:`governance.spark.records`: each partition one hash chain, anchored on the trail and checked
  by ``recgov trail verify`` (with pyarrow: no Spark or Java needed to verify).
* :mod:`governance.spark.audit`: NDCG, recall and exposure by provider group computed on Spark.
* :mod:`governance.spark.evaluate`: an audit's offline evaluation with MLlib ALS and the popularity
  baseline, every evaluated user's list ranked on the executors.
* :mod:`governance.spark.gate`: ``recgov audit`` and ``recgov gate --engine spark``: the same audit
  facts, judged by the same checks and gate; what the engine does not evaluate is said, never passed.
* :mod:`governance.spark.batch`: ``recgov batch`` and ``recgov train --engine spark``.

Nothing here imports PySpark at import time: ``import governance.spark`` works without it.
"""

from __future__ import annotations

__all__: list[str] = []
