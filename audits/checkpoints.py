"""Signed checkpoints: an Ed25519 signature over the trail's head.

A checkpoint says "at ``time`` the trail's head was event ``seq`` with hash
``hash``", signed over ::

    b"recgov.checkpoint.v1\\x00" + JCS({"hash": ..., "key_id": ..., "seq": ..., "time": ...})

Whoever holds the public key can check it offline, together with an export of
the trail (:mod:`audits.export`): the export's chain must reach the signed hash
at the signed sequence number, so nothing up to there can have been rewritten,
even by someone who recomputed every hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.keys import ALGORITHM, SigningKey
from audits.models import SigningKeyRecord, TrailCheckpoint
from audits.trail import TIME_FORMAT, lock_head
from recommender.errors import DataError

__all__ = [
    "CheckpointRecord",
    "CHECKPOINT_DOMAIN",
    "checkpoint_message",
    "create_checkpoint",
    "list_checkpoints",
    "register_signing_key",
]

CHECKPOINT_DOMAIN = b"recgov.checkpoint.v1\x00"
EMPTY_TRAIL = "the trail is empty; there is nothing to checkpoint"


@dataclass(frozen=True)
class CheckpointRecord:
    """A signed checkpoint, plus the public key that checks it."""

    seq: int
    hash: str
    time: str
    key_id: str
    signature: str
    public_key_pem: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def checkpoint_message(*, seq: int, hash: str, time: str, key_id: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return CHECKPOINT_DOMAIN + canonical_json({"hash": hash, "key_id": key_id, "seq": seq, "time": time})


def register_signing_key(session: Session | Connection, key: SigningKey) -> None:
    """Record ``key``'s public half in ``signing_keys`` (once), so that ``GET /v1/trail/keys`` lists it."""
    known = session.execute(
        select(SigningKeyRecord.key_id).where(SigningKeyRecord.key_id == key.key_id)
    ).scalar_one_or_none()
    if known is None:
        session.execute(
            insert(SigningKeyRecord).values(
                key_id=key.key_id,
                algorithm=ALGORITHM,
                public_key_pem=key.public_key_pem,
                created_at=datetime.now(UTC),
            )
        )


def create_checkpoint(session: Session | Connection, key: SigningKey) -> CheckpointRecord:
    """Sign the current head with ``key`` and store the checkpoint (in the caller's transaction).

    The head is locked while signing, so it cannot move in between. The
    caller should verify the trail first (``recgov trail checkpoint`` does):
    signing a tampered trail would vouch for it.

    Raises
    ------
    DataError
        The trail is empty, or its head does not match its last event.
    """
    seq, head_hash = lock_head(session)
    if seq == 0:
        raise DataError(EMPTY_TRAIL)
    register_signing_key(session, key)
    time = datetime.now(UTC).strftime(TIME_FORMAT)
    signature = key.sign(checkpoint_message(seq=seq, hash=head_hash, time=time, key_id=key.key_id))
    session.execute(
        insert(TrailCheckpoint).values(seq=seq, hash=head_hash, time=time, key_id=key.key_id, signature=signature)
    )
    return CheckpointRecord(
        seq=seq, hash=head_hash, time=time, key_id=key.key_id, signature=signature, public_key_pem=key.public_key_pem
    )


def list_checkpoints(session: Session | Connection) -> list[CheckpointRecord]:
    """Every stored checkpoint, oldest first, with its public key."""
    rows = session.execute(
        select(
            TrailCheckpoint.seq,
            TrailCheckpoint.hash,
            TrailCheckpoint.time,
            TrailCheckpoint.key_id,
            TrailCheckpoint.signature,
            SigningKeyRecord.public_key_pem,
        )
        .join(SigningKeyRecord, SigningKeyRecord.key_id == TrailCheckpoint.key_id)
        .order_by(TrailCheckpoint.id)
    ).all()
    return [CheckpointRecord(*row) for row in rows]
