"""``recgov policy validate|show|diff|test|schema``: work with policy packs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import EXIT_FINDING, console, emit_json, err_console, fail, load_or_fail, user_errors
from governance.cli.core import ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.located import PolicyError
from governance.packs import SHIPPED_PACKS, resolve_pack

__all__ = ["register", "resolve_pack"]

PackArg = Annotated[str, typer.Argument(help="A policy pack file, or the name of a shipped pack (baseline, eu-gdpr-dsa, california-ccpa).", metavar="PACK")]
SHIPPED = SHIPPED_PACKS


def validate_command(
    pack: PackArg,
    data: Annotated[Optional[str], typer.Option("--data", help="Also check that every attribute the pack names exists in this DATA, and that the pack knows every harm category its items are flagged with and every provider group has the items its re-ranking targets need.")] = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Validate a pack: schema, static analysis, and (with --data) the attributes it names and the harm categories its items are flagged with."""
    columns, harm, item_table = None, None, None
    if data:
        from governance.collect import dataset_columns
        from governance.harm_vocabulary import item_harm_categories

        with user_errors():
            dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output)
            columns = dataset_columns(dataset)
            flags = dataset.items["flags"] if dataset.items is not None and "flags" in dataset.items.columns else []
            harm = item_harm_categories(flags)
            item_table = dataset.items
    loaded = load_or_fail(pack, json_output=json_output, dataset_columns=columns, item_harm_categories=harm, item_table=item_table)
    if json_output:
        emit_json({"valid": True, **loaded.stamp(), "source": loaded.source, "issues": [w.to_dict() for w in loaded.warnings]})
        return
    for warning in loaded.warnings:
        err_console.print(str(warning), highlight=False, soft_wrap=True, markup=False)
    n_rules = len(loaded.pack.rules())
    console.print(f"{loaded.source}: valid pack {loaded.name} {loaded.version}, {n_rules} rules, hash {loaded.content_hash}", highlight=False)


def show_command(pack: PackArg, json_output: JsonOpt = False) -> None:
    """Print the normalized pack (defaults filled in) with its version and content hash."""
    loaded = load_or_fail(pack, json_output=json_output)
    doc = {**loaded.stamp(), "pack_document": loaded.pack.model_dump(mode="json")}
    if json_output:
        emit_json(doc)
        return
    from ruamel.yaml import YAML

    console.print(f"# {loaded.name} {loaded.version}  sha256:{loaded.content_hash}", highlight=False, markup=False)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(doc["pack_document"], sys.stdout)


def diff_command(
    pack_a: Annotated[str, typer.Argument(help="The pack before.", metavar="A")],
    pack_b: Annotated[str, typer.Argument(help="The pack after.", metavar="B")],
    json_output: JsonOpt = False,
) -> None:
    """What changed from pack A to pack B: rules by id, thresholds, settings."""
    from governance.policydiff import diff_packs

    a = load_or_fail(pack_a, json_output=json_output)
    b = load_or_fail(pack_b, json_output=json_output)
    changes = diff_packs(a, b)
    if json_output:
        emit_json({"a": a.stamp(), "b": b.stamp(), "changes": [c.to_dict() for c in changes]})
        return
    stricter, looser = (sum(c.effect == e for c in changes) for e in ("stricter", "looser"))
    console.print(
        f"{a.name} {a.version} ({a.content_hash[:12]}) -> {b.name} {b.version} ({b.content_hash[:12]}): {len(changes)} change(s), "
        f"{stricter} stricter, {looser} looser",
        highlight=False,
    )
    for change in changes:
        colour = {"added": "green", "removed": "red", "changed": "yellow"}[change.kind]
        console.print(f"[{colour}]{change}[/]", highlight=False, soft_wrap=True)


def test_command(
    pack: PackArg,
    cases: Annotated[Optional[Path], typer.Option("--cases", help="The fixture cases (default: <pack>.test.yaml beside the pack).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Run a pack's fixture cases: given these facts, these rules must pass, warn, fail or skip."""
    from governance.policytest import cases_path_for, run_cases

    loaded = load_or_fail(pack, json_output=json_output)
    cases_file = cases or cases_path_for(loaded.source)
    try:
        outcomes = run_cases(loaded, cases_file)
    except PolicyError as err:
        if json_output:
            emit_json({"ok": False, "issues": [i.to_dict() for i in err.issues]})
        else:
            for issue in err.issues:
                err_console.print(str(issue), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(code=2) from None
    failed = [o for o in outcomes if not o.ok]
    if json_output:
        emit_json({"ok": not failed, **loaded.stamp(), "cases_file": str(cases_file), "passed": len(outcomes) - len(failed), "failed": len(failed), "outcomes": [o.to_dict() for o in outcomes]})
    else:
        for o in outcomes:
            mark = "[green]ok[/]  " if o.ok else "[red]FAIL[/]"
            extra = "" if o.ok else f" (expected {o.expected}, got {o.actual}: {o.message})"
            console.print(f"{mark} {o.case} :: {o.rule_id} is {o.actual}{extra}", highlight=False, soft_wrap=True)
        console.print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(code=EXIT_FINDING)


def schema_command(
    kind: Annotated[str, typer.Argument(help="pack (the policy-pack schema), gate (the gate result document) or dsa-audit (the DSA Art. 37 audit export).")] = "pack",
) -> None:
    """Print a JSON Schema: of policy packs (for editors), of the gate's JSON output, or of the DSA audit export."""
    from governance.gate import gate_json_schema
    from governance.policy import pack_json_schema
    from governance.report.dsa_audit import dsa_audit_json_schema

    schemas = {"pack": pack_json_schema, "gate": gate_json_schema, "dsa-audit": dsa_audit_json_schema}
    if kind not in schemas:
        raise fail(f"unknown schema {kind!r}; choose one of: {', '.join(schemas)}")
    sys.stdout.write(json.dumps(schemas[kind](), indent=2) + "\n")


def checks_command(json_output: JsonOpt = False) -> None:
    """List the registered checks: name, section, what it compares."""
    from governance.registry import registered_checks

    rows = [{"check": name, "section": c.section, "needs": ", ".join(c.needs), "summary": c.summary} for name, c in registered_checks().items()]
    if json_output:
        emit_json({"checks": rows})
    else:
        print_rows(rows)


def disclosure_command(
    pack: PackArg,
    model: Annotated[Optional[str], typer.Option("--model", help="A recorded model version whose parameters to describe.")] = None,
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="The store (for --model).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Print the DSA Art. 27 disclosure derived from the pack (and the model) in force."""
    from governance.disclosure import disclosure, disclosure_markdown

    loaded = load_or_fail(pack, json_output=json_output)
    params, kind, inputs = None, None, None
    if model:
        from audits import open_store
        from governance.audit import recorded_model
        from governance.audit_inputs import recorded_model_kind

        with user_errors():
            store = open_store(database_url)
            try:
                params, _, _ = recorded_model(store, model)
                kind, inputs = recorded_model_kind(store, model)
            finally:
                store.close()
    doc = disclosure(loaded.pack, params, model_kind=kind, model_inputs=inputs)
    if json_output:
        emit_json(doc)
    else:
        sys.stdout.write(disclosure_markdown(doc))


def register(app: typer.Typer) -> None:
    """Add ``recgov policy ...``."""
    policy_app = typer.Typer(help="Validate, inspect, compare and test policy packs.", no_args_is_help=True)
    policy_app.command("validate")(validate_command)
    policy_app.command("show")(show_command)
    policy_app.command("diff")(diff_command)
    policy_app.command("test")(test_command)
    policy_app.command("schema")(schema_command)
    policy_app.command("checks")(checks_command)
    policy_app.command("disclosure")(disclosure_command)
    app.add_typer(policy_app, name="policy")
