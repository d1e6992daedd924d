"""How database URLs and driver errors are shown in messages.

Shared by the engine set-up (:mod:`audits.db`) and the migrations
(:mod:`audits.migrate`), which :mod:`audits.db` runs: living below both, it keeps
the two free of an import cycle.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["describe_db_error", "masked_url"]


def masked_url(url: str | URL) -> str:
    """The URL with its password hidden, fit for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def describe_db_error(err: BaseException) -> str:
    """The first line of a database driver's message, without SQLAlchemy's boilerplate."""
    original = getattr(err, "orig", None) or err
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
