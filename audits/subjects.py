"""Pseudonyms for data subjects, and their erasure by crypto-shredding.

No raw personal identifier enters the trail. A subject appears there as ::

    pseudonym = HMAC-SHA256(secret, b"recgov.pseudonym.v1\\x00" + subject_id)   (hex)

under a random 32-byte ``secret`` of its own, kept in ``subject_secrets``. That
table holds no raw id either: a secret is found by ``lookup = HMAC-SHA256(
installation_key, b"recgov.subject.v1\\x00" + subject_id)``, and the installation
key lives outside the database (see :mod:`audits.keys`).

Erasing a subject (:func:`shred_subject`) deletes its secret. Its trail events
stay, and the chain stays valid, but nothing can link their pseudonym to the
person any more; a later :func:`pseudonym` call for the same id makes a new
secret and so a new, different pseudonym.

Record keys
-----------
What recgov keeps about a subject beyond the pseudonym (the lists served to
them, consent evidence) is sealed under the subject's **record key** (see
:mod:`audits.sealing`)::

    record_key = HMAC-SHA256(secret, b"recgov.record-key.v1\\x00")

A reader that holds the raw id derives it from the secret. So that readers
holding only the pseudonym (the decision log's reports, a shadow comparison)
find it too, it is filed in ``subject_secrets`` as a second row, under
``HMAC-SHA256(installation_key, b"recgov.record-key-lookup.v1\\x00" + pseudonym)``.
:func:`shred_subject` deletes both rows: the record key is then gone with the
secret, and everything sealed under it is unreadable for good.
"""

from __future__ import annotations

import hmac
import os
import secrets
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audits.keys import installation_key
from audits.models import StoreMeta, SubjectSecret
from audits.online_store import invalidate_subjects_after_commit
from audits.settings import get_settings
from audits.trail import append_event, read_head
from recommender.errors import ConfigError, DataError

__all__ = [
    "pseudonym",
    "subject_record_key",
    "reading_installation_key",
    "shred_subject",
    "record_key",
    "record_key_lookup",
    "INSTALLATION_KEY_MISMATCH",
    "SUBJECT_ID_EMPTY",
    "SUBJECT_ID_NOT_TEXT",
    "SUBJECT_ID_PADDED",
    "subject_id_problem",
    "subject_known",
]

_PSEUDONYM_DOMAIN = b"recgov.pseudonym.v1\x00"
_RECORD_KEY_DOMAIN = b"recgov.record-key.v1\x00"
_RECORD_KEY_LOOKUP_DOMAIN = b"recgov.record-key-lookup.v1\x00"
_LOOKUP_DOMAIN = b"recgov.subject.v1\x00"
_KEY_ID_DOMAIN = b"recgov.installation.v1\x00"
_META_KEY = "installation_key_id"
INSTALLATION_KEY_MISMATCH = (
    "this database's subject secrets were made under installation key {stored}, but this process has "
    "key {ours}; every process sharing the database needs the same key: copy "
    "$RECGOV_HOME/keys/installation.key from the first host or set RECGOV_INSTALLATION_KEY"
)


SUBJECT_ID_EMPTY = "a subject id must not be empty"
SUBJECT_ID_PADDED = (
    "a subject id must not begin or end with whitespace (a space, a tab or a line break): ids in data are read "
    "stripped, so this one would match no subject's events; give the id as your data holds it"
)

SUBJECT_ID_NOT_TEXT = (
    "a subject id must be Unicode text that UTF-8 can encode; this one holds a lone surrogate (bytes that are not "
    "UTF-8, as a shell passes them on): give the id as your data holds it"
)


def _not_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def subject_id_problem(text: str) -> str | None:
    """Why ``text``, typed by a person as a subject's id, cannot name a subject; ``None`` when it can.

    Ids in event logs are read stripped (:func:`recommender.loaders.load_event_log`), and a
    consent import strips its cells, so an id given with surrounding whitespace would get a
    pseudonym of its own: a withdrawal or an erasure recorded under it would reach nobody.
    The message never repeats the id.
    """
    if not text:
        return SUBJECT_ID_EMPTY
    if _not_text(text):
        return SUBJECT_ID_NOT_TEXT
    if text != text.strip():
        return SUBJECT_ID_PADDED
    return None


def subject_known(session: Session | Connection, subject_id: str | int) -> bool:
    """Whether the store holds a secret for exactly ``subject_id`` (records were made under it); reads only,
    never creates one. A subject request for an id that :func:`subject_id_problem` refuses is still answered for a
    subject recorded under that exact id (an id stored before such ids were refused must stay erasable)."""
    key = reading_installation_key(session)
    lookup = _lookup(key, _subject_bytes(subject_id))
    return session.execute(select(SubjectSecret.lookup).where(SubjectSecret.lookup == lookup)).first() is not None


def _subject_bytes(subject_id: str | int) -> bytes:
    if isinstance(subject_id, bool) or not isinstance(subject_id, (str, int)):
        raise DataError(f"a subject id must be a string or an integer, got {type(subject_id).__name__}")
    text = str(subject_id)
    if not text:
        raise DataError(SUBJECT_ID_EMPTY)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no pseudonym can be made of it (the message never repeats the id)
        raise DataError(SUBJECT_ID_NOT_TEXT) from None


def _insert_ignore(session: Session | Connection, table: type, **values: object) -> None:
    dialect = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).values(**values).on_conflict_do_nothing())


_KEYED_ENGINES: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
"""Per open engine, the installation key ids found committed in its database."""
_KEYED_HERE = "recgov_keyed_store_meta"  # in session.info: this transaction wrote the key id


def _installation_key(session: Session | Connection) -> bytes:
    """The installation key, after checking the database was keyed with the same one.

    The check reads ``store_meta`` (and keys the database when it holds no key
    yet). Once the key id is found there, committed by an earlier transaction,
    the check is skipped for the rest of the engine's life: lookups run on every
    served request. A key id this very transaction inserted is not remembered,
    since the transaction may still roll back and leave the database unkeyed.
    """
    key = _serving_installation_key()  # the key file is read again only when it changed
    ours = sha256(_KEY_ID_DOMAIN + key).hexdigest()[:32]
    bind = session.get_bind() if isinstance(session, Session) else session
    engine = bind.engine if bind is not None else None
    checked = _KEYED_ENGINES.get(engine) if engine is not None else None
    if checked is not None and ours in checked:
        return key
    query = select(StoreMeta.value).where(StoreMeta.key == _META_KEY)
    stored = session.execute(query).scalar_one_or_none()
    keyed_here = session.info.get(_KEYED_HERE, False)
    if stored is None:
        _insert_ignore(session, StoreMeta, key=_META_KEY, value=ours)
        stored = session.execute(query).scalar_one()  # ours, or a concurrent process's
        session.info[_KEYED_HERE] = keyed_here = True
    if stored != ours:
        raise ConfigError(INSTALLATION_KEY_MISMATCH.format(stored=stored, ours=ours))
    if engine is not None and not keyed_here:
        _KEYED_ENGINES.setdefault(engine, set()).add(ours)
    return key


_KEY_READ: tuple[tuple[object, ...], bytes] | None = None
"""The installation key last read, and what it was read from (see :func:`_serving_installation_key`)."""


def _serving_installation_key() -> bytes:
    """:func:`audits.keys.installation_key`, read again only when its source changed.

    A request path looks the key up on every request; reading (and checking)
    the key file costs a file open and read each time. The key is kept with
    what it came from: the ``RECGOV_INSTALLATION_KEY`` value, or the key
    file's path, inode, size, modification time and mode (one ``stat``). Any
    change reads it again through :func:`~audits.keys.installation_key`, which
    also checks the file's mode (a key made readable by others is refused again).
    """
    global _KEY_READ
    settings = get_settings()
    if settings.installation_key is not None:
        source: tuple[object, ...] = ("env", settings.installation_key.get_secret_value())
    else:
        path = settings.keys_dir / "installation.key"
        try:
            st = os.stat(path)
        except OSError:
            return installation_key(settings)  # created (or refused) there
        source = ("file", str(path), st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_mode)
    cached = _KEY_READ
    if cached is not None and cached[0] == source:
        return cached[1]
    key = installation_key(settings)
    _KEY_READ = (source, key)
    return key


_KEY_ID_QUERY = select(StoreMeta.value).where(StoreMeta.key == _META_KEY)


def checked_installation_key(engine: Engine) -> bytes | None:
    """The installation key if :func:`reading_installation_key` already found it committed in ``engine``'s database
    (then it reads nothing there again), else None; reads no database."""
    checked = _KEYED_ENGINES.get(engine)
    if not checked:
        return None
    key = _serving_installation_key()
    return key if sha256(_KEY_ID_DOMAIN + key).hexdigest()[:32] in checked else None


def reading_installation_key(bind: Session | Connection | Any) -> bytes:
    """The installation key, checked against the database without ever writing to it.

    ``bind``: a session, a connection, or any read-only snapshot with
    ``execute(statement)`` and an ``engine`` (``governance.api.reads``).
    For read-only transactions (a serving snapshot): like :func:`_installation_key`
    it refuses a database keyed with another key, and it remembers a match for
    the engine's life, but a database that holds no key id yet is not keyed here
    (a read-only transaction cannot; the first write does it): the key is
    returned unchecked and the check runs again next time.
    """
    key = _serving_installation_key()
    ours = sha256(_KEY_ID_DOMAIN + key).hexdigest()[:32]
    connectable = bind.get_bind() if isinstance(bind, Session) else bind
    engine = getattr(connectable, "engine", None)
    checked = _KEYED_ENGINES.get(engine) if engine is not None else None
    if checked is not None and ours in checked:
        return key
    stored = bind.execute(_KEY_ID_QUERY).scalar_one_or_none()
    if stored is None:
        return key
    if stored != ours:
        raise ConfigError(INSTALLATION_KEY_MISMATCH.format(stored=stored, ours=ours))
    if engine is not None:
        _KEYED_ENGINES.setdefault(engine, set()).add(ours)
    return key


# hmac.digest is the one-shot form of hmac.new(...).digest(): the same HMAC-SHA256, computed in C without a
# Python HMAC object, which is what the bulk paths below need (millions of subjects in one import).


def _lookup(key: bytes, subject: bytes) -> str:
    return hmac.digest(key, _LOOKUP_DOMAIN + subject, "sha256").hex()


def _pseudonym(secret_hex: str, subject: bytes) -> str:
    return hmac.digest(bytes.fromhex(secret_hex), _PSEUDONYM_DOMAIN + subject, "sha256").hex()


def record_key(secret_hex: str) -> bytes:
    """The subject's record key (32 bytes) from its pseudonym secret: what sealed content is encrypted under."""
    return hmac.digest(bytes.fromhex(secret_hex), _RECORD_KEY_DOMAIN, "sha256")


def record_key_lookup(key: bytes, pseudonym_hex: str) -> str:
    """Where a pseudonym's record key is filed in ``subject_secrets``: a keyed hash of the pseudonym."""
    return hmac.digest(key, _RECORD_KEY_LOOKUP_DOMAIN + pseudonym_hex.encode("ascii"), "sha256").hex()


class _KeyedHash:
    """HMAC-SHA256 under one fixed key, its padded key blocks hashed once (RFC 2104), for many messages.

    Equal to ``hmac.digest(key, message, "sha256")``; about twice as fast for the
    short messages of a bulk lookup, since each message then costs two copies of
    a prepared hash state instead of a fresh HMAC set-up.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\x00")
        self._inner = sha256(block.translate(_IPAD))
        self._outer = sha256(block.translate(_OPAD))

    def hexdigests(self, messages: Iterable[bytes]) -> list[str]:
        """The HMAC of each message, as hex."""
        inner, outer = self._inner, self._outer
        out = []
        for message in messages:
            i = inner.copy()
            i.update(message)
            o = outer.copy()
            o.update(i.digest())
            out.append(o.hexdigest())
        return out


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def keyed_hexdigests(key: bytes, messages: Iterable[bytes]) -> list[str]:
    """``hmac.digest(key, m, "sha256").hex()`` of each message, in bulk (see :class:`_KeyedHash`)."""
    return _KeyedHash(key).hexdigests(messages)


def lookups_of(key: bytes, subjects: Sequence[bytes]) -> list[str]:
    """:func:`_lookup` of many subjects (their ids as bytes, see :func:`_subject_bytes`), in order."""
    domain = _LOOKUP_DOMAIN
    return _KeyedHash(key).hexdigests(domain + s for s in subjects)


def pseudonyms_and_record_keys(secrets_hex: Sequence[str], subjects: Sequence[bytes]) -> tuple[list[str], list[bytes]]:
    """:func:`_pseudonym` and :func:`record_key` of many (secret, subject) pairs, in order.

    Both are HMACs under the subject's secret: its padded key blocks are made
    once for the two (32-byte secrets need no pre-hashing).
    """
    pseudonyms: list[str] = []
    record_keys: list[bytes] = []
    unhex, ipad, opad, pdomain, rdomain = bytes.fromhex, _IPAD, _OPAD, _PSEUDONYM_DOMAIN, _RECORD_KEY_DOMAIN
    for secret_hex, subject in zip(secrets_hex, subjects, strict=True):
        block = unhex(secret_hex).ljust(64, b"\x00")
        inner, outer = block.translate(ipad), block.translate(opad)
        pseudonyms.append(sha256(outer + sha256(inner + pdomain + subject).digest()).hexdigest())
        record_keys.append(sha256(outer + sha256(inner + rdomain).digest()).digest())
    return pseudonyms, record_keys


def record_key_lookups_of(key: bytes, pseudonyms: Sequence[str]) -> list[str]:
    """:func:`record_key_lookup` of many pseudonyms, in order."""
    domain = _RECORD_KEY_LOOKUP_DOMAIN
    return _KeyedHash(key).hexdigests(domain + p.encode("ascii") for p in pseudonyms)


def hold_head_for_keys(session: Session | Connection) -> None:
    """Take the trail head's lock before reading or filing subject secrets (PostgreSQL; SQLite writers queue anyway).

    Erasure deletes a secret and appends its event under the head's lock; a
    writer that takes the same lock first never files a record key for a
    pseudonym being shredded, nor waits on the shredding while holding the head.
    """
    dialect = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
    if dialect == "postgresql":
        read_head(session, lock=True)


def subject_record_key(session: Session | Connection, subject_id: str | int) -> tuple[str, bytes]:
    """The subject's pseudonym and record key, both created on first use; the key is filed for pseudonym readers.

    The key returned is the one filed (a key filed earlier for the same
    pseudonym wins over the derived one), so everything sealed under a
    pseudonym opens with the key its readers find.
    """
    subject = _subject_bytes(subject_id)
    key = _installation_key(session)
    hold_head_for_keys(session)
    lookup = _lookup(key, subject)
    query = select(SubjectSecret.secret).where(SubjectSecret.lookup == lookup)
    secret = session.execute(query).scalar_one_or_none()
    now = datetime.now(UTC)
    if secret is None:
        _insert_ignore(session, SubjectSecret, lookup=lookup, secret=secrets.token_hex(32), created_at=now)
        secret = session.execute(query).scalar_one()  # ours, or a concurrent writer's
    who = _pseudonym(secret, subject)
    filed_at = record_key_lookup(key, who)
    _insert_ignore(session, SubjectSecret, lookup=filed_at, secret=record_key(secret).hex(), created_at=now)
    filed = session.execute(select(SubjectSecret.secret).where(SubjectSecret.lookup == filed_at)).scalar_one()
    return who, bytes.fromhex(filed)


def pseudonym(session: Session | Connection, subject_id: str | int) -> str:
    """The subject's pseudonym (64 hex digits); its secret (and record key) are created on first use.

    The same id gives the same pseudonym until the subject is shredded.
    Integers and their decimal strings are the same subject.

    Example
    -------
    >>> with store.session() as session:                       # doctest: +SKIP
    ...     who = pseudonym(session, "user-42")
    ...     append_event(session, actor="serving", action="decision.served", subject=who)
    """
    return subject_record_key(session, subject_id)[0]


def shred_subject(session: Session | Connection, subject_id: str | int, *, actor: str = "recgov") -> str | None:
    """Erase a subject by deleting its secret and its record key (crypto-shredding).

    Appends a ``subject.shredded`` event naming the old, now unlinkable,
    pseudonym, in the same transaction. Returns that pseudonym, or ``None`` if
    the subject had no secret (nothing to erase, no event).
    """
    subject = _subject_bytes(subject_id)
    key = _installation_key(session)
    hold_head_for_keys(session)
    lookup = _lookup(key, subject)
    secret = session.execute(
        select(SubjectSecret.secret).where(SubjectSecret.lookup == lookup).with_for_update()
    ).scalar_one_or_none()
    if secret is None:
        return None
    old = _pseudonym(secret, subject)
    session.execute(delete(SubjectSecret).where(SubjectSecret.lookup.in_([lookup, record_key_lookup(key, old)])))
    append_event(session, actor=actor, action="subject.shredded", subject=old)
    invalidate_subjects_after_commit(session, [subject_id], hold=True)  # their factors and cached lists leave the online store
    return old
