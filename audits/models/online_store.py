"""The online store's outbox: invalidations of Redis (:mod:`audits.online_store`) not yet applied there.

A consent change, an erasure, a block, an availability change or a harm flag or
case records its invalidation here in the transaction that records the change,
so it outlives a Redis that is down and a process that has no Redis configured;
:func:`audits.online_store.drain_outbox` applies it and deletes the row. One row
per key at most (a later change for the same key bumps ``version``). Pseudonymous
keys only: the online store's keyed hash of a subject, or ``*`` for every list.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import Base, SeqType, UtcDateTime

__all__ = ["OUTBOX_EVERYONE", "OnlineStoreOutbox"]

OUTBOX_EVERYONE = "*"
"""The outbox key of a global invalidation (a block, an availability change, a harm flag or case)."""


class OnlineStoreOutbox(Base):
    """One invalidation not yet applied to the online store."""

    __tablename__ = "online_store_outbox"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    subject_key: Mapped[str] = mapped_column(String(64), unique=True)
    """The online store's keyed hash of the subject (never the raw id), or :data:`OUTBOX_EVERYONE`."""
    hold: Mapped[bool] = mapped_column(Boolean)
    """A withdrawal, a refusal or an erasure: the subject's lists are also held back when it is applied."""
    version: Mapped[int] = mapped_column(Integer)
    """Bumped by each change recorded for the key while the row waits: a drain deletes only what it applied."""
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
