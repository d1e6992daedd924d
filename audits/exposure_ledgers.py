"""The store's side of amortised re-ranking: saving and reading each step's exposure ledger.

:func:`save_ledger` writes a step's state (one row per pack and step label,
replaced in place) and anchors it with a ``rerank.exposure_state`` trail event
that carries the state's SHA-256 and its counts (lists, groups, each group's
share of attention): never an item's or a subject's figures. :func:`load_ledger`
reads a state back, only under the configuration key it was saved with: the
debts are per group code, and a code (or a target) means something else under
another step configuration or provider-group map. A ledger saved under another
key is dropped, and the reset anchored by a ``rerank.exposure_state_reset``
trail event (the dropped state's hash, lists and key, and the new key). All
run in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from audits._common import actor_name
from audits.models import ExposureLedgerRow
from audits.trail import append_event
from recommender.errors import DataError

__all__ = ["RESET_ACTION", "STATE_ACTION", "config_key", "load_ledger", "save_ledger", "state_hash"]

STATE_ACTION = "rerank.exposure_state"
RESET_ACTION = "rerank.exposure_state_reset"


def config_key(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of what gives a ledger's debts their meaning (see :func:`load_ledger`)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def state_hash(state: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a ledger state (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_ledger(
    session: Session,
    *,
    pack_name: str,
    step: str,
    state: Mapping[str, Any],
    counts: Mapping[str, Any],
    model_version: str | None,
    key: str | None = None,
    actor: str | None = None,
) -> ExposureLedgerRow:
    """Store (or replace) one step's ledger state, with its ``rerank.exposure_state`` trail event.

    ``key``: the :func:`config_key` of the step's configuration; it is recorded with the state and the event.
    """
    if not isinstance(state, Mapping) or "lists" not in state:
        raise DataError(f"an exposure ledger state must be a mapping with 'lists'; got {type(state).__name__}")
    digest = state_hash(state)
    event = append_event(
        session, actor=actor_name(actor), action=STATE_ACTION,
        objects={"policy": pack_name, "step": step, **({"model": model_version} if model_version else {})},
        payload={"state_hash": digest, **dict(counts), **({"config_key": key} if key else {})},
    )  # fmt: skip
    row = session.get(ExposureLedgerRow, (pack_name, step))
    if row is None:
        row = ExposureLedgerRow(pack_name=pack_name, step=step)
        session.add(row)
    row.state, row.state_hash, row.lists = dict(state), digest, int(state["lists"])
    row.model_version, row.config_key, row.updated_at, row.trail_seq = model_version, key, datetime.now(UTC), event.seq
    session.flush()
    return row


def load_ledger(
    session: Session, *, pack_name: str, step: str, key: str | None = None, actor: str | None = None
) -> tuple[dict[str, Any], str | None] | None:
    """``(state, model_version)`` of the saved ledger, or None when none was saved (or it was reset).

    A state whose stored hash does not match its content is refused (it was changed outside this code).
    With ``key`` (the :func:`config_key` of the step's configuration now), a ledger saved under another key,
    or before keys were recorded, is not read back: its debts per group code belong to targets or a
    provider-group map that no longer hold (a new pack version that remaps code 2 would otherwise pay the old
    group's debt to the new one). It is deleted, with a ``rerank.exposure_state_reset`` trail event, so
    that the step starts from an empty ledger.
    """
    row = session.get(ExposureLedgerRow, (pack_name, step))
    if row is None:
        return None
    if state_hash(row.state) != row.state_hash:
        raise DataError(f"the saved exposure ledger of step {step!r} under pack {pack_name!r} does not match its hash "
                        f"(trail event {row.trail_seq}); it was changed outside recgov")  # fmt: skip
    if key is not None and row.config_key != key:
        append_event(
            session, actor=actor_name(actor), action=RESET_ACTION,
            objects={"policy": pack_name, "step": step},
            payload={
                "reason": "configuration changed" if row.config_key else "saved without a configuration key",
                "previous_config_key": row.config_key, "config_key": key,
                "previous_state_hash": row.state_hash, "previous_lists": int(row.lists), "previous_trail_seq": row.trail_seq,
            },
        )  # fmt: skip
        session.delete(row)
        session.flush()
        return None
    return dict(row.state), row.model_version
