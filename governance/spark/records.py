"""Decision records written by the Spark engine: Parquet partitions, each a hash chain, anchored on the trail.

A batch run writes one folder; each partition of it (``bucket=N``) holds the decision records of
a fixed share of the subjects, in a fixed order (``position``), each chained to the one before
(the chain, what a folder may hold and its verification: :mod:`audits.batch_folders`, whose names
this module re-exports).

A record's ``slate`` and ``context`` are stored sealed, as the SQL decision log stores them
(:func:`audits.sealing.seal_decision`): the list, its scores, tags and context in one AES-256-GCM
token under the subject's record key, bound to the pseudonym, the decision id and the fields the
record keeps in the clear (:data:`audits.batch_folders.SEAL_BOUND_FIELDS`: its time, mode, policy
and model version; records sealed before that binding existed hold ``v1`` tokens, bound to the
pseudonym and decision id, and still open), the context reduced to ``{}``. Erasure's
crypto-shredding deletes that key, so the record becomes unreadable where it lies while its chain
(over the sealed bytes) still verifies. Readers open records with :func:`subject_batch_records` (an
access request; the count an erasure reports), which reads the anchored partitions only.

One trail event (``decisions.spark_batch``) anchors the run: the folder, and per partition its
record count and the hash at its head. :func:`verify_spark_batches` (run by ``recgov trail verify``)
reads every anchored folder back with pyarrow (no Spark or Java needed) and recomputes every chain
from the records' own fields: a changed, removed, added or reordered record, a missing file, a
partition that is not anchored or any other file or folder breaks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from audits._common import actor_name
from audits.batch_folders import (
    ANCHOR_ACTION,
    GENESIS,
    RECORD_COLUMNS,
    SEAL_BOUND_FIELDS,
    chain_hash,
    partition_files,
    record_json,
    sealed_clear_fields,
    verify_spark_batches,
)
from audits.canonical import canonical_json
from audits.models import TrailEvent
from audits.trail import append_event

__all__ = [
    "ANCHOR_ACTION",
    "GENESIS",
    "RECORD_COLUMNS",
    "SEAL_BOUND_FIELDS",
    "anchor_batch",
    "batch_record_keys",
    "chain_hash",
    "record_json",
    "seal_fields",
    "subject_batch_records",
    "verify_spark_batches",
]


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
    covers), and the stored slate and context as JSON text.

    The seal binds the record's clear fields (:data:`SEAL_BOUND_FIELDS`) besides its pseudonym and decision id:
    the sealed list opens only in a record of the same time, mode, policy and model version.
    """
    from audits.sealing import seal_decision

    slate, context = seal_decision(
        key, fields["decision_id"], fields["subject"], canonical_json(fields["slate"]), canonical_json(fields["context"]), cipher,
        clear=sealed_clear_fields(fields),
    )  # fmt: skip
    return {**fields, "slate": orjson.loads(slate), "context": orjson.loads(context)}, slate.decode(), context.decode()


def subject_batch_records(bind: Any, pseudonym: str) -> list[dict[str, Any]]:
    """The subject's records in the anchored partitions of every anchored batch folder, opened where they can be.

    Each: ``{"run", "path", "bucket", "decision_id", "decided_at", "mode", "policy", "model_version",
    "slate", "context", "opened"}``; ``slate`` and ``context`` are None when the record cannot be
    opened (its key was shredded, or its seal does not open with the fields the record shows).
    Only the data files of the partitions the trail anchors are read
    (:func:`audits.batch_folders.partition_files`): a file elsewhere in the folder is no record of
    the batch (``recgov trail verify`` reports it). A partition that is missing or unreadable is
    skipped here (``recgov trail verify`` reports it too). ``bind``: a session or connection of the store.
    """
    import pyarrow.parquet as pq

    from audits.sealing import open_decisions

    found: list[dict[str, Any]] = []
    query = select(TrailEvent.payload, TrailEvent.objects).where(TrailEvent.action == ANCHOR_ACTION).order_by(TrailEvent.seq)
    for payload, objects in bind.execute(query):
        anchor = orjson.loads(payload) if isinstance(payload, (str, bytes)) else payload
        named = (orjson.loads(objects) if isinstance(objects, (str, bytes)) else objects) or {}
        root = Path(anchor["path"])
        for bucket in sorted(int(p["bucket"]) for p in anchor["partitions"]):
            files = partition_files(root, bucket)
            if not files:
                continue
            try:
                table = pq.read_table([str(f) for f in files], columns=list(RECORD_COLUMNS), filters=[("subject", "==", pseudonym)])
            except Exception:  # noqa: BLE001 - an unreadable partition is trail verify's finding, not the reader's
                continue
            for row in table.to_pylist():
                found.append({**row, "bucket": bucket, "run": named.get("run"), "path": str(root)})
    parsed = [_parsed(r) for r in found]  # a record whose JSON does not parse is trail verify's finding: not opened
    readable = [(r["decision_id"], r["subject"], r["slate"], r["context"], sealed_clear_fields(r)) for r, ok in zip(found, parsed) if ok]
    opened = iter(open_decisions(bind, readable))
    out = []
    for row, ok in zip(found, parsed):
        plain = next(opened) if ok else None
        out.append({
            "run": row["run"], "path": row["path"], "bucket": row["bucket"], "decision_id": row["decision_id"],
            "decided_at": row["decided_at"], "mode": row["mode"], "policy": f"{row['pack_name']}@{row['pack_version']}",
            "model_version": row["model_version"], "slate": None if plain is None else plain[0],
            "context": None if plain is None else plain[1], "opened": plain is not None,
        })  # fmt: skip
    return out


def _parsed(row: dict[str, Any]) -> bool:
    """Parse the stored ``slate`` and ``context`` JSON text of ``row`` in place; False when either does not parse."""
    try:
        row["slate"], row["context"] = json.loads(row["slate"]), json.loads(row["context"])
    except (TypeError, ValueError):
        return False
    return True


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
