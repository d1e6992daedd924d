"""``recgov recommend USER``: one governed list from the command line (:mod:`governance.governed_list`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from governance.cli._common import checked_subject_id, console, emit_json, load_or_fail, user_errors
from governance.cli.core import DatabaseOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows

__all__ = ["register"]


def recommend_command(
    user: Annotated[str, typer.Argument(help="The subject to recommend for.", metavar="USER", callback=checked_subject_id)],
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
    region: Annotated[Optional[str], typer.Option("--region", help="Context: the region the list is for (items restricted there are left out).")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Serve one governed list: consent, harmful-item removal, re-ranking, tags, and a decision record."""
    from audits import open_store
    from governance.governed_list import serve_list

    loaded = load_or_fail(pack, json_output=json_output)
    with user_errors():
        items = (
            load_dataset(data, mapping, items=item_table, items_map=item_table_map, json_output=json_output).items
            if data
            else None
        )
        store = open_store(database_url)
        try:
            served = serve_list(
                store, loaded, model, user, k=k, items=items, gpc=gpc, tcf=tcf, vendor_id=vendor_id, category=category, region=region
            )
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
