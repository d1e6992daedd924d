"""``recgov demo``: the whole governed path on synthetic data, with nothing to set up.

Generate a data set with a planted exposure bias and some dirt, validate and
clean it, evaluate tuned ALS against the baselines, train and record the model
with its lineage and carbon figures, audit it against the baseline pack and take
the gate decision, and end by signing and verifying the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from governance.cli._common import console, emit_json, err_console, progress_enabled, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt, comparison_rows, print_rows

__all__ = ["register"]

DEMO_SPEC = (
    "synthetic:n_users=3000,n_items=1500,n_interactions=150000,seed=7,exposure_bias=3,group_provider_affinity=X:4,"
    "bot_users=3,duplicate_rate=0.01,missing_id_rate=0.002,future_rate=0.001"
)


def _step(show: bool, text: str) -> None:
    if show:
        err_console.print(f"[dim]{text}[/]")


def _governed_tour(store, dataset, outcome, settings, show: bool) -> dict[str, Any]:  # noqa: ANN001
    """The EU pack on the recorded model: fairness before and after re-ranking, a governed
    list with tags, an escalation case, a withdrawal, an access export and an erasure."""
    from audits.consent import record_consent
    from audits.decisions import DecisionLog
    from audits.harm import report_item
    from audits.models import ModelVersion
    from governance.audit import run_audit
    from governance.packs import resolve_pack
    from governance.escalation import evaluate_escalations, items_out_of_lists
    from governance.policy import load_pack
    from governance.privacy import erase_subject, export_subject
    from governance.serving import ServeRequest, ServingEngine
    from governance.consent.imports import import_consent
    from governance.consent.state import ConsentRecord
    from governance.consent.synthetic_export import synthetic_consent_export, write_consent_export
    from recommender.als import ALSRecommender

    eu = load_pack(resolve_pack("eu-gdpr-dsa"))
    version = outcome.report.model_version
    tour: dict[str, Any] = {"pack": f"{eu.name} {eu.version} ({eu.content_hash[:12]})"}
    # Under the EU pack nothing may be profiled, the audit's refit included, until consent exists: the
    # users' consent arrives as a CMP's export would (a tenth refuse, some withdraw, a few send GPC).
    _step(show, "importing the users' consent from a consent-management platform's export")
    consent_file = settings.home / "demo-consent.csv"
    purposes = eu.pack.consent.purposes
    write_consent_export(
        synthetic_consent_export(
            dataset,
            opt_in_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_in"),
            opt_out_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_out"),
            random_state=0,
        ),
        consent_file,
    )
    imported = import_consent(store, consent_file, name=consent_file.name, pack=eu)
    tour["consent_import"] = {"rows": imported.to_dict()["rows"], "added": imported.to_dict()["added"]}
    _step(show, "auditing the recorded model against the EU pack in shadow mode (fairness before and after re-ranking)")
    eu_audit = run_audit(
        eu, dataset, store=store, out_dir=settings.home / "demo-eu", models_dir=settings.home / "models",
        model_version=version, train=False, shadow=True, show_progress=show,
    )  # fmt: skip
    trade = eu_audit.facts.tradeoff or {}
    exposure = trade.get("provider_exposure", {})
    calibration_gap = trade.get("consumer_gap", {}).get("gender", {}).get("provider_miscalibration", {})
    tour["eu_audit"] = {
        "audit_id": eu_audit.audit_id,
        "counts": eu_audit.report.counts(),
        "would_block_for": [r.rule_id for r in eu_audit.report.results if r.status.value in ("fail", "error")],
        "ndcg_plain": trade.get("accuracy", {}).get("ndcg", {}).get("plain"),
        "ndcg_reranked": trade.get("accuracy", {}).get("ndcg", {}).get("reranked"),
        "exposure_gap_plain": exposure.get("gap", {}).get("plain"),
        "exposure_gap_reranked": exposure.get("gap", {}).get("reranked"),
        "gender_calibration_gap_plain": calibration_gap.get("plain"),
        "gender_calibration_gap_reranked": calibration_gap.get("reranked"),
    }
    with store.session() as session:
        location = session.get(ModelVersion, version).artifact_location
    model = ALSRecommender.load(location)
    subject = str(model.train_.user_ids[0])
    log = DecisionLog(store)
    try:
        engine = ServingEngine(eu, model, dataset.items, sink=log)
        with store.session() as session:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="banner", evidence={"banner_version": "demo"})
        granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="banner", time=datetime.now(timezone.utc)),)
        _step(show, "serving a governed list with explanation tags")
        first = engine.serve(ServeRequest(subject, k=5, consent=granted))
        tour["list"] = [{"item": i, "why": "; ".join(t["text"] for t in tags)} for i, tags in zip(first.items, first.tags)]
        _step(show, "three users report the top item: an escalation case opens and the item leaves every list")
        top = first.items[0]
        with store.session() as session:
            for n in range(3):
                report_item(session, item_id=top, reason=f"report {n + 1}: misleading")
            cases = evaluate_escalations(session, eu.pack)
            engine.set_blocked(items_out_of_lists(session))
        second = engine.serve(ServeRequest(subject, k=5, consent=granted))
        tour["escalation"] = {"cases": cases, "item": top, "still_served": top in second.items}
        _step(show, "the subject withdraws consent: the next list is not personalized")
        with store.session() as session:
            record_consent(session, subject_id=subject, purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
        withdrawn = (*granted, ConsentRecord(purpose="personalization", status="withdrawn", lawful_basis="consent", source="api", time=datetime.now(timezone.utc)))
        third = engine.serve(ServeRequest(subject, k=5, consent=withdrawn))
        tour["after_withdrawal"] = {"mode": third.mode, "reason": third.consent_reason}
    finally:
        log.close()
    _step(show, "access export and erasure of the subject")
    export = export_subject(store, subject, dataset=dataset, pack=eu)
    tour["access_export"] = {k: len(export.get(k) or []) for k in ("consent", "interactions", "decisions", "models")}
    erased = erase_subject(store, subject, pack=eu, model_path=location, measure_residual=True)
    first_unlearning = (erased.get("unlearning") or [{}])[0]
    tour["erasure"] = {
        "request": erased["request"]["status"],
        "shredded": erased["shredded"],
        "unlearned_model": first_unlearning.get("version"),
        "unlearning_ms": round(1000 * float(first_unlearning.get("seconds") or 0), 2),
    }
    return tour


def demo_command(
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the gate's JSON, JUnit, Markdown and SARIF files (default: $RECGOV_HOME/demo).")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the governed path end to end on synthetic data and print a summary."""
    from audits import load_signing_key, open_store, verify_and_checkpoint
    from audits.settings import get_settings
    from governance.audit import run_audit
    from governance.packs import resolve_pack
    from governance.policy import load_pack
    from recommender.feedback import FeedbackConfig
    from recommender.loaders import load_data
    from recommender.pipeline import run_evaluation
    from recommender.split import SplitConfig
    from recommender.validate import validate_events

    show = progress_enabled(json_output)
    settings = get_settings()
    out_dir = out or settings.home / "demo"
    summary: dict[str, Any] = {}
    with user_errors():
        _step(show, f"generating {DEMO_SPEC}")
        raw = load_data(DEMO_SPEC)
        _step(show, "validating the raw log")
        report = validate_events(raw)
        clean = raw.with_events(report.clean(raw.events))
        summary["data"] = {
            "source": DEMO_SPEC,
            "n_events": int(len(raw.events)),
            "findings": {f.code: f.count for f in report.findings},
            "n_events_after_cleaning": int(len(clean.events)),
        }
        _step(show, "tuning and evaluating ALS against popularity, random and item-kNN")
        run = run_evaluation(
            clean, split_config=SplitConfig(kind="random", test_fraction=0.2), feedback=FeedbackConfig(), k=10,
            tune=True, n_trials=12, show_progress=show,
        )  # fmt: skip
        summary["evaluation"] = {
            label: {"ndcg@10": ev.metrics.get("ndcg"), "recall@10": ev.metrics.get("recall"), "coverage": ev.beyond.get("coverage")}
            for label, ev in run.comparison.evaluations.items()
        }
        summary["evaluation"]["lift_vs_popularity"] = run.comparison.lift.get("als", {}).get("popularity", {}).get("ndcg")
        summary["tuned_params"] = run.tuning["als"].best_params if "als" in run.tuning else None
        store = open_store(database_url)
        try:
            pack = load_pack(resolve_pack("baseline"))
            _step(show, "training, recording lineage and auditing against the baseline pack")
            outcome = run_audit(
                pack, clean, store=store, out_dir=out_dir, models_dir=settings.home / "models", train=True, show_progress=show
            )
            summary["model_version"] = outcome.report.model_version
            summary["audit"] = {
                "audit_id": outcome.audit_id,
                "pack": f"{pack.name} {pack.version} ({pack.content_hash[:12]})",
                "counts": outcome.report.counts(),
                "gate": "pass" if outcome.decision.passed else "blocked",
                "reasons": outcome.decision.reasons,
                "outputs": {k: str(v) for k, v in outcome.outputs.items()},
            }
            carbon = outcome.facts.carbon
            summary["carbon"] = carbon.model_dump() if carbon else None
            summary["governed"] = _governed_tour(store, clean, outcome, settings, show)
            _step(show, "verifying the trail and the records it anchors, then signing a checkpoint")
            trail, checkpoint = verify_and_checkpoint(store, load_signing_key())  # what `recgov trail checkpoint` runs
            summary["trail"] = {
                "intact": trail.intact, "head": None if checkpoint is None else checkpoint.seq,
                "checkpoint_key": None if checkpoint is None else checkpoint.key_id, "report": trail.to_dict(),
            }  # fmt: skip
            _step(show, "writing the regulator's lineage report (HTML) and its OpenLineage events")
            summary["regulator_report"] = _regulator_report(store, summary["model_version"], out_dir)
            summary["database"] = store.url
        finally:
            store.close()
    if json_output:
        emit_json(summary)
        return
    _print_summary(summary, run.comparison)


def _print_summary(summary: dict[str, Any], comparison: Any) -> None:
    """The demo's summary for people: one line per step, the evaluation as a table."""
    d = summary["data"]
    console.print(f"[bold]data[/]  {d['n_events']:,} synthetic events; validation found {d['findings'] or 'nothing'}; {d['n_events_after_cleaning']:,} kept", highlight=False)
    console.print(f"[bold]tuned ALS[/]  {summary['tuned_params']}", highlight=False)
    print_rows(comparison_rows(comparison)[:6] + comparison_rows(comparison)[-2:], title="offline evaluation (random 80/20 split, k=10)")
    a = summary["audit"]
    console.print(f"[bold]model[/]  {summary['model_version']} recorded with its dataset and training run", highlight=False)
    if summary["carbon"]:
        c = summary["carbon"]
        console.print(f"[bold]carbon[/]  {c['energy_kwh']:.3g} kWh, {c['emissions_kg']:.3g} kg CO2e ({c['method']})", highlight=False)
    console.print(f"[bold]audit[/]  #{a['audit_id']} against {a['pack']}: {a['counts']}", highlight=False)
    console.print(f"[bold]gate[/]  {a['gate'].upper()}" + (f": {'; '.join(a['reasons'])}" if a["reasons"] else ""), highlight=False)
    for kind, path in a["outputs"].items():
        console.print(f"  {kind:8s} {path}", highlight=False)
    g = summary["governed"]
    e = g["eu_audit"]
    console.print(f"[bold]EU audit[/]  #{e['audit_id']} in shadow mode against {g['pack']}: {e['counts']}; would block for {e['would_block_for'] or 'nothing'}", highlight=False)
    if e["ndcg_plain"] is not None:
        console.print(
            f"[bold]re-ranking[/]  ndcg@10 {e['ndcg_plain']:.4f} -> {e['ndcg_reranked']:.4f}; provider exposure gap {e['exposure_gap_plain']:.3f} -> {e['exposure_gap_reranked']:.3f}"
            + (
                f"; gender gap in provider miscalibration {e['gender_calibration_gap_plain']:.3f} -> {e['gender_calibration_gap_reranked']:.3f} nats"
                if e.get("gender_calibration_gap_plain") is not None and e.get("gender_calibration_gap_reranked") is not None
                else ""
            ),
            highlight=False,
        )
    console.print("[bold]governed list[/] (EU pack, consent granted):", highlight=False)
    for row in g["list"]:
        console.print(f"  {row['item']}  {row['why']}", highlight=False, soft_wrap=True)
    esc = g["escalation"]
    console.print(f"[bold]escalation[/]  {len(esc['cases'])} case(s) opened for {esc['item']} after 3 reports; still served: {esc['still_served']}", highlight=False)
    console.print(f"[bold]withdrawal[/]  next list is {g['after_withdrawal']['mode']}: {g['after_withdrawal']['reason']}", highlight=False, soft_wrap=True)
    console.print(f"[bold]access export[/]  {g['access_export']}", highlight=False)
    er = g["erasure"]
    console.print(f"[bold]erasure[/]  request {er['request']}, pseudonym shredded: {er['shredded']}, subject removed from the model in {er['unlearning_ms']} ms -> {er['unlearned_model']}", highlight=False)
    t = summary["trail"]
    if t["checkpoint_key"] is None:
        console.print("[bold]trail[/]  BROKEN, nothing signed (recgov trail verify says where)", highlight=False)
    else:
        console.print(f"[bold]trail[/]  intact up to event {t['head']}, checkpoint signed by key {t['checkpoint_key']}", highlight=False)
    console.print(f"[bold]store[/]  {summary['database']}", highlight=False)
    r = summary["regulator_report"]
    console.print(f"[bold]regulator report[/]  {r['html']}  (OpenLineage events: {r['openlineage']}; PDF: recgov report {summary['model_version']} --pdf FILE)", highlight=False, soft_wrap=True)


def _regulator_report(store: Any, model_version: str, out_dir: Path) -> dict[str, str]:
    """Write the lineage report of the demo's model (the EU pack in force) and its OpenLineage events."""
    from governance.packs import resolve_pack
    from governance.policy import load_pack
    from governance.report import collect, render_html
    from governance.report.openlineage import openlineage_events, write_jsonl

    with store.session() as session:
        document = collect(session, model_version, load_pack(resolve_pack("eu-gdpr-dsa")))
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"report-{model_version}.html"
    html.write_text(render_html(document), encoding="utf-8")
    events = write_jsonl(openlineage_events(document), out_dir / f"openlineage-{model_version}.jsonl")
    return {"html": str(html), "openlineage": str(events)}


def register(app: typer.Typer) -> None:
    """Add ``recgov demo``."""
    app.command("demo")(demo_command)
