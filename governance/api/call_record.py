"""Attribute API writes to their key on the trail: the call record every writing route appends before it answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from audits.api_keys import ApiKey
from audits.trail import append_event
from governance.api.keys import actor_of


def record_call(session: Session, key: ApiKey, route: str, *, objects: dict[str, Any] | None = None, payload: dict[str, Any] | None = None, subject: str | None = None) -> None:
    """Append ``api.<route>`` by ``key:<id>:<name>`` and commit: the record is written before the answer."""
    append_event(session, actor=actor_of(key), action=f"api.{route}", subject=subject, objects=objects or {}, payload=payload or {})
    session.commit()
