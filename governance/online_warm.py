"""Filling the online store for heavy users: their factors and their governed lists, made before they ask.

Only subjects the request path would profile now get a list: each one's consent
is read from the ledger and their erasure from the trail, and the engine's own
checks decide (:func:`governance.online_store.warm`). Nothing is served or
recorded; the lists are governed as served ones are, and checked again when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from audits.consent import consent_history
from audits.online_store import OnlineStore, drain_outbox, outbox_watch
from governance.governed_list import consent_records, open_engine
from governance.online_store import ListCache, store_factors, warm
from governance.policy import LoadedPack
from governance.serving import ServeRequest
from governance.suppressed import erasure_seq
from recommender.errors import ConfigError

__all__ = ["Warmed", "warm_heavy_users"]


@dataclass(frozen=True)
class Warmed:
    """What a fill did (counts only: no subject id)."""

    model_version: str
    heavy_users: int
    factors_stored: int
    lists_stored: int

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "heavy_users": self.heavy_users, "factors_stored": self.factors_stored, "lists_stored": self.lists_stored}


def warm_heavy_users(
    store: Any, online: OnlineStore, loaded: LoadedPack, model_version: str, *, top: int, k: int = 10, items: pd.DataFrame | None = None
) -> Warmed:
    """Store the item factors of ``model_version`` and, for its ``top`` users with the most training interactions,
    their factors and (where they may be profiled now) their governed list of ``k``."""
    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be an int in the range [1, inf). Got {top!r} instead.")
    if not online.ping():
        raise ConfigError("the online store does not answer; check RECGOV_REDIS_URL and that Redis runs")
    drain_outbox(store.engine, online)  # invalidations recorded while Redis was away are applied first
    # the item table the API serves the version with: a list is read back only by an engine with the same item metadata
    engine, log = open_engine(store, loaded, model_version, items, dataset_items=True)
    try:
        engine.list_cache = ListCache(online, outbox_watch(store.engine))
        model = engine.model
        counts = np.diff(model.train_.matrix.indptr)
        rows = np.argsort(-counts, kind="stable")[:top]
        subjects = [str(s) for s in np.asarray(model.train_.user_ids)[rows]]
        # Their epochs first, then their consent: a change committed after the consent read bumps the epoch
        # and refuses both writes (a list or factors made from the old consent are never stored after it).
        read = online.stamps([online.subject_key(s) for s in subjects])
        if read is None:
            raise ConfigError("the online store does not answer; check RECGOV_REDIS_URL and that Redis runs")
        stamps = dict(zip(subjects, read, strict=True))
        requests = []
        with store.session() as session:
            for subject in subjects:
                records = consent_records(consent_history(session, subject))
                requests.append(
                    ServeRequest(subject, k=k, consent=records, erasure_seq=erasure_seq(session, subject), online_stamp=stamps[subject])
                )
        allowed = [r.subject_id for r in requests if engine.begin(r).mode == "personalized"]
        factors = store_factors(online, model, allowed, stamps)  # factors only of subjects who may be profiled now
        lists = warm(engine, requests)
    finally:
        log.close()
    return Warmed(model_version, len(subjects), factors, lists)
