"""``recgov processing-record``: the record of processing activities (GDPR Art. 30).

A thin wrapper over :func:`governance.privacy.processing_record`: purposes,
categories of data, recipients, retention and safeguards from the pack, with
the counts the store holds. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

from governance.cli._common import RequiredPackOpt, console, emit_json, opened_store
from governance.cli.core import DatabaseOpt, JsonOpt, print_rows
from governance.cli.policy import load_or_fail
from governance.cli.store import store_errors

__all__ = ["register"]

def processing_record_command(
    pack: RequiredPackOpt,
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="A recipient of the data (repeat); default: none outside the controller.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the record of processing activities (GDPR Art. 30) from the pack and the store."""
    from governance.privacy import processing_record

    loaded = load_or_fail(pack, json_output=json_output)
    with store_errors(), opened_store(database_url) as store:
        doc = processing_record(loaded, store, recipients=recipient or None)
    if json_output:
        emit_json(doc)
        return
    console.print(
        f"[bold]Record of processing activities[/] (GDPR Art. 30): pack {doc['pack']} {doc['pack_version']}, controller {doc['controller']}",
        highlight=False,
    )
    details, dpo = doc["controller_details"], doc["dpo"]
    if details:
        console.print(f"controller's address: {details['address']}; contact: {details['contact']}", highlight=False)
    console.print(
        f"data protection officer: {dpo['name']} ({dpo['contact']})" if dpo else "data protection officer: not declared in the pack",
        highlight=False,
    )
    print_rows(
        [
            {
                "purpose": p["purpose"],
                "lawful basis": p["lawful_basis"] or "-",
                "model": p["consent_model"] or "-",
                "legal reference": p["legal_reference"] or "-",
            }
            for p in doc["purposes"]
        ],
        title="purposes",
    )
    cats = doc["categories_of_data"]
    console.print(f"model inputs: {', '.join(cats['model_inputs'])}", highlight=False)
    console.print(f"audit-only attributes: {', '.join(cats['audit_only_attributes']) or '-'}", highlight=False)
    console.print(
        f"forbidden attributes: {', '.join(cats['forbidden_attributes']) or '-'}", highlight=False, soft_wrap=True
    )
    console.print(f"recipients: {'; '.join(doc['recipients'])}", highlight=False)
    console.print(f"retention: {doc['retention']['training_events']}", highlight=False, soft_wrap=True)
    for item in doc["safeguards"]:
        console.print(f"safeguard: {item}", highlight=False, soft_wrap=True)
    counts = doc["counts"]
    rows = [
        {
            "purpose": purpose,
            "status": status,
            "records": n,
            "subjects in force": counts["subjects_in_force"].get(purpose, {}).get(status, 0),
        }
        for purpose, statuses in sorted(counts["consent_records"].items())
        for status, n in sorted(statuses.items())
    ]
    print_rows(rows, title="consent in the store")
    console.print(
        f"subject requests: {counts['open_requests']} open, {counts['overdue_requests']} overdue; "
        f"decisions served: {sum(counts['decisions'].values())}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``recgov processing-record``."""
    app.command("processing-record")(processing_record_command)
