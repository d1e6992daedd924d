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

Group debts are keyed by group code, which only means the same group under the
same step configuration (targets, ...) and the same provider-group codes of the
pack (``fairness.provider_attribute``, ``protected_provider_group``,
``provider_group_codes``): a ledger is saved with the key of both
(:func:`audits.exposure_ledgers.config_key`), and one saved under another key
is not read back; a new pack version that changes either starts from an empty
ledger, the reset anchored on the trail (``rerank.exposure_state_reset``).
Within a process, engines share a live ledger only under the same key.

Lists never shown (a shadow deployment's) add nothing to the ledger
(:func:`governance.rerank.amortised.unserved_lists`).

Item debts are keyed by catalog rows, which only mean the same items under the
same model: a ledger saved under another model version is read back without
them (group debts are kept).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from audits.exposure_ledgers import config_key, load_ledger, save_ledger

_log = logging.getLogger(__name__)
_LIVE: dict[tuple[str, str, str, str], tuple[Any, threading.Lock]] = {}
_LIVE_LOCK = threading.Lock()

__all__ = ["DEFAULT_EVERY", "ExposureState", "provider_grouping"]

DEFAULT_EVERY = 100
"""Lists between saves: a crash loses at most this many lists of exposure per step."""


def provider_grouping(pack: Any) -> dict[str, Any]:
    """How ``pack`` (a :class:`~governance.policy.PolicyPack`, or None for the defaults) maps items to the group
    codes re-rankers target: the provider column, the protected group (code 1) and the codes map."""
    fairness = getattr(pack, "fairness", None)
    return {
        "provider_attribute": getattr(fairness, "provider_attribute", None) or "provider_group",
        "protected_provider_group": getattr(fairness, "protected_provider_group", "independent"),
        "provider_group_codes": dict(getattr(fairness, "provider_group_codes", None) or {}) or None,
    }


class ExposureState:
    """The stateful steps of one engine's pipeline, and their persistence in the store."""

    def __init__(
        self, store: Any, pack_name: str, steps: dict[str, Any], model_version: str | None, *, every: int = DEFAULT_EVERY,
        grouping: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"The 'every' parameter of ExposureState must be an int in the range [1, inf). Got {every!r} instead.")
        self.store = store
        self.pack_name = pack_name
        self.steps = steps
        self.model_version = model_version
        self.every = every
        self.grouping = grouping or {}
        """How the pack gives items their group codes (see :func:`provider_grouping`); part of each ledger's key."""
        self._saving = threading.Lock()

    def key(self, label: str) -> str:
        """The configuration key of step ``label``'s ledger: its config and the pack's provider-group codes."""
        return config_key({"step": self.steps[label].config.model_dump(mode="json"), "grouping": self.grouping})

    @classmethod
    def attach(
        cls, pipeline: Any, store: Any, pack_name: str, model_version: str | None, *, every: int = DEFAULT_EVERY, pack: Any = None
    ) -> ExposureState | None:
        """The persistence of ``pipeline``'s stateful steps, loaded from ``store`` (None: no such step, or no store).

        ``pack``: the :class:`~governance.policy.PolicyPack` whose provider-group codes the steps' targets name
        (None: the default codes, 1 for ``independent`` and 0 for the others)."""
        if pipeline is None or store is None:
            return None
        steps = {label: step for label, step in zip(pipeline.labels, pipeline.steps) if getattr(step, "stateful", False)}
        if not steps:
            return None
        state = cls(store, pack_name, steps, model_version, every=every, grouping=provider_grouping(pack))
        url = str(getattr(getattr(store, "engine", None), "url", id(store)))
        fresh = {}
        with _LIVE_LOCK:
            for label, step in steps.items():
                # item debts are catalog rows of one model: engines of two models share group debts only if no item debt
                config = state.key(label) + (f"@{model_version}" if step.config.item_weight > 0 else "")
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
                found = load_ledger(session, pack_name=self.pack_name, step=label, key=self.key(label))
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
                save_ledger(
                    session, pack_name=self.pack_name, step=label, state=state, counts=ledger.counts(),
                    model_version=self.model_version, key=self.key(label),
                )  # fmt: skip
                saved.append((ledger, state["lists"]))
        for ledger, lists in saved:
            ledger.mark_saved(lists)

    def close(self) -> None:
        """Save what is unsaved (at shutdown)."""
        with self._saving:
            self.save()
