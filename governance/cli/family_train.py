"""``recgov train DATA --family NAME [--param key=value ...]``: a model family trained under the pack's governance.

The ALS path of ``recgov train`` is unchanged; this is the path of every other
family (:func:`governance.family_training.train_family_and_record`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from governance.cli._common import console, emit_json, load_or_fail, progress_enabled, user_errors
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig

__all__ = ["train_family"]

ALS_OPTIONS = ("--factors", "--regularization", "--alpha", "--iterations", "--fair-reweight")


def train_family(
    data: str,
    data_format: str | None,
    mapping: str | None,
    items: str | None,
    items_map: str | None,
    *,
    family: str,
    param: list[str] | None,
    als_options: tuple[Any, ...],
    engine: str,
    threshold: float,
    seed: int,
    country: str,
    carbon: bool,
    pack: str | None,
    as_of: str | None,
    database_url: str | None,
    json_output: bool,
    load: Callable[..., Any],
    read_as_of: Callable[[str | None], Any],
) -> None:
    """Check the flags, train ``family`` through the governed path and print what was recorded.

    ``load`` and ``read_as_of`` are ``recgov train``'s own readers of DATA and ``--as-of``."""
    from audits import open_store
    from audits.settings import get_settings
    from governance.family_training import parse_params, train_family_and_record
    from recommender.family import get_family

    with user_errors():
        if family == "als":
            raise ConfigError("--param: ALS takes --factors, --regularization, --alpha and --iterations; --param is for the other families")
        get_family(family)  # an unknown name lists the families
        given = [name for name, value in zip(ALS_OPTIONS, als_options) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: ALS options; --family {family} takes its parameters as --param key=value")
        if engine != "inprocess":
            raise ConfigError(f"--engine {engine}: only ALS trains on Spark; --family {family} trains in process")
        from governance.carbon import check_country

        check_country(country)
        params = parse_params(param)
        now = read_as_of(as_of)
    loaded = load_or_fail(pack, json_output=json_output) if pack else None
    with user_errors():
        dataset = load(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        store = open_store(database_url)
        try:
            run = train_family_and_record(
                dataset, family, store=store, models_dir=get_settings().home / "models", params=params,
                feedback=FeedbackConfig(rating_threshold=threshold), pack=loaded, country_iso_code=country,
                measure_carbon=carbon, random_state=seed, now=now, show_progress=progress_enabled(json_output),
            )  # fmt: skip
        finally:
            store.close()
    doc = run.to_dict()
    if json_output:
        emit_json(doc)
        return
    m = doc["matrix"]
    console.print(f"{doc['family']} model [bold]{doc['model_version']}[/] trained on {m['users']:,} users x {m['items']:,} items ({m['interactions']:,} interactions) in {doc['seconds']:.1f} s", highlight=False)
    console.print(f"params {doc['params']}; inputs {', '.join(doc['family_inputs'])} (event fields read: {', '.join(doc['model_inputs'])}); erasure {doc['erasure']}", highlight=False)
    console.print(f"artifact {doc['artifact']} (sha256 {doc['artifact_hash'][:16]}...)", highlight=False)
    if doc["carbon"]:
        c = doc["carbon"]
        console.print(f"energy {c['energy_kwh']:.3g} kWh, emissions {c['emissions_kg']:.3g} kg CO2e ({c['method']})", highlight=False)
    f = doc["privacy_filter"] or {}
    if f.get("events"):
        excluded = ", ".join(f"{n:,} {r}" for r, n in f["events"]["excluded"].items() if n) or "none"
        console.print(f"trained on {f['events']['kept']:,} of {f['events']['total']:,} events; excluded: {excluded}", highlight=False)
    console.print(f"recorded: dataset {doc['dataset_version'][:16]}..., training run {doc['training_run']}, model {doc['model_version']}", highlight=False)
