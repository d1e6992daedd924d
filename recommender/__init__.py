"""recgov's recommender core: data, models, evaluation.

This package knows nothing of governance: it never imports ``governance`` or
``audits``. The governed paths wrap it from the outside.
"""

from recommender.errors import ConfigError, DataError, NotFittedError, RecgovError

__all__ = ["ConfigError", "DataError", "NotFittedError", "RecgovError"]
