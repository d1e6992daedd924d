"""What every table of the store shares: the declarative base and its column types.

One :class:`Base` holds the one ``MetaData`` of the store, with the naming
convention the migrations use for constraints and indexes. The domain modules
beside this one declare their tables on it, so importing :mod:`audits.models`
registers every table on ``Base.metadata``, the schema Alembic compares with the
migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Integer, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from recommender.errors import DataError

__all__ = [
    "Base",
    "HASH_LENGTH",
    "ITEM_ID_LENGTH",
    "JsonType",
    "NAMING_CONVENTION",
    "SeqType",
    "TIME_LENGTH",
    "UUID_LENGTH",
    "UtcDateTime",
    "one_of",
    "utc_now",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A sequence number: BIGINT on PostgreSQL; on SQLite an INTEGER primary key is the rowid.
SeqType = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")
HASH_LENGTH = 64
TIME_LENGTH = 27  # 2024-01-31T12:34:56.123456Z
UUID_LENGTH = 36
ITEM_ID_LENGTH = 200


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both engines (SQLite stores naive UTC).

    Naive datetimes are refused: their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise DataError(f"expected a datetime, got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError(
                f"datetime {value.isoformat()} has no time zone; pass an aware datetime such as datetime.now(UTC)"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    """The current time, aware and in UTC: the default of the ``created_at`` columns."""
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    """A check constraint, named after ``column``, that holds ``column`` to ``values``."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class Base(DeclarativeBase):
    """Declarative base of every store table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
