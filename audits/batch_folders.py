"""Decision records kept in Parquet batch folders, anchored on the trail: their chains and what a folder may hold.

``recgov batch`` (:mod:`governance.spark`) writes a run's decision records into one folder, one
partition per bucket (``bucket=N``), each a hash chain over its records in a fixed order::

    hash_0 = SHA-256("recgov.spark-decisions.v1\\0" + GENESIS + JCS(record_0))
    hash_i = SHA-256("recgov.spark-decisions.v1\\0" + hash_{i-1} + JCS(record_i))

and anchors the run with one ``decisions.spark_batch`` trail event: the folder, and per partition
its record count and the hash at its head. ``JCS(record)`` is the canonical JSON of the record's
:data:`audits.decision_record.DECISION_FIELDS` (``decided_at`` as a trail time string), the very
bytes the SQL decision log's batch digest covers for the same record.

What an anchored folder may hold, and nothing else:

* a folder ``bucket=N`` (``N`` a decimal number without leading zeros) for each anchored partition,
  holding the partition's Parquet data files (``*.parquet``) and the checksum file Hadoop writes
  beside each (``.NAME.crc``);
* at its root, the marker Spark writes when a job succeeded (``_SUCCESS``, empty) and its checksum
  (``._SUCCESS.crc``).

A checksum file must hold the checksum of its file, as Hadoop writes it, and nothing else: no file of the
folder holds data its chains do not cover.

:func:`verify_spark_batches` (part of :func:`audits.verify.verify_store`) reads every anchored folder
back with pyarrow (no Spark or Java needed), recomputes every chain from the records' own fields, and
reports a changed, removed, added or reordered record, a missing or unreadable file, a column beside a
record's, a partition that is not anchored, and any other file or folder. Readers of the records
(:func:`governance.spark.records.subject_batch_records`) read only :func:`partition_files`, the data
files of the anchored partitions: a file placed anywhere else is never taken for a record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from audits.canonical import canonical_json
from audits.decision_record import DECISION_FIELDS
from audits.models import TrailEvent
from audits.trail import format_time

__all__ = [
    "ANCHOR_ACTION",
    "GENESIS",
    "RECORD_COLUMNS",
    "SEAL_BOUND_FIELDS",
    "chain_hash",
    "partition_files",
    "record_json",
    "sealed_clear_fields",
    "verify_spark_batches",
    "written_partitions",
]

ANCHOR_ACTION = "decisions.spark_batch"
GENESIS = "0" * 64
_DOMAIN = b"recgov.spark-decisions.v1\x00"
RECORD_COLUMNS = (*DECISION_FIELDS, "position", "prev_hash", "hash")
"""The columns of a partition's Parquet files (``slate`` and ``context`` as canonical JSON text,
``decided_at`` as a trail time string), besides the ``bucket`` folder."""
SEAL_BOUND_FIELDS = ("decided_at", "mode", "pack_name", "pack_version", "pack_hash", "model_version")
"""The fields a record keeps in the clear besides its id and pseudonym, which its seal binds (a ``v2`` token,
:func:`audits.sealing.seal_decision`): a sealed list copied into a record of another model, time or mode
does not open."""
_PARTITION = re.compile(r"bucket=(0|[1-9][0-9]{0,17})")
_ROOT_BOOKKEEPING = frozenset({"_SUCCESS", "._SUCCESS.crc"})
MAX_LISTED = 10
"""Stray entries named one by one in a folder's problem; the rest are counted."""


def record_json(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of one record's :data:`DECISION_FIELDS` (``decided_at`` a datetime or a trail time string)."""
    fields = {name: record[name] for name in DECISION_FIELDS}
    moment = fields["decided_at"]
    fields["decided_at"] = moment if isinstance(moment, str) else format_time(moment)
    return canonical_json(fields)


def sealed_clear_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's :data:`SEAL_BOUND_FIELDS` as its seal binds them (``decided_at`` as a trail time string)."""
    fields = {name: record[name] for name in SEAL_BOUND_FIELDS}
    moment = fields["decided_at"]
    fields["decided_at"] = moment if isinstance(moment, str) else format_time(moment)
    return fields


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """The hash of a record whose canonical JSON is ``canonical``, chained to ``prev_hash``."""
    return hashlib.sha256(_DOMAIN + prev_hash.encode() + canonical).hexdigest()


def _is_checksum_of(name: str, names: set[str]) -> bool:
    """Whether ``name`` is the Hadoop checksum file (``.X.crc``) of a file ``X`` beside it."""
    return name.startswith(".") and name.endswith(".crc") and name[1:-4] in names


def _partition_entries(folder: Path) -> tuple[list[Path], list[str], list[Path]]:
    """A partition folder's data files (sorted), the names of everything else in it, and the checksum files beside
    its files (their content is checked by :func:`_checksum_holds`)."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    files = {p.name for p in entries if p.is_file()}
    data, stray, checksums = [], [], []
    for entry in entries:
        name = entry.name
        if entry.is_file() and name.endswith(".parquet") and not name.startswith((".", "_")):
            data.append(entry)
        elif entry.is_file() and _is_checksum_of(name, files):
            checksums.append(entry)
        else:
            stray.append(name + ("/" if entry.is_dir() else ""))
    return data, stray, checksums


_CRC_MAGIC = b"crc\x00"


def _checksum_holds(checksum: Path) -> bool:
    """Whether the Hadoop checksum file ``.NAME.crc`` is the checksum of ``NAME`` beside it, as Hadoop's local file
    system writes one: ``crc\\0``, the bytes per chunk (a big-endian int), then the CRC-32 of every chunk. Anything
    else in it is data the batch's chains do not cover."""
    import struct
    import zlib

    held = checksum.read_bytes()
    if len(held) < 8 or not held.startswith(_CRC_MAGIC):
        return False
    (chunk,) = struct.unpack(">i", held[4:8])
    if not 0 < chunk <= 1 << 24:
        return False
    data = (checksum.parent / checksum.name[1:-4]).read_bytes()
    due = b"".join(struct.pack(">I", zlib.crc32(data[i : i + chunk])) for i in range(0, len(data), chunk))
    return held[8:] == due


def partition_files(root: Path, bucket: int) -> list[Path]:
    """The data files of the anchored partition ``bucket`` of the batch folder ``root`` (none if it is missing)."""
    folder = root / f"bucket={int(bucket)}"
    if not folder.is_dir():
        return []
    return _partition_entries(folder)[0]


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def verify_spark_batches(connection: Any) -> list[dict[str, Any]]:
    """Check every anchored batch folder against its anchor; return the problems (``{"batch_seq", "problem"}``; empty: intact)."""
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
    anchored = {int(p["bucket"]): p for p in anchor["partitions"]}
    found: dict[int, Path] = {}
    problems: list[str] = []
    stray: list[str] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        match = _PARTITION.fullmatch(entry.name)
        if match is not None and entry.is_dir():
            found[int(match.group(1))] = entry
        elif entry.name.startswith("bucket="):
            problems.append(f"{entry.name}{'/' if entry.is_dir() else ''} in {root} is not a partition of this batch")
        elif not (entry.is_file() and entry.name in _ROOT_BOOKKEEPING):
            stray.append(entry.name + ("/" if entry.is_dir() else ""))
    if stray:
        problems.append(f"{_listed(stray)} in {root} {'is' if len(stray) == 1 else 'are'} not part of the batch (not an anchored bucket=N partition)")
    marker = root / "_SUCCESS"
    if marker.is_file() and marker.stat().st_size:
        problems.append(f"_SUCCESS in {root} is not empty, as the marker of a finished Spark job is")
    crc = root / "._SUCCESS.crc"
    if crc.is_file() and not (marker.is_file() and _checksum_holds(crc)):
        problems.append(f"._SUCCESS.crc in {root} is not the checksum of _SUCCESS")
    for bucket in sorted(set(found) - set(anchored)):
        problems.append(f"partition bucket={bucket} is not anchored on the trail")
    for bucket, part in sorted(anchored.items()):
        if bucket not in found:
            problems.append(f"partition bucket={bucket} ({part['records']} records) is missing")
            continue
        data, stray, checksums = _partition_entries(found[bucket])
        if stray:
            problems.append(f"partition bucket={bucket}: {_listed(stray)} {'is' if len(stray) == 1 else 'are'} not a data file of the partition")
        for checksum in checksums:
            if not _checksum_holds(checksum):
                problems.append(f"partition bucket={bucket}: {checksum.name} is not the checksum of {checksum.name[1:-4]}")
        problem = _check_partition(data, part)
        if problem:
            problems.append(f"partition bucket={bucket}: {problem}")
    return problems


def _check_partition(data: list[Path], anchored: Mapping[str, Any]) -> str | None:
    """The partition's data files against its anchor: count, positions, chain, head (None: they hold)."""
    rows = _stored_rows(data)
    if isinstance(rows, str):
        return rows
    if len(rows) != int(anchored["records"]):
        return f"the trail says {anchored['records']} records, {len(rows)} are stored"
    problem, head = _chain(rows)
    if problem is not None:
        return problem
    if head != anchored["head"]:
        return "the chain's head is not the anchored one"
    return None


def _stored_rows(data: list[Path]) -> list[dict[str, Any]] | str:
    """The records of a partition's data files in ``position`` order, or the problem that keeps them from being read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for path in data:  # a column beside the record's is data the chain does not cover: no part of the batch
            extra = [name for name in pq.read_schema(path).names if name not in RECORD_COLUMNS]
            if extra:
                return f"{path.name} holds the column(s) {_listed(extra)}, which are not part of a record"
        tables = [pq.read_table(path, columns=list(RECORD_COLUMNS)) for path in data]
        table = pa.concat_tables(tables) if tables else None
    except Exception as err:  # noqa: BLE001 - an unreadable file is a finding, reported with its cause
        return f"unreadable ({type(err).__name__}: {str(err)[:200]})"
    return [] if table is None else table.sort_by("position").to_pylist()


def _chain(rows: list[dict[str, Any]]) -> tuple[str | None, str]:
    """``(problem, head)``: the chain recomputed from the records' own fields; the problem is None when every
    record holds its position and hashes, and the head is then the last record's hash (:data:`GENESIS` if none)."""
    prev = GENESIS
    for index, row in enumerate(rows):
        if row["position"] != index:
            return f"positions are not 0..{len(rows) - 1} (found {row['position']} at {index})", prev
        try:
            record = {**row, "slate": json.loads(row["slate"]), "context": json.loads(row["context"])}
        except (TypeError, ValueError):
            return f"record {index} holds JSON that does not parse", prev
        expected = chain_hash(prev, record_json(record))
        if row["prev_hash"] != prev or row["hash"] != expected:
            return f"record {index} (decision {row['decision_id']}) does not match its chain (changed, removed or reordered)", prev
        prev = expected
    return None, prev


def written_partitions(root: Path) -> list[dict[str, Any]]:
    """The partitions of a batch folder as they are written: ``{"bucket", "records", "head"}`` each, bucket order.

    Every chain is recomputed from the records read back from the files, so an anchor made from these holds
    exactly what is on disk (whatever a writer held in memory), and :func:`verify_spark_batches` checks it
    the same way.

    Raises
    ------
    ValueError
        A partition's files cannot be read or do not hold a whole chain (the message names the partition and
        the problem), or something other than a ``bucket=N`` partition folder is a partition's name.
    """
    partitions: list[dict[str, Any]] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.startswith("bucket="):
            continue
        match = _PARTITION.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            raise ValueError(f"{entry.name} in {root} is not a partition folder (bucket=N)")
        rows = _stored_rows(_partition_entries(entry)[0])
        problem, head = _chain(rows) if not isinstance(rows, str) else (rows, GENESIS)
        if problem is not None:
            raise ValueError(f"partition {entry.name} of {root} as written: {problem}")
        partitions.append({"bucket": int(match.group(1)), "records": len(rows), "head": head})
    return sorted(partitions, key=lambda p: p["bucket"])
