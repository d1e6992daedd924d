"""A TCP relay in front of PostgreSQL that counts round trips: each reply of the server to something the client sent.

The client's messages up to its next wait (a statement, or a pipeline's statements and their Sync) reach the
server before it answers (the server flushes its answers at a Sync), so one exchange counts once however many
packets it takes either way.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any

from sqlalchemy.engine import make_url


class TurnCounter:
    """Relays 127.0.0.1:``port`` to the PostgreSQL server of ``url``; :attr:`turns` counts its answers so far."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self._target = (parsed.host or "127.0.0.1", parsed.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        self.turns = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        asked = False  # the client sent something the server has not answered yet
        try:
            while True:
                for key, _ in selector.select():
                    source: Any = key.fileobj
                    data = source.recv(1 << 16)
                    if not data:
                        return
                    if source is client:
                        asked = True
                    elif asked:  # counted before the client gets it: a test reads the count once its call returns
                        asked = False
                        with self._lock:
                            self.turns += 1
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
