"""The console's sessions on their own: signatures, expiry, sign-out, and the sign-in form's token."""

from __future__ import annotations

from governance.api.console.sessions import IDLE_S, LIFETIME_S, LOGIN_NONCE_S, SessionBook


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_finds_its_session_only_with_this_process_signature() -> None:
    book, other = SessionBook(), SessionBook()
    session, cookie = book.open(key_id=7)
    assert book.find(cookie) is session and session.key_id == 7
    assert other.find(cookie) is None  # another process (a restart): another secret
    session_id, _, signature = cookie.partition(".")
    assert book.find(session_id) is None and book.find(f"{session_id}.{signature[:-2]}xx") is None
    assert book.find(None) is None and book.find("") is None
    assert book.open(key_id=7)[0].id != session.id  # a new id at every sign-in


def test_a_session_ends_when_idle_past_its_lifetime_or_closed() -> None:
    clock = Clock()
    book = SessionBook(clock=clock)
    _, idle = book.open(key_id=1)
    clock.now += IDLE_S + 1
    assert book.find(idle) is None
    _, busy = book.open(key_id=1)
    while clock.now < 1_000.0 + IDLE_S + 1 + LIFETIME_S - IDLE_S / 2:
        clock.now += IDLE_S / 2
        assert book.find(busy) is not None
    clock.now += IDLE_S / 2 + 1
    assert book.find(busy) is None  # used all day long, still closed at the end of its lifetime
    session, cookie = book.open(key_id=2)
    book.close(session.id)
    book.close(session.id)
    assert book.find(cookie) is None


def test_the_csrf_token_is_the_sessions_own() -> None:
    book = SessionBook()
    one, _ = book.open(key_id=1)
    two, _ = book.open(key_id=1)
    assert one.csrf_matches(one.csrf) and not one.csrf_matches(two.csrf)
    assert not one.csrf_matches(None) and not one.csrf_matches("") and not one.csrf_matches(one.csrf + "x")


def test_the_sign_in_form_token_belongs_to_its_cookie_and_expires() -> None:
    clock = Clock()
    book = SessionBook(clock=clock)
    cookie, token = book.login_nonce()
    other_cookie, other_token = book.login_nonce()
    assert book.login_token_ok(cookie, token) and book.login_token_ok(other_cookie, other_token)
    assert not book.login_token_ok(cookie, other_token) and not book.login_token_ok(None, token) and not book.login_token_ok(cookie, None)
    assert not SessionBook().login_token_ok(cookie, token)
    clock.now += LOGIN_NONCE_S + 1
    assert not book.login_token_ok(cookie, token)
