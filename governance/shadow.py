"""Serving a deployment: production answers, canary takes a share, shadows see every request unserved.

:mod:`governance.deploy` moves model versions through ``shadow``, ``canary`` and
``production``. :class:`DeployedServing` is what serves by those stages:

* every request is answered by the production version, or by the canary version
  for a fixed share of subjects (``canary_share``; a subject always lands on the
  same side, by a hash of its id that is never stored);
* every shadow version receives the same request after the answer is made. Its
  list goes through the whole governed path (consent, harmful-item removal,
  re-ranking, tags) and is recorded in the decision log with
  ``context.served = false`` and ``context.shadow_of`` naming the decision that
  was served; it is never returned. Shadows run on a background thread, so they
  add nothing to the answer's latency, and a shadow that fails is logged as a
  failed request, never felt by the caller;
* :func:`compare_shadows` reads the records back: per shadow version, how many
  requests it saw, and how far its lists were from the served ones (overlap of
  the top k, same first item, same mode).

Example
-------
>>> serving = open_deployed(store, loaded)                       # doctest: +SKIP
>>> served = serving.serve(ServeRequest("u42", k=10, consent=records))
>>> serving.close()                                              # waits for the shadows, closes the log
>>> compare_shadows(store)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import select

from audits._common import in_values
from audits.decisions import DecisionLog, log_failure
from audits.models import DecisionRecord, ModelVersion
from audits.sealing import open_decisions
from governance.policy import LoadedPack
from governance.serving import ServedList, ServeRequest, ServingEngine
from recommender.errors import ConfigError

__all__ = ["DeployedServing", "NOTHING_IN_PRODUCTION", "canary_bucket", "compare_shadows", "open_deployed"]

MAX_SHADOW_BACKLOG = 1000
"""Served requests that may wait for the shadow versions; more are not mirrored (and are counted)."""
NOTHING_IN_PRODUCTION = "no model version is in production; promote one with 'recgov deploy promote MODEL --stage ...'"
_CANARY_DOMAIN = b"recgov.canary.v1\x00"


def canary_bucket(subject_id: str) -> float:
    """A fixed number in [0, 1) per subject: who goes to the canary (the id itself is not kept)."""
    digest = hashlib.sha256(_CANARY_DOMAIN + str(subject_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class _Shadow:
    model_version: str
    engine: ServingEngine


class DeployedServing:
    """Serves requests by deployment stage and mirrors each one to the shadow versions.

    Parameters
    ----------
    production:
        The engine of the production version (answers every request not sent to the canary).
    canary:
        The engine of the canary version, or None.
    canary_share:
        Share of subjects the canary answers (0 to 1); 0 without a canary.
    shadows:
        ``(model_version, engine)`` of every shadow version.
    log:
        The decision log every engine writes to; :meth:`close` closes it.
    """

    def __init__(
        self,
        production: ServingEngine,
        *,
        canary: ServingEngine | None = None,
        canary_share: float = 0.0,
        shadows: Sequence[tuple[str, ServingEngine]] = (),
        log: DecisionLog | None = None,
    ) -> None:
        if isinstance(canary_share, bool) or not isinstance(canary_share, (int, float)) or not 0.0 <= canary_share <= 1.0:
            raise ConfigError(f"canary_share must be a number from 0 to 1; got {canary_share!r}")
        if canary is None and canary_share > 0:
            raise ConfigError("canary_share is above 0 but no model version is in canary")
        self.production = production
        self.canary = canary
        self.canary_share = float(canary_share)
        self.shadows = [_Shadow(mv, engine) for mv, engine in shadows]
        self.log = log
        self.shadow_failures = 0
        self.shadow_dropped = 0
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recgov-shadow") if self.shadows else None

    def engine_for(self, subject_id: str) -> ServingEngine:
        """The engine that answers this subject (canary or production)."""
        if self.canary is not None and canary_bucket(subject_id) < self.canary_share:
            return self.canary
        return self.production

    def serve(self, request: ServeRequest) -> ServedList:
        """Answer the request, then hand it to every shadow version (in the background)."""
        served = self.engine_for(request.subject_id).serve(request)
        if self._pool is not None:
            with self._lock:  # bounded: beyond MAX_SHADOW_BACKLOG waiting requests, a mirror is dropped and counted
                if len(self._pending) >= MAX_SHADOW_BACKLOG:
                    self.shadow_dropped += 1
                    return served
                future = self._pool.submit(self._mirror, request, served.decision_id)
                self._pending.add(future)
            future.add_done_callback(self._done)
        return served

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _mirror(self, request: ServeRequest, decision_id: str) -> None:
        for shadow in self.shadows:
            try:
                shadow.engine.serve(request, shadow_of=decision_id)
            except Exception:  # noqa: BLE001 - a shadow never fails the request; its engine logged the cause
                with self._lock:
                    self.shadow_failures += 1

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every request handed to the shadows so far has been recorded (or has failed)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)

    def close(self) -> None:
        """Wait for the shadows, stop their thread, close the decision log."""
        if self._pool is not None:
            self.drain()
            self._pool.shutdown(wait=True)
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> DeployedServing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_deployed(
    store: Any,
    loaded: LoadedPack,
    items: pd.DataFrame | None = None,
    *,
    canary_share: float = 0.0,
    vendor_id: int | None = None,
) -> DeployedServing:
    """A :class:`DeployedServing` for what is deployed now: production, canary (if any) and shadows.

    Every engine shares one :class:`~audits.decisions.DecisionLog` and the
    pack's blocks; a failed request of any engine is logged with its cause.
    """
    from governance import deploy
    from governance.artifacts import verify_artifact
    from audits.availability import unavailable_items
    from governance.escalation import items_out_of_lists
    from governance.suppressed import erasures_seen, model_standing, standing_reader
    from recommender.als import ALSRecommender

    stages = deploy.status(store)
    if not stages["production"]:
        raise ConfigError(NOTHING_IN_PRODUCTION)
    with store.session() as session:
        blocked = items_out_of_lists(session, loaded.pack)
        unavailable = unavailable_items(session)
        versions = [d["model_version"] for key in ("production", "canary", "shadow") for d in stages[key]]
        seen = {version: erasures_seen(session, version) for version in versions}
        standings = {version: model_standing(session, version) for version in versions}
        locations = {
            row.version_id: (row.artifact_location, row.artifact_hash)
            for row in session.scalars(
                select(ModelVersion).where(
                    in_values(session, ModelVersion.version_id, [d["model_version"] for key in ("production", "canary", "shadow") for d in stages[key]])
                )
            )
        }
    log = DecisionLog(store)

    def engine(model_version: str) -> ServingEngine:
        location, artifact_hash = locations[model_version]
        verify_artifact(model_version, location, artifact_hash)  # a file changed on disk since it was recorded is not served
        model = ALSRecommender.load(location)
        if model.version_id_ != model_version:
            raise ConfigError(f"the artifact at {location} holds model {model.version_id_}, not {model_version}; the store and the file disagree")
        return ServingEngine(
            loaded, model, items, blocked=blocked, sink=log, vendor_id=vendor_id,
            on_failure=lambda cause, detail: log_failure(store, cause, {**detail, "model_version": model_version}),
            erasures_seen=seen[model_version],
            standing=standings[model_version], reread_standing=standing_reader(store, model_version), unavailable=unavailable,
        )  # fmt: skip

    try:
        production = engine(stages["production"][0]["model_version"])
        canary = engine(stages["canary"][0]["model_version"]) if stages["canary"] else None
        shadows = [(d["model_version"], engine(d["model_version"])) for d in stages["shadow"]]
    except BaseException:
        log.close()
        raise
    if canary is None:
        canary_share = 0.0
    return DeployedServing(production, canary=canary, canary_share=canary_share, shadows=shadows, log=log)


def compare_shadows(store: Any, model_version: str | None = None) -> list[dict[str, Any]]:
    """Per shadow version: requests recorded, and how its lists compare with the served ones.

    ``overlap`` is the mean share of the served list's items that the shadow
    list holds too (top k against top k); ``same_first`` the share of requests
    where both lists start with the same item; ``same_mode`` the share where
    both were made the same way (personalized, fallback, non-profiling).
    """
    shadow_of = DecisionRecord.context["shadow_of"].as_string()
    sealed = (DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context)
    query = select(DecisionRecord.model_version, DecisionRecord.mode, shadow_of, *sealed).where(shadow_of.is_not(None))
    if model_version is not None:
        query = query.where(DecisionRecord.model_version == model_version)
    out: dict[str, dict[str, Any]] = {}
    with store.session() as session:
        rows = session.execute(query).all()
        # slates are sealed under their subject's record key (audits.sealing); an erased subject's stay closed
        shadows = [(mv, mode, (opened or ({},))[0], served_id) for (mv, mode, served_id, *_), opened in zip(rows, open_decisions(session, (r[3:] for r in rows)))]
        primary: dict[str, tuple[str, list[str]]] = {}
        ids = sorted({row[3] for row in shadows})
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            found = session.execute(select(DecisionRecord.mode, *sealed).where(in_values(session, DecisionRecord.decision_id, chunk))).all()
            for (mode, decision_id, *_), opened in zip(found, open_decisions(session, (r[1:] for r in found))):
                primary[decision_id] = (mode, list((opened or ({},))[0].get("items", [])))
    for mv, mode, slate, served_id in shadows:
        stats = out.setdefault(mv, {"model_version": mv, "requests": 0, "compared": 0, "overlap": 0.0, "same_first": 0, "same_mode": 0})
        stats["requests"] += 1
        if served_id not in primary:
            continue
        served_mode, served_items = primary[served_id]
        items = list(slate.get("items", []))
        stats["compared"] += 1
        stats["same_mode"] += mode == served_mode
        if served_items:
            stats["overlap"] += len(set(items) & set(served_items)) / len(served_items)
            stats["same_first"] += bool(items) and items[0] == served_items[0]
        elif not items:
            stats["overlap"] += 1.0
            stats["same_first"] += 1
    for stats in out.values():
        n = stats["compared"]
        for key in ("overlap", "same_first", "same_mode"):
            stats[key] = round(stats[key] / n, 6) if n else None
    return sorted(out.values(), key=lambda s: s["model_version"])
