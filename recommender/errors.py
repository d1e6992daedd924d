"""The exceptions recgov raises on purpose.

Two families, kept apart so that callers can react differently:

* :class:`ConfigError` -- the caller asked for something invalid (a bad parameter,
  an unknown name, a malformed policy). Fix the call or the configuration.
* :class:`DataError` -- the data is unusable (a file is empty, a column is missing,
  a value cannot be parsed). Fix the data.

Both derive from :class:`RecgovError`; the command line maps every
``RecgovError`` to one readable line and exit code 2. Anything else escaping is a
bug, never an expected outcome.
"""

from __future__ import annotations

__all__ = ["RecgovError", "ConfigError", "DataError", "NotFittedError"]


class RecgovError(Exception):
    """Base class of every error recgov raises deliberately."""


class ConfigError(RecgovError, ValueError):
    """An invalid parameter, option or configuration value."""


class DataError(RecgovError, ValueError):
    """Input data that cannot be read or does not have the expected shape."""


class NotFittedError(RecgovError, RuntimeError):
    """A model was used before ``fit`` was called."""
