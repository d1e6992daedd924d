"""``/v1/trail``: verify the trail (auditor) and sign its head (admin); read its events page by page, download its signed export, and the signers' public keys.

Verifying and signing run :func:`audits.verify.verify_store`, as ``recgov trail
verify`` and ``recgov trail checkpoint`` do: the chain and its checkpoints, and
every record the trail anchors (decisions, audit results, consent records,
suppressions, batch folders). ``intact`` is true only when all of it holds; a
head is signed only then (409 otherwise, with the problems).

A reviewer reads the events over HTTP, downloads the export that
:func:`audits.export.export_trail` writes, and verifies it offline with a key
from ``GET /v1/trail/keys`` (:func:`audits.export.verify_export`): nothing in the
export needs to be trusted.

Events are paged by sequence number, not by offset: ``after`` is the last
``seq`` of the previous page, so a page is one indexed range read however long
the trail, and events appended meanwhile never shift a page. The trail names a
subject only by pseudonym; that column is answered as stored.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask

from audits.checkpoints import list_checkpoints, register_signing_key
from audits.export import export_trail
from audits.keys import ALGORITHM, installation_public_keys, load_public_key, load_signing_key
from audits.models import SigningKeyRecord, TrailCheckpoint, TrailEvent
from audits.trail import format_time, read_head
from audits.verify import verify_and_checkpoint, verify_store
from governance.api.call_record import record_call
from governance.api.deps import AuditKey, GovernKey, ReadKey, SessionDep, SettingsDep, StoreDep
from governance.api.disclosure import shown_to
from governance.api.errors import Problem, problems
from governance.api.heavy import run_heavy
from governance.api.schemas import IDENTIFIER, Moment
from governance.api.schemas.trail_events import PublicKeyList, TrailEventPage

__all__ = ["EXPORT_MEDIA_TYPE", "router"]

router = APIRouter(prefix="/v1/trail", tags=["trail"], responses=problems(401, 403, 500))


@router.get(
    "/verify",
    summary="Verify the whole trail, its signed checkpoints and every record it anchors",
    description="`intact` is true when the chain, the checkpoints and every anchored record hold; `trail_intact` is the "
    "chain and checkpoints alone, `anchored_records_intact` and `anchored_problems` the records (decisions, audit results, "
    "consent records, suppressions, batch folders) held against the events that wrote them.",
)
async def verify(request: Request, store: StoreDep, settings: SettingsDep, key: AuditKey) -> dict[str, Any]:
    """Heavy work (:func:`governance.api.heavy.run_heavy`): it costs what the store holds, so a few run at a time."""
    document = await run_heavy(request, _verified, store)
    document["anchored_problems"] = _shown(document["anchored_problems"], key.role, settings.home)
    return document


def _verified(store: Any) -> dict[str, Any]:
    trusted = installation_public_keys(store.settings)  # not the database's own keys: see audits.verify
    with store.snapshot() as connection:
        return verify_store(connection, trusted_keys=trusted).to_dict()


def _shown(problems: list[dict[str, Any]], role: str, home: Path) -> list[dict[str, Any]]:
    """Anchored problems as a key of ``role`` may see them: a batch folder's server path hidden unless disclosing."""
    return [{**p, "problem": shown_to(role, p["problem"], home)} for p in problems]


@router.post(
    "/checkpoint",
    status_code=201,
    responses=problems(409),
    summary="Verify the trail and every record it anchors, then sign its head",
    description="409 when the chain is broken (`broken-trail`) or a record the trail anchors no longer matches it "
    "(`anchored-records-broken`, with the problems): nothing is signed then.",
)
def checkpoint(store: StoreDep, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    record_call(session, key, "trail.checkpoint")  # the request is in the trail, so the head is never empty
    report, signed = verify_and_checkpoint(store, load_signing_key(settings=store.settings))
    if signed is None:
        if not report.trail.intact:
            trail = report.trail
            raise Problem(409, f"refusing to sign a broken trail: first bad event {trail.first_bad_seq} ({trail.reason})", kind="broken-trail")
        raise Problem(
            409,
            f"refusing to sign: {len(report.anchored_problems)} problem(s) with records the trail anchors; "
            f"first: {report.lines()[1]}",
            kind="anchored-records-broken",
            errors=list(report.anchored_problems),  # shown as the caller's role may see them (errors.disclosed)
        )
    return signed.to_dict()

EXPORT_MEDIA_TYPE = "application/x-ndjson"
BAD_WINDOW = "'since' ({since}) is after 'until' ({until}): no event can be in that window"
BAD_TIME = "'{name}' ({value}) is not a time the trail can hold: give an ISO 8601 time between the years 1 and 9999 in UTC"
_EVENT_COLUMNS = (
    TrailEvent.seq, TrailEvent.time, TrailEvent.actor, TrailEvent.action, TrailEvent.subject,
    TrailEvent.objects, TrailEvent.payload, TrailEvent.prev_hash, TrailEvent.hash,
)  # fmt: skip


def _moment(name: str, value: datetime | None) -> str | None:
    """A query time as the trail writes times (a naive time is taken as UTC); 422 past the calendar's ends."""
    if value is None:
        return None
    try:
        utc = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
        return f"{utc.year:04d}{format_time(utc)[len(str(utc.year)):]}"  # four-digit years: text order stays time order
    except (OverflowError, ValueError):  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise Problem(422, BAD_TIME.format(name=name, value=value.isoformat()), errors=[{"location": "query", "field": name, "message": "out of range", "type": "value_error"}]) from None


@router.get(
    "/events",
    response_model=TrailEventPage,
    responses=problems(422),
    summary="Trail events in sequence order, page by page (auditor)",
    description="Follow `next_after` until it is null. `action` keeps the events whose action starts with it "
    "(`audit.` for every audit event); `since` and `until` bound the event time (ISO 8601, inclusive).",
)
def list_events(
    store: StoreDep,
    key: AuditKey,
    limit: int = Query(100, ge=1, le=1000, description="Events per page."),
    after: int = Query(0, ge=0, le=2**62, description="The cursor: the last seq of the previous page (0: from the first event)."),
    action: Annotated[str | None, Query(min_length=1, max_length=100, pattern=IDENTIFIER, description="An action prefix, e.g. 'audit.' or 'deployment.promoted'.")] = None,
    since: Moment | None = Query(None, description="Only events at or after this time (ISO 8601)."),
    until: Moment | None = Query(None, description="Only events at or before this time (ISO 8601)."),
) -> dict[str, Any]:
    start, end = _moment("since", since), _moment("until", until)
    if start is not None and end is not None and start > end:
        raise Problem(422, BAD_WINDOW.format(since=since.isoformat(), until=until.isoformat()))  # type: ignore[union-attr]
    query = select(*_EVENT_COLUMNS).where(TrailEvent.seq > after)
    if action is not None:
        query = query.where(TrailEvent.action.startswith(action, autoescape=True))
    if start is not None:  # trail times are fixed-width UTC strings: text order is time order
        query = query.where(TrailEvent.time >= start)
    if end is not None:
        query = query.where(TrailEvent.time <= end)
    with store.snapshot() as connection:
        head_seq, _ = read_head(connection)
        rows = connection.execute(query.order_by(TrailEvent.seq).limit(limit + 1)).all()
    events = [
        {
            "seq": seq, "time": time, "actor": actor, "action": act, "subject": subject,
            "objects": orjson.loads(objects), "payload": orjson.loads(payload), "prev_hash": prev_hash, "hash": digest,
        }  # fmt: skip
        for seq, time, actor, act, subject, objects, payload, prev_hash, digest in rows[:limit]
    ]
    more = len(rows) > limit
    return {"events": events, "next_after": events[-1]["seq"] if more else None, "head_seq": head_seq}


@router.get(
    "/export",
    response_class=FileResponse,
    responses={
        **problems(409, 422),
        200: {
            "description": "The export, JSON lines: a header, the signers' public keys, the checkpoints, then every event.",
            "content": {EXPORT_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"X-Trail-Head-Seq": {"description": "The last event exported.", "schema": {"type": "integer"}}},
        }
    },
    summary="Download the signed export of the whole trail (auditor)",
    description="Verify it offline with a public key from GET /v1/trail/keys: `recgov trail verify-export FILE --public-key KEY.pem`, "
    "or `audits.export.verify_export`. One consistent snapshot of the trail, up to its head when the download began; its "
    "header (head, extent, checkpoint count, export time) is signed by the installation's trail key, so a file cut short "
    "or with an edited header fails. Events after the last signed checkpoint are vouched for by no verification of the "
    "store, and `verify-export` fails them (`unsigned_tail`) unless `--allow-unsigned-tail`: sign the head first "
    "(POST /v1/trail/checkpoint, admin), or ask `signed_only=true` (the export ends at the last checkpoint), for an "
    "export that verifies whole.",
)
async def download_export(
    request: Request,
    store: StoreDep,
    key: AuditKey,
    signed_only: bool = Query(
        False,
        description="End the export at the last signed checkpoint instead of the head, so that it verifies whole "
        "(no unsigned tail) without signing first; 409 when no checkpoint was signed yet.",
    ),
) -> FileResponse:
    """Heavy work (:func:`governance.api.heavy.run_heavy`): the whole trail is written, so a few run at a time."""
    return await run_heavy(request, _export, store, signed_only=signed_only)


NO_CHECKPOINT_YET = (
    "no checkpoint was signed yet, so no export ends at one: an admin signs the head first (POST /v1/trail/checkpoint), "
    "or ask for the export without signed_only"
)


def _last_checkpoint(connection: Any) -> int:
    """The sequence number of the last signed checkpoint within the head; 409 when there is none."""
    head_seq, _ = read_head(connection)
    signed = [c.seq for c in list_checkpoints(connection) if c.seq <= head_seq]
    if not signed:
        raise Problem(409, NO_CHECKPOINT_YET, kind="no-checkpoint")
    return max(signed)


def _export(store: Any, *, signed_only: bool = False) -> FileResponse:
    signing_key = load_signing_key(settings=store.settings)  # signs the header: the export's extent
    _register(store, signing_key)
    folder = Path(tempfile.mkdtemp(prefix="recgov-trail-export-"))  # owner-only; the file names subjects by pseudonym
    try:
        with store.snapshot() as connection:
            through = _last_checkpoint(connection) if signed_only else None
            summary = export_trail(connection, folder / "trail.jsonl", signing_key=signing_key, through=through)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        summary.path,
        media_type=EXPORT_MEDIA_TYPE,
        filename=f"recgov-trail-{summary.head_seq}.jsonl",
        headers={"X-Trail-Head-Seq": str(summary.head_seq)},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


def _register(store: Any, signing_key: Any) -> None:
    """List the header's key at GET /v1/trail/keys (once; another request may have recorded it a moment before)."""
    try:
        with store.session() as session:
            register_signing_key(session, signing_key)
    except IntegrityError:
        pass


def _jwk(key_id: str, pem: str) -> dict[str, str]:
    """The key as a JSON Web Key (RFC 8037: an OKP key on Ed25519)."""
    raw = load_public_key(pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"), "kid": key_id, "use": "sig"}


@router.get(
    "/keys",
    response_model=PublicKeyList,
    summary="The public keys that signed checkpoints or export headers, as PEM and JWK (viewer)",
    description="What an external auditor verifies an export with. Obtain them over a channel you trust: "
    "a key read from the export itself proves nothing.",
)
def list_keys(store: StoreDep, key: ReadKey) -> dict[str, Any]:
    signed = select(TrailCheckpoint.key_id, func.count().label("n")).group_by(TrailCheckpoint.key_id).subquery()
    query = (
        select(SigningKeyRecord.key_id, SigningKeyRecord.algorithm, SigningKeyRecord.public_key_pem, SigningKeyRecord.created_at, signed.c.n)
        .outerjoin(signed, signed.c.key_id == SigningKeyRecord.key_id)
        .order_by(SigningKeyRecord.created_at, SigningKeyRecord.key_id)
    )
    with store.snapshot() as connection:
        rows = connection.execute(query).all()
    return {
        "keys": [
            {
                "key_id": key_id, "algorithm": algorithm or ALGORITHM, "public_key_pem": pem, "jwk": _jwk(key_id, pem),
                "created_at": None if created is None else created.isoformat(), "checkpoints": int(n or 0),
            }  # fmt: skip
            for key_id, algorithm, pem, created, n in rows
        ]
    }
