"""Checking a hash chain of trail rows, wherever they come from (a store or an export).

:class:`ChainWalker` takes rows in sequence order and stops at the first event
that does not fit; :func:`check_signatures` checks checkpoint signatures;
:func:`report` combines both into a :class:`TrailReport`. The reasons a chain
can break are listed in :mod:`audits.verify`.
"""

from __future__ import annotations

import gc
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any

import orjson

from audits.checkpoints import CheckpointRecord, checkpoint_message
from audits.keys import key_id_of, load_public_key, verify_signature
from audits.trail import _HASHED, _MESSAGE, GENESIS_HASH, HASH_DOMAIN
from recommender.errors import DataError

__all__ = ["ROW_COLUMNS", "Break", "TrailReport", "ChainWalker", "check_signatures", "by_seq", "report", "gc_paused"]

ROW_COLUMNS = ("seq", "time", "actor", "action", "subject", "objects", "payload", "prev_hash", "hash")
Row = Sequence[Any]
MAX_DIAGNOSIS_CANDIDATES = 2_000_000


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while checking a chain.

    A walk allocates millions of short-lived row tuples and no reference
    cycles; the collector's repeated passes over them cost a third of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Break:
    """Where and why the chain breaks."""

    seq: int
    reason: str
    detail: str


@dataclass(frozen=True)
class TrailReport:
    """The outcome of a verification. ``intact`` is true when nothing broke."""

    intact: bool
    n_events: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None
    detail: str | None = None
    checkpoints_verified: int = 0
    signed_through: int | None = None
    elapsed_s: float = 0.0
    extent: str | None = None
    """An export only: what its header proves about where the file ends (signed, or ``unproven: ...``)."""
    trusted_keys: str | None = None
    """A store's report only: which keys its checkpoints were checked with: ``installation`` (the keys this
    installation holds, and any given), or ``database`` (the keys the store itself holds, where this installation
    holds none: a writer of the database could have added one)."""

    @property
    def events_per_s(self) -> float:
        """Verification speed."""
        return self.n_events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` output of ``recgov trail verify``)."""
        document = asdict(self)
        if self.extent is None:  # a store's report, or an export refused before its extent was read
            del document["extent"]
        if self.trusted_keys is None:  # an export's report: its keys are the ones given
            del document["trusted_keys"]
        document["elapsed_s"] = round(self.elapsed_s, 4)
        document["events_per_s"] = round(self.events_per_s)
        return document

    def summary(self) -> str:
        """One line for people."""
        if not self.intact:
            where = f"at seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
            return f"trail BROKEN {where}: {self.reason}: {self.detail}".replace("  ", " ")
        signed = (
            f"; {self.checkpoints_verified} checkpoint(s) verified, signed through seq {self.signed_through}"
            if self.signed_through is not None
            else "; no signed checkpoint"
        )
        head = f"seq {self.head_seq}, hash {self.head_hash[:16]}"
        extent = f"; {self.extent}" if self.extent is not None else ""
        trust = (
            "; checkpoints checked with the keys the database holds (this installation holds no public key: "
            "pass the signer's with --public-key)"
            if self.trusted_keys == "database" and self.signed_through is not None
            else ""
        )
        return f"trail intact: {self.n_events} events up to the head ({head}){signed}{extent}{trust}"


def _message(row: Row, seq: int) -> bytes:
    _, time, actor, action, subject, objects, payload, _, _ = row
    dumps = orjson.dumps
    return _MESSAGE % (
        dumps(action),
        dumps(actor),
        objects.encode(),
        payload.encode(),
        seq,
        dumps(subject),
        dumps(time),
    )


def _written_as(row: Row, candidates: Iterable[int]) -> int | None:
    """The sequence number under which ``row`` was hashed, if one of ``candidates``."""
    prefix = HASH_DOMAIN + str(row[7]).encode()
    for index, candidate in enumerate(candidates):
        if index >= MAX_DIAGNOSIS_CANDIDATES:
            return None
        if candidate != row[0] and sha256(prefix + _message(row, candidate)).hexdigest() == row[8]:
            return candidate
    return None


class ChainWalker:
    """Checks rows of the chain in order; remembers the first break.

    Rows are tuples in :data:`ROW_COLUMNS` order, ``objects`` and ``payload``
    as canonical JSON text. ``checkpoints`` maps sequence numbers to the
    checkpoints signed there. The walk starts after event ``after_seq`` whose
    hash is ``after_hash`` (default: from the beginning).
    """

    def __init__(
        self,
        checkpoints: dict[int, list[CheckpointRecord]] | None = None,
        *,
        after_seq: int = 0,
        after_hash: str = GENESIS_HASH,
    ) -> None:
        self.expected = after_seq + 1
        self.prev = after_hash
        self.checkpoints = checkpoints or {}
        self.broken: Break | None = None
        self.broken_row: Row | None = None

    @property
    def n_events(self) -> int:
        """Events checked and found in order so far."""
        return self.expected - 1

    def feed(self, rows: Iterable[Row]) -> bool:
        """Check ``rows``; False once the chain is broken (further rows are ignored)."""
        if self.broken is not None:
            return False
        expected, prev, checkpoints = self.expected, self.prev, self.checkpoints
        loads, dumps, hashed, digest_of = orjson.loads, orjson.dumps, _HASHED, sha256
        for row in rows:
            seq, time, actor, action, subject, objects, payload, prev_hash, digest = row
            if seq != expected:
                self.expected, self.prev = expected, prev
                self._break(Break(expected, "gap", f"event {expected} is missing; the next stored event is {seq}"), row)
                return False
            try:
                # Each JSON field must parse on its own: bytes cannot move between fields unnoticed.
                if objects != "{}":
                    loads(objects)
                loads(payload)
                computed = digest_of(
                    hashed
                    % (
                        prev_hash.encode(),
                        dumps(action),
                        dumps(actor),
                        objects.encode(),
                        payload.encode(),
                        seq,
                        dumps(subject),
                        dumps(time),
                    )
                ).hexdigest()
            except Exception as err:  # noqa: BLE001 - any unreadable field is a finding, not a crash
                self.expected, self.prev = expected, prev
                self._break(Break(seq, "malformed", f"event {seq} cannot be read: {err}"), row)
                return False
            if computed != digest:
                self.expected, self.prev = expected, prev
                self._break(
                    Break(
                        seq,
                        "hash_mismatch",
                        "the stored hash does not match the event's content: the event was changed",
                    ),
                    row,
                )
                return False
            if prev_hash != prev:
                self.expected, self.prev = expected, prev
                self._break(
                    Break(
                        seq,
                        "bad_prev_link",
                        f"event {seq} does not link to event {seq - 1} (its prev_hash is {str(prev_hash)[:16]}, "
                        f"event {seq - 1} hashes to {prev[:16]}): an earlier event was rewritten",
                    ),
                    row,
                )
                return False
            if checkpoints and seq in checkpoints:
                for checkpoint in checkpoints[seq]:
                    if checkpoint.hash != digest:
                        self.expected, self.prev = expected, prev
                        self._break(
                            Break(
                                seq,
                                "checkpoint_mismatch",
                                f"checkpoint signed at {checkpoint.time} by key {checkpoint.key_id} says event {seq} "
                                f"has hash {checkpoint.hash[:16]}, but it now hashes to {digest[:16]}: the trail "
                                "was rewritten up to here",
                            ),
                            row,
                        )
                        return False
            prev = digest
            expected += 1
        self.expected, self.prev = expected, prev
        return True

    def _break(self, found: Break, row: Row) -> None:
        self.broken, self.broken_row = found, row

    def diagnose(self, candidates: Callable[[Row], Iterable[int]]) -> None:
        """Turn a ``hash_mismatch`` into ``reorder`` when the event fits another sequence number."""
        if self.broken is None or self.broken.reason != "hash_mismatch" or self.broken_row is None:
            return
        original = _written_as(self.broken_row, candidates(self.broken_row))
        if original is not None:
            seq = self.broken.seq
            self.broken = Break(
                seq,
                "reorder",
                f"the event stored as {seq} was written as event {original}: events were inserted, "
                "removed or reordered",
            )

    def finish(self, head_seq: int | None, head_hash: str | None) -> None:
        """After the last row: compare the chain's end with the head (None: no head to compare)."""
        if self.broken is not None or head_seq is None:
            return
        last = self.expected - 1
        if last < head_seq:
            self.broken = Break(
                last + 1,
                "truncated",
                f"the chain ends at event {last} but the head says {head_seq}: events were removed",
            )
        elif last > head_seq:
            self.broken = Break(
                head_seq + 1,
                "beyond_head",
                f"events {head_seq + 1}..{last} lie beyond the head (seq {head_seq}): written around the append path",
            )
        elif head_hash != self.prev:
            self.broken = Break(
                head_seq, "head_mismatch", f"the head's hash for event {head_seq} differs from the event's hash"
            )


def check_signatures(
    checkpoints: Iterable[CheckpointRecord], *, public_keys: dict[str, Any] | None = None
) -> tuple[list[CheckpointRecord], Break | None]:
    """Check each checkpoint's signature; return the valid ones and the first (lowest-seq) failure.

    With ``public_keys`` (key id -> Ed25519 public key), only those keys are trusted
    and checkpoints by other keys are skipped; without it, each checkpoint's own
    ``public_key_pem`` is used (the store's ``signing_keys`` table).
    """
    valid: list[CheckpointRecord] = []
    failure: Break | None = None
    for checkpoint in checkpoints:
        if public_keys is None:
            try:
                key = load_public_key(checkpoint.public_key_pem)
            except DataError:
                key = None
            if key is not None and key_id_of(key) != checkpoint.key_id:
                key = None
        else:
            if checkpoint.key_id not in public_keys:
                continue
            key = public_keys[checkpoint.key_id]
        message = checkpoint_message(
            seq=checkpoint.seq, hash=checkpoint.hash, time=checkpoint.time, key_id=checkpoint.key_id
        )
        if key is not None and verify_signature(key, checkpoint.signature, message):
            valid.append(checkpoint)
        elif failure is None or checkpoint.seq < failure.seq:
            failure = Break(
                checkpoint.seq,
                "bad_signature",
                f"the checkpoint of event {checkpoint.seq} signed at {checkpoint.time} does not verify "
                f"with key {checkpoint.key_id}",
            )
    return valid, failure


def by_seq(checkpoints: Iterable[CheckpointRecord]) -> dict[int, list[CheckpointRecord]]:
    """Group checkpoints by the sequence number they sign."""
    grouped: dict[int, list[CheckpointRecord]] = {}
    for checkpoint in checkpoints:
        grouped.setdefault(checkpoint.seq, []).append(checkpoint)
    return grouped


def report(
    walker: ChainWalker,
    valid: list[CheckpointRecord],
    signature_failure: Break | None,
    *,
    head_seq: int,
    head_hash: str,
    started: float,
    trusted_keys: str | None = None,
) -> TrailReport:
    """Combine the walk and the signature checks into a report (the earliest break wins)."""
    found = walker.broken
    if signature_failure is not None and (found is None or signature_failure.seq < found.seq):
        found = signature_failure
    last_good = walker.n_events if found is None else found.seq - 1
    reached = [c for c in valid if c.seq <= walker.n_events and c.seq <= last_good]
    if found is None:
        beyond = [c for c in valid if c.seq > walker.n_events]
        if beyond:
            first = min(beyond, key=lambda c: c.seq)
            found = Break(
                walker.n_events + 1,
                "checkpoint_mismatch",
                f"a checkpoint signed at {first.time} covers event {first.seq}, but the trail ends at event "
                f"{walker.n_events}: events were removed",
            )
    return TrailReport(
        intact=found is None,
        n_events=walker.n_events,
        head_seq=head_seq,
        head_hash=head_hash,
        first_bad_seq=None if found is None else found.seq,
        reason=None if found is None else found.reason,
        detail=None if found is None else found.detail,
        checkpoints_verified=len(reached),
        signed_through=max((c.seq for c in reached), default=None),
        elapsed_s=_time.perf_counter() - started,
        trusted_keys=trusted_keys,
    )
