"""Exposure ledgers: the carried exposure debt of amortised re-ranking steps (:mod:`governance.rerank.amortised`).

One row per pack and step label: the step's state as JSON (per provider group
its debt and the attention received, the attention served in all, the number
of lists, optionally per catalog item its debt), the state's SHA-256 and the
trail event (``rerank.exposure_state``) that anchored it, and the key of the
configuration it was saved under. No subject data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import Base, JsonType, UtcDateTime

__all__ = ["ExposureLedgerRow"]


class ExposureLedgerRow(Base):
    """The latest saved state of one amortised step under one pack."""

    __tablename__ = "exposure_ledgers"

    pack_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    step: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JsonType)
    state_hash: Mapped[str] = mapped_column(String(128))
    lists: Mapped[int] = mapped_column(BigInteger)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The model whose catalog rows key the item debts (another model's rows are not read back)."""
    config_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """SHA-256 of what gives the debts their meaning (the step's config and the pack's provider-group codes);
    a ledger saved under another key is not read back (NULL: saved before the key was recorded)."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
