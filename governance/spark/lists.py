"""Governed lists for every user on Spark: candidates, the pack's re-rankers and tags, decision records.

1. **Candidates** (:func:`recommend_all`): every user's top items by the model's scores, without
   the items they have seen and the blocked ones (a blocked category, an escalation case), scored
   in blocks of users against the broadcast item factors (one matrix product per block).
2. **Governance** (:func:`govern_lists`): the subjects are split into ``buckets`` by a hash of
   their pseudonym; ``applyInPandas`` hands each bucket to a Python worker that runs, per user,
   the serving path's own :meth:`governance.serving.Personalizer.govern` (the pack's re-rankers,
   the explanation tags), builds the decision record as the serving path does and chains it
   to the bucket's previous record (:mod:`governance.spark.records`), its list sealed under the
   subject's record key as the SQL decision log seals it (the key rides with the subject's row to
   the worker and is not written).
3. **Records**: the buckets are written as Parquet partitions, read back, and one trail event anchors
   each partition's head as written (the chains recomputed from the files: a partition Spark computed
   twice anchors the copy on disk, never an in-memory one). Subjects the pack does not allow to be profiled when the lists are made
   (consent read again here, in bulk) get no list.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from governance.policy import LoadedPack
from governance.serving import Personalizer
from governance.spark.records import GENESIS, anchor_batch, batch_record_keys, chain_hash, record_json, seal_fields
from recommender.errors import ConfigError

__all__ = ["BatchResult", "BATCH_CONSENT", "check_batch_folder", "histories", "recommend_all", "govern_lists", "personalizer_for"]

BATCH_CONSENT = "profiling allowed for personalization: the pack's consent rules, read in bulk when the batch ran"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
"""A URL scheme (``file:``, ``hdfs:``, ``s3a:``); a Windows drive (``C:``) is one letter and no scheme."""
_NAMESPACE = uuid.UUID("6f1d0c1e-3b7a-5d42-9a57-2f9d8c3e4b10")
_SCORE_BLOCK = 256


@dataclass(frozen=True)
class BatchResult:
    """A batch of governed lists: where its records are and how they are anchored."""

    run: str
    path: str
    records: int
    partitions: list[dict[str, Any]]
    anchor_seq: int | None
    skipped: int
    """Subjects of the model that the pack no longer allows to be profiled: no list was made for them."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run, "path": self.path, "records": self.records, "partitions": len(self.partitions),
            "anchor_seq": self.anchor_seq, "skipped": self.skipped,
        }  # fmt: skip


def histories(ratings: Any) -> Any:
    """``(user, hist_items, hist_values)``: each user's rated items in item order and their weights."""
    from pyspark.sql import functions as F

    pairs = F.array_sort(F.collect_list(F.struct(F.col("item"), F.col("weight"))))
    return ratings.groupBy("user").agg(pairs.alias("h")).select(
        "user", F.col("h.item").alias("hist_items"), F.col("h.weight").alias("hist_values")
    )


def personalizer_for(loaded: LoadedPack, model: Any, items: pd.DataFrame | None, blocked: list[str]) -> Personalizer:
    """The serving path's personalizer for ``model`` (re-ranking, catalog and blocks built by
    :class:`~governance.serving.ServingEngine` itself), with an MLlib model's own explanations."""
    from governance.serving import ServingEngine
    from governance.spark.als import SparkALSModel, SparkALSPersonalizer

    engine = ServingEngine(loaded, model, items, blocked=blocked)
    personalizer = engine.personalizer
    if isinstance(model, SparkALSModel):
        personalizer = SparkALSPersonalizer.of(personalizer)
    return personalizer


def _for_workers(personalizer: Personalizer) -> Personalizer:
    """A copy that pickles small: the model reduced to what :meth:`Personalizer.govern` reads."""
    light = type(personalizer).__new__(type(personalizer))
    light.__dict__.update(personalizer.__dict__)
    model = personalizer.model
    light.model = SimpleNamespace(
        item_factors_=np.asarray(model.item_factors_), regularization=float(model.regularization), alpha=float(model.alpha)
    )
    light.__dict__.pop("_spark_yty", None)
    return light


def recommend_all(model: Any, personalizer: Personalizer, k: int) -> Any:
    """``(user, cand_items, cand_scores)``: every user's candidates for lists of ``k`` (the pack's
    ``reranking.candidates`` when it re-ranks), seen and blocked items left out, best first."""
    n = min(personalizer.n_candidates(k), len(model.item_ids))
    spark = model.ratings.sparkSession
    factors = spark.sparkContext.broadcast(np.asarray(model.item_factors_, dtype=np.float32))
    blocked = np.asarray(personalizer.blocked_items, dtype=np.int64)
    joined = model.user_factors.join(histories(model.ratings), "user").select("user", "features", "hist_items")

    def score(batches: Any) -> Any:
        Y = factors.value
        for frame in batches:
            for start in range(0, len(frame), _SCORE_BLOCK):
                block = frame.iloc[start : start + _SCORE_BLOCK]
                U = np.stack(block["features"].to_numpy()).astype(np.float32)
                scores = U @ Y.T
                lengths = block["hist_items"].map(len).to_numpy()
                rows = np.repeat(np.arange(len(block)), lengths)
                cols = np.concatenate(block["hist_items"].to_numpy()).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
                scores[rows, cols] = -np.inf
                scores[:, blocked] = -np.inf
                top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < scores.shape[1] else np.tile(np.arange(scores.shape[1]), (len(block), 1))
                picked = np.take_along_axis(scores, top, axis=1)
                order = np.argsort(-picked, axis=1, kind="stable")
                top = np.take_along_axis(top, order, axis=1)
                picked = np.take_along_axis(picked, order, axis=1)
                finite = np.isfinite(picked)
                yield pd.DataFrame(
                    {
                        "user": block["user"].to_numpy(),
                        "cand_items": [t[f].astype(np.int32) for t, f in zip(top, finite)],
                        "cand_scores": [p[f].astype(np.float32) for p, f in zip(picked, finite)],
                    }
                )

    schema = "user int, cand_items array<int>, cand_scores array<float>"
    return joined.mapInPandas(score, schema=schema)


_OUTPUT_SCHEMA = (
    "bucket int, position int, decision_id string, decided_at string, subject string, mode string, pack_name string, "
    "pack_version string, pack_hash string, model_version string, slate string, context string, prev_hash string, hash string"
)


def govern_lists(
    store: Any,
    loaded: LoadedPack,
    model: Any,
    personalizer: Personalizer,
    candidates: Any,
    out: str,
    *,
    k: int = 10,
    buckets: int = 16,
    run: str | None = None,
    decided_at: datetime | None = None,
    record: bool = True,
    actor: str | None = None,
) -> BatchResult:
    """Re-rank and tag every user's candidates with the serving path's code; write and anchor the records.

    ``candidates``: ``(user, cand_items, cand_scores)`` by model row (:func:`recommend_all`, or any
    engine's). ``model`` names the users (``user_ids``, sorted) and the model version. ``out`` must
    not exist yet (a batch is written once) and is a path, not a URL (:func:`check_batch_folder`); on a cluster it
    must be a path every executor can write.

    Raises
    ------
    ConfigError
        ``k`` or ``buckets`` is not a positive int, or ``out`` is a URL or already exists.
    """
    from audits.batch_folders import written_partitions
    from governance.training_filter import subject_rules

    for name, value in (("k", k), ("buckets", buckets)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The '{name}' parameter of govern_lists must be an int in the range [1, inf). Got {value!r} instead.")
    check_batch_folder(out)
    spark = candidates.sparkSession
    run = run or uuid.uuid4().hex
    moment = decided_at or datetime.now(UTC)
    subjects = [str(u) for u in model.user_ids]
    rules = subject_rules(loaded, store, subjects, purpose="personalization", now=moment)
    allowed = (rules.reason == 0) & np.isnat(rules.erased_until)
    keys = batch_record_keys(store, [s for s, ok in zip(subjects, allowed) if ok])
    rows = np.flatnonzero(allowed)
    pseudonyms = [keys[subjects[r]][0] for r in rows]
    # Each subject's record key travels with their row to the worker that seals their record; it is not written.
    table = spark.createDataFrame(
        pd.DataFrame({"user": rows.astype(np.int32), "subject": pseudonyms, "bucket": [_bucket(p, buckets) for p in pseudonyms],
                      "record_key": [keys[subjects[r]][1] for r in rows]}),  # fmt: skip
        schema="user int, subject string, bucket int, record_key binary",
    )
    hist = histories(model.ratings) if hasattr(model, "ratings") and model.ratings is not None else None
    if hist is None:
        raise ConfigError("the model holds no ratings frame to read the users' histories from")
    work = table.join(hist, "user").join(candidates, "user")
    stamp = loaded.stamp()
    build = _bucket_builder(_for_workers(personalizer), np.asarray(model.item_ids, dtype=object), k, stamp, model.version_id_, run, moment)
    records = work.groupBy("bucket").applyInPandas(build, schema=_OUTPUT_SCHEMA)
    records.write.partitionBy("bucket").parquet(out)
    # The anchors come from the files as written, read back: a recomputed partition (a lost block, a retried
    # task) seals its lists with fresh nonces, so any copy of the records but the written one has other hashes.
    try:
        partitions = written_partitions(Path(out))
    except ValueError as err:
        raise ConfigError(f"the batch's records were written to {out} but are not anchored: {err}") from err
    seq = None
    if record:
        path = str(Path(out).resolve())
        seq = anchor_batch(store, run=run, path=path, partitions=partitions, model_version=model.version_id_, pack=stamp, actor=actor)
    return BatchResult(run, out, sum(p["records"] for p in partitions), partitions, seq, int((~allowed).sum()))


def check_batch_folder(out: str) -> None:
    """Refuse a batch folder that is a URL or already exists: a batch is written once, to a new folder that
    ``recgov trail verify`` and a subject's access request read back as a path on this machine.

    Raises
    ------
    ConfigError
        ``out`` is a URL (``file:``, ``hdfs:``, ``s3a:``...), which the trail would anchor as a path that does not
        exist, or ``out`` already exists.
    """
    if _URL.match(out):
        raise ConfigError(
            f"{out} is a URL; trail verify and a subject's access request read a batch folder as a path on this "
            "machine: give the folder as a path (on a cluster, on a file system every executor and the verifier mount)"
        )
    if Path(out).exists():
        raise ConfigError(f"{out} already exists; a batch's decision records are written once, to a new folder")


def _bucket(pseudonym: str, buckets: int) -> int:
    """A subject's bucket: the first 8 bytes of SHA-256 of their pseudonym, mod ``buckets``."""
    return int.from_bytes(hashlib.sha256(pseudonym.encode()).digest()[:8], "big") % buckets


def decision_fields(
    subject: str, items: list[str], scores: list[float | None], tags: list[list[dict[str, Any]]],
    stamp: dict[str, str], model_version: str, run: str, decided_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """One batch decision record, as the serving path's :class:`~audits.decision_record.Decision` holds it.

    The id is a UUID named by the run and the pseudonym, so a retried task writes the same record.
    """
    return {
        "decision_id": str(uuid.uuid5(_NAMESPACE, f"{run}:{subject}")),
        "decided_at": decided_at,
        "subject": subject,
        "mode": "personalized",
        "pack_name": stamp["pack"],
        "pack_version": stamp["pack_version"],
        "pack_hash": stamp["pack_hash"],
        "model_version": model_version,
        "slate": {"items": items, "scores": scores, "tags": tags},
        "context": {"consent": BATCH_CONSENT, "gpc": False, "batch": run},
    }


def _bucket_builder(
    personalizer: Personalizer, item_ids: np.ndarray, k: int, stamp: dict[str, str], model_version: str, run: str, moment: datetime
) -> Any:
    """The function ``applyInPandas`` runs on each bucket: govern each user's list, chain the records."""
    from audits.trail import format_time
    from recommender.als import blas_single_thread

    when = format_time(moment)

    def build(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("subject", kind="stable")
        out: dict[str, list[Any]] = {name: [] for name in _OUTPUT_SCHEMA_NAMES}
        prev = GENESIS
        with blas_single_thread():
            for position, row in enumerate(frame.itertuples(index=False)):
                history = (np.asarray(row.hist_items, dtype=np.int32), np.asarray(row.hist_values, dtype=np.float32))
                ids, scores, tags = personalizer.govern(int(row.user), history, np.asarray(row.cand_items), np.asarray(row.cand_scores), k)
                fields = decision_fields(row.subject, [str(item_ids[i]) for i in ids], scores, tags, stamp, model_version, run, moment)
                sealed, slate, context = seal_fields(fields, bytes(row.record_key))
                digest = chain_hash(prev, record_json(sealed))
                values = {
                    **fields, "decided_at": when, "slate": slate, "context": context, "bucket": int(row.bucket),
                    "position": position, "prev_hash": prev, "hash": digest,
                }  # fmt: skip
                for name in _OUTPUT_SCHEMA_NAMES:
                    out[name].append(values[name])
                prev = digest
        return pd.DataFrame(out, columns=list(_OUTPUT_SCHEMA_NAMES))

    return build


_OUTPUT_SCHEMA_NAMES = tuple(part.strip().split(" ")[0] for part in _OUTPUT_SCHEMA.split(","))
