"""``recgov batch``: every allowed user's governed list, on one machine or on Spark, recorded and anchored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import console, emit_json, user_errors
from governance.cli.core import DataArg, FormatOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, ThresholdOpt, load_dataset, parse_as_of
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig
from governance.policy import MAX_LIST_LENGTH

__all__ = ["EngineOpt", "SparkMasterOpt", "register"]

EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="inprocess (one machine: pandas, implicit) or spark (PySpark; needs Java 17+)."),
]
SparkMasterOpt = Annotated[
    Optional[str],
    typer.Option("--spark-master", help="Spark master URL (default: RECGOV_SPARK_MASTER, else local[2]).", show_default=False),
]


def batch_command(
    data: DataArg,
    pack: Annotated[str, typer.Option("--pack", "-p", help="The policy pack whose rules, re-rankers and tags apply.")],
    out: Annotated[Path, typer.Option("--out", help="A new folder for the decision records (Parquet partitions).")],
    engine: EngineOpt = "spark",
    spark_master: SparkMasterOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=MAX_LIST_LENGTH, help="Items per list.")] = 10,
    buckets: Annotated[int, typer.Option("--buckets", min=1, help="Record partitions (each one hash chain).")] = 16,
    factors: Annotated[Optional[int], typer.Option("--factors", min=1, help="Latent dimensions (default 64).")] = None,
    regularization: Annotated[Optional[float], typer.Option("--regularization", min=0, help="L2 weight (default 0.05).")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", min=0, help="Confidence scaling (default 2.0).")] = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations", min=1, help="ALS sweeps (default 15).")] = None,
    threshold: ThresholdOpt = 4.0,
    data_format: FormatOpt = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    region: Annotated[Optional[str], typer.Option("--region", help="The region the lists are for: items restricted there are left out too (items unavailable everywhere always are).", show_default=False)] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Measure the retention window from this ISO date instead of now.")] = None,
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL of the store.", show_default=False)] = None,
    json_output: JsonOpt = False,
) -> None:
    """Train under the pack and write every allowed user's governed list as decision records anchored on the trail."""
    from audits import open_store
    from audits.settings import get_settings
    from governance.cli._common import load_or_fail
    from governance.spark.batch import batch_lists, check_engine
    from governance.spark.session import check_reachable, spark_master as checked_master

    loaded = load_or_fail(pack, json_output=json_output)
    params = {k_: v for k_, v in {"factors": factors, "regularization": regularization, "alpha": alpha, "iterations": iterations}.items() if v is not None}
    with user_errors():
        check_engine(engine)
        if engine == "spark":
            # a bad URL, or a standalone master no connection reaches, is refused before the data is read or a JVM starts
            check_reachable(checked_master(spark_master))
        if out.exists():
            raise ConfigError(f"--out {out} already exists; a batch's decision records are written once, to a new folder")
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        store = open_store(database_url)
        try:
            run = batch_lists(
                dataset, loaded, store, out=str(out), engine=engine, k=k, models_dir=get_settings().home / "models",
                params=params, feedback=FeedbackConfig(rating_threshold=threshold), now=parse_as_of(as_of),
                master=spark_master, buckets=buckets, region=region,
            )  # fmt: skip
        finally:
            store.close()
    doc = run.to_dict()
    if json_output:
        emit_json(doc)
        return
    lists = doc["lists"]
    kept = doc["privacy_filter"]["events"]
    console.print(f"{engine}: model {doc['model_version']} trained on {kept['kept']:,} of {kept['total']:,} events (pack {loaded.name})", highlight=False)
    console.print(
        f"{lists['records']:,} governed lists in {lists['partitions']} partitions at {lists['path']}, anchored at trail seq "
        f"{lists['anchor_seq']}; {lists['skipped']:,} subject(s) no longer allowed to be profiled got none",
        highlight=False,
    )
    console.print("timings " + ", ".join(f"{name} {s:.1f} s" for name, s in doc["timings"].items()), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch_command)

