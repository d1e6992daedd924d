"""Store commands: ``db upgrade|downgrade|current``, ``trail ...`` and ``lineage``.

Thin wrappers over :mod:`audits`. Exit codes: 0 success (the trail and every
record it anchors are intact), 1 the trail is broken or a record it anchors no
longer matches it (nothing is signed then), 2 bad usage or input (unreachable database, unknown
revision, unknown model version, unreadable key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from governance.cli._common import (
    EXIT_FINDING,
    console,
    emit_json,
    err_console,
    fail,
    progress_enabled,
    user_errors,
)

__all__ = ["register"]

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the store. Default: RECGOV_DATABASE_URL, else $RECGOV_HOME/recgov.db.",
        show_default=False,
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
KeyPath = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Ed25519 private signing key (PEM). "
        "Default: RECGOV_SIGNING_KEY_PATH, else $RECGOV_HOME/keys/signing-key.pem.",
        show_default=False,
    ),
]

db_app = typer.Typer(help="The store's schema (Alembic migrations).", no_args_is_help=True)
trail_app = typer.Typer(help="The tamper-evident audit trail: verify, sign, export.", no_args_is_help=True)


@contextmanager
def store_errors() -> Iterator[None]:
    """recgov errors, database errors and file errors: one line on stderr, exit 2."""
    from audits.db import describe_db_error

    with user_errors():
        try:
            yield
        except SQLAlchemyError as err:
            raise fail(f"database error: {describe_db_error(err)}") from None
        except OSError as err:
            raise fail(f"{err.strerror or err}: {err.filename or ''}".rstrip(": ")) from None


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn(label), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(), console=err_console, transient=True
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield advance


def _verify(url: str | None, json_output: bool, given: dict[str, Any]) -> Any:
    """The store's report (:func:`audits.verify.verify_store`): the chain, and the records anchored in it that no
    longer match it (a row changed behind the database's back breaks its anchor even though the chain is intact);
    checkpoints checked with the installation's keys and ``given``."""
    from audits import open_store, verify_store
    from audits.keys import installation_public_keys

    store = open_store(url)
    try:
        trusted = {**installation_public_keys(store.settings), **given}
        with store.snapshot() as connection, _progress(progress_enabled(json_output), "verifying") as progress:
            return verify_store(connection, trusted_keys=trusted, progress=progress)
    finally:
        store.close()


def _public_keys(paths: list[Path]) -> dict[str, Any]:
    """The Ed25519 public keys in ``paths`` by key id; a file that is not one is a located error."""
    from audits.keys import key_id_of, load_public_key
    from recommender.errors import DataError

    keys: dict[str, Any] = {}
    for path in paths:
        try:
            key = load_public_key(path.read_bytes())
        except (DataError, OSError) as err:  # located: which of the files is wrong
            reason = err.strerror if isinstance(err, OSError) else err
            raise DataError(f"{path}: {reason}") from None
        keys[key_id_of(key)] = key
    return keys


def _print_report(report: Any, json_output: bool) -> None:
    """A report (:class:`audits.verify.StoreReport`, or an export's :class:`audits.verify.TrailReport`), as JSON or lines."""
    if json_output:
        emit_json(report.to_dict())
        return
    for line in report.lines() if hasattr(report, "lines") else [report.summary()]:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


# -- db ------------------------------------------------------------------------------------


def _revision_state(engine: Any) -> dict[str, Any]:
    from audits.db import masked_url
    from audits.migrate import current_revision, head_revision

    current, head = current_revision(engine), head_revision()
    return {"database": masked_url(engine.url), "current": current, "head": head, "up_to_date": current == head}


def _print_state(state: dict[str, Any], json_output: bool, verb: str = "is") -> None:
    if json_output:
        emit_json(state)
        return
    where = state["current"] or "base (no tables)"
    suffix = " (head)" if state["up_to_date"] else f" (head is {state['head']})"
    console.print(f"{state['database']} {verb} at revision {where}{suffix}", highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """Create or upgrade the store's schema (default: to the newest revision)."""
    from audits.db import open_store
    from audits.migrate import upgrade

    with store_errors():
        store = open_store(database_url, upgrade=False)
        try:
            upgrade(store.engine, revision)
            _print_state(_revision_state(store.engine), json_output, "is now")
        finally:
            store.close()


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops every store table.")],
    database_url: DatabaseUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """Downgrade the store's schema to REVISION (e.g. 0001, -1, base). Drops data of removed tables."""
    from audits.db import open_store
    from audits.migrate import downgrade

    with store_errors():
        store = open_store(database_url, upgrade=False)
        try:
            downgrade(store.engine, revision)
            _print_state(_revision_state(store.engine), json_output, "is now")
        finally:
            store.close()


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None, json_output: JsonOutput = False) -> None:
    """Show the store's schema revision and whether it is the newest."""
    from audits.db import open_store

    with store_errors():
        store = open_store(database_url, upgrade=False)
        try:
            _print_state(_revision_state(store.engine), json_output)
        finally:
            store.close()


# -- trail ---------------------------------------------------------------------------------


@trail_app.command("verify")
def trail_verify(
    database_url: DatabaseUrl = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="Also trust this Ed25519 public key (PEM) for checkpoints, beside the keys in this installation's keys "
            "folder (another host's signer); repeat it for several.",
        ),
    ] = None,
    json_output: JsonOutput = False,
) -> None:
    """Walk the whole chain and the signed checkpoints, and check every record the trail anchors; exit 1 on a break.

    Checkpoints are checked with the keys this installation holds (its keys folder) and any --public-key: one
    signed by another key (which anyone who can write the database could have added) breaks the verification.
    Where neither gives a key, the database's keys are used and the report says so."""
    with store_errors():
        given = _public_keys(public_key or [])
        report = _verify(database_url, json_output, given)
    _print_report(report, json_output)
    if not report.intact:
        raise typer.Exit(code=EXIT_FINDING)


def _checkpoint(url: str | None, key_path: Path | None, json_output: bool) -> Any:
    """Verify, then sign the head. Returns (report, checkpoint or None)."""
    from audits import load_signing_key, open_store
    from audits.verify import verify_and_checkpoint

    key = load_signing_key(key_path)
    store = open_store(url)
    try:
        with _progress(progress_enabled(json_output), "verifying") as progress:
            return verify_and_checkpoint(store, key, progress=progress)
    finally:
        store.close()


def _refusal(report: Any) -> str:
    """Why nothing was signed: a broken chain, or records that disagree with the trail."""
    if not report.trail.intact:
        return "refusing to sign a broken trail"
    return f"refusing to sign: {len(report.anchored_problems)} problem(s) with records the trail anchors"


@trail_app.command("checkpoint")
def trail_checkpoint(database_url: DatabaseUrl = None, key: KeyPath = None, json_output: JsonOutput = False) -> None:
    """Verify the trail and every record it anchors, then sign its head with the Ed25519 key (created on first use)."""
    with store_errors():
        report, checkpoint = _checkpoint(database_url, key, json_output)
    if checkpoint is None:
        _print_report(report, json_output)
        err_console.print(_refusal(report), highlight=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_FINDING)
    if json_output:
        emit_json(checkpoint.to_dict())
    else:
        console.print(
            f"signed seq {checkpoint.seq} (hash {checkpoint.hash[:16]}) at {checkpoint.time} "
            f"with key {checkpoint.key_id}",
            highlight=False,
        )


@trail_app.command("export")
def trail_export(
    out: Annotated[Path, typer.Argument(help="The JSON-lines file to write.")],
    database_url: DatabaseUrl = None,
    key: KeyPath = None,
    checkpoint: Annotated[
        bool, typer.Option(help="Verify and sign the head first, so the export is signed to its end.")
    ] = True,
    json_output: JsonOutput = False,
) -> None:
    """Export the trail, its checkpoints and public keys as JSON lines for an external auditor; the header (the export's extent) is signed."""
    from audits import export_trail, load_signing_key, open_store
    from audits.checkpoints import register_signing_key
    from audits.settings import get_settings

    with store_errors():
        signed = None
        if checkpoint:
            report, signed = _checkpoint(database_url, key, json_output)
            if signed is None:
                _print_report(report, json_output)
                err_console.print(
                    f"{_refusal(report)}; use --no-checkpoint to export it as it is", highlight=False, soft_wrap=True
                )
                raise typer.Exit(code=EXIT_FINDING)
        signing_key = load_signing_key(key)
        store = open_store(database_url)
        try:
            with store.session() as session:
                register_signing_key(session, signing_key)
            with store.snapshot() as connection, _progress(progress_enabled(json_output), "exporting") as progress:
                # up to the head just signed: events appended since would be an unsigned tail
                through = None if signed is None else signed.seq
                summary = export_trail(connection, out, signing_key=signing_key, through=through, progress=progress)
        finally:
            store.close()
    document = summary.to_dict()
    document["public_key_file"] = str(get_settings().keys_dir / f"{signing_key.key_id}.pub.pem")
    if json_output:
        emit_json(document)
        return
    console.print(
        f"wrote {summary.n_events} events and {summary.checkpoints} checkpoint(s) to {summary.path}", highlight=False
    )
    console.print(
        f"give the auditor the public key {document['public_key_file']} (key {signing_key.key_id}) "
        "by a separate channel; "
        f"they check with: recgov trail verify-export {summary.path} --public-key KEY.pem",
        highlight=False,
        soft_wrap=True,
    )


@trail_app.command("verify-export")
def trail_verify_export(
    export: Annotated[Path, typer.Argument(help="An export written by `recgov trail export`.")],
    public_key: Annotated[
        list[Path],
        typer.Option(
            "--public-key",
            help="The signer's Ed25519 public key (PEM); repeat it for several (keys before and after a rotation).",
        ),
    ],
    unsigned_tail: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned-tail",
            help="Accept events after the last checkpoint the key signed (no verification of the store vouches for "
            "them); by default they fail the verification.",
        ),
    ] = False,
    unsigned_header: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned-header",
            help="Accept a version 1 export, whose header is unsigned: it proves events up to its last checkpoint "
            "only, not where the file ends; by default it fails the verification.",
        ),
    ] = False,
    json_output: JsonOutput = False,
) -> None:
    """Verify an export offline (no database): its signed header, the chain, and a checkpoint signed by PUBLIC_KEY that covers its last event."""
    from audits import verify_export
    from audits.keys import load_public_key
    from recommender.errors import DataError

    with store_errors():
        pems = []
        for path in public_key:
            try:
                pem = path.read_bytes()
                load_public_key(pem)
            except (DataError, OSError) as err:  # located: which of the files is wrong
                reason = err.strerror if isinstance(err, OSError) else err
                raise DataError(f"{path}: {reason}") from None
            pems.append(pem)
        try:
            report = verify_export(
                export, pems, signed_to_the_end=not unsigned_tail, signed_header=not unsigned_header
            )
        except DataError as err:
            raise DataError(f"{export}: {err}") from None
    _print_report(report, json_output)
    if not report.intact:
        raise typer.Exit(code=EXIT_FINDING)


@trail_app.command("rotate-key")
def trail_rotate_key(key: KeyPath = None, json_output: JsonOutput = False) -> None:
    """Replace the signing key with a new one (new key id); old checkpoints stay verifiable."""
    from audits import rotate_signing_key
    from audits.settings import get_settings

    with store_errors():
        old, new = rotate_signing_key(key)
    document = {
        "old_key_id": old,
        "new_key_id": new.key_id,
        "private_key": str(new.path),
        "public_key_file": str(get_settings().keys_dir / f"{new.key_id}.pub.pem"),
    }
    if json_output:
        emit_json(document)
    else:
        console.print(f"new signing key {new.key_id} at {new.path} (was {old or 'none'})", highlight=False)


@trail_app.command("public-key")
def trail_public_key(key: KeyPath = None) -> None:
    """Print the public key (PEM) of the signing key, to hand to auditors."""
    from audits import load_signing_key

    with store_errors():
        signing = load_signing_key(key, create=False)
    typer.echo(signing.public_key_pem, nl=False)


# -- lineage -------------------------------------------------------------------------------


def _print_lineage(chain: dict[str, Any]) -> None:
    model, run, data = chain["model_version"], chain["training_run"], chain["dataset_version"]
    lines = [
        f"model version  {model['version_id']} ({model['kind']}), "
        f"artifact {model['artifact_hash']} at {model['artifact_location']}",
        f"trained by     run {run['id']}, {run['started_at']} to {run['ended_at']}, "
        f"code {run['code_version'] or 'unknown'}",
        f"               params {run['params']}",
        f"from data      {data['name']} {data['content_hash']}: {data['n_events']} events, {data['n_users']} users, "
        f"{data['n_items']} items, from {data['source']}",
    ]
    if run["carbon_method"]:
        lines.append(f"carbon         {run['energy_kwh']} kWh, {run['emissions_kg']} kg CO2eq ({run['carbon_method']})")
    for audit in chain["audit_runs"] or [None]:
        if audit is None:
            lines.append("audits         none")
            continue
        lines.append(
            f"audit          {audit['policy_pack']}@{audit['policy_version']} ({audit['policy_hash']}): "
            f"{audit['verdict']} at {audit['ended_at']}"
        )
    stages = " -> ".join(f"{d['stage']} ({d['changed_at']})" for d in chain["deployments"]) or "never deployed"
    lines.append(f"deployments    {stages}")
    lines.append("trail events   " + ", ".join(f"{e['seq']} {e['action']}" for e in chain["trail"]))
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


def lineage(
    model_version: Annotated[str, typer.Argument(help="The model version id.")],
    database_url: DatabaseUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """Show a model version's chain from data to deployments."""
    from audits import lineage_of, open_store

    with store_errors():
        store = open_store(database_url)
        try:
            with store.session() as session:
                chain = lineage_of(session, model_version)
        finally:
            store.close()
    if json_output:
        emit_json(chain)
    else:
        _print_lineage(chain)


def register(app: typer.Typer) -> None:
    """Add ``db``, ``trail`` and ``lineage`` to ``app``."""
    app.add_typer(db_app, name="db")
    app.add_typer(trail_app, name="trail")
    app.command("lineage")(lineage)
