"""A governed batch on either engine: filter, train, lists for every user, records anchored on the trail.

:func:`train_spark_and_record` is ``recgov train --engine spark``: the pack's filter and MLlib ALS on
Spark, and the lineage the in-process ``train_and_record`` keeps (dataset version, training run
with the exclusions and the erasures it honoured, model version with its artifact), each with its
trail event. :func:`batch_lists` is ``recgov batch``: that training, then every allowed user's
governed list and its decision record, written as anchored Parquet partitions. With
``engine="inprocess"`` the same batch runs on one machine (the pandas filter, ``implicit``'s ALS,
the serving path's personalizer) and writes the same record layout: the benchmark compares the two.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from governance.policy import LoadedPack
from governance.suppressed import ERASURES_SEEN
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.family import open_model_file
from recommender.feedback import MODEL_INPUT_COLUMNS, FeedbackConfig

__all__ = ["ENGINES", "BatchRun", "batch_lists", "train_spark_and_record"]

ENGINES = ("inprocess", "spark")


@dataclass
class BatchRun:
    """What a batch did, and how long each stage took (seconds)."""

    engine: str
    model_version: str
    training_run: int | None
    exclusions: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    lists: dict[str, Any] | None = None
    artifact: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "model_version": self.model_version, "training_run": self.training_run,
            "artifact": self.artifact, "privacy_filter": self.exclusions, "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "lists": self.lists,
        }  # fmt: skip


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else a clear error."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}. Got {engine!r} instead.")
    return engine


def train_spark_and_record(
    dataset: Dataset,
    pack: LoadedPack,
    store: Any,
    *,
    models_dir: Path,
    params: dict[str, Any] | None = None,
    feedback: FeedbackConfig | None = None,
    now: datetime | None = None,
    master: str | None = None,
    actor: str | None = None,
    spark: Any = None,
) -> tuple[BatchRun, Any]:
    """Filter and train on Spark, save the factors and record the lineage; returns the run and the fitted model.

    The events staged for Spark to read are removed when this returns or fails, unless an enclosing
    :func:`governance.spark.filters.event_staging` scope keeps them until it ends: the model's Spark frames (its
    ``ratings``) may read them, so a caller that goes on using those frames holds such a scope around the call."""
    from governance.spark.filters import event_staging

    with event_staging():
        return _train_spark_and_record(dataset, pack, store, models_dir=models_dir, params=params, feedback=feedback, now=now,
                                       master=master, actor=actor, spark=spark)  # fmt: skip


def _train_spark_and_record(
    dataset: Dataset, pack: LoadedPack, store: Any, *, models_dir: Path, params: dict[str, Any] | None,
    feedback: FeedbackConfig | None, now: datetime | None, master: str | None, actor: str | None, spark: Any,
) -> tuple[BatchRun, Any]:  # fmt: skip
    """:func:`train_spark_and_record` inside its staging scope."""
    from audits import ModelVersion, record_dataset_version, record_model_version, record_training_run
    from governance.spark.als import als_artifact, train_als_spark
    from governance.spark.filters import events_frame, filter_training_events_spark
    from governance.spark.session import spark_session
    from governance.training import INPUT_SOURCES, dataset_schema

    from governance.family_inputs import check_family_inputs, renamed_columns_read
    from recommender.family import get_family

    # the ALS family's inputs, and the columns they are read from, against the pack's minimisation rules, as in
    # process: before a JVM starts or a row is read
    check_family_inputs(get_family("als"), pack, dataset=dataset, params=params)
    feedback = feedback or FeedbackConfig()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    session = spark or spark_session(master)
    timings["session"] = time.perf_counter() - started
    mark = time.perf_counter()
    frame = events_frame(session, dataset)
    kept, exclusions = filter_training_events_spark(frame, pack, store, now=now, actor=actor, record_empty=False)
    timings["filter"] = time.perf_counter() - mark
    if exclusions["events"]["kept"] == 0:
        excluded = ", ".join(f"{n:,} {r}" for r, n in exclusions["events"]["excluded"].items() if n)
        raise ConfigError(f"no event may be used for training under the pack: {excluded or 'no event at all'}; record consent or check the retention window")
    mark = time.perf_counter()
    fit_started = datetime.now(UTC)
    model = train_als_spark(kept, params=params, feedback=feedback)
    fit_ended = datetime.now(UTC)
    timings["train"] = time.perf_counter() - mark
    mark = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"{model.version_id_}.npz"
    payload = als_artifact(model, session.version)  # a recgov ALS model file: served, explained and unlearned in process
    artifact_hash = hashlib.sha256(payload).hexdigest()
    # written beside the final name and moved into place once the records are committed: a failed run never
    # replaces a recorded artifact
    pending = models_dir / f".{model.version_id_}.{os.getpid()}.pending.npz"
    with open_model_file(pending) as handle:  # owner-only: the file holds the ids of the subjects it learned from
        handle.write(payload)
    try:
        with store.session() as db:
            dv = record_dataset_version(
                db, content_hash=exclusions["dataset"]["after"], name=dataset.name, source=dataset.source,
                n_events=int(exclusions["events"]["kept"]), n_users=len(model.user_ids), n_items=len(model.item_ids),
                schema=dataset_schema(dataset), validation=None, actor=actor,
            )  # fmt: skip
            run = record_training_run(
                db, dataset_version=dv,
                params={**model.params, "engine": "spark", "solver": "mllib-als (confidence 1 + alpha r, regularization x n_u)",
                        "feedback": feedback.model_dump(), "model_inputs": list(MODEL_INPUT_COLUMNS),
                        INPUT_SOURCES: renamed_columns_read(get_family("als"), dataset, params), "privacy_filter": exclusions,
                        ERASURES_SEEN: exclusions[ERASURES_SEEN]},
                library_versions={"pyspark": session.version}, started_at=fit_started, ended_at=fit_ended, actor=actor,
            )  # fmt: skip
            # the same data, parameters and Spark make the same version id: a run that reproduces a recorded version
            # bit for bit is recorded as a run of it (as in process); another artifact under that id is refused
            existing = db.get(ModelVersion, model.version_id_)
            if existing is None:
                record_model_version(
                    db, version_id=model.version_id_, kind="als-spark", training_run=run, artifact_hash=artifact_hash,
                    artifact_location=str(artifact), actor=actor,
                )  # fmt: skip
            elif existing.artifact_hash != artifact_hash:
                raise ConfigError(
                    f"model version {existing.version_id} is recorded with artifact {existing.artifact_hash[:16]}... but "
                    f"this run produced {artifact_hash[:16]}... from the same data, parameters and Spark; MLlib's fit is "
                    "not reproducible here (another master or partitioning?), refusing to record it under the same version"
                )
            run_id = run.id
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, artifact)
    timings["record"] = time.perf_counter() - mark
    return BatchRun("spark", model.version_id_, run_id, exclusions, timings, artifact=str(artifact)), model


def batch_lists(
    dataset: Dataset,
    pack: LoadedPack,
    store: Any,
    *,
    out: str,
    engine: str = "spark",
    k: int = 10,
    models_dir: Path,
    params: dict[str, Any] | None = None,
    feedback: FeedbackConfig | None = None,
    now: datetime | None = None,
    master: str | None = None,
    buckets: int = 16,
    actor: str | None = None,
    spark: Any = None,
    region: str | None = None,
) -> BatchRun:
    """Train under the pack and write every allowed user's governed list as anchored decision records.

    ``out`` must be a path (not a URL) that does not exist yet: a batch is written once, to a new folder that trail
    verify reads back; anything else is refused before anything is read, trained or recorded.

    Items unavailable everywhere (out of stock, withdrawn; :mod:`audits.availability`), and with ``region`` the
    items restricted there, are left out of every list as blocked items are: before the lists are cut to ``k``."""
    from audits.availability import unavailable_items
    from governance.escalation import items_out_of_lists

    from governance.spark.lists import check_batch_folder

    check_engine(engine)
    check_batch_folder(out)  # before the store is read, a JVM starts or any lineage is recorded
    with store.session() as db:
        blocked = sorted(items_out_of_lists(db, pack.pack) | unavailable_items(db).for_region(region))
    if engine == "inprocess":
        return _inprocess_batch(dataset, pack, store, out=out, k=k, models_dir=models_dir, params=params, feedback=feedback,
                                now=now, buckets=buckets, blocked=blocked, actor=actor)  # fmt: skip
    from governance.spark.filters import event_staging
    from governance.spark.lists import govern_lists, personalizer_for, recommend_all

    # the lists read the model's ratings, which may be read from the staged events: they are removed once the lists
    # are written (or the run fails), not at exit
    with event_staging():
        run, model = train_spark_and_record(dataset, pack, store, models_dir=models_dir, params=params, feedback=feedback,
                                            now=now, master=master, actor=actor, spark=spark)  # fmt: skip
        mark = time.perf_counter()
        personalizer = personalizer_for(pack, model, dataset.items, blocked)
        candidates = recommend_all(model, personalizer, k)
        result = govern_lists(store, pack, model, personalizer, candidates, out, k=k, buckets=buckets, actor=actor)
        run.timings["lists"] = time.perf_counter() - mark
    run.lists = result.to_dict()
    return run


def _inprocess_batch(
    dataset: Dataset, pack: LoadedPack, store: Any, *, out: str, k: int, models_dir: Path, params: dict[str, Any] | None,
    feedback: FeedbackConfig | None, now: datetime | None, buckets: int, blocked: list[str], actor: str | None,
) -> BatchRun:  # fmt: skip
    """The same batch on one machine: ``train_and_record`` under the pack, then the serving path's
    personalizer for every allowed user, the records chained and anchored in the same layout."""
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    from audits.trail import format_time
    from governance.artifacts import verify_artifact
    from governance.spark.lists import _bucket, decision_fields, personalizer_for
    from governance.spark.records import GENESIS, RECORD_COLUMNS, anchor_batch, batch_record_keys, chain_hash, record_json, seal_fields
    from governance.training import train_and_record
    from governance.training_filter import subject_rules
    from recommender.als import ALSRecommender

    timings: dict[str, float] = {}
    mark = time.perf_counter()
    trained = train_and_record(dataset, store=store, models_dir=models_dir, feedback=feedback or FeedbackConfig(), params=params,
                               tune=False, measure_carbon=False, pack=pack, now=now, actor=actor)  # fmt: skip
    timings["filter+train+record"] = time.perf_counter() - mark
    mark = time.perf_counter()
    verify_artifact(trained.model_version, trained.artifact, trained.artifact_hash)  # the file the lists come from is the one recorded
    model = ALSRecommender.load(trained.artifact)
    personalizer = personalizer_for(pack, model, dataset.items, blocked)
    subjects = [str(u) for u in model.train_.user_ids]
    moment = datetime.now(UTC)
    rules = subject_rules(pack, store, subjects, now=moment)
    allowed = np.flatnonzero((rules.reason == 0) & np.isnat(rules.erased_until))
    keys = batch_record_keys(store, [subjects[r] for r in allowed])
    run_id, stamp, when = uuid.uuid4().hex, pack.stamp(), format_time(moment)
    item_ids = model.train_.item_ids
    by_name = dict(keys.values())
    by_bucket: dict[int, list[tuple[str, int]]] = {}
    for row in allowed.tolist():
        name = keys[subjects[row]][0]
        by_bucket.setdefault(_bucket(name, buckets), []).append((name, row))
    partitions = []
    for bucket, members in sorted(by_bucket.items()):
        columns: dict[str, list[Any]] = {c: [] for c in RECORD_COLUMNS}
        prev = GENESIS
        for position, (name, row) in enumerate(sorted(members)):
            ids, scores, tags = personalizer.personalize(row, k)
            fields = decision_fields(name, [str(item_ids[i]) for i in ids], scores, tags, stamp, model.version_id_, run_id, moment)
            sealed, slate, context = seal_fields(fields, by_name[name])
            digest = chain_hash(prev, record_json(sealed))
            values = {**fields, "decided_at": when, "slate": slate, "context": context, "position": position, "prev_hash": prev, "hash": digest}  # fmt: skip
            for c in RECORD_COLUMNS:
                columns[c].append(values[c])
            prev = digest
        folder = Path(out) / f"bucket={bucket}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(columns), folder / "part-00000.parquet")
        partitions.append({"bucket": bucket, "records": len(members), "head": prev})
    seq = anchor_batch(store, run=run_id, path=str(Path(out).resolve()), partitions=partitions, model_version=model.version_id_, pack=stamp, actor=actor)
    timings["lists"] = time.perf_counter() - mark
    lists = {"run": run_id, "path": out, "records": sum(p["records"] for p in partitions), "partitions": len(partitions),
             "anchor_seq": seq, "skipped": len(subjects) - len(allowed)}  # fmt: skip
    return BatchRun("inprocess", model.version_id_, trained.training_run_id, trained.exclusions or {}, timings, lists, str(trained.artifact))
