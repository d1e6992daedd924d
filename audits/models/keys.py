"""The REST API's keys: who each is for, its role, and the hash of its token.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, Base, UtcDateTime

__all__ = [
    "ApiKey",
    "LADDER_ROLES",
    "API_ROLES",
]

LADDER_ROLES = ("viewer", "auditor", "operator", "admin")
"""The people's roles, from least to most privileged; each may do what the roles before it may."""
API_ROLES = (*LADDER_ROLES, "serving")
"""Every role a key may have: the ladder, and ``serving`` (a serving system's key) outside it.

What each role may do is :data:`governance.api.keys.ROLE_SCOPES`.
"""


class ApiKey(Base):
    """One API key of the REST API: who it is for, what it may do, and the hash of its token.

    The token itself is shown once, when the key is created, and never stored:
    ``key_hash`` is the hex SHA-256 of the token. A key is revoked by setting
    ``revoked_at``; revoked keys stay listed so the trail's ``key:<id>:<name>``
    actors can always be resolved.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'auditor', 'operator', 'admin', 'serving')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    """Hex SHA-256 of the token; the token itself is never stored."""
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
