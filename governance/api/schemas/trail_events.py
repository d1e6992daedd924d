"""Bodies of ``/v1/trail/events`` and ``/v1/trail/keys``: trail events page by page, and the signers' public keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["PublicKey", "PublicKeyList", "TrailEvent", "TrailEventPage"]

_EVENT_EXAMPLE = {
    "seq": 42,
    "time": "2026-12-05T10:00:00.000000Z",
    "actor": "api-key:3",
    "action": "audit.completed",
    "subject": None,
    "objects": {"model": "als-66329e", "policy": "9c1f..."},
    "payload": {"verdict": "pass"},
    "prev_hash": "5d2a...",
    "hash": "a8e0...",
}


class TrailEvent(BaseModel):
    """One event of the append-only trail, as hashed: check ``hash`` against a verified export."""

    seq: int = Field(description="1, 2, 3, ... without gaps; the cursor of the next page.")
    time: str = Field(description="UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ, exactly as hashed.")
    actor: str
    action: str = Field(description="What happened, dotted: audit.completed, deployment.promoted, subject.shredded, ...")
    subject: str | None = Field(description="The subject's pseudonym (never a raw id), or null.")
    objects: dict[str, Any] = Field(description="The ids the event concerns (dataset, model, policy, ...).")
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class TrailEventPage(BaseModel):
    """A page of events in sequence order, and the cursor of the next page."""

    model_config = {"json_schema_extra": {"examples": [{"events": [_EVENT_EXAMPLE], "next_after": 42, "head_seq": 180}]}}

    events: list[TrailEvent]
    next_after: int | None = Field(description="Pass it as ?after= for the next page; null when this page is the last.")
    head_seq: int = Field(description="The trail's last event when the page was read.")


class PublicKey(BaseModel):
    """A key that signed checkpoints, as PEM and as JWK (RFC 8037), to verify an export offline."""

    key_id: str = Field(description="The first 32 hex digits of the SHA-256 of the raw public key.")
    algorithm: str = Field(description="ed25519")
    public_key_pem: str = Field(description="SubjectPublicKeyInfo PEM: what 'recgov trail verify-export --public-key' reads.")
    jwk: dict[str, str] = Field(description='{"kty": "OKP", "crv": "Ed25519", "x": base64url of the raw key, "kid": key_id}')
    created_at: str | None = Field(description="When the store first saw it (ISO 8601, UTC).")
    checkpoints: int = Field(description="How many checkpoints it signed.")


class PublicKeyList(BaseModel):
    """Every key that ever signed a checkpoint, the retired ones included (their checkpoints stay verifiable)."""

    keys: list[PublicKey]
