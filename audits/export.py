"""Export the trail for external auditors, and verify an export offline.

An export is a JSON-lines file, in this order::

    {"type": "header", "format": "recgov.trail.export", "version": 1, ...}
    {"type": "public_key", "key_id": ..., "algorithm": "ed25519", "public_key_pem": ...}   (each key)
    {"type": "checkpoint", "seq": ..., "hash": ..., "time": ..., "key_id": ..., "signature": ...}
    {"type": "event", "seq": 1, "time": ..., "actor": ..., "action": ..., "subject": ...,
     "objects": {...}, "payload": {...}, "prev_hash": ..., "hash": ...}
    ...

:func:`verify_export` needs no database and trusts nothing in the file: it
recomputes every hash from the event fields, follows the chain, and checks the
checkpoints with a public key the auditor obtained separately (the keys in the
file are a convenience, never trusted).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection

from audits.canonical import canonical_json
from audits.chain import Break, ChainWalker, TrailReport, by_seq, check_signatures, gc_paused, report
from audits.checkpoints import CheckpointRecord, list_checkpoints
from audits.keys import ALGORITHM, key_id_of, load_public_key
from audits.private_files import reserve_export
from audits.trail import GENESIS_HASH, read_head
from audits.verify import iter_rows
from recommender.errors import DataError

__all__ = ["EXPORT_FORMAT", "ExportSummary", "export_trail", "verify_export"]

EXPORT_FORMAT = "recgov.trail.export"
EXPORT_VERSION = 1
HASH_CONSTRUCTION = 'sha256(b"recgov.trail.v1\\x00" + prev_hash_hex_ascii + JCS(event without prev_hash and hash))'
_EVENT_LINE = (
    b'{"type":"event","seq":%d,"time":%b,"actor":%b,"action":%b,"subject":%b,'
    b'"objects":%b,"payload":%b,"prev_hash":%b,"hash":%b}\n'
)
_EVENT_FIELDS = ("seq", "time", "actor", "action", "subject", "objects", "payload", "prev_hash", "hash")


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    path: str
    n_events: int
    head_seq: int
    head_hash: str
    checkpoints: int
    key_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def _line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document) + b"\n"


def export_trail(
    connection: Connection, out: Path, *, progress: Callable[[int, int], None] | None = None
) -> ExportSummary:
    """Write the whole trail, its checkpoints and public keys to ``out`` (JSON lines).

    Use a snapshot connection (:meth:`audits.db.Store.snapshot`) so that the
    file is one consistent state. The file is written next to ``out`` and
    renamed into place at the end, so a failed export leaves no partial file.
    """
    out = Path(out)
    head_seq, head_hash = read_head(connection)
    checkpoints = [c for c in list_checkpoints(connection) if c.seq <= head_seq]
    keys = {c.key_id: c.public_key_pem for c in checkpoints}
    partial = reserve_export(out)  # owner-only from its first byte: the trail names subjects by pseudonym
    try:
        with partial.open("wb") as handle:
            handle.write(_header_line(head_seq, head_hash))
            for key_id, pem in keys.items():
                handle.write(
                    _line({"type": "public_key", "key_id": key_id, "algorithm": ALGORITHM, "public_key_pem": pem})
                )
            for c in checkpoints:
                handle.write(_checkpoint_line(c))
            n_events = _write_events(handle, connection, head_seq, progress)
            handle.flush()
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportSummary(
        path=str(out),
        n_events=n_events,
        head_seq=head_seq,
        head_hash=head_hash,
        checkpoints=len(checkpoints),
        key_ids=sorted(keys),
    )


def _header_line(head_seq: int, head_hash: str) -> bytes:
    """The first line: what the file is, how its hashes are made, and the head it ends at."""
    return _line(
        {
            "type": "header",
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "genesis_hash": GENESIS_HASH,
            "hash_construction": HASH_CONSTRUCTION,
            "head_seq": head_seq,
            "head_hash": head_hash,
        }
    )


def _checkpoint_line(c: CheckpointRecord) -> bytes:
    fields = {"seq": c.seq, "hash": c.hash, "time": c.time, "key_id": c.key_id, "signature": c.signature}
    return _line({"type": "checkpoint", **fields})


def _write_events(
    handle: IO[bytes], connection: Connection, head_seq: int, progress: Callable[[int, int], None] | None
) -> int:
    """Write the events up to ``head_seq``, a batch at a time; return how many were written.

    Each line is formatted from the stored fields directly (``objects`` and
    ``payload`` are stored as canonical JSON already), not through a dict.
    """
    dumps = orjson.dumps
    n_events = 0
    batches = iter_rows(connection)
    for rows in batches:
        chunk = []
        for seq, time, actor, action, subject, objects, payload, prev_hash, digest in rows:
            if seq > head_seq:
                break
            chunk.append(
                _EVENT_LINE
                % (
                    seq,
                    dumps(time),
                    dumps(actor),
                    dumps(action),
                    dumps(subject),
                    objects.encode(),
                    payload.encode(),
                    dumps(prev_hash),
                    dumps(digest),
                )
            )
        handle.write(b"".join(chunk))
        n_events += len(chunk)
        if progress is not None:
            progress(n_events, head_seq)
    batches.close()
    return n_events


def _event_row(document: dict[str, Any]) -> tuple[Any, ...]:
    """An export event as a chain row, its JSON fields re-encoded canonically."""
    return (
        document["seq"],
        document["time"],
        document["actor"],
        document["action"],
        document["subject"],
        canonical_json(document["objects"]).decode(),
        canonical_json(document["payload"]).decode(),
        document["prev_hash"],
        document["hash"],
    )


def _malformed(line_number: int, seq: int, detail: str, started: float) -> TrailReport:
    return TrailReport(
        intact=False,
        n_events=max(seq - 1, 0),
        head_seq=0,
        head_hash="",
        first_bad_seq=seq,
        reason="malformed",
        detail=f"line {line_number}: {detail}",
        elapsed_s=_time.perf_counter() - started,
    )


def verify_export(
    source: Path | IO[bytes], public_key_pem: bytes | str, *, batch_size: int = 20_000, signed_to_the_end: bool = False
) -> TrailReport:
    """Verify an exported trail with only the signer's public key; no database needed.

    The chain must be intact from event 1 to the end of the file, and at least
    one checkpoint signed by ``public_key_pem`` must verify and match the
    chain. Checkpoints by other keys are not trusted and do not count.

    Events after the last checkpoint that key signed are held by their hashes
    alone, which anyone can recompute: whoever holds the file can rewrite, add
    or remove them (and the header's head with them) unseen. With
    ``signed_to_the_end`` such events make the export fail (``unsigned_tail``);
    otherwise the report says how far the signature reaches (``signed_through``).

    Raises
    ------
    DataError
        The public key cannot be read, or the file is not an export.
    """
    with gc_paused():
        result = _verify_export(source, public_key_pem, batch_size=batch_size)
    if signed_to_the_end and result.intact and (result.signed_through or 0) < result.n_events:
        return _unsigned_tail(result, key_id_of(load_public_key(public_key_pem)))
    return result


class _Malformed(Exception):
    """A line of the file that is not part of an export; ends the verification as ``malformed``."""

    def __init__(self, line_number: int, seq: int, detail: str) -> None:
        super().__init__(detail)
        self.line_number, self.seq, self.detail = line_number, seq, detail


@dataclass(frozen=True)
class _Walked:
    """What walking an export's lines found: the chain as checked, and the checkpoints it was checked against."""

    walker: ChainWalker
    checkpoints: list[CheckpointRecord]
    """Every checkpoint in the file, whoever signed it."""
    valid: list[CheckpointRecord]
    """The checkpoints whose signature a trusted key verifies."""
    signature_failure: Break | None
    last_batch: int
    """Rows in the last batch fed to the walker."""


def _verify_export(source: Path | IO[bytes], public_key_pem: bytes | str, *, batch_size: int) -> TrailReport:
    started = _time.perf_counter()
    public_key = load_public_key(public_key_pem)
    trusted = {key_id_of(public_key): public_key}
    handle = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115
    try:
        header = _read_header(handle)
        try:
            walked = _walk(handle, trusted, batch_size)
        except _Malformed as bad:
            return _malformed(bad.line_number, bad.seq, bad.detail, started)
        walker = walked.walker
        head_seq, head_hash = header.get("head_seq"), header.get("head_hash")
        if not isinstance(head_seq, int) or not isinstance(head_hash, str):
            head_seq, head_hash = walker.n_events, walker.prev
        walker.finish(head_seq, head_hash)
        walker.diagnose(lambda row: range(1, max(head_seq, walker.n_events + walked.last_batch) + 2))
    finally:
        if handle is not source:
            handle.close()
    result = report(
        walker, walked.valid, walked.signature_failure, head_seq=head_seq, head_hash=head_hash, started=started
    )
    if result.intact and not walked.valid:
        return _unsigned(result, next(iter(trusted)), walked.checkpoints)
    return result


def _read_header(handle: IO[bytes]) -> dict[str, Any]:
    """The export's first line, refused unless it is a header of a version this recgov reads."""
    try:
        header = orjson.loads(handle.readline())
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        raise DataError(f"not a recgov trail export (its first line is not a {EXPORT_FORMAT!r} header)")
    if header.get("version") != EXPORT_VERSION:
        raise DataError(
            f"unsupported export version {header.get('version')!r}; this recgov reads version {EXPORT_VERSION}"
        )
    return header


def _trusting(
    checkpoints: list[CheckpointRecord], trusted: dict[str, Any]
) -> tuple[ChainWalker, list[CheckpointRecord], Break | None]:
    """A walker that checks the chain against the checkpoints a trusted key signed."""
    valid, signature_failure = check_signatures(checkpoints, public_keys=trusted)
    return ChainWalker(by_seq(valid)), valid, signature_failure


def _walk(handle: IO[bytes], trusted: dict[str, Any], batch_size: int) -> _Walked:
    """Read the lines after the header: public keys and checkpoints, then the events, fed to the walker in batches.

    Raises :class:`_Malformed` at the first line that cannot be read or is out of place.
    """
    checkpoints: list[CheckpointRecord] = []
    walker: ChainWalker | None = None
    valid: list[CheckpointRecord] = []
    signature_failure: Break | None = None
    batch: list[tuple[Any, ...]] = []
    line_number = 1
    for line in handle:
        line_number += 1
        expected_seq = (walker.expected if walker else 1) + len(batch)
        try:
            document = orjson.loads(line)
            kind = document["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as err:
            raise _Malformed(line_number, expected_seq, f"not a JSON object with a type: {err}") from None
        if kind == "event":
            if walker is None:  # the checkpoints are all read: check them once, before the first event
                walker, valid, signature_failure = _trusting(checkpoints, trusted)
            try:
                batch.append(_event_row(document))
            except (KeyError, DataError) as err:
                raise _Malformed(line_number, expected_seq, f"unreadable event: {err}") from None
            if len(batch) >= batch_size:
                walker.feed(batch)
                batch = []
                if walker.broken is not None:
                    break
        elif walker is not None:
            raise _Malformed(line_number, expected_seq, f"a {kind!r} line after the events")
        elif kind == "checkpoint":
            checkpoints.append(_checkpoint_record(document, line_number))
    if walker is None:
        walker, valid, signature_failure = _trusting(checkpoints, trusted)
    walker.feed(batch)
    return _Walked(walker, checkpoints, valid, signature_failure, last_batch=len(batch))


def _checkpoint_record(document: dict[str, Any], line_number: int) -> CheckpointRecord:
    try:
        return CheckpointRecord(
            seq=int(document["seq"]),
            hash=str(document["hash"]),
            time=str(document["time"]),
            key_id=str(document["key_id"]),
            signature=str(document["signature"]),
            public_key_pem="",
        )
    except (KeyError, ValueError, TypeError) as err:
        raise _Malformed(line_number, 1, f"unreadable checkpoint: {err}") from None


def _unsigned_tail(result: TrailReport, key_id: str) -> TrailReport:
    """An intact chain whose last events no checkpoint of the auditor's key covers: not verified to its end."""
    first, last = (result.signed_through or 0) + 1, result.n_events
    return TrailReport(
        intact=False,
        n_events=result.n_events,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        first_bad_seq=first,
        reason="unsigned_tail",
        detail=(
            f"events {first} to {last} come after the last checkpoint signed by key {key_id} (seq {first - 1}): "
            "nothing in the export proves they were not rewritten, added or removed; ask for an export signed to its "
            "end ('recgov trail export' signs the head first; over the API, POST /v1/trail/checkpoint before "
            "GET /v1/trail/export)"
        ),
        checkpoints_verified=result.checkpoints_verified,
        signed_through=result.signed_through,
        elapsed_s=result.elapsed_s,
    )


def _unsigned(result: TrailReport, key_id: str, checkpoints: list[CheckpointRecord]) -> TrailReport:
    """An intact chain that no checkpoint signed by the auditor's key vouches for: not verified."""
    signed_by = sorted({c.key_id for c in checkpoints}) or ["none"]
    return TrailReport(
        intact=False,
        n_events=result.n_events,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        reason="no_checkpoint",
        detail=f"no checkpoint in the export is signed by key {key_id} (signed by: {', '.join(signed_by)})",
        elapsed_s=result.elapsed_s,
    )
