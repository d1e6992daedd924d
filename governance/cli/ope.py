"""``recgov ope DATA --logged-pack CURRENT --target-pack CANDIDATE``: off-policy evaluation from the decision log.

A thin command over :func:`governance.ope.evaluate_from_log`. DATA is where the
decision log and the outcome events are: a SQLAlchemy URL, the path of a SQLite
store, or ``store`` for the configured one (``RECGOV_DATABASE_URL``, else
``$RECGOV_HOME/recgov.db``). Only subjects whose consent covers the analytics
purpose are read; the report says how many decisions and subjects were left out
and why. Every estimate carries its interval, effective sample size and largest
weight, or is refused with the reason (overlap fails, too few effective samples).

With ``--provider-group NAME=FILE`` (item ids, one a line; repeat) the report adds
each group's estimated share of attention under CANDIDATE. When CANDIDATE has
off-policy rules (``off_policy_non_inferiority``, ``off_policy_exposure``), the
report holds their results and the gate's decision on them; ``--gate`` makes the
exit code follow it.

Exit codes: 0 the report was made (some refused estimates may be in it), 1 with
``--gate``: the gate blocks CANDIDATE (a refused estimate is missing evidence and
blocks), 2 bad usage or input (a pack that does not load, a target that re-ranks
differently, a pack without an analytics purpose, an unreachable store, a provider
group file) or a refused evaluation: every estimate of an outcome kind is refused
(a deterministic log, poor overlap, too few effective samples), as ``POST /v1/ope``
answers 422 ``ope-refused``. The text report is printed all the same, then each
refused estimator and its reason; under ``--json`` the one document is the error,
an issue per refused estimator (its ``path``: ``metrics.<kind>.<estimator>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import EXIT_USAGE, console, emit_json, error_document, fail, load_or_fail
from governance.cli.store import JsonOutput, store_errors

__all__ = ["ope_command", "provider_groups", "register"]

MAX_SEED = 2**32 - 1
"""The largest bootstrap seed, as ``POST /v1/ope`` bounds it."""


def _store_url(data: str) -> str | None:
    if data == "store":
        return None
    if "://" in data:
        return data
    path = Path(data)
    if not path.is_file():
        raise fail(f"DATA: {data!r} is neither a database URL nor an existing SQLite store file (or 'store' for the configured store)")
    return f"sqlite:///{path.resolve()}"


def ope_command(
    data: Annotated[str, typer.Argument(help="The store holding the decision log and outcomes: a URL, a SQLite file, or 'store'.", metavar="DATA")],
    logged_pack: Annotated[str, typer.Option("--logged-pack", help="The pack the logged lists were served under (name or file).", show_default=False)],
    target_pack: Annotated[str, typer.Option("--target-pack", help="The candidate pack to evaluate (name or file).", show_default=False)],
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Outcome kind(s) to estimate (repeat): click, conversion, ...")] = None,
    min_ess: Annotated[float, typer.Option("--min-ess", help="Refuse an estimate whose effective sample size is below this.")] = 30.0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for each interval (0: none).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="The bootstrap's seed.")] = 0,
    confidence: Annotated[float, typer.Option("--confidence", help="The intervals' confidence level.")] = 0.95,
    limit: Annotated[int | None, typer.Option("--limit", help="Read at most this many decisions (the newest).")] = None,
    segment_items: Annotated[
        Path | None, typer.Option("--segment-items", help="A text file of item ids, one a line: estimates for their outcomes alone too.", show_default=False)
    ] = None,
    provider_group: Annotated[
        list[str] | None,
        typer.Option("--provider-group", help="NAME=FILE: a provider group and a text file of its item ids (repeat).", show_default=False),
    ] = None,
    gate: Annotated[bool, typer.Option("--gate", help="Exit 1 when CANDIDATE's off-policy rules block it.")] = False,
    json_output: JsonOutput = False,
) -> None:
    """Estimate what CANDIDATE would have earned on the lists served under CURRENT (IPS, SNIPS, DM, DR; slate IPS)."""
    from audits import open_store
    from governance.ope import ALL_REFUSED, OpeSettings, evaluate_from_log, refused_estimates

    logged = load_or_fail(logged_pack, json_output=json_output)
    target = load_or_fail(target_pack, json_output=json_output)
    if limit is not None and limit < 1:
        raise fail(f"--limit must be at least 1, got {limit}")
    if bootstrap < 0:
        raise fail(f"--bootstrap must be at least 0, got {bootstrap}")
    if not 0 <= seed <= MAX_SEED:
        raise fail(f"--seed must be from 0 to {MAX_SEED}, got {seed}")
    segment = None
    if segment_items is not None:
        try:
            segment = frozenset(line.strip() for line in segment_items.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as err:
            raise fail(f"--segment-items: {segment_items} cannot be read ({err})") from None
        if not segment:
            raise fail(f"--segment-items: {segment_items} lists no item id")
    groups = provider_groups(provider_group or [])
    settings = OpeSettings(
        kinds=tuple(kind or ("click", "conversion")), min_ess=min_ess, n_bootstrap=bootstrap, seed=seed, confidence=confidence, limit=limit, segment=segment,
        provider_groups=groups or None,
    )  # fmt: skip
    with store_errors():
        url = _store_url(data)
        store = open_store(url)
        try:
            report = evaluate_from_log(store, logged, target, settings)
        finally:
            store.close()
    refused = refused_estimates(report)
    if refused and json_output:
        emit_json({"valid": False, "issues": [{**error_document(e["message"])["issues"][0], "path": e["field"]} for e in refused]})
    blocked = gate and "gate" in report and not report["gate"]["decision"]["passed"]
    if refused:
        if not json_output:
            _print_report(report)
        kinds = sorted({e["field"].split(".")[1] for e in refused})
        said = "; ".join(f"{e['field']}: {e['message']}" for e in refused)
        raise fail(f"{ALL_REFUSED.format(kinds=', '.join(kinds))}: {said}", code=EXIT_USAGE)
    if json_output:
        emit_json(report)
        if blocked:
            raise typer.Exit(1)
        return
    _print_report(report)
    if blocked:
        raise typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    """The report as text on stdout."""
    console.print(
        f"{report['target_pack']['pack']} {report['target_pack']['pack_version']} on {report['decisions_used']:,} lists served under "
        f"{report['logged_pack']['pack']} {report['logged_pack']['pack_version']} ({report['decisions_read']:,} read; excluded: "
        + (", ".join(f"{n:,} {why}" for why, n in report["excluded"].items()) or "none")
        + ")",
        highlight=False,
        soft_wrap=True,
    )
    sections = [("", report["metrics"])] + ([("segment ", report["segment"]["metrics"])] if "segment" in report else [])
    for label, metrics in sections:
        _print_metrics(label, metrics)
    for kind, diffs in report.get("differences", {}).items():
        for name, est in diffs.items():
            if est.get("refused"):
                console.print(f"  {kind:10} {name:24} target - logged: refused", highlight=False, soft_wrap=True, markup=False)
            elif est.get("ci_low") is not None:
                console.print(f"  {kind:10} {name:24} target - logged {est['value']:+.4f} [{est['ci_low']:+.4f}, {est['ci_high']:+.4f}]", highlight=False, soft_wrap=True, markup=False)
    for group, figures in (report.get("exposure") or {}).get("groups", {}).items():
        target = figures["target"]
        shown = "refused: " + str(target.get("reason")) if target.get("refused") else f"{target['value']:.4f}"
        console.print(f"  exposure {group}: logged {figures['logged_policy']['value']:.4f}, target {shown}", highlight=False, soft_wrap=True, markup=False)
    if "gate" in report:
        decision = report["gate"]["decision"]
        console.print(f"gate: {'passed' if decision['passed'] else 'blocked'}", highlight=False)
        for reason in decision["reasons"]:
            console.print(f"  {reason}", highlight=False, soft_wrap=True, markup=False)


def provider_groups(specs: list[str], option: str = "--provider-group") -> dict[str, frozenset[str]]:
    """``NAME=FILE`` options read into item-id sets (a usage error naming ``option`` for a bad one)."""
    groups: dict[str, frozenset[str]] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise fail(f"{option}: expected NAME=FILE, got {spec!r}")
        if name.strip() in groups:
            raise fail(f"{option}: {name.strip()!r} is given twice")
        try:
            items = frozenset(line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as err:
            raise fail(f"{option} {name.strip()}: {file} cannot be read ({err})") from None
        if not items:
            raise fail(f"{option} {name.strip()}: {file} lists no item id")
        groups[name.strip()] = items
    return groups


def _print_metrics(label: str, metrics: dict[str, dict[str, Any]]) -> None:
    for metric, estimates in metrics.items():
        metric = f"{label}{metric}"
        for name, est in estimates.items():
            if est.get("refused"):
                console.print(f"  {metric:10} {name:24} refused: {est['reason']}", highlight=False, soft_wrap=True, markup=False)
            else:
                interval = f" [{est['ci_low']:.4f}, {est['ci_high']:.4f}]" if est.get("ci_low") is not None else ""
                weight = f"  max weight {est['max_weight']:.3g}" if est.get("max_weight") is not None else ""
                console.print(
                    f"  {metric:10} {name:24} {est['value']:.4f}{interval}  ess {est['ess']:.0f}{weight}",
                    highlight=False,
                    soft_wrap=True,
                    markup=False,
                )


def register(app: typer.Typer) -> None:
    """Add ``recgov ope``."""
    app.command("ope")(ope_command)
