"""The serving engine's exposure ledgers: loaded when an engine starts, saved behind the requests.

An ``amortised_exposure`` step carries each provider group's exposure debt from
request to request (:mod:`governance.rerank.amortised`). :class:`ExposureState`
ties the ledgers of an engine's stateful steps to the store: it loads each one
when the engine is built (the state the last engine of the same pack left),
and saves them write-behind, every ``every`` lists and on :meth:`ExposureState.close`
(shutdown), each save anchored on the trail by a ``rerank.exposure_state``
event (the state's SHA-256 and counts).

Within a process the ledger of a pack's step is one object, whatever number
of engines serve it: an engine rebuilt (new blocks, say) takes over the live
ledger of the one it replaces, not the last saved state.

What a crash loses: the lists served since the last save, at most ``every``
per step (their exposure is not in the saved debt, so the next engine pays
slightly less than it owes). Several engines of the same pack (processes,
replicas) each carry their own ledger and the last save wins: run one per pack,
or accept that the debt is that of one replica's traffic.

Item debts are keyed by catalog rows, which only mean the same items under the
same model: a ledger saved under another model version is read back without
them (group debts are kept).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from audits.exposure_ledgers import load_ledger, save_ledger

_log = logging.getLogger(__name__)
_LIVE: dict[tuple[str, str, str, str], tuple[Any, threading.Lock]] = {}
_LIVE_LOCK = threading.Lock()

__all__ = ["DEFAULT_EVERY", "ExposureState"]

DEFAULT_EVERY = 100
"""Lists between saves: a crash loses at most this many lists of exposure per step."""


class ExposureState:
    """The stateful steps of one engine's pipeline, and their persistence in the store."""

    def __init__(self, store: Any, pack_name: str, steps: dict[str, Any], model_version: str | None, *, every: int = DEFAULT_EVERY) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"The 'every' parameter of ExposureState must be an int in the range [1, inf). Got {every!r} instead.")
        self.store = store
        self.pack_name = pack_name
        self.steps = steps
        self.model_version = model_version
        self.every = every
        self._saving = threading.Lock()

    @classmethod
    def attach(cls, pipeline: Any, store: Any, pack_name: str, model_version: str | None, *, every: int = DEFAULT_EVERY) -> ExposureState | None:
        """The persistence of ``pipeline``'s stateful steps, loaded from ``store`` (None: no such step, or no store)."""
        if pipeline is None or store is None:
            return None
        steps = {label: step for label, step in zip(pipeline.labels, pipeline.steps) if getattr(step, "stateful", False)}
        if not steps:
            return None
        state = cls(store, pack_name, steps, model_version, every=every)
        url = str(getattr(getattr(store, "engine", None), "url", id(store)))
        fresh = {}
        with _LIVE_LOCK:
            for label, step in steps.items():
                # item debts are catalog rows of one model: engines of two models share group debts only if no item debt
                config = step.config.model_dump_json() + (f"@{model_version}" if step.config.item_weight > 0 else "")
                key = (url, pack_name, label, config)
                live = _LIVE.get(key)
                if live is None:
                    _LIVE[key] = (step.ledger, state._saving)
                    fresh[label] = step
                else:  # this process already serves this step: share its ledger (and its save lock)
                    step.ledger, state._saving = live
        state.load(fresh)
        return state

    def load(self, steps: dict[str, Any] | None = None) -> None:
        """Each step's ledger (of ``steps``, default all) as last saved under this pack (never saved: empty)."""
        with self.store.session() as session:
            for label, step in (self.steps if steps is None else steps).items():
                found = load_ledger(session, pack_name=self.pack_name, step=label)
                if found is not None:
                    saved, model_version = found
                    step.ledger.load(saved, keep_items=model_version == self.model_version)

    def tick(self) -> None:
        """After a served list: save the ledgers once ``every`` lists have changed one since its last save.

        A failed save is logged and tried again at the next list (serving goes on: the
        debt is not a decision, and the decision log is what must not lose a list)."""
        if any(step.ledger.changes >= self.every for step in self.steps.values()):
            if self._saving.acquire(blocking=False):  # one save at a time; the others go on serving
                try:
                    self.save()
                except Exception as err:  # noqa: BLE001 - see the docstring
                    _log.warning("saving the exposure ledgers of pack %s failed (%s); tried again at the next list", self.pack_name, type(err).__name__)
                finally:
                    self._saving.release()

    def save(self) -> None:
        """Save every step's ledger that changed, each with its trail event, in one transaction."""
        with self.store.session() as session:
            saved = []
            for label, step in self.steps.items():
                ledger = step.ledger
                if not ledger.changes:
                    continue
                state = ledger.to_dict()
                save_ledger(session, pack_name=self.pack_name, step=label, state=state, counts=ledger.counts(), model_version=self.model_version)
                saved.append((ledger, state["lists"]))
        for ledger, lists in saved:
            ledger.mark_saved(lists)

    def close(self) -> None:
        """Save what is unsaved (at shutdown)."""
        with self._saving:
            self.save()
