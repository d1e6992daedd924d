"""Export the trail for external auditors, and verify an export offline.

An export is a JSON-lines file, in this order::

    {"type": "header", "format": "recgov.trail.export", "version": 2, "head_seq": ..., "head_hash": ...,
     "first_seq": 1, "last_seq": ..., "n_events": ..., "checkpoints": ..., "exported_at": ...,
     "key_id": ..., "signature": ...}
    {"type": "public_key", "key_id": ..., "algorithm": "ed25519", "public_key_pem": ...}   (each key)
    {"type": "checkpoint", "seq": ..., "hash": ..., "time": ..., "key_id": ..., "signature": ...}
    {"type": "event", "seq": 1, "time": ..., "actor": ..., "action": ..., "subject": ...,
     "objects": {...}, "payload": {...}, "prev_hash": ..., "hash": ...}
    ...

:func:`verify_export` needs no database and trusts nothing in the file: it
recomputes every hash from the event fields, follows the chain, and checks the
checkpoints with a public key the auditor obtained separately (the keys in the
file are a convenience, never trusted).

The header is signed at export time by the installation's trail key, over ::

    b"recgov.trail.export.v2\\x00" + JCS(the header without "signature")

so the export's extent is proven: the file must hold events ``first_seq`` to
``last_seq`` and end at the signed head hash, with the signed number of
checkpoints. A file cut short (even between checkpoints, its later checkpoints
removed with it), grown, or with an edited header fails. A checkpoint proves
only what existed up to it; the signed header proves where the export ends.
The header signature vouches for what the store held when the file was
written, not for a verification of the store (a checkpoint, signed only after
one, does that): events after the last checkpoint still fail as
``unsigned_tail`` unless the auditor allows them.

Version 1 exports (before the header was signed) are read too, but their extent
is unproven: whoever holds one can cut events after a checkpoint and edit the
head. They fail as ``unsigned_header`` unless the auditor allows it, and then
the report's ``extent`` says what the file proves.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection, select

from audits.canonical import canonical_json
from audits.chain import Break, ChainWalker, TrailReport, by_seq, check_signatures, gc_paused, report
from audits.checkpoints import CheckpointRecord, list_checkpoints
from audits.keys import ALGORITHM, SigningKey, key_id_of, load_public_key, verify_signature
from audits.models import TrailEvent
from audits.private_files import reserve_export
from audits.trail import GENESIS_HASH, read_head
from audits.verify import iter_rows
from recommender.errors import DataError

__all__ = ["EXPORT_FORMAT", "HEADER_DOMAIN", "ExportSummary", "export_trail", "header_message", "verify_export"]

EXPORT_FORMAT = "recgov.trail.export"
EXPORT_VERSION = 2
UNSIGNED_HEADER_VERSION = 1
"""The version written before headers were signed: still read, its extent unproven."""
HEADER_DOMAIN = b"recgov.trail.export.v2\x00"
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
    header_key_id: str
    """The key that signed the header (the export's extent)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def _line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document) + b"\n"


def export_trail(
    connection: Connection,
    out: Path,
    *,
    signing_key: SigningKey,
    through: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the whole trail, its checkpoints and public keys to ``out`` (JSON lines), the header signed by ``signing_key``.

    Use a snapshot connection (:meth:`audits.db.Store.snapshot`) so that the
    file is one consistent state. The file is written next to ``out`` and
    renamed into place at the end, so a failed export leaves no partial file.
    Record the key first (:func:`audits.checkpoints.register_signing_key`) so
    that ``GET /v1/trail/keys`` offers it to auditors. ``through``: end the
    export at that event (a checkpoint just signed), not at the current head,
    so that events appended since do not form an unsigned tail.
    """
    out = Path(out)
    head_seq, head_hash = read_head(connection)
    if through is not None and through < head_seq:
        head_seq, head_hash = through, _hash_of(connection, through)
    checkpoints = [c for c in list_checkpoints(connection) if c.seq <= head_seq]
    keys = {c.key_id: c.public_key_pem for c in checkpoints}
    keys.setdefault(signing_key.key_id, signing_key.public_key_pem)
    partial = reserve_export(out)  # owner-only from its first byte: the trail names subjects by pseudonym
    try:
        with partial.open("wb") as handle:
            handle.write(_header_line(head_seq, head_hash, len(checkpoints), signing_key))
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
        header_key_id=signing_key.key_id,
    )


def _hash_of(connection: Connection, seq: int) -> str:
    """The stored hash of event ``seq``."""
    digest = connection.execute(select(TrailEvent.hash).where(TrailEvent.seq == seq)).scalar_one_or_none()
    if digest is None:
        raise DataError(f"the trail holds no event {seq} to end the export at")
    return str(digest)


def header_message(header: dict[str, Any]) -> bytes:
    """The bytes a header's signature covers: every field of the header but ``signature``."""
    return HEADER_DOMAIN + canonical_json({k: v for k, v in header.items() if k != "signature"})


def _header_line(head_seq: int, head_hash: str, n_checkpoints: int, key: SigningKey) -> bytes:
    """The first line: what the file is, how its hashes are made, the extent it holds, signed."""
    header: dict[str, Any] = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "genesis_hash": GENESIS_HASH,
        "hash_construction": HASH_CONSTRUCTION,
        "head_seq": head_seq,
        "head_hash": head_hash,
        "first_seq": 1,
        "last_seq": head_seq,
        "n_events": head_seq,
        "checkpoints": n_checkpoints,
        "key_id": key.key_id,
    }
    header["signature"] = key.sign(header_message(header))
    return _line(header)


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
    source: Path | IO[bytes],
    public_key_pem: bytes | str | Sequence[bytes | str],
    *,
    batch_size: int = 20_000,
    signed_to_the_end: bool = True,
    signed_header: bool = True,
) -> TrailReport:
    """Verify an exported trail with only the signer's public key (or keys); no database needed.

    The chain must be intact from event 1 to the end of the file, and at least
    one checkpoint signed by a trusted key (``public_key_pem``: one PEM, or
    several, e.g. before and after a rotation) must verify and match the
    chain. Checkpoints by other keys are not trusted and do not count.

    The header must be signed by a trusted key, and the file must hold exactly
    the extent it signs (events 1 to its head, ending at its head hash, with its
    number of checkpoints): a cut, grown or edited file fails (``truncated``,
    ``beyond_head``, ``head_mismatch``, ``header_mismatch``,
    ``bad_header_signature``, ``untrusted_header``). A version 1 export has an
    unsigned header: with ``signed_header`` (the default) it fails
    (``unsigned_header``); without, it is checked as far as its checkpoints
    reach and the report's ``extent`` says that its end is unproven.

    Events after the last checkpoint a trusted key signed are not vouched for
    by a verification of the store. With ``signed_to_the_end`` (the default,
    as ``recgov trail verify-export``) they make the export fail
    (``unsigned_tail``); otherwise the report says how far the checkpoints
    reach (``signed_through``).

    Raises
    ------
    DataError
        A public key cannot be read, or the file is not an export.
    """
    pems = [public_key_pem] if isinstance(public_key_pem, (bytes, str)) else list(public_key_pem)
    if not pems:
        raise DataError("no public key given: verifying an export needs the signer's public key")
    trusted = {key_id_of(key): key for key in (load_public_key(pem) for pem in pems)}
    with gc_paused():
        result = _verify_export(source, trusted, batch_size=batch_size, signed_header=signed_header)
    if signed_to_the_end and result.intact and (result.signed_through or 0) < result.n_events:
        return _unsigned_tail(result, trusted)
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


def _verify_export(
    source: Path | IO[bytes], trusted: dict[str, Any], *, batch_size: int, signed_header: bool
) -> TrailReport:
    started = _time.perf_counter()
    handle = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115
    try:
        header = _read_header(handle)
        if header["version"] == UNSIGNED_HEADER_VERSION:
            extent = None
        else:
            refused, extent = _check_header(header, trusted, started)
            if refused is not None:
                return refused
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
    if extent is not None:
        result = dataclasses.replace(result, extent=extent)
        result = _against_signed_header(result, header, len(walked.checkpoints))
    if result.intact and not walked.valid:
        return _unsigned(result, trusted, walked.checkpoints)
    if extent is None and result.intact:
        return _unproven_extent(result, signed_header=signed_header)
    return result


def _header_refused(reason: str, detail: str, started: float) -> TrailReport:
    return TrailReport(
        intact=False,
        n_events=0,
        head_seq=0,
        head_hash="",
        reason=reason,
        detail=f"line 1 (header): {detail}",
        elapsed_s=_time.perf_counter() - started,
    )


_SIGNED_INTS = ("head_seq", "first_seq", "last_seq", "n_events", "checkpoints")


def _check_header(
    header: dict[str, Any], trusted: dict[str, Any], started: float
) -> tuple[TrailReport | None, str | None]:
    """A signed header's signature, by a trusted key, and fields that agree with each other; (refusal, extent)."""
    key_id, signature = header.get("key_id"), header.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str):
        missing = "key_id" if not isinstance(key_id, str) else "signature"
        return _header_refused(
            "bad_header_signature",
            f"a version {header['version']} header must be signed, and its {missing!r} is missing or not text: "
            "the header was edited",
            started,
        ), None
    if key_id not in trusted:
        return _header_refused(
            "untrusted_header",
            f"the header is signed by key {key_id}, not by {_keys(trusted)}: nothing proves where the export ends. "
            "Obtain that key over a channel you trust (GET /v1/trail/keys lists it) and give it too",
            started,
        ), None
    if not verify_signature(trusted[key_id], signature, header_message(header)):
        return _header_refused(
            "bad_header_signature",
            f"the header's signature does not verify with key {key_id}: the header was edited after export "
            "(its head, extent, checkpoint count or time is not what was signed)",
            started,
        ), None
    wrong = [name for name in _SIGNED_INTS if not isinstance(header.get(name), int) or isinstance(header.get(name), bool)]
    if wrong or not isinstance(header.get("head_hash"), str):
        return _header_refused(
            "malformed", f"the signed header's {', '.join(wrong) or 'head_hash'} is not a number (or text)", started
        ), None
    first, last, n_events, head_seq = header["first_seq"], header["last_seq"], header["n_events"], header["head_seq"]
    if first != 1 or last != head_seq or n_events != last - first + 1:
        return _header_refused(
            "header_mismatch",
            f"the signed header's extent does not add up (events {first} to {last}, {n_events} events, head {head_seq}); "
            "this recgov reads exports of the whole trail from event 1",
            started,
        ), None
    extent = (
        f"extent signed by key {key_id} at {header.get('exported_at')}: events 1 to {head_seq}, "
        f"head hash {header['head_hash'][:16]}, {header['checkpoints']} checkpoint(s)"
    )
    return None, extent


def _against_signed_header(result: TrailReport, header: dict[str, Any], n_checkpoints: int) -> TrailReport:
    """Say a cut or grown file in the words of the signed header; hold the checkpoint lines to the signed count."""
    head_seq = header["head_seq"]
    if result.reason == "truncated":
        return dataclasses.replace(
            result,
            detail=f"the signed header says the export holds events 1 to {head_seq}, but the file ends at event "
            f"{result.n_events}: events {result.n_events + 1} to {head_seq} were cut from it",
        )
    if result.reason == "beyond_head":
        return dataclasses.replace(
            result,
            detail=f"the signed header says the export ends at event {head_seq}, but the file goes on to event "
            f"{result.n_events}: events {head_seq + 1} to {result.n_events} were added to it",
        )
    if result.reason == "head_mismatch":
        return dataclasses.replace(
            result,
            detail=f"event {head_seq} does not hash to the head hash the header signs "
            f"({str(header['head_hash'])[:16]}): the end of the file was rewritten",
        )
    if result.intact and n_checkpoints != header["checkpoints"]:
        return dataclasses.replace(
            result,
            intact=False,
            reason="header_mismatch",
            detail=f"the signed header says the export holds {header['checkpoints']} checkpoint(s), but the file holds "
            f"{n_checkpoints}: checkpoint lines were removed or added",
        )
    return result


def _unproven_extent(result: TrailReport, *, signed_header: bool) -> TrailReport:
    """A version 1 export: the chain and checkpoints hold, but nothing proves where the file ends."""
    reach = result.signed_through or 0
    extent = (
        f"unproven: a version {UNSIGNED_HEADER_VERSION} export, its header unsigned; the checkpoints prove events 1 to "
        f"{reach}, nothing proves the file was not cut or extended after event {reach}"
    )
    if not signed_header:
        return dataclasses.replace(result, extent=extent)
    return dataclasses.replace(
        result,
        intact=False,
        first_bad_seq=None,
        reason="unsigned_header",
        detail=(
            f"line 1 (header): a version {UNSIGNED_HEADER_VERSION} export, written before headers were signed: "
            f"whoever holds it can cut the events after a checkpoint (and the checkpoints after it) and edit the head "
            f"unseen. Ask for a new export, or accept that it proves events 1 to {reach} only "
            "(--allow-unsigned-header)"
        ),
        extent=extent,
    )


def _keys(trusted: dict[str, Any]) -> str:
    ids = sorted(trusted)
    return f"key {ids[0]}" if len(ids) == 1 else f"keys {', '.join(ids)}"


def _read_header(handle: IO[bytes]) -> dict[str, Any]:
    """The export's first line, refused unless it is a header of a version this recgov reads."""
    try:
        header = orjson.loads(handle.readline())
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        raise DataError(f"not a recgov trail export (its first line is not a {EXPORT_FORMAT!r} header)")
    if header.get("version") not in (UNSIGNED_HEADER_VERSION, EXPORT_VERSION) or isinstance(header.get("version"), bool):
        raise DataError(
            f"unsupported export version {header.get('version')!r}; this recgov reads versions "
            f"{UNSIGNED_HEADER_VERSION} and {EXPORT_VERSION}"
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


def _unsigned_tail(result: TrailReport, trusted: dict[str, Any]) -> TrailReport:
    """An intact chain whose last events no checkpoint of the auditor's keys covers: not verified to its end."""
    first, last = (result.signed_through or 0) + 1, result.n_events
    held = (
        "the signed header proves the file holds them as the store did at export time, but no checkpoint (signed "
        "only after the store was verified) vouches for them"
        if result.extent is not None and not result.extent.startswith("unproven")
        else "nothing in the export proves they were not rewritten, added or removed"
    )
    return dataclasses.replace(
        result,
        intact=False,
        first_bad_seq=first,
        reason="unsigned_tail",
        detail=(
            f"events {first} to {last} come after the last checkpoint signed by {_keys(trusted)} (seq {first - 1}): "
            f"{held}; ask for an export signed to its end ('recgov trail export' signs the head first; over the API, "
            "POST /v1/trail/checkpoint before GET /v1/trail/export), or accept them as they are (--allow-unsigned-tail)"
        ),
    )


def _unsigned(result: TrailReport, trusted: dict[str, Any], checkpoints: list[CheckpointRecord]) -> TrailReport:
    """An intact chain that no checkpoint signed by the auditor's keys vouches for: not verified."""
    signed_by = sorted({c.key_id for c in checkpoints}) or ["none"]
    return dataclasses.replace(
        result,
        intact=False,
        first_bad_seq=None,
        reason="no_checkpoint",
        detail=f"no checkpoint in the export is signed by {_keys(trusted)} (signed by: {', '.join(signed_by)})",
        checkpoints_verified=0,
        signed_through=None,
    )
