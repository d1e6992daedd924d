"""``recgov audit`` and ``recgov gate``: run a pack's checks, record them, and decide.

The command line of :mod:`governance.audit`: ``audit`` records and reports;
``gate`` does the same and exits with the decision: 0 when the pack's gate
conditions hold, 1 when they do not, 2 when the pack, the data or the store
cannot be used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import EXIT_FINDING, console, emit_json, fail, progress_enabled, user_errors
from recommender.errors import ConfigError
from governance.cli.core import DataArg, DatabaseOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli._common import load_or_fail
from governance.cli.batch import SparkMasterOpt

__all__ = ["register"]

PackOpt = Annotated[str, typer.Option("--pack", "-p", help="Policy pack file, or a shipped pack name (baseline, eu-gdpr-dsa, california-ccpa).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Audit this recorded model version (its parameters are refitted on a split for the offline evaluation).")]
TrainOpt = Annotated[bool, typer.Option("--train/--no-train", help="Without --model: train and record a model now (else audit the data only).")]
BaselineOpt = Annotated[Optional[str], typer.Option("--baseline", help="Baseline DATA for the drift checks.", show_default=False)]
SlatesOpt = Annotated[Optional[Path], typer.Option("--slates", help="Audit logged recommendation slates (CSV user_id,item_id,rank or JSON lines) instead of a model.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Folder for gate.json, junit.xml, summary.md and gate.sarif (default: ./recgov-gate).")]
AuditEngineOpt = Annotated[
    str,
    typer.Option("--engine", help="inprocess (one machine: pandas, implicit) or spark (the pack's filter, MLlib ALS and the ranked lists on PySpark; needs Java 17+)."),
]
ShadowOpt = Annotated[bool, typer.Option("--shadow", help="Evaluate and record without enforcing (the gate always passes, the reasons are kept).")]
OpeLoggedOpt = Annotated[
    Optional[str],
    typer.Option("--ope-logged-pack", help="Judge the pack's off-policy rules on the store's decision log: the pack the logged lists were served under (name or file).", show_default=False),
]
OpeGroupOpt = Annotated[
    Optional[list[str]],
    typer.Option("--ope-provider-group", help="NAME=FILE: a provider group and a text file of its item ids, for off_policy_exposure rules (repeat).", show_default=False),
]


def _run(
    data: str, pack: str, mapping: str | None, model: str | None, train: bool, baseline: str | None, slates: Path | None,
    out: Path | None, shadow: bool, database_url: str | None, json_output: bool, items: str | None = None,
    items_map: str | None = None, engine: str = "inprocess", spark_master: str | None = None,
    ope_logged: str | None = None, ope_groups: list[str] | None = None,
):  # fmt: skip
    from audits import open_store
    from audits.settings import get_settings
    from governance.audit import run_audit, run_slate_audit
    from governance.spark.batch import check_engine

    with user_errors():
        check_engine(engine)  # an unknown engine is refused before the pack or the data is read
    loaded = load_or_fail(pack, json_output=json_output)
    off_policy = None
    if ope_logged is not None:
        from governance.audit import OffPolicyInput
        from governance.cli.ope import provider_groups

        off_policy = OffPolicyInput(load_or_fail(ope_logged, json_output=json_output), provider_groups(ope_groups or [], "--ope-provider-group") or None)
    elif ope_groups:
        raise fail("--ope-provider-group needs --ope-logged-pack (the pack the logged lists were served under)")
    show = progress_enabled(json_output)
    settings = get_settings()
    out_dir = out or Path("recgov-gate")
    with user_errors():
        spark = None
        if engine == "spark":
            from governance.spark.session import spark_master as checked_master, spark_session

            if slates is not None:
                raise ConfigError("--slates audits logged lists, which need no model: run it with --engine inprocess")
            checked_master(spark_master)  # a bad URL is refused before the data is read or a JVM starts
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output)
        base = load_dataset(baseline, mapping, json_output=json_output) if baseline else None
        if engine == "spark":
            # Started before the store is opened: a master that cannot be reached changes nothing.
            spark = spark_session(spark_master)
        store = open_store(database_url)
        try:
            if slates is not None:
                return run_slate_audit(loaded, dataset, slates, store=store, out_dir=out_dir, baseline=base, shadow=shadow, off_policy=off_policy)
            return run_audit(
                loaded, dataset, store=store, out_dir=out_dir, models_dir=settings.home / "models", model_version=model,
                train=train, baseline=base, shadow=shadow, show_progress=show, spark=spark, off_policy=off_policy,
            )  # fmt: skip
        finally:
            store.close()


def _print(outcome, *, json_output: bool) -> None:  # noqa: ANN001
    if json_output:
        emit_json(outcome.to_dict())
        return
    r = outcome.report
    engine = outcome.facts.dataset.get("engine") or {}
    on = f" on spark ({engine.get('master')})" if engine.get("name") == "spark" else ""
    console.print(f"audit #{outcome.audit_id}{on}: pack {r.pack} {r.pack_version} ({r.pack_hash[:12]}), model {r.model_version or '-'}, dataset {(r.dataset_version or '-')[:12]}", highlight=False)
    rows = [
        {"status": x.status.value.upper(), "rule": x.rule_id, "section": x.section, "measured": "" if x.value is None else (f"{x.value:.4g}" if isinstance(x.value, float) else str(x.value)), "message": x.message}
        for x in r.results
    ]
    print_rows(rows)
    d = outcome.decision
    verdict = "PASS" if d.passed else "BLOCKED"
    if not d.enforced:
        verdict += " (shadow mode, not enforced)"
    console.print(f"gate: [bold]{verdict}[/]", highlight=False)
    for reason in d.reasons:
        console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    for kind, path in outcome.outputs.items():
        console.print(f"  {kind:8s} {path}", highlight=False)


def audit_command(
    data: DataArg,
    pack: PackOpt,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    model: ModelOpt = None,
    train: TrainOpt = True,
    baseline: BaselineOpt = None,
    slates: SlatesOpt = None,
    out: OutOpt = None,
    shadow: ShadowOpt = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
    engine: AuditEngineOpt = "inprocess",
    spark_master: SparkMasterOpt = None,
    ope_logged_pack: OpeLoggedOpt = None,
    ope_provider_group: OpeGroupOpt = None,
) -> None:
    """Run every check of a pack against DATA and a model, store every result with its evidence."""
    outcome = _run(data, pack, mapping, model, train, baseline, slates, out, shadow, database_url, json_output, items, items_map, engine, spark_master,
                   ope_logged_pack, ope_provider_group)  # fmt: skip
    _print(outcome, json_output=json_output)


def gate_command(
    data: DataArg,
    pack: PackOpt,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    model: ModelOpt = None,
    train: TrainOpt = True,
    baseline: BaselineOpt = None,
    slates: SlatesOpt = None,
    out: OutOpt = None,
    shadow: ShadowOpt = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
    engine: AuditEngineOpt = "inprocess",
    spark_master: SparkMasterOpt = None,
    ope_logged_pack: OpeLoggedOpt = None,
    ope_provider_group: OpeGroupOpt = None,
) -> None:
    """Audit, then decide: exit 0 when the gate passes, 1 when it blocks, 2 for bad input."""
    outcome = _run(data, pack, mapping, model, train, baseline, slates, out, shadow, database_url, json_output, items, items_map, engine, spark_master,
                   ope_logged_pack, ope_provider_group)  # fmt: skip
    _print(outcome, json_output=json_output)
    if not outcome.decision.passed:
        raise typer.Exit(code=EXIT_FINDING)


def register(app: typer.Typer) -> None:
    """Add ``recgov audit`` and ``recgov gate``."""
    app.command("audit")(audit_command)
    app.command("gate")(gate_command)
