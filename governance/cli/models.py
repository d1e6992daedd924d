"""``recgov models families|list|show``: the model families this installation can train, and the recorded models
with the family each is of, its erasure kind and its inputs."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from governance.cli._common import console, emit_json, user_errors
from recommender.errors import ConfigError
from governance.cli.core import JsonOpt, print_rows

__all__ = ["register", "families_command", "families_document", "list_command", "recorded_models", "show_command"]


def families_document() -> dict[str, Any]:
    """Every registered family (inputs, erasure kind, extra, default parameters) and the family modules that
    cannot be imported here, with why (an optional extra not installed)."""
    from recommender.family import families, unavailable_families

    return {
        "families": [
            {
                "name": f.name,
                "description": f.description,
                "inputs": sorted(f.inputs),
                "erasure": f.erasure.value,
                "extra": f.extra,
                "available": True,
                "default_params": f.default_params,
            }
            for f in families().values()
        ],
        "unavailable": [{"module": m, "available": False, "reason": why} for m, why in sorted(unavailable_families().items())],
    }


def families_command(json_output: JsonOpt = False) -> None:
    """List the model families: inputs, erasure kind, optional extra and whether it can run here."""
    doc = families_document()
    if json_output:
        emit_json(doc)
        return
    rows = [
        {"family": f["name"], "inputs": ", ".join(f["inputs"]), "erasure": f["erasure"], "extra": f["extra"] or "-", "available": "yes"}
        for f in doc["families"]
    ]
    rows += [{"family": u["module"], "inputs": "-", "erasure": "-", "extra": "-", "available": f"no: {u['reason']}"} for u in doc["unavailable"]]
    print_rows(rows, title="model families")
    console.print("evaluate them side by side: recgov evaluate DATA --families all", highlight=False)


def recorded_models(database_url: str | None, version: str | None = None) -> list[dict[str, Any]]:
    """The recorded model versions, newest first: family (the model's ``kind``), erasure kind and inputs (from the
    training run, else the family's declaration), the run, the artifact, and what it was derived from."""
    from sqlalchemy import select

    from audits import open_store
    from audits.models import ModelVersion, TrainingRun
    from recommender.family import families

    known = families()
    store = open_store(database_url)
    try:
        with store.session() as session:
            query = select(ModelVersion, TrainingRun.params).join(TrainingRun, ModelVersion.training_run_id == TrainingRun.id)
            if version is not None:
                query = query.where(ModelVersion.version_id == version)
            rows = session.execute(query.order_by(ModelVersion.created_at.desc(), ModelVersion.version_id)).all()
            out = []
            for model, params in rows:
                params = params if isinstance(params, dict) else {}
                family = known.get(str(params.get("family") or model.kind).removesuffix("-spark"))
                unlearning = params.get("unlearning") if isinstance(params.get("unlearning"), dict) else {}
                out.append(
                    {
                        "version_id": model.version_id,
                        "family": params.get("family") or model.kind,
                        "kind": model.kind,
                        "erasure": params.get("erasure") or (family.erasure.value if family else None),
                        "inputs": params.get("family_inputs") if "family" in params else (sorted(family.inputs) if family else None),
                        "params": params.get("family_params") if "family" in params else {k: params[k] for k in ("factors", "regularization", "alpha", "iterations") if k in params},
                        "training_run": model.training_run_id,
                        "derived_from": unlearning.get("from"),
                        "created_at": model.created_at.isoformat() if model.created_at else None,
                        "artifact": model.artifact_location,
                        "artifact_hash": model.artifact_hash,
                    }
                )
            return out
    finally:
        store.close()


def list_command(
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL of the store (default: RECGOV_DATABASE_URL, else the embedded SQLite file).", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """List the recorded model versions with their family, erasure kind and inputs."""
    with user_errors():
        models = recorded_models(database_url)
    if json_output:
        emit_json({"models": models})
        return
    rows = [
        {"version": m["version_id"], "family": m["family"], "erasure": m["erasure"] or "-", "inputs": ", ".join(m["inputs"] or []) or "-",
         "run": str(m["training_run"]), "from": m["derived_from"] or "-", "created": m["created_at"] or "-"}
        for m in models
    ]  # fmt: skip
    print_rows(rows, title="recorded models")


def show_command(
    version: Annotated[str, typer.Argument(help="A recorded model version.", metavar="VERSION")],
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL of the store (default: RECGOV_DATABASE_URL, else the embedded SQLite file).", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Show one recorded model version: family, erasure kind, inputs, parameters, artifact (recgov lineage for the chain)."""
    with user_errors():
        found = recorded_models(database_url, version)
        if not found:
            raise ConfigError(f"model version {version!r} is not in the store; recgov models list shows the recorded ones")
    if json_output:
        emit_json(found[0])
        return
    for key, value in found[0].items():
        console.print(f"{key:14} {value}", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``recgov models`` to ``app``."""
    models_app = typer.Typer(help="Model families: what each reads, how it explains and how it forgets.", no_args_is_help=True)
    models_app.command("families")(families_command)
    models_app.command("list")(list_command)
    models_app.command("show")(show_command)
    app.add_typer(models_app, name="models")


