"""Helpers shared by the privacy, harmful-content and serving repositories (private).

Validation with the store's messages, the guard that keeps raw subject ids out of
stored JSON, a "column in a long list" clause that is one bound parameter on both
engines, and a bulk pseudonym lookup.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.models import SubjectSecret
from audits.settings import get_settings
from audits.subjects import _installation_key, _lookup, _pseudonym, _subject_bytes
from recommender.errors import ConfigError, DataError

MUST_BE_ONE_OF = "{name} must be one of {allowed}; got {value!r}"
RAW_ID_IN_JSON = (
    "{field} must not carry a raw subject id, but {where} does; store only what is needed, "
    "and name a subject by its pseudonym (audits.pseudonym)"
)
FUTURE_TIME = "{name} ({value}) is in the future; times up to {skew} ahead of now are accepted"
PRE_EPOCH_TIME = (
    "{name} ({value}) is before 1970-01-01T00:00:00Z (a negative Unix time): no record of a consent, a request, a "
    "decision or a case dates from then; it is a placeholder, a sign error or the wrong unit"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RAW_ID_KEYS = frozenset({"subject_id", "user_id", "email", "ip", "ip_address"})
"""JSON keys refused anywhere in stored JSON: they name raw personal identifiers."""
CLOCK_SKEW = timedelta(minutes=5)
_MIN_EXACT_LENGTH = 4  # shorter ids are not looked for in values (user 7 vs a banner version 7)
_MIN_CONTAINED_LENGTH = 6  # shorter ids are refused only as whole values (no false alarms on "4242" in a hash)


def one_of(value: Any, allowed: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``allowed``, else a ConfigError naming the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(MUST_BE_ONE_OF.format(name=name, allowed=", ".join(allowed), value=value))
    return value


def text(value: Any, name: str, limit: int) -> str:
    """A non-empty string of at most ``limit`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise DataError(f"{name} must be a non-empty string of at most {limit} characters, got {value!r}")
    return value


def subject_text(value: Any, name: str, limit: int, *, subject_id: str | int, vocabulary: Collection[str] = ()) -> str:
    """:func:`text` for a field stored in clear beside ``subject_id``'s pseudonym (a consent record's purpose or
    jurisdiction, in its row and its trail event): refused if it carries the subject's raw id, by the rule of
    :func:`refuse_raw_ids`. Erasure shreds the pseudonym's secret, not these fields: a raw id in them would
    outlive it on the append-only trail. A word of ``vocabulary`` (the pack's purposes) is the pack's, not the
    person's, even for a subject whose id is that word: it is kept."""
    value = text(value, name, limit)
    if value not in vocabulary:
        refuse_raw_ids(value, field=name, subject_ids=[subject_id])
    return value


def holds_raw_id(value: str, subject_id: str, vocabulary: Collection[str] = ()) -> bool:
    """Whether the text ``value`` carries ``subject_id`` by the rule of :func:`refuse_raw_ids` (whole, from four
    characters; inside a longer text, from six): the row-wise test of bulk checks. A word of ``vocabulary`` never
    does (see :func:`subject_text`)."""
    if len(subject_id) < _MIN_EXACT_LENGTH or not value or value in vocabulary:
        return False
    return value == subject_id or (len(subject_id) >= _MIN_CONTAINED_LENGTH and subject_id in value)


ITEM_ID_PADDED = (
    "{name} {value!r} holds surrounding spaces or invisible characters; item ids are matched exactly and the "
    "data loaders strip them, so it would name no item of any list: give the id as the data has it"
)


def item_id(value: Any, name: str = "item_id") -> str:
    """An item id as stored: a string (integers are turned into their decimal string).

    An id with whitespace at either end is refused: served lists hold the ids the loaders read, stripped, so
    a flag, report or block of ``"i42 "`` would keep nothing out of any list while saying it does (the same
    rule as :func:`audits.availability.check_change`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    value = text(value, name, 200)
    if value != value.strip() or not value.isprintable():
        raise DataError(ITEM_ID_PADDED.format(name=name, value=value))
    return value


def aware(value: datetime | None, name: str, *, not_after_now: bool = False) -> datetime:
    """``value`` (default now) as an aware UTC datetime; naive ones are refused.

    ``not_after_now``: the moment something was recorded as happening (a consent, a request, a decision, a
    case), so neither in the future (beyond the clock skew) nor before 1970, the Unix epoch (the event
    loaders and the outcome log refuse such times too)."""
    now = datetime.now(UTC)
    if value is None:
        return now
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise DataError(f"{name} must be a timezone-aware datetime such as datetime.now(UTC), got {value!r}")
    value = value.astimezone(UTC)
    if not_after_now and value > now + CLOCK_SKEW:
        raise DataError(FUTURE_TIME.format(name=name, value=value.isoformat(), skew=CLOCK_SKEW))
    if not_after_now and value < EPOCH:
        raise DataError(PRE_EPOCH_TIME.format(name=name, value=value.isoformat()))
    return value


def json_object(
    value: Mapping[str, Any] | None, name: str, *, subject_ids: Iterable[str | int] = (), numbers: bool = True
) -> dict[str, Any]:
    """A JSON object fit for the store and the trail: canonical-JSON encodable, no raw subject id.

    ``numbers=False``: numeric values are not compared with numeric subject ids
    (for objects whose numbers the code itself makes: row ids, counts).
    """
    return canonical_object(value, name, subject_ids=subject_ids, numbers=numbers)[0]


def canonical_object(
    value: Mapping[str, Any] | None, name: str, *, subject_ids: Iterable[str | int] = (), numbers: bool = True
) -> tuple[dict[str, Any], bytes]:
    """:func:`json_object` and its canonical JSON (RFC 8785) bytes."""
    if value is None:
        return {}, b"{}"
    if not isinstance(value, Mapping):
        raise DataError(f"{name} must be a JSON object (a dict), got {type(value).__name__}")
    plain = dict(value)
    try:
        encoded = canonical_json(plain)
    except DataError as err:
        raise DataError(f"{name}: {err}") from err
    ids = [s for s in subject_ids if s is not None]
    if ids or _may_hold_raw_id_key(encoded):
        refuse_raw_ids(plain, field=name, subject_ids=ids, numbers=numbers)
    return plain, encoded


_RAW_KEY_PATTERNS = tuple(f'"{key}":'.encode() for key in sorted(RAW_ID_KEYS))


def _may_hold_raw_id_key(encoded: bytes) -> bool:
    """False only if no object key of this canonical JSON can be one of :data:`RAW_ID_KEYS` (any case).

    A key appears in the encoding as ``"key":`` (keys from RAW_ID_KEYS need no
    escape), so an ASCII encoding without any of those byte patterns, lowercased,
    holds none: the walk of :func:`refuse_raw_ids` is skipped (it is the costly
    part of recording a served list). Non-ASCII encodings always get the walk,
    since some non-ASCII characters lowercase to ASCII ones.
    """
    if not encoded.isascii():
        return True
    lowered = encoded.lower()
    return any(pattern in lowered for pattern in _RAW_KEY_PATTERNS)


def refuse_raw_ids(value: Any, *, field: str, subject_ids: Iterable[str | int] = (), numbers: bool = True) -> None:
    """Raise DataError if ``value`` carries a raw subject id.

    Refused: a key in :data:`RAW_ID_KEYS` at any depth, and any of ``subject_ids``
    of at least four characters as a whole string or number, or inside a longer
    string when the id has at least six. (Shorter ids, such as user 7, would match
    too much innocent data: a banner version 7.) A guard against accidents, not a
    proof: recgov cannot recognise every identifier in free text. The message
    names where, never the id.
    """
    ids = {str(s) for s in subject_ids if s is not None and len(str(s)) >= _MIN_EXACT_LENGTH}
    int_ids = {int(s) for s in ids if s.lstrip("-").isdigit()} if numbers else set()
    long_ids = [s for s in ids if len(s) >= _MIN_CONTAINED_LENGTH]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                if key.lower() in RAW_ID_KEYS or key in ids:
                    raise DataError(RAW_ID_IN_JSON.format(field=field, where=f"the key at {path}.{key}"))
                walk(child, f"{path}.{key}")
        elif isinstance(node, (list, tuple)):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")
        elif isinstance(node, str):
            if node in ids or any(raw in node for raw in long_ids):
                raise DataError(RAW_ID_IN_JSON.format(field=field, where=f"the value at {path}"))
        elif isinstance(node, int) and not isinstance(node, bool) and node in int_ids:
            raise DataError(RAW_ID_IN_JSON.format(field=field, where=f"the value at {path}"))

    walk(value, "$")


def actor_name(actor: str | None) -> str:
    """The caller's actor, else ``RECGOV_ACTOR``."""
    return actor or get_settings().actor


def in_values(session: Session, column: ColumnElement[Any], values: list[str]) -> ColumnElement[bool]:
    """``column IN values`` as ONE bound parameter, however long the list.

    PostgreSQL: ``column = ANY(:array)``; SQLite: ``column IN (SELECT value FROM
    json_each(:json))``. (A plain IN list is one parameter per value, and both
    drivers cap the number of parameters.)
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String()), unique=True))
    rows = func.json_each(bindparam(None, orjson.dumps(list(values)).decode(), unique=True)).table_valued("value")
    return column.in_(select(rows.c.value))


_SECRETS_POSTGRES = select(SubjectSecret.lookup, SubjectSecret.secret).where(
    SubjectSecret.lookup == any_(bindparam("lookups", type_=postgresql.ARRAY(String())))
)
_SECRETS_SQLITE = select(SubjectSecret.lookup, SubjectSecret.secret).where(
    SubjectSecret.lookup.in_(select(func.json_each(bindparam("lookups", type_=String())).table_valued("value").c.value))
)


def lookup_pseudonyms(
    session: Session, subject_ids: Iterable[str | int], *, create: bool = False, key: bytes | None = None
) -> dict[str | int, str | None]:
    """The pseudonym of each subject id, in one query (two when ``create`` adds secrets).

    Without ``create``, a subject that has no secret yet (never seen, or shredded)
    maps to None: it has no records. With ``create``, missing secrets are made,
    as :func:`audits.pseudonym` would. ``key`` is the installation key as
    :func:`audits.subjects._installation_key` returned it for this database
    (a long-lived writer checks it once); by default it is read and checked here.
    """
    found = lookup_subject_secrets(session, subject_ids, create=create, key=key)
    return {subject: (None if entry is None else entry[0]) for subject, entry in found.items()}


def lookup_subject_secrets(
    session: Session, subject_ids: Iterable[str | int], *, create: bool = False, key: bytes | None = None
) -> dict[str | int, tuple[str, str] | None]:
    """:func:`lookup_pseudonyms` with each subject's secret: ``{id: (pseudonym, secret hex) or None}``.

    For writers that seal under the subject's record key (:func:`audits.subjects.record_key`).
    """
    ids = list(dict.fromkeys(subject_ids))
    if not ids:
        return {}
    if key is None:
        key = _installation_key(session)
    raw = {subject: _subject_bytes(subject) for subject in ids}
    lookups = {subject: _lookup(key, raw[subject]) for subject in ids}

    postgres = (session.get_bind() if isinstance(session, Session) else session).dialect.name == "postgresql"
    wanted = list(set(lookups.values()))

    def fetch() -> dict[str, str]:
        # One prebuilt statement per dialect, the lookups as one parameter (see in_values).
        if postgres:
            return dict(session.execute(_SECRETS_POSTGRES, {"lookups": wanted}).all())
        return dict(session.execute(_SECRETS_SQLITE, {"lookups": orjson.dumps(wanted).decode()}).all())

    found = fetch()
    missing = [subject for subject in ids if lookups[subject] not in found]
    if create and missing:
        module = postgresql if postgres else sqlite
        now = datetime.now(UTC)
        rows = [
            {"lookup": lookups[s], "secret": secrets.token_hex(32), "created_at": now} for s in dict.fromkeys(missing)
        ]
        session.execute(module.insert(SubjectSecret).on_conflict_do_nothing(), rows)
        found = fetch()  # ours, or a concurrent writer's
    out: dict[str | int, tuple[str, str] | None] = {}
    for subject in ids:
        secret = found.get(lookups[subject])
        out[subject] = None if secret is None else (_pseudonym(secret, raw[subject]), secret)
    return out
