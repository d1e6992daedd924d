"""One governed list outside the service: what ``recgov recommend`` and ``recgov.serve`` do.

The steps, in order: the request's consent signals become records first (a
``Sec-GPC: 1`` an opt-out under a pack that honours it, CCPA regs §7025; a TC
string a grant where the pack lets TCF grant, or a refusal, IAB TCF v2.2), so
that training and later requests honour them too; then an engine is opened for
the recorded model version (its file checked against the SHA-256 recorded with
it: :mod:`governance.artifacts`) with its blocks, the erasures its training data saw
and its standing; the subject's consent history and erasure are read; the list
is served, and its decision is written by the decision log before the list is
returned. The REST API keeps engines warm between requests
(:mod:`governance.api.services.engines`) and runs the same engine, with the
same reading of the consent ledger (:func:`consent_records`).
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

import pandas as pd

from audits.availability import unavailable_items
from audits.online_store import configured_store, outbox_watch
from audits.consent import consent_history
from audits.decisions import DecisionLog, log_failure
from audits.models import ModelVersion
from governance.consent.state import ConsentRecord
from governance.consent.tcf import decode_tc_string
from governance.escalation import items_out_of_lists
from governance.family_inputs import refuse_banned_item_columns
from governance.family_serving import load_served_model
from governance.online_store import ListCache
from governance.model_catalog import dataset_sources, read_catalog
from governance.policy import LoadedPack
from governance.privacy import record_consent_from_request
from governance.serving import ServedList, ServeRequest, ServingEngine
from governance.suppressed import erasure_seq, erasures_seen, model_standing, standing_reader
from recommender.errors import ConfigError, DataError
from recommender.item_table import ITEM_SOURCES

__all__ = ["MODEL_NOT_RECORDED", "consent_records", "open_engine", "serve_list"]

logger = logging.getLogger(__name__)

MODEL_NOT_RECORDED = "model version {version!r} is not in the store; train one with 'recgov train'"
ARTIFACT_MISMATCH = "the artifact at {location} holds model {found}, not {version}; the store and the file disagree"


def open_engine(
    store: Any, loaded: LoadedPack, model_version: str, items: pd.DataFrame | None = None, vendor_id: int | None = None,
    *, dataset_items: bool = False,
) -> tuple[ServingEngine, DecisionLog]:
    """A :class:`~governance.serving.ServingEngine` for a recorded model version, and its decision log (close it).

    ``dataset_items``: without ``items``, serve with the item table the API serves the version with (its
    dataset's, :func:`governance.model_catalog.read_catalog`; a warning and none when it cannot be read)."""
    with store.session() as session:
        row = session.get(ModelVersion, model_version)
        if row is None:
            raise ConfigError(MODEL_NOT_RECORDED.format(version=model_version))
        location, kind, artifact_hash = row.artifact_location, row.kind, row.artifact_hash
        blocked = items_out_of_lists(session, loaded.pack)
        unavailable = unavailable_items(session)
        seen = erasures_seen(session, model_version)
        standing = model_standing(session, model_version)
        sources = dataset_sources(session.connection(), model_version) if dataset_items and items is None else []
    # ALS, or the family's own engine; a file changed on disk since it was recorded is refused (ArtifactChanged)
    model, engine_class = load_served_model(kind, location, model_version, artifact_hash=artifact_hash)
    if model.version_id_ != model_version:
        raise ConfigError(ARTIFACT_MISMATCH.format(location=location, found=model.version_id_, version=model_version))
    if dataset_items and items is None:
        items, problems = read_catalog(model, sources)
        if items is None:
            logger.warning("model %s: no item table of its dataset can be read here (%s); its lists are made without item "
                        "metadata", model_version, "; ".join(problems) or "no source recorded")
    log = DecisionLog(store)
    engine = engine_class(
        loaded, model, items, blocked=blocked, sink=log, vendor_id=vendor_id,
        on_failure=lambda cause, detail: log_failure(store, cause, detail), erasures_seen=seen,
        standing=standing, reread_standing=standing_reader(store, model_version), unavailable=unavailable,
        exposure_store=store,
    )  # fmt: skip
    online = configured_store()  # RECGOV_REDIS_URL: personalized lists are read from (and kept in) Redis
    if online is not None:
        engine.list_cache = ListCache(online, outbox_watch(store.engine))
    return engine, log


def serve_list(
    store: Any,
    loaded: LoadedPack,
    model_version: str,
    subject_id: str,
    *,
    k: int = 10,
    items: pd.DataFrame | None = None,
    gpc: bool = False,
    tcf: str | None = None,
    vendor_id: int | None = None,
    category: str | None = None,
    region: str | None = None,
) -> ServedList:
    """Serve one governed list to ``subject_id`` from a recorded model version, recorded before it returns.

    Item metadata whose categories were read from a column naming a forbidden or audit-only attribute is refused
    before anything is recorded (:func:`governance.family_inputs.refuse_banned_item_columns`)."""
    refuse_banned_item_columns(loaded, items.attrs.get(ITEM_SOURCES) if items is not None else None)
    tcf_vendor = vendor_id if vendor_id is not None else loaded.pack.consent.tcf_requirements().vendor_id
    record_tcf = _decodes(tcf) and tcf_vendor is not None
    if gpc or record_tcf:
        # A string that does not decode (or has no vendor to judge it for) is left to the engine,
        # which refuses it and logs why.
        record_consent_from_request(
            store, subject_id, pack=loaded, headers=[("Sec-GPC", "1")] if gpc else None,
            tcf=tcf if record_tcf else None, vendor_id=tcf_vendor,
        )  # fmt: skip
    engine, log = open_engine(store, loaded, model_version, items, vendor_id)
    try:
        with store.session() as session:
            history = consent_history(session, subject_id)
            erased = erasure_seq(session, subject_id)
        records = consent_records(history)
        context = ({"category": category} if category else {}) | ({"region": region} if region else {})
        request = ServeRequest(subject_id, k=k, consent=records, gpc=gpc, tcf=tcf, context=context, erasure_seq=erased)
        return engine.serve(request)
    finally:
        log.close()
        engine.close_exposure_state()


def consent_records(history: list[dict[str, Any]]) -> tuple[ConsentRecord, ...]:
    """A subject's consent history, as the ledger reads it (:func:`audits.consent.consent_history`), as the
    records a :class:`~governance.serving.ServeRequest` carries."""
    return tuple(
        ConsentRecord(
            purpose=r["purpose"], status=r["status"], lawful_basis=r["lawful_basis"], source=r["source"],
            time=r["recorded_at"].astimezone(UTC), evidence=r.get("evidence") or {},  # a TCF grant lapses by its string's age
        )  # fmt: skip
        for r in history
    )


def _decodes(tcf: str | None) -> bool:
    """Whether ``tcf`` is a TC string that decodes (a malformed one is the engine's to refuse and log)."""
    if not tcf:
        return False
    try:
        decode_tc_string(tcf)
    except DataError:
        return False
    return True
