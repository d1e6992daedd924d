"""The Spark engine: the pack's batch work on PySpark, with the in-process path's rules and code.

* :mod:`governance.spark.filters`: consent, suppression, retention and minimisation as a
  broadcast join and a filter before the model reads a row (the rules of
  :mod:`governance.training_filter`, read from the store once).
* :mod:`governance.spark.session`: the session (master from ``RECGOV_SPARK_MASTER``, ``local[2]``
  by default) and a clear error when PySpark or Java is missing.

Nothing here imports PySpark at import time: ``import governance.spark`` works without it.
"""

from __future__ import annotations

__all__: list[str] = []
