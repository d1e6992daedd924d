"""``recgov recommend USER``: one governed list from the command line, recorded like any other."""

from __future__ import annotations

from datetime import timezone
from typing import Annotated, Optional

import typer

from governance.cli._common import console, emit_json, user_errors
from governance.cli.core import DatabaseOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli.policy import load_or_fail

__all__ = ["register", "open_engine"]


def open_engine(store, loaded, model_version: str, items=None, vendor_id: int | None = None):  # noqa: ANN001, ANN201
    """A :class:`~governance.serving.ServingEngine` for a recorded model version, its blocks, and a decision log."""
    from audits.decisions import DecisionLog
    from governance.escalation import items_out_of_lists
    from audits.models import ModelVersion
    from governance.serving import ServingEngine
    from governance.suppressed import erasures_seen, model_standing, standing_reader
    from recommender.als import ALSRecommender
    from recommender.errors import ConfigError

    with store.session() as session:
        row = session.get(ModelVersion, model_version)
        if row is None:
            raise ConfigError(f"model version {model_version!r} is not in the store; train one with 'recgov train'")
        location = row.artifact_location
        blocked = items_out_of_lists(session, loaded.pack)
        seen = erasures_seen(session, model_version)
        standing = model_standing(session, model_version)
    model = ALSRecommender.load(location)
    if model.version_id_ != model_version:
        raise ConfigError(f"the artifact at {location} holds model {model.version_id_}, not {model_version}; the store and the file disagree")
    from audits.decisions import log_failure

    log = DecisionLog(store)
    engine = ServingEngine(
        loaded, model, items, blocked=blocked, sink=log, vendor_id=vendor_id,
        on_failure=lambda cause, detail: log_failure(store, cause, detail), erasures_seen=seen,
        standing=standing, reread_standing=standing_reader(store, model_version),
    )  # fmt: skip
    return engine, log


def _decodes(tcf: str | None) -> bool:
    """Whether ``tcf`` is a TC string that decodes (a malformed one is the engine's to refuse and log)."""
    from governance.consent.tcf import decode_tc_string
    from recommender.errors import DataError

    if not tcf:
        return False
    try:
        decode_tc_string(tcf)
    except DataError:
        return False
    return True


def recommend_command(
    user: Annotated[str, typer.Argument(help="The subject to recommend for.", metavar="USER")],
    model: Annotated[str, typer.Option("--model", help="A recorded model version (see recgov train).")],
    pack: Annotated[str, typer.Option("--pack", "-p", help="The policy pack in force.")] = "baseline",
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="List length.")] = 10,
    data: Annotated[Optional[str], typer.Option("--data", help="DATA holding the item metadata (categories, providers, flags).")] = None,
    mapping: MapOpt = None,
    item_table: ItemsOpt = None,
    item_table_map: ItemsMapOpt = None,
    gpc: Annotated[bool, typer.Option("--gpc", help="Treat the request as carrying Sec-GPC: 1 (recorded as an opt-out under a pack that honours GPC).")] = False,
    tcf: Annotated[Optional[str], typer.Option("--tcf", help="An IAB TCF v2.2 TC string sent with the request.")] = None,
    vendor_id: Annotated[Optional[int], typer.Option("--vendor-id", help="Our IAB TCF vendor id (needed with --tcf).")] = None,
    category: Annotated[Optional[str], typer.Option("--category", help="Context: only items of this category.")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Serve one governed list: consent, harmful-item removal, re-ranking, tags, and a decision record."""
    from audits import open_store
    from audits.consent import consent_history
    from governance.consent.state import ConsentRecord
    from governance.serving import ServeRequest
    from governance.suppressed import erasure_seq

    loaded = load_or_fail(pack, json_output=json_output)
    with user_errors():
        items = (
            load_dataset(data, mapping, items=item_table, items_map=item_table_map, json_output=json_output).items
            if data
            else None
        )
        store = open_store(database_url)
        try:
            tcf_vendor = vendor_id if vendor_id is not None else loaded.pack.consent.tcf_requirements().vendor_id
            record_tcf = _decodes(tcf) and tcf_vendor is not None
            if gpc or record_tcf:
                # As the API does: the signals become records before serving, so training and later
                # requests honour them too: GPC an opt-out (under a pack that honours it, CCPA regs
                # §7025); a TC string a grant (where the pack lets TCF grant) or a refusal (IAB TCF v2.2).
                # A string that does not decode (or has no vendor to judge it for) is left to the engine,
                # which refuses it and logs why.
                from governance.privacy import record_consent_from_request

                record_consent_from_request(
                    store, user, pack=loaded, headers=[("Sec-GPC", "1")] if gpc else None,
                    tcf=tcf if record_tcf else None, vendor_id=tcf_vendor,
                )  # fmt: skip
            engine, log = open_engine(store, loaded, model, items, vendor_id)
            try:
                with store.session() as session:
                    history = consent_history(session, user)
                    erased = erasure_seq(session, user)
                records = tuple(
                    ConsentRecord(
                        purpose=r["purpose"], status=r["status"], lawful_basis=r["lawful_basis"], source=r["source"],
                        time=r["recorded_at"].astimezone(timezone.utc), evidence=r["evidence"] or {},
                    )  # fmt: skip
                    for r in history
                )
                served = engine.serve(ServeRequest(user, k=k, consent=records, gpc=gpc, tcf=tcf, context={"category": category} if category else {}, erasure_seq=erased))
            finally:
                log.close()
        finally:
            store.close()
    doc = served.to_dict()
    if json_output:
        emit_json(doc)
        return
    console.print(f"{served.mode} list, decision {served.decision_id} (pack {loaded.name} {loaded.version}, model {served.model_version})", highlight=False)
    console.print(f"consent: {served.consent_reason}", highlight=False, soft_wrap=True)
    rows = [
        {"rank": str(i + 1), "item": item["item_id"], "score": "" if item["score"] is None else f"{item['score']:.4f}", "why": "; ".join(t["text"] for t in item["tags"])}
        for i, item in enumerate(doc["items"])
    ]
    print_rows(rows)


def register(app: typer.Typer) -> None:
    """Add ``recgov recommend``."""
    app.command("recommend")(recommend_command)
