"""``recgov availability``: items out of stock, withdrawn or restricted in a region, kept out of every list.

``import FILE`` reads CSV, JSON Lines or Parquet (``item_id,status[,region]``);
a file with any bad row is refused with every problem located and changes
nothing. ``set`` and ``clear`` change one item. Every change is on the trail.

Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import console, emit_json, opened_store, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt

__all__ = ["register"]

availability_app = typer.Typer(help="Item availability: out of stock, withdrawn, restricted in a region.", no_args_is_help=True)
RegionOpt = Annotated[Optional[str], typer.Option("--region", help="A region code (default: everywhere).", show_default=False)]


@availability_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV, JSON Lines or Parquet with item_id, status and optionally region.")],
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Import availability changes from FILE, all or nothing (one trail event for the file)."""
    from audits.availability import apply_changes, read_availability_file

    with user_errors():
        changes, source = read_availability_file(file)
        with opened_store(database_url) as store:
            with store.session() as session:
                counts = apply_changes(session, changes, source=source)
    result = {**counts, "rows": source["rows"], "sha256": source["sha256"]}
    if json_output:
        emit_json(result)
        return
    console.print(
        f"{source['rows']:,} rows read: {counts['unavailable']:,} made unavailable, {counts['available']:,} available again, "
        f"{source['rows'] - counts['changed']:,} unchanged",
        highlight=False,
    )


@availability_app.command("set")
def set_command(
    item: Annotated[str, typer.Argument(help="The item.")],
    status: Annotated[str, typer.Option("--status", help="out_of_stock, withdrawn or geo_restricted (needs --region).")],
    region: RegionOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Make ITEM unavailable (everywhere, or in --region)."""
    _change(item, status, region, database_url, json_output)


@availability_app.command("clear")
def clear_command(
    item: Annotated[str, typer.Argument(help="The item.")],
    region: RegionOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Make ITEM available again (everywhere, or in --region)."""
    _change(item, "available", region, database_url, json_output)


def _change(item: str, status: str, region: str | None, database_url: str | None, json_output: bool) -> None:
    from audits.availability import canonical_region, set_availability

    if region is not None and region.strip() in ("", "*"):
        region = None
    elif region is not None:
        region = canonical_region(region)  # echoed as stored: stripped, upper case
    with user_errors():
        with opened_store(database_url) as store:
            with store.session() as session:
                counts = set_availability(session, item_id=item, status=status, region=region)
    result = {"item_id": item, "status": status, "region": region or "*", "changed": counts["changed"]}
    if json_output:
        emit_json(result)
        return
    where = f"in {region}" if region else "everywhere"
    console.print(f"{item}: {status} {where}" + ("" if counts["changed"] else " (unchanged)"), highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``recgov availability``."""
    app.add_typer(availability_app, name="availability")
