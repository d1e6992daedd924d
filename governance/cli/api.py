"""``recgov serve`` (the REST API under uvicorn) and ``recgov keys create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer

from governance.cli._common import console, emit_json, err_console, opened_store, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt, print_rows

__all__ = ["register"]

TOKEN_NOTICE = "store this token now: it is shown once and recgov keeps only its SHA-256"


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    database_url: DatabaseOpt = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Write uvicorn's access log (subject ids in paths masked; client addresses as RECGOV_ACCESS_LOG_CLIENTS says: pseudonymize by default, drop, or keep).",
        ),
    ] = False,
) -> None:
    """Run the REST API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from governance.api import ApiSettings, create_app

    with user_errors():
        settings = ApiSettings(**({"database_url": database_url} if database_url else {}))
    # No access log unless asked: request paths can hold subject ids (/v1/subjects/{id}/...) and every line a
    # client's address; when asked, the app's filter masks the first and pseudonymizes the second by default.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)


def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.", metavar="NAME")],
    role: Annotated[str, typer.Option("--role", help="viewer, auditor, operator or admin (a ladder), or serving (lists only, for a serving system).")] = "viewer",
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create an API key and print its token (once)."""
    from governance.api.keys import create_key

    with user_errors():
        with opened_store(database_url) as store:
            with store.session() as session:
                key, token = create_key(session, name=name, role=role, actor=store.settings.actor)
    if json_output:
        emit_json({"id": key.id, "name": key.name, "role": key.role, "token": token})
        return
    console.print(f"created key {key.id} ({key.name}, {key.role})", highlight=False)
    err_console.print(TOKEN_NOTICE, highlight=False)
    print(token)


def keys_list(database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """List API keys (never their tokens)."""
    from governance.api.keys import list_keys

    with user_errors():
        with opened_store(database_url) as store:
            with store.session() as session:
                rows = [
                    {"id": k.id, "name": k.name, "role": k.role, "created_at": k.created_at.isoformat(), "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in list_keys(session)
                ]
    if json_output:
        emit_json({"keys": rows})
    else:
        print_rows([{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows])


def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see recgov keys list).", metavar="ID")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke an API key; requests with its token get 401 from now on."""
    from governance.api.keys import revoke_key

    with user_errors():
        with opened_store(database_url) as store:
            with store.session() as session:
                key = revoke_key(session, key_id, actor=store.settings.actor)
    console.print(f"revoked key {key.id} ({key.name}) at {key.revoked_at.isoformat()}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``recgov serve`` and ``recgov keys ...``."""
    app.command("serve")(serve_command)
    keys_app = typer.Typer(help="API keys of the REST API: create (token shown once), list, revoke.", no_args_is_help=True)
    keys_app.command("create")(keys_create)
    keys_app.command("list")(keys_list)
    keys_app.command("revoke")(keys_revoke)
    app.add_typer(keys_app, name="keys")
