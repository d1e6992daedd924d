"""The console's sign-in sessions and CSRF tokens, kept in the server's memory.

A reviewer signs in once with an API key; the console never stores that token.
It keeps, per session, the key's id and a CSRF token, in a dict of this
process, and gives the browser a cookie holding only the session's random id
and an HMAC of it under a secret drawn when the process starts. A cookie is
therefore worthless without this process's memory: a restart, a sign-out or
the session's expiry (idle or absolute) signs the reviewer out, and a key
revoked meanwhile is refused on the next page (the pages read the key on every
request, as the API does). Sessions live in one server process: several
servers behind one address need sticky sessions for the console.

Every form that changes something carries the session's CSRF token (the
synchronizer-token pattern) and is refused with 403 without it. The sign-in
form has no session yet; it carries an HMAC of a random nonce that the browser
holds in a short-lived cookie of its own, so a page of another site cannot sign
a browser in with the attacker's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ConsoleSession", "SessionBook"]

IDLE_S = 30 * 60
"""A session unused this long is closed."""
LIFETIME_S = 8 * 60 * 60
"""No session outlives a working day, however busy."""
LOGIN_NONCE_S = 60 * 60
"""How long a sign-in form stays valid."""
MAX_SESSIONS = 10_000
"""Past this many live sessions the oldest one is closed: memory stays bounded."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class ConsoleSession:
    """A signed-in browser: which key it acts as, its CSRF token, and when it was opened and last used."""

    id: str
    key_id: int
    csrf: str
    opened: float
    seen: float = field(default=0.0)

    def csrf_matches(self, token: str | None) -> bool:
        """True when ``token`` is this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode("utf-8"), self.csrf.encode("utf-8"))


class SessionBook:
    """The process's sessions: open one on sign-in, find it from its cookie, close it on sign-out.

    Thread-safe: the pages run on the server's worker threads.

    >>> book = SessionBook()
    >>> session, cookie = book.open(key_id=3)
    >>> book.find(cookie).key_id, book.find(cookie + "x")
    (3, None)
    """

    def __init__(self, *, idle_s: float = IDLE_S, lifetime_s: float = LIFETIME_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def _sign(self, purpose: str, value: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest())

    def _verified(self, purpose: str, signed: str | None) -> str | None:
        """The value of ``value.signature`` when the signature is ours, else None."""
        value, _, signature = (signed or "").rpartition(".")
        if not value or not hmac.compare_digest(signature.encode(), self._sign(purpose, value).encode()):
            return None
        return value

    def _expired(self, session: ConsoleSession, now: float) -> bool:
        return now - session.seen > self.idle_s or now - session.opened > self.lifetime_s

    def open(self, *, key_id: int) -> tuple[ConsoleSession, str]:
        """A new session for key ``key_id`` (always a new id: no session fixation) and its cookie value."""
        now = self._clock()
        session = ConsoleSession(id=_b64(secrets.token_bytes(24)), key_id=key_id, csrf=_b64(secrets.token_bytes(24)), opened=now, seen=now)
        with self._lock:
            for stale in [s.id for s in self._sessions.values() if self._expired(s, now)]:
                del self._sessions[stale]
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[min(self._sessions.values(), key=lambda s: s.opened).id]
            self._sessions[session.id] = session
        return session, f"{session.id}.{self._sign('session', session.id)}"

    def find(self, cookie: str | None) -> ConsoleSession | None:
        """The live session a cookie names (and marks it used), or None: unsigned, unknown, closed or expired."""
        session_id = self._verified("session", cookie)
        if session_id is None:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def close(self, session_id: str) -> None:
        """Forget a session (sign-out, or its key was revoked); closing twice is harmless."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def login_nonce(self) -> tuple[str, str]:
        """A fresh sign-in form: the cookie value the browser keeps, and the token the form carries."""
        nonce = f"{int(self._clock())}-{_b64(secrets.token_bytes(18))}"
        return f"{nonce}.{self._sign('login-cookie', nonce)}", self._sign("login-form", nonce)

    def login_token_ok(self, cookie: str | None, token: str | None) -> bool:
        """True when the sign-in form's ``token`` belongs to the browser's nonce ``cookie``, issued within the hour."""
        nonce = self._verified("login-cookie", cookie)
        if nonce is None or token is None:
            return False
        issued = nonce.partition("-")[0]
        if not issued.isdigit() or self._clock() - int(issued) > LOGIN_NONCE_S:
            return False
        return hmac.compare_digest(token.encode("utf-8"), self._sign("login-form", nonce).encode())
