"""Decision records written by the Spark engine: Parquet partitions, each a hash chain, anchored on the trail.

A batch run writes one folder; each partition of it (``bucket=N``) holds the decision records of
a fixed share of the subjects, in a fixed order (``position``), each chained to the one before::

    hash_0 = SHA-256("recgov.spark-decisions.v1\\0" + GENESIS + JCS(record_0))
    hash_i = SHA-256("recgov.spark-decisions.v1\\0" + hash_{i-1} + JCS(record_i))

``JCS(record)`` is the canonical JSON (RFC 8785, :func:`audits.canonical.canonical_json`) of the
record's :data:`audits.decision_record.DECISION_FIELDS`, ``decided_at`` as a trail time string:
the very bytes the SQL decision log's batch digest covers for the same record. One trail event
(``decisions.spark_batch``) anchors the run: the folder, and per partition its record count and
the hash at its head. :func:`verify_spark_batches` (run by ``recgov trail verify``) reads every
anchored folder back with pyarrow (no Spark or Java needed) and recomputes every chain from the
records' own fields: a changed, removed, added or reordered record, a missing file or a
partition that is not anchored breaks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from audits._common import actor_name
from audits.canonical import canonical_json
from audits.decision_record import DECISION_FIELDS
from audits.models import TrailEvent
from audits.trail import append_event, format_time

__all__ = [
    "ANCHOR_ACTION",
    "GENESIS",
    "RECORD_COLUMNS",
    "anchor_batch",
    "chain_hash",
    "record_json",
    "verify_spark_batches",
]

ANCHOR_ACTION = "decisions.spark_batch"
GENESIS = "0" * 64
_DOMAIN = b"recgov.spark-decisions.v1\x00"
RECORD_COLUMNS = (*DECISION_FIELDS, "position", "prev_hash", "hash")
"""The columns of a partition's Parquet files (``slate`` and ``context`` as canonical JSON text,
``decided_at`` as a trail time string), besides the ``bucket`` folder."""


def record_json(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of one record's :data:`DECISION_FIELDS` (``decided_at`` a datetime or a trail time string)."""
    fields = {name: record[name] for name in DECISION_FIELDS}
    moment = fields["decided_at"]
    fields["decided_at"] = moment if isinstance(moment, str) else format_time(moment)
    return canonical_json(fields)


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """The hash of a record whose canonical JSON is ``canonical``, chained to ``prev_hash``."""
    return hashlib.sha256(_DOMAIN + prev_hash.encode() + canonical).hexdigest()


def anchor_batch(
    store: Any,
    *,
    run: str,
    path: str,
    partitions: list[dict[str, Any]],
    model_version: str,
    pack: Mapping[str, str],
    actor: str | None = None,
) -> int:
    """Append the ``decisions.spark_batch`` event that anchors a run's partitions; returns its sequence number.

    ``partitions``: ``{"bucket", "records", "head"}`` each.
    """
    parts = sorted(({"bucket": int(p["bucket"]), "records": int(p["records"]), "head": str(p["head"])} for p in partitions), key=lambda p: p["bucket"])
    with store.session() as session:
        event = append_event(
            session,
            actor=actor_name(actor),
            action=ANCHOR_ACTION,
            objects={"run": run, "model": model_version, "policy": f"{pack['pack']}@{pack['pack_version']}"},
            payload={
                "path": str(path), "records": sum(p["records"] for p in parts), "partitions": parts,
                "pack_hash": pack["pack_hash"], "chain": "sha256(recgov.spark-decisions.v1 | prev | JCS(record))",
            },  # fmt: skip
        )
        return int(event.seq)


def verify_spark_batches(connection: Any) -> list[dict[str, Any]]:
    """Check every anchored Spark batch against its files; return the problems (``{"batch_seq", "problem"}``; empty: intact)."""
    problems: list[dict[str, Any]] = []
    query = select(TrailEvent.seq, TrailEvent.payload).where(TrailEvent.action == ANCHOR_ACTION).order_by(TrailEvent.seq)
    for seq, payload in connection.execute(query):
        for problem in _check_batch(orjson.loads(payload)):
            problems.append({"batch_seq": int(seq), "problem": problem})
    return problems


def _check_batch(anchor: Mapping[str, Any]) -> list[str]:
    root = Path(anchor["path"])
    if not root.is_dir():
        return [f"the folder {root} of the batch's decision records is missing"]
    found = {int(p.name.split("=", 1)[1]): p for p in root.glob("bucket=*") if p.is_dir()}
    problems = []
    anchored = {int(p["bucket"]): p for p in anchor["partitions"]}
    for bucket in sorted(set(found) - set(anchored)):
        problems.append(f"partition bucket={bucket} is not anchored on the trail")
    for bucket, part in sorted(anchored.items()):
        if bucket not in found:
            problems.append(f"partition bucket={bucket} ({part['records']} records) is missing")
            continue
        problem = _check_partition(found[bucket], part)
        if problem:
            problems.append(f"partition bucket={bucket}: {problem}")
    return problems


def _check_partition(folder: Path, anchored: Mapping[str, Any]) -> str | None:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(folder, columns=list(RECORD_COLUMNS))
    except Exception as err:  # noqa: BLE001 - an unreadable file is a finding, reported with its cause
        return f"unreadable ({type(err).__name__}: {str(err)[:200]})"
    rows = table.sort_by("position").to_pylist()
    if len(rows) != int(anchored["records"]):
        return f"the trail says {anchored['records']} records, {len(rows)} are stored"
    prev = GENESIS
    for index, row in enumerate(rows):
        if row["position"] != index:
            return f"positions are not 0..{len(rows) - 1} (found {row['position']} at {index})"
        try:
            record = {**row, "slate": json.loads(row["slate"]), "context": json.loads(row["context"])}
        except (TypeError, ValueError):
            return f"record {index} holds JSON that does not parse"
        expected = chain_hash(prev, record_json(record))
        if row["prev_hash"] != prev or row["hash"] != expected:
            return f"record {index} (decision {row['decision_id']}) does not match its chain (changed, removed or reordered)"
        prev = expected
    if prev != anchored["head"]:
        return "the chain's head is not the anchored one"
    return None
