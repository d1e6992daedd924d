"""Item availability: what may not be recommended because it cannot be had (out of stock, withdrawn,
restricted in a region), as opposed to what must not be because it may harm (:mod:`~audits.models.harm`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import ITEM_ID_LENGTH, Base, UtcDateTime, one_of

__all__ = ["AVAILABILITY_REASONS", "EVERYWHERE", "REGION_LENGTH", "ItemAvailability"]

AVAILABILITY_REASONS = ("out_of_stock", "withdrawn", "geo_restricted")
"""Why an item is unavailable; ``geo_restricted`` always names a region."""
EVERYWHERE = "*"
"""The region of a row that holds in every region (and for a request that names none)."""
REGION_LENGTH = 64


class ItemAvailability(Base):
    """An item's availability in one region (``*``: everywhere); one row per (item, region) ever made unavailable."""

    __tablename__ = "item_availability"
    __table_args__ = (
        one_of("reason", AVAILABILITY_REASONS),
        CheckConstraint("reason != 'geo_restricted' OR region != '*'", name="geo_region"),
    )

    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), primary_key=True)
    region: Mapped[str] = mapped_column(String(REGION_LENGTH), primary_key=True)
    unavailable: Mapped[bool] = mapped_column(Boolean)
    """False once the item is available there again (the row stays: its ``trail_seq`` is the change's)."""
    reason: Mapped[str] = mapped_column(String(20))
    """The latest reason given (kept when the item becomes available again)."""
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"), index=True)
    """The trail event of the latest change."""
