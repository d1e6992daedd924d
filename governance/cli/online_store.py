"""``recgov online-store``: fill the online store (Redis, ``RECGOV_REDIS_URL``) for heavy users, or drain its outbox."""

from __future__ import annotations

from typing import Annotated

import typer

from governance.cli._common import console, emit_json, load_or_fail, opened_store, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt
from governance.policy import MAX_LIST_LENGTH

__all__ = ["register"]

online_app = typer.Typer(help="The online store (Redis): factors and cached lists of heavy users.", no_args_is_help=True)


@online_app.command("warm")
def warm_command(
    model: Annotated[str, typer.Option("--model", help="A recorded model version.")],
    pack: Annotated[str, typer.Option("--pack", "-p", help="The policy pack in force.")] = "baseline",
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the model's heaviest users.")] = 1000,
    k: Annotated[int, typer.Option("--k", min=1, max=MAX_LIST_LENGTH, help="List length.")] = 10,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Store the model's factors and the governed lists of its TOP heaviest users who may be profiled now."""
    from audits.online_store import configured_store
    from governance.online_warm import warm_heavy_users
    from recommender.errors import ConfigError

    loaded = load_or_fail(pack, json_output=json_output)
    with user_errors():
        online = configured_store()
        if online is None:
            raise ConfigError("no online store is configured; set RECGOV_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        with opened_store(database_url) as store:
            done = warm_heavy_users(store, online, loaded, model, top=top, k=k)
    if json_output:
        emit_json(done.to_dict())
        return
    console.print(
        f"model {done.model_version}: {done.heavy_users} heavy users, {done.factors_stored} factor vectors and "
        f"{done.lists_stored} lists stored (the others may not be profiled now, or were stored already)",
        highlight=False,
    )


@online_app.command("drain")
def drain_command(database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """Apply the invalidations waiting in the outbox (recorded while Redis was down, or by a process without
    RECGOV_REDIS_URL) to the online store, and delete them; exits 1 while some still wait."""
    from audits.online_store import configured_store, drain_outbox
    from recommender.errors import ConfigError

    with user_errors():
        online = configured_store()
        if online is None:
            raise ConfigError("no online store is configured; set RECGOV_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        with opened_store(database_url) as store:
            done = drain_outbox(store.engine, online)
    if json_output:
        emit_json(done.to_dict())
    else:
        console.print(
            f"{done.applied} invalidation(s) applied ({done.subjects} subject(s){', and every list' if done.everyone else ''}); "
            f"{done.pending} waiting" + (f" ({done.reason})" if done.reason else "")
            + (f"; {done.expired} expired unapplied, older than the store's entries live (recorded in the trail)" if done.expired else ""),
            highlight=False,
        )
    if done.pending:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``recgov online-store``."""
    app.add_typer(online_app, name="online-store")
