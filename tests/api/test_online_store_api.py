"""The online store over real HTTP with a Redis that is flushed, then cut off, then back (real Redis behind a TCP
proxy the test can cut): no request fails that the SQL path can answer, none is served a list from before a consent
change, and once Redis is back the invalidations recorded meanwhile are applied and lists are cached again."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from audits.models import OnlineStoreOutbox
from audits.online_store import OnlineStore
from test_availability_api import _context


class Proxy:
    """A TCP proxy to Redis on a port of its own: :meth:`cut` drops every connection and refuses new ones (Redis is
    down, as far as the server can tell), :meth:`resume` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.resume()

    def resume(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self._server is not None
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (a close alone leaves it listening)
        except OSError:
            pass
        self._server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def proxied(online_store, redis_server_url):
    parts = urlsplit(redis_server_url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    store = OnlineStore.from_url(f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}", namespace=online_store.namespace, key=b"k" * 32)
    try:
        yield proxy, store
    finally:
        proxy.cut()
        store.client.close()


def _pending(server) -> int:
    with server.store.snapshot() as connection:
        return int(connection.execute(select(func.count()).select_from(OnlineStoreOutbox)).scalar_one())


def test_redis_flushed_then_down_then_back_fails_no_request_and_serves_nothing_stale(server, online_store, proxied, monkeypatch) -> None:
    import audits.online_store as online

    proxy, store = proxied
    url = "redis://online-store-behind-a-proxy"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, store)
    monkeypatch.setattr(online, "RETRY_AFTER_S", 0.2)  # asked again soon after a failure: the test waits less
    store.hold_s = 1.0  # and a withdrawal holds the subject's new lists back for a second, not HOLD_S
    subject = "u000047"
    request = {"subject": subject, "k": 8, "model_version": server.model_version, "pack": "eu-gdpr-dsa"}
    consent = {"subject": subject, "purpose": "personalization", "basis": "consent", "source": "api"}
    lists_key = f"{online_store.namespace}:l:{online_store.subject_key(subject)}"

    def serve(client) -> tuple[dict, str | None]:
        answer = client.post("/v1/recommendations", json=request)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body, _context(server, body["decision_id"]).get("list_source")

    with server.client("operator") as client:
        client.put("/v1/items/i999997/availability", json={"status": "withdrawn"})  # engines are built again, with the store
        assert client.post("/v1/consent", json=consent | {"status": "granted"}).status_code == 201
        made, _ = serve(client)
        cached, source = serve(client)
        assert made["mode"] == "personalized" and source == "online_store" and cached["items"] == made["items"]
        items = made["items"]

        # Flushed: every key of the installation gone (epochs included) -- made again, then cached again.
        online_store.client.delete(*online_store.client.scan_iter(match=f"{online_store.namespace}:*"))
        after_flush, source = serve(client)
        assert source is None and after_flush["items"] == items
        again, source = serve(client)
        assert source == "online_store" and again["items"] == items

        # Down: answered from SQL; a withdrawal recorded meanwhile waits in the outbox and holds at once.
        proxy.cut()
        down, source = serve(client)
        assert source is None and down["items"] == items
        assert client.post("/v1/consent", json=consent | {"status": "withdrawn"}).status_code == 201
        assert _pending(server) >= 1
        withdrawn, source = serve(client)
        assert withdrawn["mode"] == "non_profiling" and source is None
        assert client.post("/v1/consent", json=consent | {"status": "granted"}).status_code == 201
        regranted, source = serve(client)
        assert regranted["mode"] == "personalized" and source is None and regranted["items"] == items

        # Back: the outbox is applied (the entries cached before the cut go), and lists are cached again.
        proxy.resume()
        deadline = time.monotonic() + 15
        while True:
            body, source = serve(client)
            assert body["mode"] == "personalized" and body["items"] == items
            if source == "online_store" and _pending(server) == 0:
                break
            assert time.monotonic() < deadline, f"not cached again after Redis came back ({_pending(server)} outbox rows)"
            time.sleep(0.2)
    assert online_store.client.exists(lists_key)
    client = online_store.client
    for key in client.scan_iter(match=f"{online_store.namespace}:*"):  # no raw subject id, in a key or a value
        kind = client.type(key).decode()
        values = {"hash": lambda k: [b"%b=%b" % kv for kv in client.hgetall(k).items()], "set": client.smembers}.get(kind, lambda k: [client.get(k)])(key)
        assert subject.encode() not in key and not any(subject.encode() in (v or b"") for v in values), key
