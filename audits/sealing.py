"""Sealing: the personal content of kept records, encrypted under a per-subject key that erasure destroys.

An erasure keeps a subject's decisions, consent records and trail events under
the former pseudonym, as the proof of lawful processing. The pseudonym alone
leads nowhere once its secret is shredded, but the content of those rows could:
a served list, its scores and the explanation tags naming the items of the
person's history can be matched against a raw event log, and free-text consent
evidence may name the person in a spelling no guard recognises. So that content
is never stored in the clear. It is sealed with AES-256-GCM under the subject's
record key (:func:`audits.subjects.record_key`, derived from the pseudonym
secret and filed beside it), and :func:`audits.shred_subject` deletes that key
with the secret: what was sealed is then unreadable by construction, whatever it
held. ::

    token = "v1:" + base64( nonce (12 random bytes) || AES-256-GCM(record_key, nonce, plaintext, aad) )
    aad   = b"recgov.sealed.v1\\x00" + kind + b"\\x00" + pseudonym + b"\\x00" + bound

``kind`` names what is sealed (``decision``, ``consent.evidence``) and ``bound``
the row it belongs to (a decision's id), so a token moved to another field,
subject or decision does not open. A sealed value is stored as the JSON object
``{"sealed": token}``.

A ``v2`` token binds more of its row: the same construction under the domain
``recgov.sealed.v2``, with ``bound`` the decision id and the canonical JSON of
the fields the row keeps in the clear (:func:`decision_binding`), so a sealed
list copied into a row that shows another model version, time or mode does not
open. The decision records of ``recgov batch`` are sealed so
(:func:`seal_decision` with ``clear``); a ``v1`` token still opens as before,
and rewriting a ``v2`` prefix into ``v1`` opens nothing (the domains differ).

What is hashed is what is stored: the batch digest of the decision log and the
trail's hash chain cover the sealed form, so both verify without any key, and
still verify after an erasure destroyed it.

Reading: :func:`open_decisions` opens many decisions at once (one query for the
record keys of their pseudonyms); ORM loads of :class:`~audits.models.DecisionRecord`
and :class:`~audits.models.ConsentRecordRow` are opened as they load (the
listeners at the end of this module), so an entity read while the key exists
shows what was written. A record whose key is gone keeps its sealed form.
"""

from __future__ import annotations

import base64
import binascii
import os
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String, any_, bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, attributes

from audits.canonical import canonical_json
from audits.models import ConsentRecordRow, DecisionRecord, ItemReport, SubjectRequest, SubjectSecret
from audits.subjects import _installation_key, reading_installation_key, record_key_lookup

__all__ = [
    "DECISION_ROUTING",
    "KEPT_IN_THE_CLEAR",
    "SEALED",
    "SEALED_CONTENT",
    "SEALING_SAFEGUARD",
    "file_record_keys",
    "find_record_keys",
    "is_sealed",
    "open_decision",
    "open_decisions",
    "open_evidence",
    "open_report_reason",
    "open_request_result",
    "seal_report_reason",
    "seal_request_figures",
    "seal",
    "seal_decision",
    "decision_binding",
    "seal_evidence",
    "sealed_evidence_texts",
    "token_version",
    "unseal",
]

SEALED_CONTENT = {
    "decisions": "the served items, their scores and explanation tags, and the request's context",
    "consent_records": "the evidence (TC string, banner version, notes), in the row and in its trail event",
    "subject_requests": "the figures about the person in a request's result (an access export's counts of their data)",
    "item_reports": "the free text of a report a subject signed, in the row and in its trail event",
}
"""What each kept table holds only sealed under the subject's record key (the Art. 30 record quotes it)."""
KEPT_IN_THE_CLEAR = {
    "decisions": (
        "the decision id and time, the subject's pseudonym, the mode, the policy pack (name, version, hash), "
        "the model version, for a shadow list the served decision it mirrors, and for a list served in an "
        "experiment its assignment (experiment, variant, and why: randomised, holdback or not profiled), and the "
        "list's serving latency"
    ),
    "consent_records": "the subject's pseudonym, purpose, status, lawful basis, source, jurisdiction and time",
    "item_reports": "the item reported, the reporter's pseudonym and the time",
    "subject_requests": (
        "the subject's pseudonym, kind, status, times, deadline and what was done (an erasure's result is written "
        "once the key is gone, so the figures of its unlearning, the number of the person's interactions removed "
        "among them, stay in the clear)"
    ),
}
"""What each kept table holds in the clear: what the processing was, never what it was about."""
SEALING_SAFEGUARD = (
    "sealing of kept records: what a kept record says about the person (for served decisions "
    + SEALED_CONTENT["decisions"]
    + "; for consent records "
    + SEALED_CONTENT["consent_records"]
    + "; for subject requests "
    + SEALED_CONTENT["subject_requests"]
    + "; for item reports "
    + SEALED_CONTENT["item_reports"]
    + ") is encrypted with AES-256-GCM under a record key of the subject's own, derived from their pseudonym "
    "secret; erasure deletes the secret and the record key, after which nobody, recgov included, can read it "
    "(rows written before sealing existed stay as written); the trail's hash chain and the decision log's "
    "digests cover the sealed form, so both still verify after an erasure"
)
"""The safeguard sentence of the Art. 30 record (:func:`governance.privacy.processing_record`)."""

SEALED = "sealed"
"""The one key of a sealed value: ``{"sealed": token}``."""
DECISION_ROUTING = ("served", "shadow_of", "experiment", "latency_ms")
"""Context keys of a decision kept in the clear: which served decision a shadow list mirrors, a list's
experiment assignment (the analysis counts subjects per variant without opening every record), and how long
the list took to serve (monitoring's latency figures; it says nothing about the person)."""
_VERSION = "v1:"
_AAD = b"recgov.sealed.v1\x00"
_VERSION_2 = "v2:"
_AAD_2 = b"recgov.sealed.v2\x00"
_NONCE_BYTES = 12
DECISION_KIND = "decision"
EVIDENCE_KIND = "consent.evidence"
REQUEST_KIND = "request.result"
REPORT_KIND = "report.reason"
SEALED_TEXT = "recgov-sealed:"
"""How a sealed free text starts when its column is text, not JSON: ``"recgov-sealed:" + token``."""


def _aad(kind: str, pseudonym: str, bound: str, domain: bytes = _AAD) -> bytes:
    return b"%b%b\x00%b\x00%b" % (domain, kind.encode("ascii"), pseudonym.encode("ascii"), bound.encode("utf-8"))


def seal(
    key: bytes,
    plaintext: bytes,
    *,
    kind: str,
    pseudonym: str,
    bound: str = "",
    cipher: AESGCM | None = None,
    version: int = 1,
) -> str:
    """Encrypt ``plaintext`` under ``key`` (a record key), bound to ``kind``, ``pseudonym`` and ``bound``; the token.

    ``version`` 2 seals under the ``v2`` domain, whose ``bound`` carries the row's clear fields
    (:func:`decision_binding`); a reader must then give the same ``bound`` to open it.
    """
    prefix, domain = (_VERSION_2, _AAD_2) if version == 2 else (_VERSION, _AAD)
    nonce = os.urandom(_NONCE_BYTES)
    sealed = (cipher or AESGCM(key)).encrypt(nonce, plaintext, _aad(kind, pseudonym, bound, domain))
    return prefix + base64.b64encode(nonce + sealed).decode("ascii")


def token_version(token: Any) -> int | None:
    """The version of a sealed token (1 or 2), or None if it is no token."""
    if isinstance(token, str):
        if token.startswith(_VERSION):
            return 1
        if token.startswith(_VERSION_2):
            return 2
    return None


def unseal(key: bytes, token: str, *, kind: str, pseudonym: str, bound: str = "") -> bytes | None:
    """The plaintext of ``token``, or None if it does not open under ``key`` (wrong key, other row, changed).

    ``bound`` is what the token's version binds: for a ``v2`` token, the row's id and clear fields.
    """
    version = token_version(token)
    if version is None:
        return None
    domain = _AAD_2 if version == 2 else _AAD
    try:
        raw = base64.b64decode(token[len(_VERSION) :], validate=True)
        return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(kind, pseudonym, bound, domain))
    except (InvalidTag, ValueError, binascii.Error):
        return None


def is_sealed(value: Any) -> bool:
    """Whether a stored JSON value is a sealed one (``{"sealed": token}``)."""
    return isinstance(value, Mapping) and isinstance(value.get(SEALED), str)


# -- record keys, filed by pseudonym ---------------------------------------------------------------

_KEYS_POSTGRES = select(SubjectSecret.lookup, SubjectSecret.secret).where(
    SubjectSecret.lookup == any_(bindparam("lookups", type_=postgresql.ARRAY(String())))
)
_KEYS_SQLITE = select(SubjectSecret.lookup, SubjectSecret.secret).where(
    SubjectSecret.lookup.in_(select(func.json_each(bindparam("lookups", type_=String())).table_valued("value").c.value))
)


def _dialect(bind: Any) -> str:
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    dialect = getattr(bind, "dialect", None)
    return (dialect if dialect is not None else bind.engine.dialect).name


def find_record_keys(bind: Any, installation_key: bytes, pseudonyms: Iterable[str]) -> dict[str, bytes]:
    """The record key of each pseudonym that has one, in one query (erased and unknown pseudonyms have none).

    ``bind``: a session, a connection or a read-only snapshot (``execute`` and ``engine``).
    """
    where = {record_key_lookup(installation_key, p): p for p in dict.fromkeys(pseudonyms) if p}
    if not where:
        return {}
    lookups = list(where)
    if _dialect(bind) == "postgresql":
        rows = bind.execute(_KEYS_POSTGRES, {"lookups": lookups})
    else:
        rows = bind.execute(_KEYS_SQLITE, {"lookups": orjson.dumps(lookups).decode()})
    return {where[lookup]: bytes.fromhex(secret) for lookup, secret in rows}


def file_record_keys(session: Any, installation_key: bytes, keys: Mapping[str, bytes]) -> dict[str, bytes]:
    """File each pseudonym's record key unless one is filed already; return the keys filed (the earlier ones win)."""
    if not keys:
        return {}
    module = postgresql if _dialect(session) == "postgresql" else sqlite
    now = datetime.now(UTC)
    rows = [
        {"lookup": record_key_lookup(installation_key, p), "secret": k.hex(), "created_at": now}
        for p, k in keys.items()
    ]
    session.execute(module.insert(SubjectSecret).on_conflict_do_nothing(), rows)
    return find_record_keys(session, installation_key, keys)


# -- decisions ------------------------------------------------------------------------------------


def decision_binding(decision_id: str, clear: Mapping[str, Any]) -> str:
    """What a ``v2`` decision token binds besides the pseudonym: the decision id and the canonical JSON of the
    fields its row keeps in the clear (``clear``: the stored context among them)."""
    return decision_id + "\x00" + canonical_json(dict(clear)).decode("utf-8")


def seal_decision(
    key: bytes,
    decision_id: str,
    pseudonym: str,
    slate_json: bytes,
    context_json: bytes,
    cipher: AESGCM | None = None,
    *,
    clear: Mapping[str, Any] | None = None,
) -> tuple[bytes, bytes]:
    """A decision's stored slate and context (canonical JSON) from its plain ones: everything sealed in one token
    in the slate, the context reduced to its :data:`DECISION_ROUTING` keys.

    ``clear``: the other fields the row keeps in the clear (time, mode, policy, model version), bound into a
    ``v2`` token with the reduced context (:func:`decision_binding`); without it, a ``v1`` token bound to the
    pseudonym and decision id only.
    """
    plaintext = b'{"context":%b,"slate":%b}' % (context_json, slate_json)
    stored_context = b"{}"
    if any(b'"%b":' % name.encode() in context_json for name in DECISION_ROUTING):
        context = orjson.loads(context_json)
        stored_context = canonical_json({name: context[name] for name in DECISION_ROUTING if name in context})
    if clear is None:
        token = seal(key, plaintext, kind=DECISION_KIND, pseudonym=pseudonym, bound=decision_id, cipher=cipher)
    else:
        bound = decision_binding(decision_id, {**clear, "context": orjson.loads(stored_context)})
        token = seal(key, plaintext, kind=DECISION_KIND, pseudonym=pseudonym, bound=bound, cipher=cipher, version=2)
    return b'{"sealed":"%b"}' % token.encode("ascii"), stored_context


def open_decision(
    key: bytes | None,
    decision_id: str,
    pseudonym: str | None,
    slate: Any,
    context: Any,
    clear: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A stored decision's slate and context as written, or None if sealed and ``key`` does not open it.

    A decision stored in the clear (anonymous, or written before sealing) comes back as it is. A ``v2`` token
    opens only with the row's ``clear`` fields and stored ``context`` as they were sealed.
    """
    if not is_sealed(slate):
        return slate, context
    if key is None or pseudonym is None:
        return None
    token = slate[SEALED]
    if token_version(token) == 2:
        if clear is None:
            return None
        bound = decision_binding(decision_id, {**clear, "context": context})
    else:
        bound = decision_id
    plaintext = unseal(key, token, kind=DECISION_KIND, pseudonym=pseudonym, bound=bound)
    if plaintext is None:
        return None
    opened = orjson.loads(plaintext)
    return opened["slate"], opened["context"]


def open_decisions(
    bind: Any, rows: Iterable[tuple[Any, ...]]
) -> list[tuple[dict[str, Any], dict[str, Any]] | None]:
    """Open many stored decisions, given as ``(decision_id, subject, slate, context)``; one query for their keys.

    A row may carry a fifth element, its clear fields (:func:`open_decision`'s ``clear``), which a ``v2``
    token needs. Each comes back as ``(slate, context)`` as written, or None when it is sealed and its key
    is gone (the subject was erased) or it does not open with the row's fields.
    """
    rows = list(rows)
    wanted = {row[1] for row in rows if row[1] is not None and is_sealed(row[2])}
    keys = find_record_keys(bind, reading_installation_key(bind), wanted) if wanted else {}
    return [
        open_decision(keys.get(row[1]), row[0], row[1], row[2], row[3], row[4] if len(row) > 4 else None)
        for row in rows
    ]


# -- consent evidence -----------------------------------------------------------------------------


def seal_evidence(key: bytes, pseudonym: str, evidence: Mapping[str, Any]) -> dict[str, Any]:
    """Consent evidence as stored: sealed when it holds anything (an empty object says nothing)."""
    if not evidence:
        return {}
    return {SEALED: seal(key, canonical_json(dict(evidence)), kind=EVIDENCE_KIND, pseudonym=pseudonym)}


def sealed_evidence_texts(
    keys: Sequence[bytes], pseudonyms: Sequence[str], plaintexts: Sequence[bytes | None], *, nonces: bytes | None = None
) -> list[str]:
    """The stored JSON text of many consent evidences, row by row: ``{"sealed": token}``, or ``{}`` for no evidence.

    The same tokens :func:`seal_evidence` makes (one random nonce each, bound to
    the row's pseudonym), for a bulk writer: ``plaintexts`` are the evidences'
    canonical JSON (None for an empty one), ``keys`` each row's record key. The
    nonces come from one read of the system's random source, and a cipher is
    set up once per key. ``nonces``: the caller's, one per row (read from the
    system's random source; each used for one stored token only).
    """
    count = len(plaintexts)
    if nonces is None:
        nonces = os.urandom(_NONCE_BYTES * count)
    elif len(nonces) != _NONCE_BYTES * count:
        raise ValueError(f"{count} rows need {_NONCE_BYTES * count} bytes of nonces; got {len(nonces)}")
    ciphers: dict[bytes, AESGCM] = {}
    prefix = b"%b%b\x00" % (_AAD, EVIDENCE_KIND.encode("ascii"))
    out: list[str] = []
    for index, (key, pseudonym, plaintext) in enumerate(zip(keys, pseudonyms, plaintexts, strict=True)):
        if not plaintext:
            out.append("{}")
            continue
        cipher = ciphers.get(key)
        if cipher is None:
            cipher = ciphers[key] = AESGCM(key)
        nonce = nonces[index * _NONCE_BYTES : (index + 1) * _NONCE_BYTES]
        sealed = cipher.encrypt(nonce, plaintext, prefix + pseudonym.encode("ascii") + b"\x00")
        out.append('{"sealed": "' + _VERSION + b2a_base64(nonce + sealed, newline=False).decode("ascii") + '"}')
    return out


def open_evidence(key: bytes | None, pseudonym: str, stored: Any) -> Any:
    """Stored consent evidence as written, or its sealed form if ``key`` does not open it."""
    if not is_sealed(stored) or key is None:
        return stored
    plaintext = unseal(key, stored[SEALED], kind=EVIDENCE_KIND, pseudonym=pseudonym)
    return stored if plaintext is None else orjson.loads(plaintext)


# -- figures about the person in a subject request's result ------------------------------------------


def seal_request_figures(session: Any, pseudonym: str, request_id: int, figures: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sealed": token}``: figures about the person, sealed for a request's result under the subject's record key.

    A subject with no record key filed (erased already) gets them sealed under a
    key kept nowhere: they are never stored in the clear.
    """
    key = find_record_keys(session, _installation_key(session), [pseudonym]).get(pseudonym) or os.urandom(32)
    token = seal(key, canonical_json(dict(figures)), kind=REQUEST_KIND, pseudonym=pseudonym, bound=str(request_id))
    return {SEALED: token}


def open_request_result(key: bytes | None, pseudonym: str, request_id: int, stored: Any) -> Any:
    """A stored request result with its sealed figures merged back in, or as stored if ``key`` does not open them."""
    if not is_sealed(stored) or key is None:
        return stored
    plaintext = unseal(key, stored[SEALED], kind=REQUEST_KIND, pseudonym=pseudonym, bound=str(request_id))
    if plaintext is None:
        return stored
    return {k: v for k, v in stored.items() if k != SEALED} | orjson.loads(plaintext)


# -- the free text of a signed report ----------------------------------------------------------------


def seal_report_reason(key: bytes, pseudonym: str, reason: str) -> str:
    """A report's reason as stored when a subject signed it: ``"recgov-sealed:" + token``."""
    return SEALED_TEXT + seal(key, reason.encode("utf-8"), kind=REPORT_KIND, pseudonym=pseudonym)


def open_report_reason(key: bytes | None, pseudonym: str, stored: str) -> str:
    """A stored reason as written, or as stored if it is not sealed or ``key`` does not open it."""
    if key is None or not isinstance(stored, str) or not stored.startswith(SEALED_TEXT):
        return stored
    plaintext = unseal(key, stored[len(SEALED_TEXT) :], kind=REPORT_KIND, pseudonym=pseudonym)
    return stored if plaintext is None else plaintext.decode("utf-8")


# -- entities opened as they load ------------------------------------------------------------------

_SESSION_KEYS = "recgov_record_keys"  # in session.info: pseudonym -> record key (or None), for this session


def _key_for(session: Session, pseudonym: str) -> bytes | None:
    cache: dict[str, bytes | None] = session.info.setdefault(_SESSION_KEYS, {})
    if pseudonym not in cache:
        connection = session.connection()
        cache[pseudonym] = find_record_keys(connection, reading_installation_key(connection), [pseudonym]).get(
            pseudonym
        )
    return cache[pseudonym]


def _open_loaded_decision(target: DecisionRecord, context: Any, *_: Any) -> None:
    values = attributes.instance_state(target).dict
    slate, subject = values.get("slate"), values.get("subject")
    if not is_sealed(slate) or subject is None or context.session is None:
        return
    key = _key_for(context.session, subject)
    opened = open_decision(key, values.get("decision_id", ""), subject, slate, values.get("context"))
    if opened is not None:
        attributes.set_committed_value(target, "slate", opened[0])
        attributes.set_committed_value(target, "context", opened[1])


def _open_loaded_evidence(target: ConsentRecordRow, context: Any, *_: Any) -> None:
    values = attributes.instance_state(target).dict
    stored, subject = values.get("evidence"), values.get("subject")
    if not is_sealed(stored) or subject is None or context.session is None:
        return
    opened = open_evidence(_key_for(context.session, subject), subject, stored)
    if opened is not stored:
        attributes.set_committed_value(target, "evidence", opened)


def _open_loaded_request(target: SubjectRequest, context: Any, *_: Any) -> None:
    values = attributes.instance_state(target).dict
    stored, subject = values.get("result"), values.get("subject")
    if not is_sealed(stored) or subject is None or context.session is None:
        return
    opened = open_request_result(_key_for(context.session, subject), subject, values.get("id", 0), stored)
    if opened is not stored:
        attributes.set_committed_value(target, "result", opened)


def _open_loaded_report(target: ItemReport, context: Any, *_: Any) -> None:
    values = attributes.instance_state(target).dict
    stored, reporter = values.get("reason"), values.get("reporter")
    if reporter is None or not isinstance(stored, str) or not stored.startswith(SEALED_TEXT) or context.session is None:
        return
    opened = open_report_reason(_key_for(context.session, reporter), reporter, stored)
    if opened is not stored:
        attributes.set_committed_value(target, "reason", opened)


for _entity, _listener in (
    (DecisionRecord, _open_loaded_decision),
    (ConsentRecordRow, _open_loaded_evidence),
    (SubjectRequest, _open_loaded_request),
    (ItemReport, _open_loaded_report),
):
    event.listen(_entity, "load", _listener)
    event.listen(_entity, "refresh", _listener)
