"""``recgov experiment plan|start|status|analyze|stop|list``: governed experiments from the command line.

Exit codes: 0 done, 2 bad input (an invalid plan, each problem located; an
unknown experiment, metric or segment; a move the experiment's state does not
allow; a plan file that differs from the frozen one). Nothing changes on exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from governance.cli._common import console, emit_json, issues_exit, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt

__all__ = ["register"]

NameArg = Annotated[str, typer.Argument(help="The experiment's name (its metadata.name).")]


def _actor() -> str:
    from audits.settings import get_settings

    return get_settings().actor


def _load(path: Path, json_output: bool) -> Any:
    from governance.experiments.spec import load_experiment
    from governance.located import PolicyError

    try:
        return load_experiment(path)
    except PolicyError as err:
        raise issues_exit(err, json_output=json_output) from None


def _arms(summary: dict[str, Any]) -> str:
    """The planned subjects per arm (control first, then the treatments in plan order) and in all."""
    size = summary["sample_size"]
    order = [v["name"] for v in summary["variants"] if v["control"]] + [v["name"] for v in summary["variants"] if not v["control"]]
    return ", ".join(f"{name} {n}" for name, n in zip(order, size["n_per_arm"], strict=False)) + f" subjects, {size['n_total']} in all"


def _run(database_url: str | None, call: Any) -> Any:
    from audits import open_store

    with user_errors():
        store = open_store(database_url)
        try:
            return call(store)
        finally:
            store.close()


def _show(document: dict[str, Any], json_output: bool, lines: list[str]) -> None:
    if json_output:
        emit_json(document)
        return
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def plan_command(
    file: Annotated[Path, typer.Argument(help="The experiment (YAML, kind: Experiment).")],
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Validate FILE, compute its sample size and freeze it (content hash, assignment salt) on the trail, before any exposure."""
    from governance.cli.deploy_policy import installation_pack_loader, packs_dir
    from governance.experiments import lifecycle

    loaded = _load(file, json_output)
    summary = _run(database_url, lambda store: lifecycle.plan(store, loaded, actor=_actor(), load_pack=installation_pack_loader(packs_dir())))
    size = summary["sample_size"]
    _show(summary, json_output, [
        f"experiment {summary['name']} planned (hash {summary['plan_hash'][:12]}, trail #{summary['plan_seq']})",
        f"sample size ({summary['design']['method']}, {summary['design']['looks']} look(s)): {_arms(summary)}",
        f"start it with: recgov experiment start {summary['name']} --plan {file}",
    ])  # fmt: skip


def start_command(
    name: NameArg,
    plan_file: Annotated[Optional[Path], typer.Option("--plan", help="The plan file as you have it now: it must be the frozen plan.")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start NAME: lists that name no model version are served by the subject's variant from now on."""
    from governance.experiments import lifecycle

    from governance.cli.deploy_policy import installation_pack_loader, packs_dir

    loaded = _load(plan_file, json_output) if plan_file is not None else None
    summary = _run(database_url, lambda store: lifecycle.start(store, name, actor=_actor(), loaded=loaded, load_pack=installation_pack_loader(packs_dir())))
    _show(summary, json_output, [f"experiment {name} running since {summary['started_at']} (trail #{summary['start_seq']})"])


def stop_command(name: NameArg, database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Stop NAME: nobody is assigned from now on; its data stay for the analysis."""
    from governance.experiments import lifecycle

    summary = _run(database_url, lambda store: lifecycle.stop(store, name, actor=_actor()))
    _show(summary, json_output, [f"experiment {name} stopped at {summary['stopped_at']} (trail #{summary['stop_seq']})"])


def status_command(name: NameArg, database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Subjects per variant and reason, and the SRM check (a look at the data: on the trail; it spends no planned look)."""
    from governance.experiments import lifecycle

    from governance.cli.deploy_policy import packs_dir

    doc = _run(database_url, lambda store: lifecycle.status(store, name, actor=_actor(), packs_dir=packs_dir()))
    srm = doc.get("srm") or {}
    _show(doc, json_output, [
        f"experiment {name}: {doc['status']} (hash {doc['plan_hash'][:12]})",
        *(f"  {variant}: {counts}" for variant, counts in doc.get("counts", {}).items()),
        f"  SRM: {'MISMATCH' if srm.get('mismatch') else 'ok'} (p = {srm.get('p_value')})" if srm.get("checked") else "  SRM: not checked yet",
        *_drift_lines(doc),
    ])  # fmt: skip


def _drift_lines(doc: dict) -> list[str]:
    """What a look or a status says of lists served under a pack other than the arm's pinned one (none: nothing)."""
    return [
        f"  PACK DRIFT {variant}: {d['lists']} list(s), to {d['subjects']} subject(s), served under a pack whose content is not "
        f"the pinned {str(d['pinned'])[:12]}: the arm compared other rules than the plan's"
        for variant, d in (doc.get("pack_drift") or {}).items()
    ]


def analyze_command(
    name: NameArg,
    metric: Annotated[Optional[str], typer.Option("--metric", help="Another metric than the primary one (exploratory).")] = None,
    segment: Annotated[Optional[str], typer.Option("--segment", help="known or new subjects only (exploratory).")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One look at NAME's data: planned (the primary metric, within the planned looks) or labelled exploratory; on the trail."""
    from governance.experiments import lifecycle

    from governance.cli.deploy_policy import installation_pack_loader, packs_dir

    doc = _run(database_url, lambda store: lifecycle.analyze(
        store, name, actor=_actor(), metric=metric, segment=segment, packs_dir=packs_dir(), load_pack=installation_pack_loader(packs_dir())
    ))  # fmt: skip
    label = f"planned look {doc['look']}" if doc["kind"] == "planned" else "EXPLORATORY look (" + "; ".join(doc["exploratory_because"]) + ")"
    lines = [f"experiment {name}, {label}, metric {doc['metric']}: {doc['verdict']} (decision {doc['decision']}, trail #{doc['trail_seq']})"]
    for c in doc["comparisons"]:
        r = c["result"]
        lines.append(f"  {c['variant']}: estimate {r.get('estimate')} [{r.get('ci_low')}, {r.get('ci_high')}], p = {r.get('p_value')} (adjusted {c['p_adjusted']}), {r.get('decision')}")
    for g in doc["guardrails"]:
        said = "REFUSED" if g["result"].get("refused") else ("FAILED" if g["failed"] else "held")
        lines.append(f"  guardrail {g['metric']} ({g['variant']}, margin {g['margin']}): {said}{_guardrail_figures(g['result'])}")
    srm = doc["srm"]
    lines.append(f"  SRM: {'MISMATCH' if srm.get('mismatch') else 'ok'}")
    lines += _drift_lines(doc)
    if doc.get("recommendation"):
        lines.append(f"  => {doc['recommendation']}")
    _show(doc, json_output, lines)


def _guardrail_figures(result: dict) -> str:
    """`` (estimate E, bound B)`` of a guardrail's test, or why it could not be tested."""
    if result.get("reason") and not result.get("exact"):
        return f" ({result['reason']})"
    bound = result.get("ci_high") if result.get("ci_high") is not None else result.get("ci_low")
    estimate = result.get("estimate")
    if estimate is None:
        return ""
    return f" (estimate {estimate:+.4g}" + (f", one-sided bound {bound:+.4g})" if bound is not None else ", exact)")


def list_command(database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Every experiment and its state."""
    from governance.experiments import lifecycle

    rows = _run(database_url, lifecycle.list_experiments)
    _show({"experiments": rows}, json_output, [f"{r['name']}: {r['status']} (hash {r['plan_hash'][:12]})" for r in rows] or ["no experiment"])


def register(app: typer.Typer) -> None:
    """Add ``recgov experiment``."""
    group = typer.Typer(help="Governed experiments: frozen plans, consent-aware assignment, every look on the trail.", no_args_is_help=True)
    group.command("plan")(plan_command)
    group.command("start")(start_command)
    group.command("status")(status_command)
    group.command("analyze")(analyze_command)
    group.command("stop")(stop_command)
    group.command("list")(list_command)
    app.add_typer(group, name="experiment")
