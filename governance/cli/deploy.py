"""``recgov deploy``: promote a model version through the gate, roll back, show what runs where.

Exit codes: 0 done, 1 the gate refused the promotion, 2 bad input (unknown
model or stage, an illegal move such as shadow -> production), a move the
deployment policy refuses (no pack bound to the stage, another pack than the
bound one, data short of what the binding requires), or ``--expected VERSION``
not being the version in production (another rollback or promotion came
first; nothing changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from governance.cli._common import EXIT_FINDING, console, emit_json, fail, opened_store, user_errors
from governance.cli.core import DatabaseOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli._common import load_or_fail

__all__ = ["register"]

StageOpt = Annotated[str, typer.Option("--to", help="The stage to move to: shadow, canary or production (one step at a time).")]
PackOpt = Annotated[
    str | None,
    typer.Option(
        "--pack", "-p", show_default=False,
        help="Default: the pack the deployment policy binds to the stage; any other pack (file, shipped name or stored NAME@VERSION) is refused.",
    ),
]
DataOpt = Annotated[str | None, typer.Option("--data", help="DATA for the gate's audit (needed for canary and production).", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder for the gate's files (default: ./recgov-gate).")]
ExpectedOpt = Annotated[
    str | None,
    typer.Option(
        "--expected", metavar="VERSION", show_default=False,
        help="Move only if VERSION is in production when the move is made (another rollback or promotion may have come first): "
        "otherwise exit 2 and nothing changes.",
    ),
]

deploy_app = typer.Typer(help="Governed deployments: shadow -> canary -> production through the gate.", no_args_is_help=True)


@deploy_app.command("promote")
def promote_command(
    model_version: Annotated[str, typer.Argument(help="A recorded model version (see 'recgov train').")],
    to: StageOpt,
    pack: PackOpt = None,
    data: DataOpt = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    out: OutOpt = None,
    expected: ExpectedOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move MODEL_VERSION one stage on; canary and production first pass the gate of the pack the deployment policy binds."""
    from audits import open_store
    from audits.settings import get_settings
    from governance.cli.deploy_policy import installation_pack_loader, packs_dir
    from governance.deploy import GateRefused, promote

    stored = pack is not None and "@" in pack  # a stored pack, NAME@VERSION, as the API names it
    loaded = load_or_fail(pack, json_output=json_output) if pack is not None and not stored else None
    with user_errors():
        if stored:
            loaded = installation_pack_loader(packs_dir())(pack)
        if to in ("canary", "production") and data is None:
            raise fail(f"--data is needed to promote to {to}: the gate audits the model on it")
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output) if data else None
        store = open_store(database_url)
        try:
            result = promote(
                store, model_version=model_version, to_stage=to, pack=loaded, load_pack=installation_pack_loader(packs_dir()), dataset=dataset,
                out_dir=out or Path("recgov-gate"), models_dir=get_settings().home / "models", actor=None, expected_production=expected,
            )  # fmt: skip
        except GateRefused as err:
            if json_output:
                emit_json({"promoted": False, "model_version": model_version, "stage": to, "audit_id": err.audit_id, "reasons": err.reasons})
            raise fail(str(err), code=EXIT_FINDING) from None
        finally:
            store.close()
    if json_output:
        emit_json({"promoted": True, **result})
        return
    gated = result["gate"]
    gate = f" (gate {gated['pack']}@{gated['pack_version']} passed, audit #{gated['audit_id']})" if gated is not None else ""
    console.print(f"{model_version}: {result['previous_stage'] or 'nothing'} -> {to}{gate}", highlight=False)
    if result["displaced"]:
        console.print(f"{result['displaced']}: production -> shadow (kept for rollback)", highlight=False)


@deploy_app.command("rollback")
def rollback_command(expected: ExpectedOpt = None, database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Put the previous production version back in production and retire the current one.

    Give --expected with the version you mean to roll back from: two rollbacks at once then never go back two versions."""
    from audits import open_store
    from governance.deploy import rollback

    with user_errors():
        store = open_store(database_url)
        try:
            result = rollback(store, expected_production=expected)
        finally:
            store.close()
    if json_output:
        emit_json(result)
        return
    console.print(f"{result['restored']}: shadow -> production; {result['retired']}: production -> retired", highlight=False)


@deploy_app.command("retire")
def retire_command(
    model_version: Annotated[str, typer.Argument(help="The recorded model version to retire (not the one in production: use rollback).")],
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Retire a model version so that it is never served again (a retrain request waiting on it can then complete)."""
    from governance.deploy import retire

    with user_errors(), opened_store(database_url) as store:
        result = retire(store, model_version=model_version)
    if json_output:
        emit_json(result)
        return
    console.print(f"{result['retired']}: {result['previous_stage'] or 'nothing'} -> retired", highlight=False)


@deploy_app.command("status")
def status_command(database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Deployed model versions by stage, with their latest audit verdict and the pack that gated their current stage."""
    from audits import open_store
    from governance.deploy import status

    with user_errors():
        store = open_store(database_url)
        try:
            stages = status(store)
        finally:
            store.close()
    if json_output:
        emit_json(stages)
        return
    rows = [
        {"stage": s["stage"] + (" (previous)" if s["previous"] else ""), "model": s["model_version"], "since": s["since"] or "",
         "audit": "" if s["latest_audit"] is None else f"#{s['latest_audit']['id']} {s['latest_audit']['verdict']} ({s['latest_audit']['pack']})",
         "gated by": "" if s["gate"] is None else f"{s['gate']['pack']}@{s['gate']['pack_version']} ({s['gate']['pack_hash'][:12]})"}
        for stage in stages.values() for s in stage
    ]  # fmt: skip
    if not rows:
        console.print("no model version is deployed")
        return
    print_rows(rows)


@deploy_app.command("shadows")
def shadows_command(
    model_version: Annotated[str | None, typer.Option("--model", help="Only this shadow version.", show_default=False)] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """How the shadow versions' recorded lists compare with the lists served for the same requests."""
    from audits import open_store
    from governance.shadow import compare_shadows

    with user_errors():
        store = open_store(database_url)
        try:
            report = compare_shadows(store, model_version)
        finally:
            store.close()
    if json_output:
        emit_json({"shadows": report})
        return
    if not report:
        console.print("no shadow list is recorded" + (f" for {model_version}" if model_version else ""))
        return
    print_rows(
        [
            {"shadow": r["model_version"], "requests": r["requests"], "compared": r["compared"],
             "top-k overlap": "" if r["overlap"] is None else f"{r['overlap']:.3f}",
             "same first item": "" if r["same_first"] is None else f"{r['same_first']:.3f}",
             "same mode": "" if r["same_mode"] is None else f"{r['same_mode']:.3f}"}
            for r in report
        ]
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``recgov deploy promote|rollback|status|shadows|policy``."""
    from governance.cli.deploy_policy import policy_app

    deploy_app.add_typer(policy_app, name="policy")
    app.add_typer(deploy_app, name="deploy")
