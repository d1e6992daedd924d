"""``recgov models families``: the model families this installation can train, and what governance knows of them."""

from __future__ import annotations

from typing import Any

import typer

from governance.cli._common import console, emit_json
from governance.cli.core import JsonOpt, print_rows

__all__ = ["register", "families_command", "families_document"]


def families_document() -> dict[str, Any]:
    """Every registered family (inputs, erasure kind, extra, default parameters) and the family modules that
    cannot be imported here, with why (an optional extra not installed)."""
    from recommender.family import families, unavailable_families

    return {
        "families": [
            {
                "name": f.name,
                "description": f.description,
                "inputs": sorted(f.inputs),
                "erasure": f.erasure.value,
                "extra": f.extra,
                "available": True,
                "default_params": f.default_params,
            }
            for f in families().values()
        ],
        "unavailable": [{"module": m, "available": False, "reason": why} for m, why in sorted(unavailable_families().items())],
    }


def families_command(json_output: JsonOpt = False) -> None:
    """List the model families: inputs, erasure kind, optional extra and whether it can run here."""
    doc = families_document()
    if json_output:
        emit_json(doc)
        return
    rows = [
        {"family": f["name"], "inputs": ", ".join(f["inputs"]), "erasure": f["erasure"], "extra": f["extra"] or "-", "available": "yes"}
        for f in doc["families"]
    ]
    rows += [{"family": u["module"], "inputs": "-", "erasure": "-", "extra": "-", "available": f"no: {u['reason']}"} for u in doc["unavailable"]]
    print_rows(rows, title="model families")
    console.print("evaluate them side by side: recgov evaluate DATA --families all", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``recgov models`` to ``app``."""
    models_app = typer.Typer(help="Model families: what each reads, how it explains and how it forgets.", no_args_is_help=True)
    models_app.command("families")(families_command)
    app.add_typer(models_app, name="models")


