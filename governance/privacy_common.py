"""What the privacy procedures share: the pack they run under, its stamp, and the moment they take.

Below every module of a right (the training filter, access, erasure, retrains,
consent, the Art. 30 record), so that none of them imports another for these.
"""

from __future__ import annotations

from datetime import UTC, datetime

from governance.policy import LoadedPack, PolicyPack, content_hash
from recommender.errors import ConfigError, DataError

__all__ = ["UNLISTED_PURPOSE", "as_moment", "pack_policy", "pack_stamp"]

UNLISTED_PURPOSE = (
    "purpose {purpose!r} is not listed in the consent section of pack {pack} (listed: {listed}); "
    "name one of those, or add the purpose to the pack"
)


def pack_policy(pack: LoadedPack | PolicyPack) -> PolicyPack:
    """The policy of a loaded pack, or the policy given."""
    if isinstance(pack, LoadedPack):
        return pack.pack
    if isinstance(pack, PolicyPack):
        return pack
    raise ConfigError(
        f"pack must be a LoadedPack (governance.policy.load_pack) or a PolicyPack; got {type(pack).__name__}"
    )


def pack_stamp(pack: LoadedPack | PolicyPack) -> dict[str, str]:
    """The pack's name, version and content hash, as stamped on what it governs."""
    if isinstance(pack, LoadedPack):
        return pack.stamp()
    return {"pack": pack.metadata.name, "pack_version": pack.metadata.version, "pack_hash": content_hash(pack)}


def as_moment(value: datetime | None, name: str) -> datetime:
    """``value`` in UTC (now when None); a naive time is refused: its zone would be a guess."""
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise DataError(f"{name} must be a timezone-aware datetime such as datetime.now(UTC), got {value!r}")
    return value.astimezone(UTC)
