"""Decision records written by the Spark engine: Parquet partitions, each a hash chain, anchored on the trail.

A batch run writes one folder; each partition of it (``bucket=N``) holds the decision records of
a fixed share of the subjects, in a fixed order (``position``), each chained to the one before::

    hash_0 = SHA-256("recgov.spark-decisions.v1\\0" + GENESIS + JCS(record_0))
    hash_i = SHA-256("recgov.spark-decisions.v1\\0" + hash_{i-1} + JCS(record_i))

A record's ``slate`` and ``context`` are stored sealed, as the SQL decision log stores them
(:func:`audits.sealing.seal_decision`): the list, its scores, tags and context in one AES-256-GCM
token under the subject's record key, bound to the pseudonym and the decision id, the context
reduced to ``{}``. Erasure's crypto-shredding deletes that key, so the record becomes unreadable
where it lies while its chain (over the sealed bytes) still verifies. Readers open records with
:func:`subject_batch_records` (an access request; the count an erasure reports).

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
    "batch_record_keys",
    "chain_hash",
    "record_json",
    "seal_fields",
    "subject_batch_records",
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


def batch_record_keys(store: Any, subject_ids: list[str]) -> dict[str, tuple[str, bytes]]:
    """Each subject's pseudonym and record key (secrets created, keys filed as the decision log files them), in bulk.

    The key is the one filed for the pseudonym (an earlier one wins), so a batch record opens with the
    key every reader finds, and erasure's shredding removes it.
    """
    from audits._common import lookup_subject_secrets
    from audits.sealing import file_record_keys
    from audits.subjects import _installation_key, hold_head_for_keys, record_key

    if not subject_ids:
        return {}
    with store.session() as session:
        installation = _installation_key(session)
        hold_head_for_keys(session)
        found = lookup_subject_secrets(session, subject_ids, create=True, key=installation)
        derived = {entry[0]: record_key(entry[1]) for entry in found.values() if entry is not None}
        filed = file_record_keys(session, installation, derived)
    return {str(subject): (entry[0], filed[entry[0]]) for subject, entry in found.items() if entry is not None and entry[0] in filed}


def seal_fields(fields: Mapping[str, Any], key: bytes, cipher: Any = None) -> tuple[dict[str, Any], str, str]:
    """A record's fields with ``slate`` and ``context`` sealed under the subject's ``key`` (the stored form the chain
    covers), and the stored slate and context as JSON text."""
    from audits.sealing import seal_decision

    slate, context = seal_decision(
        key, fields["decision_id"], fields["subject"], canonical_json(fields["slate"]), canonical_json(fields["context"]), cipher
    )
    return {**fields, "slate": orjson.loads(slate), "context": orjson.loads(context)}, slate.decode(), context.decode()


def subject_batch_records(bind: Any, pseudonym: str) -> list[dict[str, Any]]:
    """The subject's records in every anchored batch folder, opened where their record key still exists.

    Each: ``{"run", "path", "bucket", "decision_id", "decided_at", "mode", "policy", "model_version",
    "slate", "context", "opened"}``; ``slate`` and ``context`` are None when the record cannot be
    opened (its key was shredded). A folder that is missing or unreadable is skipped here (``recgov
    trail verify`` reports it). ``bind``: a session or connection of the store.
    """
    import pyarrow.parquet as pq

    from audits.sealing import open_decisions

    found: list[dict[str, Any]] = []
    query = select(TrailEvent.payload, TrailEvent.objects).where(TrailEvent.action == ANCHOR_ACTION).order_by(TrailEvent.seq)
    for payload, objects in bind.execute(query):
        anchor = orjson.loads(payload) if isinstance(payload, (str, bytes)) else payload
        named = (orjson.loads(objects) if isinstance(objects, (str, bytes)) else objects) or {}
        root = Path(anchor["path"])
        if not root.is_dir():
            continue
        try:
            table = pq.read_table(root, filters=[("subject", "==", pseudonym)])
        except Exception:  # noqa: BLE001 - an unreadable folder is trail verify's finding, not the reader's
            continue
        for row in table.to_pylist():
            found.append({**row, "run": named.get("run"), "path": str(root)})
    opened = open_decisions(bind, [(r["decision_id"], r["subject"], json.loads(r["slate"]), json.loads(r["context"])) for r in found])
    out = []
    for row, plain in zip(found, opened):
        out.append({
            "run": row["run"], "path": row["path"], "bucket": row.get("bucket"), "decision_id": row["decision_id"],
            "decided_at": row["decided_at"], "mode": row["mode"], "policy": f"{row['pack_name']}@{row['pack_version']}",
            "model_version": row["model_version"], "slate": None if plain is None else plain[0],
            "context": None if plain is None else plain[1], "opened": plain is not None,
        })  # fmt: skip
    return out


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
