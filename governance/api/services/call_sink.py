"""The engines' decision sink in the service: the shared decision log, plus the trail record of the call.

The trail record of each call (``api.recommendations.create``, by the calling
key) goes with its decision: the route wraps ``engine.serve`` in
:meth:`CallAttributingSink.calling`, and the sink hands the log the decision
together with an event naming the decision, the model, the mode, the GPC signal
and the pack; the log appends it in the same transaction as the decision row,
so a list is answered only once both are durable. Outside such a block (the
shadows' thread) a decision goes alone: a mirrored list is no call. The caller
is held in a context variable, so concurrent requests never see each other's.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from audits.consent_write import ConsentWrite
from audits.decision_record import Decision, DecisionReceipt
from audits.decisions import DecisionLog
from audits.trail import NewEvent

__all__ = ["DECISION_TIMEOUT_S", "CallAttributingSink"]

DECISION_TIMEOUT_S = 5.0
"""Seconds a governed list waits for its decision's commit; past it the list is not answered."""


@dataclass
class _Call:
    """The request being served in this context."""

    actor: str
    """The calling key's trail actor."""
    gpc: bool
    """Whether the request sent ``Sec-GPC: 1``."""
    defer: bool = False
    """Queue the decision and leave the wait to the caller (who awaits :attr:`pending`)."""
    pending: Future[DecisionReceipt] | None = None
    """The queued decision's commit, when deferred."""
    consent: tuple[ConsentWrite, ...] = ()
    """Consent records the call's signals bring, committed with its decision (:mod:`audits.consent_write`)."""


_CALLER: ContextVar[_Call | None] = ContextVar("recgov_api_caller", default=None)
"""The request being served in this context."""


class CallAttributingSink:
    """The engines' decision sink: the shared log, plus the trail record of the call being served.

    With ``defer=True`` the decision is queued and its commit left in the call's
    ``pending`` future, for the caller to wait for (on the event loop) before it
    answers.
    """

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    @staticmethod
    @contextmanager
    def calling(actor: str, *, gpc: bool, defer: bool = False, consent: tuple[ConsentWrite, ...] = ()) -> Iterator[_Call]:
        """Attribute the decisions made in this block to ``actor`` (a key's ``key:<id>:<name>``); ``consent``: the
        subject's new consent records, written with the (one) decision in its transaction."""
        call = _Call(actor, gpc, defer, consent=consent)
        token = _CALLER.set(call)
        try:
            yield call
        finally:
            _CALLER.reset(token)

    def submit_and_wait(self, record: Decision, timeout: float = DECISION_TIMEOUT_S) -> DecisionReceipt | None:
        """Store ``record`` (and the current call's trail record) durably; return once committed.

        In a deferred call, return at once (``None``): the commit is the call's ``pending`` future.
        """
        call = _CALLER.get()
        if call is None:
            return self.log.submit_and_wait(record, timeout=timeout)
        event = NewEvent(
            actor=call.actor, action="api.recommendations.create",
            objects={"decision": record.decision_id, "model": record.model_version},
            payload={"mode": record.mode, "gpc": call.gpc, "pack": record.pack_name, "pack_version": record.pack_version, "pack_hash": record.pack_hash},
        )  # fmt: skip
        consent, call.consent = call.consent, ()  # the call's consent records go with its first decision only
        if call.defer:
            if call.pending is not None:
                raise RuntimeError("one call made two decisions")
            call.pending = self.log.submit(record, events=(event,), consent=consent)
            return None
        return self.log.submit_and_wait(record, timeout=timeout, events=(event,), consent=consent)
