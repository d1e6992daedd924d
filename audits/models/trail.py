"""The audit trail's tables.

``trail_events`` is the append-only chain of events (triggers refuse UPDATE and
DELETE); ``trail_head`` is its one-row head, which writers lock to serialize
appends; ``trail_checkpoints`` are signed statements of the head, checked with the
public keys kept in ``signing_keys`` (kept after rotation). ``subject_secrets``
holds the per-subject pseudonym secrets, deleted to erase a subject, and
``store_meta`` facts about the store itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, TIME_LENGTH, Base, SeqType, UtcDateTime, utc_now

__all__ = [
    "TrailEvent",
    "TrailHead",
    "SigningKeyRecord",
    "TrailCheckpoint",
    "SubjectSecret",
    "StoreMeta",
]

class TrailEvent(Base):
    """One event of the append-only audit trail (see :mod:`audits.trail`)."""

    __tablename__ = "trail_events"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    """1, 2, 3, ... without gaps."""
    time: Mapped[str] = mapped_column(String(TIME_LENGTH))
    """UTC time, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; hashed exactly as stored."""
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym (never a raw id), or NULL."""
    objects: Mapped[str] = mapped_column(Text)
    """Canonical JSON object of the ids the event concerns (dataset, model, policy, ...)."""
    payload: Mapped[str] = mapped_column(Text)
    """Canonical JSON object."""
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class TrailHead(Base):
    """The one row naming the last event; writers lock it to serialize appends."""

    __tablename__ = "trail_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class SigningKeyRecord(Base):
    """A public key that signed checkpoints; kept after rotation so old checkpoints stay checkable."""

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(20))
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class TrailCheckpoint(Base):
    """A signed statement: at ``time`` the trail's head was (``seq``, ``hash``)."""

    __tablename__ = "trail_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    time: Mapped[str] = mapped_column(String(TIME_LENGTH))
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.key_id"), index=True)
    signature: Mapped[str] = mapped_column(String(128))
    """Ed25519 signature, hex."""


class SubjectSecret(Base):
    """The random secret behind one subject's pseudonym, found by a keyed hash of its id."""

    __tablename__ = "subject_secrets"

    lookup: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    """HMAC-SHA256 of the subject id under the installation key (never the id itself)."""
    secret: Mapped[str] = mapped_column(String(HASH_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class StoreMeta(Base):
    """Facts about this store (e.g. the fingerprint of its installation key)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
