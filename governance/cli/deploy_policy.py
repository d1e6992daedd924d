"""``recgov deploy policy set|show``: the installation binds each served stage to the pack that gates it.

Exit codes: 0 done, 2 bad input (a stage that is not gated, an unknown or
invalid pack, a requirement out of range, an unreachable database).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import console, emit_json, fail, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt, print_rows
from governance.policy import LoadedPack
from recommender.errors import ConfigError

__all__ = ["DATASET_INVALID", "installation_pack_loader", "packs_dir", "policy_app"]

DATASET_INVALID = "--dataset must be 'training' (the model's own training data), 'any' or a recorded dataset's content hash (64 hex digits); got {value!r}"

policy_app = typer.Typer(
    help="Which pack gates canary and production, and what its data must cover: the installation's decision.",
    no_args_is_help=True,
)


def packs_dir() -> Path:
    """The installation's stored packs (``$RECGOV_HOME/packs``, as ``POST /v1/packs`` stores them)."""
    from audits.settings import get_settings

    return get_settings().home / "packs"


def installation_pack_loader(folder: Path) -> Any:
    """A pack reader for shipped names and stored ``NAME@VERSION`` references, raising ConfigError."""
    from governance import packs as pack_store

    def load(ref: str) -> LoadedPack:
        try:
            return pack_store.load_ref(folder, ref)
        except pack_store.PackNotFound as err:
            raise ConfigError(str(err)) from None

    return load


def _resolve(ref: str, folder: Path, *, json_output: bool) -> tuple[str, LoadedPack]:
    """``ref`` as bound: a shipped name or ``NAME@VERSION`` as is; a pack file is stored first and bound by reference."""
    from governance import packs as pack_store
    from governance.cli._common import load_or_fail
    from governance.packs import shipped_pack_path

    if "@" in ref or (("/" not in ref) and not ref.endswith((".yaml", ".yml")) and shipped_pack_path(ref).is_file()):
        return ref, installation_pack_loader(folder)(ref)
    loaded = load_or_fail(ref, json_output=json_output)
    try:
        stored, _ = pack_store.store_pack(folder, text=Path(ref).read_text(encoding="utf-8"))
    except pack_store.PackConflict as err:
        raise ConfigError(str(err)) from None
    return f"{stored.name}@{stored.version}", loaded


@policy_app.command("set")
def set_command(
    stage: Annotated[str, typer.Argument(help="The stage to bind: canary or production.")],
    pack: Annotated[
        str,
        typer.Option(
            "--pack",
            "-p",
            help="The pack that gates STAGE: a shipped name, a stored NAME@VERSION, or a file (stored with the installation's packs).",
        ),
    ],
    min_events: Annotated[
        int, typer.Option("--min-events", min=0, max=10**12, help="The gate's data has at least this many events.")
    ] = 0,
    min_users: Annotated[
        int, typer.Option("--min-users", min=0, max=10**10, help="The gate's data has at least this many distinct users.")
    ] = 0,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", help="Which data the gate audits: training (the model's own), any, or a dataset content hash."
        ),
    ] = "training",
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Bind STAGE to PACK (pinned by its content hash); promotions to STAGE then run that gate only."""
    from pydantic import ValidationError

    from audits import open_store
    from audits.settings import get_settings
    from governance.deploy_policy import GATED_STAGES, NOT_A_GATED_STAGE, StageRequirements, set_binding

    if stage not in GATED_STAGES:
        raise fail(NOT_A_GATED_STAGE.format(stage=stage))
    try:
        requirements = StageRequirements(min_events=min_events, min_users=min_users, dataset=dataset)
    except ValidationError as err:  # each option is checked where it is read; this names the one at fault
        where = str(err.errors()[0]["loc"][0]) if err.errors() and err.errors()[0].get("loc") else "dataset"
        if where == "dataset":
            raise fail(DATASET_INVALID.format(value=dataset)) from None
        raise fail(f"--{where.replace('_', '-')}: {err.errors()[0]['msg']}") from None
    with user_errors():
        ref, loaded = _resolve(pack, packs_dir(), json_output=json_output)
        store = open_store(database_url)
        try:
            with store.session() as session:
                binding = set_binding(
                    session, stage=stage, ref=ref, pack=loaded, requirements=requirements, actor=get_settings().actor
                )
        finally:
            store.close()
    if json_output:
        emit_json(binding.to_dict())
        return
    console.print(
        f"{stage} is gated by {binding.label} (hash {binding.pack_hash[:12]}), policy #{binding.id}", highlight=False
    )


@policy_app.command("show")
def show_command(database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """The binding in force for each gated stage (an unbound stage refuses every promotion)."""
    from audits import open_store
    from governance.deploy_policy import current_bindings

    with user_errors():
        store = open_store(database_url)
        try:
            with store.session() as session:
                bindings = current_bindings(session)
        finally:
            store.close()
    if json_output:
        emit_json(
            {
                "stages": {s: None if b is None else b.to_dict() for s, b in bindings.items()},
                "packs_dir": str(packs_dir()),
            }
        )
        return
    print_rows(
        [
            {"stage": s, "pack": "unbound: promotion refused" if b is None else b.label, "hash": "" if b is None else b.pack_hash[:12],
             "min events": "" if b is None else b.requirements.min_events, "min users": "" if b is None else b.requirements.min_users,
             "dataset": "" if b is None else b.requirements.dataset, "set": "" if b is None else f"{b.set_at:%Y-%m-%d %H:%M} by {b.actor}"}
            for s, b in bindings.items()
        ]
    )  # fmt: skip
