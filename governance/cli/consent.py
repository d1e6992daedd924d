"""The consent commands: ``recgov consent set`` appends a record, ``recgov consent show`` reads them;
``consent import`` and ``consent synth-export`` (:mod:`governance.cli.consent_import`) work in bulk.

Thin wrappers over :mod:`governance.privacy.consent` and :mod:`audits`. A
subject is given by the id your systems know them by; recgov stores only its
pseudonym and no output repeats the raw id. A record claiming evidence (a
banner, an import, a TCF string) is checked by the rule the API applies, and a
refusal names the option at fault. Exit codes: 0 done, 2 bad usage or input
(unknown status, a purpose the pack does not list, an unreachable database),
with one line on stderr and nothing stored.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from governance.cli._common import OptionalPackOpt, SubjectArg, console, emit_json, opened_store, short_pseudonym
from governance.cli.core import DatabaseOpt, JsonOpt, print_rows
from governance.cli.policy import load_or_fail
from governance.cli.store import store_errors
from recommender.errors import ConfigError

__all__ = ["register"]

BAD_CHOICE = "{option} must be one of {allowed}; got {value!r}"
PURPOSE_NOT_IN_PACK = (
    "--purpose {purpose!r} is not a purpose of pack {pack} (its purposes: {listed}); "
    "use one of those, or add the purpose to the pack's consent section"
)
BASIS_NEEDED = (
    "--basis is needed without --pack (one of {allowed}); with --pack it defaults to the purpose's lawful basis"
)
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


def _other_source(source: str, given: dict[str, Any]) -> None:
    """Refuse evidence options of another source than --source."""
    for key, (option, wanted) in EVIDENCE_OPTIONS.items():
        if key in given and wanted != source:
            raise ConfigError(EVIDENCE_OF_OTHER_SOURCE.format(option=option, wanted=wanted, source=source))


def _checked_change(loaded: Any, purpose: str, status: str, source: str, basis: str | None, given: dict[str, Any]) -> Any:
    """The record checked by the one rule the API applies (:func:`governance.privacy.consent.check_consent_change`),
    its refusals said in the command's terms: the option at fault."""
    from governance.consent.evidence import EVIDENCE_KEYS, MSG_MISSING, EvidenceError
    from governance.privacy.consent import BasisRequired, UnlistedConsentPurpose, check_consent_change

    try:
        change = check_consent_change(
            loaded, purpose=purpose, status=status, source=source, lawful_basis=basis,
            evidence={"via": "recgov consent set", **given},
        )  # fmt: skip
    except UnlistedConsentPurpose as err:
        raise ConfigError(PURPOSE_NOT_IN_PACK.format(purpose=err.purpose, pack=err.pack, listed=err.listed)) from None
    except BasisRequired as err:
        raise ConfigError(BASIS_NEEDED.format(allowed=", ".join(err.allowed))) from None
    except EvidenceError as err:
        _other_source(source, given)
        key, what = EVIDENCE_KEYS.get(source, ("", ""))
        option = EVIDENCE_OPTIONS[key][0] if key in EVIDENCE_OPTIONS else "--evidence"
        if str(err) == MSG_MISSING.format(source=source, key=key, what=what):
            raise ConfigError(EVIDENCE_MISSING.format(source=source, option=option, what=what)) from None
        field = err.field.removeprefix("evidence.")
        option = EVIDENCE_OPTIONS[field][0] if field in EVIDENCE_OPTIONS else _FIELD_OPTIONS.get(err.field, option)
        raise ConfigError(EVIDENCE_REFUSED.format(option=option, detail=err)) from None
    _other_source(source, given)
    return change


# The options of ``consent set``, named once so the command reads as its steps.
PurposeOpt = Annotated[str, typer.Option("--purpose", help="The processing purpose, e.g. personalization.", show_default=False)]
StatusOpt = Annotated[str, typer.Option("--status", help="granted, denied, withdrawn, opted_out or objected.", show_default=False)]
BasisOpt = Annotated[
    str | None,
    typer.Option("--basis", help="consent, legitimate_interest or contract (default with --pack: the purpose's basis).", show_default=False),
]
SourceOpt = Annotated[str, typer.Option("--source", help="api, banner, tcf, gpc or import.")]
JurisdictionOpt = Annotated[str | None, typer.Option("--jurisdiction", help="Where the subject is, e.g. EU or US-CA.", show_default=False)]
NoteOpt = Annotated[
    str | None, typer.Option("--evidence", help="A note on what proves it (GDPR Art. 7(1)): a ticket, a letter.", show_default=False)
]
BannerVersionOpt = Annotated[
    str | None,
    typer.Option("--evidence-banner-version", help="With --source banner (required): the consent dialogue's version.", show_default=False),
]
OriginOpt = Annotated[
    str | None,
    typer.Option("--evidence-origin", help="With --source import (required): where the record was imported from.", show_default=False),
]
TcStringOpt = Annotated[
    str | None,
    typer.Option("--tc-string", help="With --source tcf (required): the IAB TCF v2.2 TC string; it must support --status under the pack's consent.tcf.", show_default=False),
]
VendorIdOpt = Annotated[
    int | None,
    typer.Option("--vendor-id", help="With --source tcf: our IAB vendor id, where the pack sets no consent.tcf.vendor_id.", show_default=False),
]


def consent_set(
    subject: SubjectArg,
    purpose: PurposeOpt,
    status: StatusOpt,
    basis: BasisOpt = None,
    source: SourceOpt = "api",
    jurisdiction: JurisdictionOpt = None,
    evidence: NoteOpt = None,
    banner_version: BannerVersionOpt = None,
    origin: OriginOpt = None,
    tc_string: TcStringOpt = None,
    vendor_id: VendorIdOpt = None,
    pack: OptionalPackOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Append a consent record for SUBJECT (a withdrawal is a new record; nothing is overwritten)."""
    from audits.models import CONSENT_SOURCES, CONSENT_STATUSES, LAWFUL_BASES
    from governance.privacy.consent import check_consent_change, record_consent_change

    with store_errors():
        _choice(status, CONSENT_STATUSES, "--status")
        _choice(source, CONSENT_SOURCES, "--source")
        if basis is not None:
            _choice(basis, LAWFUL_BASES, "--basis")
        loaded = load_or_fail(pack, json_output=json_output) if pack is not None else None
        given = {"note": evidence, "banner_version": banner_version, "origin": origin, "tc_string": tc_string, "vendor_id": vendor_id}
        change = _checked_change(loaded, purpose, status, source, basis, {k: v for k, v in given.items() if v is not None})
        with opened_store(database_url) as store, store.session() as session:
            done = record_consent_change(session, loaded, change, subject_id=subject, jurisdiction=jurisdiction)
            row = done.record
            recorded = {
                "id": row.id, "subject": row.subject, "purpose": row.purpose, "status": row.status,
                "lawful_basis": row.lawful_basis, "source": row.source, "jurisdiction": row.jurisdiction,
                "evidence": row.evidence, "recorded_at": row.recorded_at.isoformat(), "trail_seq": row.trail_seq,
            }  # fmt: skip
            doc = {"erasure_request": done.erasure_json(), "recorded": recorded}
    if json_output:
        emit_json(doc)
        return
    r = doc["recorded"]
    console.print(
        f"recorded consent #{r['id']}: {r['purpose']} {r['status']} (basis {r['lawful_basis']}, source {r['source']}) "
        f"for pseudonym {short_pseudonym(r['subject'])}, trail event {r['trail_seq']}",
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
    with store_errors(), opened_store(database_url) as store:
        doc = show_consent(store, subject, pack=loaded)
    profiling = doc["profiling"]
    if json_output:
        emit_json(doc)
        return
    console.print(f"pseudonym {short_pseudonym(doc['subject'])}: {len(doc['history'])} consent record(s)", highlight=False)
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


def register(app: typer.Typer) -> None:
    """Add ``recgov consent set|show|import|synth-export``."""
    from governance.cli.consent_import import register_import_commands

    consent_app = typer.Typer(
        help="Consent records: append, show and import in bulk (GDPR Art. 6, 7, 21; CCPA §1798.120).", no_args_is_help=True
    )
    consent_app.command("set")(consent_set)
    consent_app.command("show")(consent_show)
    register_import_commands(consent_app)
    app.add_typer(consent_app, name="consent")
