"""The DPO's commands: ``consent set|show``, ``subject export|erase``, ``retrain due|run``, ``processing-record``.

Thin wrappers over :mod:`governance.privacy` and :mod:`audits`. A subject is
given by the id your systems know them by; recgov stores only its pseudonym, and
no output of these commands repeats the raw id, except the access export itself
(it goes to the subject). Exit codes: 0 done, 2 bad usage or input (unknown
status, a purpose the pack does not list, a missing file, broken data, an
unreachable database), with one line on stderr and nothing stored.
``retrain due`` exits 1 when a retrain is overdue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import console, emit_json, err_console, opened_store, progress_enabled, to_json
from governance.cli.core import DataArg, DatabaseOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli.policy import load_or_fail
from governance.cli.store import store_errors
from recommender.errors import ConfigError

__all__ = ["register"]

SubjectArg = Annotated[
    str,
    typer.Argument(
        metavar="SUBJECT",
        help="The subject's id as your systems know it; recgov stores only its pseudonym.",
        show_default=False,
    ),
]
PackHelp = "Policy pack file, or a shipped pack name (baseline, eu-gdpr-dsa, california-ccpa)."
OptionalPackOpt = Annotated[str | None, typer.Option("--pack", "-p", help=PackHelp, show_default=False)]
RequiredPackOpt = Annotated[str, typer.Option("--pack", "-p", help=PackHelp, show_default=False)]

BAD_CHOICE = "{option} must be one of {allowed}; got {value!r}"
PURPOSE_NOT_IN_PACK = (
    "--purpose {purpose!r} is not a purpose of pack {pack} (its purposes: {listed}); "
    "use one of those, or add the purpose to the pack's consent section"
)
BASIS_NEEDED = (
    "--basis is needed without --pack (one of {allowed}); with --pack it defaults to the purpose's lawful basis"
)
BAD_PROPAGATE = "--propagate must be an integer from 0 to {max}; got {value}"
MAX_PROPAGATE = 10
OUT_FOLDER_MISSING = "--out {out}: the folder {folder} does not exist; create it first"
MAP_WITHOUT_DATA = "--map describes the columns of the {option} DATA; give {option} DATA too"
EVIDENCE_MISSING = "--source {source} claims evidence (GDPR Art. 7(1)): give {option}, {what}"
EVIDENCE_REFUSED = "{option}: {detail}"
EVIDENCE_OF_OTHER_SOURCE = "{option} is evidence of --source {wanted}, not of --source {source}; drop it or change --source"
EVIDENCE_OPTIONS: dict[str, tuple[str, str]] = {
    "banner_version": ("--evidence-banner-version", "banner"),
    "origin": ("--evidence-origin", "import"),
    "tc_string": ("--tc-string", "tcf"),
    "vendor_id": ("--vendor-id", "tcf"),
}
"""Evidence key -> (the ``consent set`` option that gives it, the source it is evidence of)."""
_FIELD_OPTIONS = {"purpose": "--purpose", "basis": "--basis", "source": "--source"}


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise ConfigError(BAD_CHOICE.format(option=option, allowed=", ".join(allowed), value=value))
    return value


_opened = opened_store


def _checked_evidence(source: str, status: str, basis: str, purpose: str, given: dict[str, Any], section: Any) -> dict[str, Any] | None:
    """The evidence to store for a record from ``source``, checked by the rule the API applies
    (:func:`governance.consent.evidence.check_consent_evidence`); a refusal names the option at fault."""
    from governance.consent.evidence import EVIDENCE_KEYS, MSG_MISSING, EvidenceError, check_consent_evidence

    for key, (option, wanted) in EVIDENCE_OPTIONS.items():
        if key in given and wanted != source:
            raise ConfigError(EVIDENCE_OF_OTHER_SOURCE.format(option=option, wanted=wanted, source=source))
    evidence = {"via": "recgov consent set", **given}
    try:
        return check_consent_evidence(
            source=source, status=status, lawful_basis=basis, purpose=purpose, evidence=evidence, section=section
        )
    except EvidenceError as err:
        key, what = EVIDENCE_KEYS.get(source, ("", ""))
        option = EVIDENCE_OPTIONS[key][0] if key in EVIDENCE_OPTIONS else "--evidence"
        if str(err) == MSG_MISSING.format(source=source, key=key, what=what):
            raise ConfigError(EVIDENCE_MISSING.format(source=source, option=option, what=what)) from None
        field = err.field.removeprefix("evidence.")
        option = EVIDENCE_OPTIONS[field][0] if field in EVIDENCE_OPTIONS else _FIELD_OPTIONS.get(err.field, option)
        raise ConfigError(EVIDENCE_REFUSED.format(option=option, detail=err)) from None


def _short(pseudonym: str | None) -> str:
    return f"{pseudonym[:16]}..." if pseudonym else "none (no record under this id)"


# -- consent ---------------------------------------------------------------------------------
def consent_set(
    subject: SubjectArg,
    purpose: Annotated[
        str, typer.Option("--purpose", help="The processing purpose, e.g. personalization.", show_default=False)
    ],
    status: Annotated[
        str, typer.Option("--status", help="granted, denied, withdrawn, opted_out or objected.", show_default=False)
    ],
    basis: Annotated[
        str | None,
        typer.Option(
            "--basis",
            help="consent, legitimate_interest or contract (default with --pack: the purpose's basis).",
            show_default=False,
        ),
    ] = None,
    source: Annotated[str, typer.Option("--source", help="api, banner, tcf, gpc or import.")] = "api",
    jurisdiction: Annotated[
        str | None, typer.Option("--jurisdiction", help="Where the subject is, e.g. EU or US-CA.", show_default=False)
    ] = None,
    evidence: Annotated[
        str | None,
        typer.Option(
            "--evidence",
            help="A note on what proves it (GDPR Art. 7(1)): a ticket, a letter.",
            show_default=False,
        ),
    ] = None,
    banner_version: Annotated[
        str | None,
        typer.Option("--evidence-banner-version", help="With --source banner (required): the consent dialogue's version.", show_default=False),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option("--evidence-origin", help="With --source import (required): where the record was imported from.", show_default=False),
    ] = None,
    tc_string: Annotated[
        str | None,
        typer.Option("--tc-string", help="With --source tcf (required): the IAB TCF v2.2 TC string; it must support --status under the pack's consent.tcf.", show_default=False),
    ] = None,
    vendor_id: Annotated[
        int | None,
        typer.Option("--vendor-id", help="With --source tcf: our IAB vendor id, where the pack sets no consent.tcf.vendor_id.", show_default=False),
    ] = None,
    pack: OptionalPackOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Append a consent record for SUBJECT (a withdrawal is a new record; nothing is overwritten)."""
    from audits import record_consent
    from audits.models import CONSENT_SOURCES, CONSENT_STATUSES, LAWFUL_BASES
    from governance.privacy import record_consent_under_pack

    with store_errors():
        _choice(status, CONSENT_STATUSES, "--status")
        _choice(source, CONSENT_SOURCES, "--source")
        if basis is not None:
            _choice(basis, LAWFUL_BASES, "--basis")
        if pack is not None:
            loaded = load_or_fail(pack, json_output=json_output)
            purposes = loaded.pack.consent.purposes
            if purpose not in purposes:
                listed = ", ".join(sorted(purposes)) or "none"
                raise ConfigError(PURPOSE_NOT_IN_PACK.format(purpose=purpose, pack=loaded.name, listed=listed))
            basis = basis or purposes[purpose].lawful_basis
        elif basis is None:
            raise ConfigError(BASIS_NEEDED.format(allowed=", ".join(LAWFUL_BASES)))
        given = {"note": evidence, "banner_version": banner_version, "origin": origin, "tc_string": tc_string, "vendor_id": vendor_id}
        section = loaded.pack.consent if pack is not None else None
        proof = _checked_evidence(source, status, basis, purpose, {k: v for k, v in given.items() if v is not None}, section)
        with _opened(database_url) as store, store.session() as session:
            erasure = None
            if pack is not None:  # what the pack says follows (erase_on_withdrawal), in the same transaction
                row, erasure = record_consent_under_pack(
                    session, loaded, subject_id=subject, purpose=purpose, status=status, lawful_basis=basis,
                    source=source, evidence=proof, jurisdiction=jurisdiction,
                )  # fmt: skip
            else:
                row = record_consent(
                    session,
                    subject_id=subject,
                    purpose=purpose,
                    status=status,
                    lawful_basis=basis,
                    source=source,
                    evidence=proof,
                    jurisdiction=jurisdiction,
                )
            doc = {
                "erasure_request": None
                if erasure is None
                else {"id": erasure.id, "status": erasure.status, "deadline": erasure.deadline.isoformat()},
                "recorded": {
                    "id": row.id,
                    "subject": row.subject,
                    "purpose": row.purpose,
                    "status": row.status,
                    "lawful_basis": row.lawful_basis,
                    "source": row.source,
                    "jurisdiction": row.jurisdiction,
                    "evidence": row.evidence,
                    "recorded_at": row.recorded_at.isoformat(),
                    "trail_seq": row.trail_seq,
                }
            }
    if json_output:
        emit_json(doc)
        return
    r = doc["recorded"]
    console.print(
        f"recorded consent #{r['id']}: {r['purpose']} {r['status']} (basis {r['lawful_basis']}, source {r['source']}) "
        f"for pseudonym {_short(r['subject'])}, trail event {r['trail_seq']}",
        highlight=False,
        soft_wrap=True,
    )
    if doc["erasure_request"] is not None:
        e = doc["erasure_request"]
        console.print(
            f"the pack erases on withdrawal: erasure request {e['id']} is open, due {e['deadline']} "
            "(carry it out with 'recgov subject erase')",
            highlight=False,
            soft_wrap=True,
        )


def consent_show(
    subject: SubjectArg,
    pack: OptionalPackOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show SUBJECT's consent history, the record in force per purpose and (with --pack) whether each purpose may profile them."""
    from governance.privacy import show_consent

    loaded = load_or_fail(pack, json_output=json_output) if pack is not None else None
    with store_errors(), _opened(database_url) as store:
        doc = show_consent(store, subject, pack=loaded)
    profiling = doc["profiling"]
    if json_output:
        emit_json(doc)
        return
    console.print(f"pseudonym {_short(doc['subject'])}: {len(doc['history'])} consent record(s)", highlight=False)
    print_rows(
        [
            {
                "recorded_at": h["recorded_at"],
                "purpose": h["purpose"],
                "status": h["status"],
                "basis": h["lawful_basis"],
                "source": h["source"],
                "jurisdiction": h["jurisdiction"] or "-",
            }
            for h in doc["history"]
        ],
        title="history (oldest first)",
    )
    for purpose, entry in doc["in_force"].items():
        console.print(f"in force: {purpose} {entry['status']} since {entry['recorded_at']}", highlight=False)
    for purpose, decision in (profiling or {}).items():
        verdict = "may profile" if decision["allowed"] else "may NOT profile"
        console.print(f"{purpose}: {verdict}: {decision['reason']}", highlight=False, soft_wrap=True)


# -- subject requests ------------------------------------------------------------------------
def subject_export(
    subject: SubjectArg,
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
        with _opened(database_url) as store:
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
        f"{c['interactions']} interactions, {c['decisions']} decisions, {c['trail_events']} trail events, "
        f"{c['models']} model versions); send it to the subject by a secure channel",
        highlight=False,
        soft_wrap=True,
    )


def subject_erase(
    subject: SubjectArg,
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
            help="Sweeps re-solving the users who share the subject's items, then the items (0: the items only).",
        ),
    ] = 1,
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
    keep their restrictions in a suppression record, and call for (or with --retrain run) a full retrain."""
    from governance.privacy import erase_subject

    loaded = load_or_fail(pack, json_output=json_output)
    show = progress_enabled(json_output)
    with store_errors():
        if not 0 <= propagate <= MAX_PROPAGATE:
            raise ConfigError(BAD_PROPAGATE.format(max=MAX_PROPAGATE, value=propagate))
        if mapping is not None and retrain is None:
            raise ConfigError(MAP_WITHOUT_DATA.format(option="--retrain"))
        dataset = load_dataset(retrain, mapping, json_output=json_output) if retrain is not None else None
    with store_errors(), _opened(database_url) as store:
        options = dict(
            pack=loaded, model_path=model or None, models_dir=models_dir, delete_previous=delete_previous,
            measure_residual=residual, propagate=propagate, retrain_data=dataset, measure_carbon=carbon,
        )  # fmt: skip
        if show:
            with err_console.status("erasing") as status:
                report = erase_subject(store, subject, progress=status.update, **options)
        else:
            report = erase_subject(store, subject, **options)
    if json_output:
        emit_json(report)
        return
    _print_erasure(report)


def _print_erasure(report: dict[str, Any]) -> None:
    r = report["request"]
    console.print(
        f"erasure request #{r['id']} {r['status']} in {report['seconds']:.2f} s (deadline {r['deadline']}; {r['deadline_basis']})",
        highlight=False,
        soft_wrap=True,
    )
    if not report["unlearning"]:
        console.print("no model artifact given or recorded holds the subject: nothing unlearned", highlight=False)
    for step in report["unlearning"]:
        if step["status"] != "unlearned":
            console.print(f"model {step['previous_version']}: {step['note']}", highlight=False, soft_wrap=True)
            continue
        console.print(
            f"model {step['previous_version']} -> {step['version']}: {step['n_interactions_removed']} interactions removed, "
            f"{step['n_items_refreshed']} items re-solved in {step['seconds'] * 1000:.1f} ms; artifact {step['artifact']}"
            + ("" if step.get("recorded") else f" ({step.get('recorded_note', 'not recorded')})"),
            highlight=False,
            soft_wrap=True,
        )
        ri = step["residual_influence"]
        if ri.get("measured"):
            un, orig = ri["unlearned_vs_retrained"], ri["original_vs_retrained"]
            console.print(
                f"  residual influence vs a retrain without the subject ({ri['seconds']:.2f} s): top-{ri['k']} Jaccard "
                f"{un['topk_jaccard_mean']:.3f} (original model {orig['topk_jaccard_mean']:.3f}), relative Frobenius "
                f"{un['relative_frobenius']:.4f} (original {orig['relative_frobenius']:.4f})",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(f"  residual influence not measured: {ri['reason']}", highlight=False, soft_wrap=True)
        standing = step.get("standing")
        if standing:
            console.print(
                f"  standing: {standing['standing']} until the full retrain (request #{standing['retrain_request']}, due "
                f"{standing['deadline']}) replaces it"
                + ("" if standing["retrainable"] else "; recgov cannot run that retrain (see below)"),
                highlight=False,
                soft_wrap=True,
            )
        if step["previous_artifact_deleted"]:
            console.print(f"  deleted the previous artifact {step['previous_artifact']}", highlight=False)
    versions = report["models"]["versions"]
    if versions:
        print_rows(
            [
                {"model version": v["version_id"], "membership": v["membership"], "action": v["action"]}
                for v in versions
            ],
            title=f"recorded model versions that include or may include the subject ({report['models']['n_checked']} checked)",
        )
    else:
        console.print(
            f"none of the {report['models']['n_checked']} recorded model versions includes the subject", highlight=False
        )
    u = report["unlinked"]
    console.print(
        f"crypto-shredded pseudonym {_short(report['pseudonym'])}: {u['consent_records']} consent records, "
        f"{u['subject_requests']} requests, {u['decisions']} decisions and {u['trail_events']} trail events "
        "stay, unlinkable to the person",
        highlight=False,
        soft_wrap=True,
    )
    s = report["suppression"]
    denied = ", ".join(f"{p} {d['status']}" for p, d in s["denied"].items()) or "no restriction was in force"
    console.print(
        f"suppression record #{s['id']}: events from before {s['erased_at']} are never trained on again; "
        f"kept restrictions: {denied}",
        highlight=False,
        soft_wrap=True,
    )
    retrain = report["retrain"]["request"]
    if retrain is None:
        console.print("no recorded model holds the subject: no retrain is needed", highlight=False)
    elif report["retrain"]["run"] is not None:
        _print_retrain_run(report["retrain"]["run"])
    else:
        console.print(
            f"retrain request #{retrain['id']} due by {retrain['deadline']} ({retrain['deadline_basis']}) for "
            f"{len(retrain['models'])} model version(s)",
            highlight=False,
            soft_wrap=True,
        )
    for item in report["not_done"]:
        console.print(f"still to do: {item}", highlight=False, soft_wrap=True)


# -- retrains ----------------------------------------------------------------------------------
def retrain_due(
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the open retrains erasures called for, with their deadlines (exit 1 if one is overdue)."""
    from governance.privacy import pending_retrains

    with store_errors(), _opened(database_url) as store:
        doc = pending_retrains(store)
    if json_output:
        emit_json(doc)
    elif not doc["pending"]:
        console.print("no retrain is due", highlight=False)
    else:
        print_rows(
            [
                {
                    "request": str(e["id"]),
                    "erasure": str(e["erasure_request"]),
                    "deadline": e["deadline"],
                    "days left": f"{e['days_left']:.1f}",
                    "overdue": "OVERDUE" if e["overdue"] else "",
                    "model versions": ", ".join(v + (" (provisional)" if v in e["provisional"] else "") for v in e["models"]),
                }
                for e in doc["pending"]
            ],
            title=(
                f"{len(doc['pending'])} retrain(s) due, {doc['overdue']} overdue: recgov retrain run DATA --pack PACK"
            ),
        )
    if doc["overdue"]:
        raise typer.Exit(code=1)


def retrain_run(
    data: DataArg,
    pack: RequiredPackOpt,
    mapping: MapOpt = None,
    request: Annotated[
        list[int] | None,
        typer.Option(
            "--request", help="Run only this retrain request (repeat); default: every open one.", show_default=False
        ),
    ] = None,
    carbon: Annotated[
        bool, typer.Option("--carbon/--no-carbon", help="Measure energy and emissions with codecarbon.")
    ] = True,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the open retrains: train from DATA, without erased subjects, with the recipe of each model to replace."""
    from governance.privacy import run_retrains

    loaded = load_or_fail(pack, json_output=json_output)
    with store_errors():
        dataset = load_dataset(data, mapping, json_output=json_output)
        with _opened(database_url) as store:
            doc = run_retrains(
                store,
                dataset,
                pack=loaded,
                request_ids=request or None,
                measure_carbon=carbon,
                show_progress=progress_enabled(json_output),
            )
    if json_output:
        emit_json(doc)
        return
    _print_retrain_run(doc)


def _print_retrain_run(doc: dict[str, Any]) -> None:
    if not doc["requests"]:
        console.print(doc["note"], highlight=False)
        return
    for entry in doc["retrained"]:
        events = entry.get("events") or {}
        console.print(
            f"retrained model {entry['version']} (recipe of {entry['recipe_of']}, {events.get('kept', 0):,} of "
            f"{events.get('total', 0):,} events) replaces {', '.join(entry['replaces'])}"
            + (
                f" (provisional unlearned version(s) {', '.join(entry['replaces_provisional'])}: their standing ends)"
                if entry.get("replaces_provisional")
                else ""
            ),
            highlight=False,
            soft_wrap=True,
        )
    for entry in doc.get("cannot_retrain", []):
        console.print(entry["message"], highlight=False, soft_wrap=True)
    ids = ", ".join(f"#{r['id']}" for r in doc["requests"])
    console.print(f"completed retrain request(s) {ids}; {doc['note']}", highlight=False, soft_wrap=True)


# -- records of processing -------------------------------------------------------------------
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
    with store_errors(), _opened(database_url) as store:
        doc = processing_record(loaded, store, recipients=recipient or None)
    if json_output:
        emit_json(doc)
        return
    console.print(
        f"[bold]Record of processing activities[/] (GDPR Art. 30): pack {doc['pack']} {doc['pack_version']}, controller {doc['controller']}",
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
    """Add ``recgov consent``, ``recgov subject``, ``recgov retrain`` and ``recgov processing-record``."""
    consent_app = typer.Typer(
        help="Consent records: append and show (GDPR Art. 6, 7, 21; CCPA §1798.120).", no_args_is_help=True
    )
    consent_app.command("set")(consent_set)
    consent_app.command("show")(consent_show)
    app.add_typer(consent_app, name="consent")
    subject_app = typer.Typer(
        help="Data subject requests: access and erasure (GDPR Art. 15, 17).", no_args_is_help=True
    )
    subject_app.command("export")(subject_export)
    subject_app.command("erase")(subject_erase)
    app.add_typer(subject_app, name="subject")
    retrain_app = typer.Typer(
        help="Full retrains after erasure: what is due, and running them (GDPR Art. 17; CCPA §1798.105).",
        no_args_is_help=True,
    )
    retrain_app.command("due")(retrain_due)
    retrain_app.command("run")(retrain_run)
    app.add_typer(retrain_app, name="retrain")
    app.command("processing-record")(processing_record_command)
