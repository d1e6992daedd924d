"""The data subject requests: ``recgov subject export`` (GDPR Art. 15, 20) and ``recgov subject erase`` (Art. 17).

Thin wrappers over :mod:`governance.privacy.access` and
:mod:`governance.privacy.erasure`. A subject is given by the id your systems
know them by; recgov stores only its pseudonym, and no output repeats the raw
id, except the access export itself (it goes to the subject). Exit codes: 0
done; 1 ``erase --retrain`` erased the subject but the retrain request it opened
still waits (the output names the command to run); 2 bad usage or input (a
missing file, broken data, an unreachable database), with one line on stderr and
nothing stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import (
    EXIT_FINDING,
    OptionalPackOpt,
    RequiredPackOpt,
    RequestedSubjectArg,
    console,
    emit_json,
    err_console,
    opened_store,
    progress_enabled,
    short_pseudonym,
    to_json,
)
from governance.cli.core import DatabaseOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli.policy import load_or_fail
from governance.cli.retrain import print_retrain_run, still_waiting
from governance.cli.store import store_errors
from recommender.errors import ConfigError

__all__ = ["register"]

BAD_PROPAGATE = "--propagate must be an integer from 0 to {max}; got {value}"
MAX_PROPAGATE = 10
OUT_FOLDER_MISSING = "--out {out}: the folder {folder} does not exist; create it first"
MAP_WITHOUT_DATA = "--map describes the columns of the {option} DATA; give {option} DATA too"


def subject_export(
    subject: RequestedSubjectArg,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="DATA holding the subject's interactions (a MovieLens directory, an event log with --map, ...).",
            show_default=False,
        ),
    ] = None,
    mapping: MapOpt = None,
    pack: OptionalPackOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the export (JSON) to this file instead of stdout.", show_default=False),
    ] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Answer an access request (GDPR Art. 15): everything recgov holds about SUBJECT, as JSON for them."""
    from audits.private_files import check_writable, write_private
    from governance.privacy import export_subject

    loaded = load_or_fail(pack, json_output=json_output) if pack is not None else None
    with store_errors():
        if out is not None and not out.parent.is_dir():
            raise ConfigError(OUT_FOLDER_MISSING.format(out=out, folder=out.parent))
        if out is not None:
            check_writable(out)  # before the request is recorded: a file that cannot be written records nothing
        dataset = load_dataset(data, mapping, json_output=json_output) if data is not None else None
        with opened_store(database_url) as store:
            doc = export_subject(store, subject, dataset=dataset, pack=loaded)
        if out is not None:
            write_private(out, to_json(doc) + "\n")  # owner-only: it holds the subject's data
    if out is None:
        emit_json(doc)
        return
    summary = {
        "request": doc["request"],
        "out": str(out),
        "counts": {
            "consent_records": len(doc["consent"]["history"]),
            "interactions": doc["interactions"]["count"],
            "decisions": len(doc["decisions"]),
            "outcome_events": len(doc["outcomes"]),
            "item_reports": len(doc["reports"]),
            "trail_events": len(doc["trail"]),
            "models": len(doc["models"]),
        },
    }
    if json_output:
        emit_json(summary)
        return
    c = summary["counts"]
    console.print(
        f"access request #{doc['request']['id']} completed: wrote {out} ({c['consent_records']} consent records, "
        f"{c['interactions']} interactions, {c['decisions']} decisions, {c['outcome_events']} outcome events, {c['item_reports']} item reports, {c['trail_events']} trail events, "
        f"{c['models']} model versions); send it to the subject by a secure channel",
        highlight=False,
        soft_wrap=True,
    )


def subject_erase(
    subject: RequestedSubjectArg,
    pack: RequiredPackOpt,
    model: Annotated[
        list[Path] | None,
        typer.Option(
            "--model",
            help="A model artifact (.npz) to unlearn the subject from; repeat for several.",
            show_default=False,
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            help="Where to write the unlearned artifacts (default: beside each --model).",
            show_default=False,
        ),
    ] = None,
    delete_previous: Annotated[
        bool, typer.Option("--delete-previous", help="Delete each --model file once its unlearned copy is saved.")
    ] = False,
    residual: Annotated[
        bool,
        typer.Option(
            "--residual/--no-residual",
            help="Measure residual influence against a retrain (only on models under 200,000 interactions).",
        ),
    ] = True,
    propagate: Annotated[
        int,
        typer.Option(
            "--propagate",
            help="With --approximate: sweeps re-solving the users who share the subject's items, then the items (0: the items only).",
        ),
    ] = 1,
    approximate: Annotated[
        bool,
        typer.Option(
            "--approximate",
            help=(
                "Unlearn ALS models by the fast update: a provisional stand-in until a full retrain, the old version "
                "kept (default: refit each without the subject, which replaces the old version and deletes its file)."
            ),
        ),
    ] = False,
    retrain: Annotated[
        str | None,
        typer.Option(
            "--retrain",
            metavar="DATA",
            help=(
                "Run the full retrain at once: train from DATA without the subject, with the recipe of the models "
                "that held them, and complete the retrain request (else it is due by the pack's retrain_days)."
            ),
            show_default=False,
        ),
    ] = None,
    mapping: MapOpt = None,
    carbon: Annotated[
        bool, typer.Option("--carbon/--no-carbon", help="Measure the retrain's energy and emissions with codecarbon.")
    ] = True,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Erase SUBJECT (GDPR Art. 17): unlearn them from --model, list models that may hold them, record, crypto-shred,
    keep their restrictions in a suppression record, and call for (or with --retrain run) a full retrain.

    Exit codes: 0 done; 1 the erasure is done but, with --retrain, the retrain request it opened still waits (a model
    trained under another pack's consent rules waits for a run under that pack, one recgov cannot retrain is retrained
    by hand and retired), as for 'recgov retrain run': the output names the command to run; 2 bad input, nothing stored.
    """
    from governance.privacy import erase_subject

    loaded = load_or_fail(pack, json_output=json_output)
    show = progress_enabled(json_output)
    with store_errors():
        if not 0 <= propagate <= MAX_PROPAGATE:
            raise ConfigError(BAD_PROPAGATE.format(max=MAX_PROPAGATE, value=propagate))
        if mapping is not None and retrain is None:
            raise ConfigError(MAP_WITHOUT_DATA.format(option="--retrain"))
        dataset = load_dataset(retrain, mapping, json_output=json_output) if retrain is not None else None
    with store_errors(), opened_store(database_url) as store:
        options = dict(
            pack=loaded, model_path=model or None, models_dir=models_dir, delete_previous=delete_previous,
            measure_residual=residual, propagate=propagate, retrain_data=dataset, measure_carbon=carbon,
            exact=not approximate,
        )  # fmt: skip
        if show:
            with err_console.status("erasing") as status:
                report = erase_subject(store, subject, progress=status.update, **options)
        else:
            report = erase_subject(store, subject, **options)
    if json_output:
        emit_json(report)
    else:
        _print_erasure(report)
    run = report["retrain"]["run"]
    if run is not None and still_waiting(run):  # erased, but the retrain it opened is not done
        raise typer.Exit(code=EXIT_FINDING)


def _print_erasure(report: dict[str, Any]) -> None:
    """The erasure report for a person at a terminal, part by part, in the order it was carried out."""
    r = report["request"]
    _say(
        f"erasure request #{r['id']} {r['status']} in {report['seconds']:.2f} s "
        f"(deadline {r['deadline']}; {r['deadline_basis']})"
    )
    if not report["unlearning"]:
        console.print("no model artifact given or recorded holds the subject: nothing unlearned", highlight=False)
    for step in report["unlearning"]:
        _print_unlearning_step(step)
    _print_models(report["models"])
    _print_unlinked(report)
    _print_suppression(report["suppression"])
    _print_retrain(report["retrain"])
    for request_id in report.get("retrain_requests_settled", []):
        _say(f"retrain request #{request_id} completed: every version it listed was replaced by a model trained without the subjects")
    for item in report["not_done"]:
        _say(f"still to do: {item}")


def _say(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True)


def _print_unlearning_step(step: dict[str, Any]) -> None:
    """One model: what unlearning removed, the residual influence, the stand-in's standing, the old file."""
    if step["status"] != "unlearned":
        _say(f"model {step['previous_version']}: {step['note']}")
        return
    if "family" in step:  # a model family's forget: its own outcome, no ALS figures
        _print_family_step(step)
        return
    how = (
        f"exact erasure: refit without the subject in {step['seconds']:.2f} s"
        if step.get("exact")
        else f"{step['n_items_refreshed']} items re-solved in {step['seconds'] * 1000:.1f} ms"
    )
    _say(
        f"model {step['previous_version']} -> {step['version']}: {step['n_interactions_removed']} interactions removed, "
        f"{how}; artifact {step['artifact']}"
        + ("" if step.get("recorded") else f" ({step.get('recorded_note', 'not recorded')})")
    )
    ri = step["residual_influence"]
    if ri.get("measured"):
        un, orig = ri["unlearned_vs_retrained"], ri["original_vs_retrained"]
        _say(
            f"  residual influence vs a retrain without the subject ({ri['seconds']:.2f} s): top-{ri['k']} Jaccard "
            f"{un['topk_jaccard_mean']:.3f} (original model {orig['topk_jaccard_mean']:.3f}), relative Frobenius "
            f"{un['relative_frobenius']:.4f} (original {orig['relative_frobenius']:.4f})"
        )
    else:
        _say(f"  residual influence not measured: {ri['reason']}")
    standing = step.get("standing")
    if standing and not standing.get("retrain_required", True):
        _say(f"  standing: {standing['standing']}: {standing['reason']}")
    elif standing:
        _say(
            f"  standing: {standing['standing']} until the full retrain (request #{standing['retrain_request']}, due "
            f"{standing['deadline']}) replaces it"
            + ("" if standing["retrainable"] else "; recgov cannot run that retrain (see below)")
        )
    _print_replacement(step)
    if step["previous_artifact_deleted"]:
        console.print(f"  deleted the previous artifact {step['previous_artifact']}", highlight=False)


def _print_replacement(step: dict[str, Any]) -> None:
    """What an exact erasure did with the version the subject was removed from: its stage went to the new one."""
    moved = step.get("replaced_in_serving")
    if moved:
        where = f"takes its place in {moved['stage']}" if moved["stage"] else "is recorded (the old version was in no stage)"
        if moved.get("not_kept"):  # it holds another stage: the one it could not take is said, never left silently
            where = f"takes its place in {moved['stage']}" if moved["stage"] else f"could not also take its place in {moved['not_kept']}"
        _say(f"  {step['version']} {where}; {step['previous_version']} is retired")
    for older in step.get("older_versions_replaced", []):  # older versions of the lineage that listed the subject too
        where = f"takes its place in {older['stage']}" if older["stage"] else "replaces it"
        if older.get("stage_not_kept") and not older["stage"]:
            where = f"replaces it (it could not also take its place in {older['stage_not_kept']})"
        done = f"deleted its artifact {older['artifact']}" if older["artifact_deleted"] else f"its artifact {older['artifact']} could not be deleted (see below)"
        _say(f"  {step['version']} {where}; the older version {older['version']} listed the subject too: it is retired, {done}")


def _print_family_step(step: dict[str, Any]) -> None:
    """One model of another family the subject was removed from: how (exact or approximate), its standing, and
    what became of the version it came from."""
    residual = "" if step.get("residual") is None else f", residual {step['residual']}"
    how = f"{step['erasure']} erasure{residual}"
    if step.get("method") == "family.refit":  # its forget is approximate: an exact erasure refit it without the subject
        how = "refit without the subject, exact"
    _say(
        f"model {step['previous_version']} -> {step['version']} ({step['family']}, {how}) "
        f"in {step['seconds'] * 1000:.1f} ms; artifact {step['artifact']}"
        + ("" if step.get("recorded") else f" ({step.get('recorded_note', 'not recorded')})")
    )
    standing = step.get("standing")
    if standing:
        _say(f"  standing: {standing['standing']}: {standing['reason']}")
    _print_replacement(step)
    if step["previous_artifact_deleted"]:
        _say(f"  deleted the previous artifact {step['previous_artifact']}")
    elif step.get("previous_artifact_note"):
        _say(f"  {step['previous_artifact_note']}")


def _print_models(models: dict[str, Any]) -> None:
    """The recorded model versions that include or may include the subject, and what to do about each."""
    versions = models["versions"]
    if versions:
        print_rows(
            [
                {"model version": v["version_id"], "membership": v["membership"], "action": v["action"]}
                for v in versions
            ],
            title=f"recorded model versions that include or may include the subject ({models['n_checked']} checked)",
        )
    else:
        n_checked = models["n_checked"]
        console.print(f"none of the {n_checked} recorded model versions includes the subject", highlight=False)


def _print_unlinked(report: dict[str, Any]) -> None:
    """What stays under the shredded pseudonym, unlinkable to the person."""
    u = report["unlinked"]
    _say(
        f"crypto-shredded pseudonym {short_pseudonym(report['pseudonym'])}: {u['consent_records']} consent records, "
        f"{u['subject_requests']} requests, {u['decisions']} decisions"
        + (f", {b} batch lists (sealed, unreadable now)" if (b := u.get("batch_decisions")) else "")
        + f" and {u['trail_events']} trail events stay, unlinkable to the person"
        + (f"; {n} outcome events deleted" if (n := (report.get("deleted") or {}).get("outcome_events")) else "")
    )


def _print_suppression(s: dict[str, Any]) -> None:
    """The suppression record that outlives the shredding."""
    denied = ", ".join(f"{p} {d['status']}" for p, d in s["denied"].items()) or "no restriction was in force"
    _say(
        f"suppression record #{s['id']}: events from before {s['erased_at']} are never trained on again; "
        f"kept restrictions: {denied}"
    )


def _print_retrain(retrain_part: dict[str, Any]) -> None:
    """The retrain the erasure calls for: none needed, run at once, or due by its deadline."""
    retrain = retrain_part["request"]
    if retrain is None:
        console.print("no recorded model holds the subject: no retrain is needed", highlight=False)
    elif retrain_part["run"] is not None:
        print_retrain_run(retrain_part["run"])
    else:
        _say(
            f"retrain request #{retrain['id']} due by {retrain['deadline']} ({retrain['deadline_basis']}) for "
            f"{len(retrain['models'])} model version(s)"
        )


def register(app: typer.Typer) -> None:
    """Add ``recgov subject export|erase``."""
    subject_app = typer.Typer(
        help="Data subject requests: access and erasure (GDPR Art. 15, 17).", no_args_is_help=True
    )
    subject_app.command("export")(subject_export)
    subject_app.command("erase")(subject_erase)
    app.add_typer(subject_app, name="subject")
