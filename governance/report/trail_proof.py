"""Which of the store's signed checkpoints the regulator's report may show as proof that the trail was not rewritten.

A checkpoint proves something only when its signature verifies with a key this installation holds: the public
keys of its keys folder (:func:`audits.keys.installation_public_keys`), as ``recgov trail verify`` and the
export's verification trust them. The ``signing_keys`` table holds the same keys, but whoever can write the
database can add one there, rewrite the trail and sign the new head with it; a report that listed the latest
checkpoint whatever its key presented such a signature as proof. Only where the installation holds no key at all
(a host that never signed) are the database's keys used, and the report says so (``trusted_keys: database``).

:func:`checkpoint_evidence` returns the checkpoint the report shows (the latest that verifies with a trusted key
and still names the trail's event at its sequence number), and what it found of the latest one stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.chain import check_signatures
from audits.checkpoints import CheckpointRecord, list_checkpoints
from audits.models import TrailEvent

__all__ = ["NOT_THE_TRAILS", "UNTRUSTED_KEY", "BAD_SIGNATURE", "checkpoint_evidence"]

UNTRUSTED_KEY = (
    "signed by key {key_id}, which is not one of this installation's keys (its keys folder): whoever can write the "
    "database can add a key and sign a rewritten trail with it; it proves nothing until the key is known to be the "
    "operator's"
)
BAD_SIGNATURE = "its signature does not verify with key {key_id}"
NOT_THE_TRAILS = "the trail's event {seq} no longer has the hash it signed"


def _shown(checkpoint: CheckpointRecord) -> dict[str, Any]:
    return {"seq": checkpoint.seq, "hash": checkpoint.hash, "time": checkpoint.time, "key_id": checkpoint.key_id}


def _event_hash(session: Session, seq: int) -> str | None:
    return session.scalar(select(TrailEvent.hash).where(TrailEvent.seq == seq))


def checkpoint_evidence(session: Session, trusted_keys: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(proof, verification)``: the latest checkpoint that verifies with ``trusted_keys`` (key id -> Ed25519 public
    key; empty: the database's keys, see the module) and matches the trail, or None; and ``{trusted_keys,
    n_checkpoints, n_verified, latest}``, where ``latest`` is the latest stored checkpoint with ``verified`` and,
    when it does not verify, the ``reason``."""
    checkpoints = list_checkpoints(session)
    if trusted_keys:
        valid, _ = check_signatures(checkpoints, public_keys=dict(trusted_keys))
        trust = "installation"
    else:
        valid, _ = check_signatures(checkpoints)
        trust = "database"
    verified = {id(c) for c in valid}
    proof = None
    mismatched: set[int] = set()
    for checkpoint in reversed(valid):  # the latest first: usually one lookup
        if _event_hash(session, checkpoint.seq) == checkpoint.hash:
            proof = checkpoint
            break
        mismatched.add(id(checkpoint))
    latest = None
    if checkpoints:
        last = checkpoints[-1]
        ok = id(last) in verified and id(last) not in mismatched and proof is last
        reason = None
        if not ok:
            if trusted_keys and last.key_id not in trusted_keys:
                reason = UNTRUSTED_KEY.format(key_id=last.key_id)
            elif id(last) not in verified:
                reason = BAD_SIGNATURE.format(key_id=last.key_id)
            else:
                reason = NOT_THE_TRAILS.format(seq=last.seq)
        latest = {**_shown(last), "verified": ok, "reason": reason}
    verification = {"trusted_keys": trust, "n_checkpoints": len(checkpoints), "n_verified": len(valid), "latest": latest}
    return (None if proof is None else _shown(proof)), verification
