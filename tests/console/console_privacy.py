"""Where a subject's raw id must not be: the server's log lines and the trail. Helpers for the console's tests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import ConsoleServer
from sqlalchemy import select

from audits.models import TrailEvent

__all__ = ["all_trail_events", "assert_nowhere_in_the_trail", "server_log"]

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "governance", "audits", "recgov", "fastapi")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


@contextmanager
def server_log() -> Iterator[list[str]]:
    """Every log line the server (in this process) writes meanwhile, access log included, at DEBUG."""
    handler = _Lines()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for logger, level, disabled in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.disabled = disabled


def all_trail_events(server: ConsoleServer) -> list[dict[str, Any]]:
    """The whole trail over the API, following ``next_after``."""
    events: list[dict[str, Any]] = []
    after = 0
    with server.api("admin") as api:
        while True:
            page = api.get("/v1/trail/events", params={"limit": 1000, "after": after}).json()
            events += page["events"]
            if page["next_after"] is None:
                return events
            after = page["next_after"]


def assert_nowhere_in_the_trail(server: ConsoleServer, raw: str) -> None:
    """``raw`` is in no trail event, as the API gives them and as the store holds them."""
    assert raw not in json.dumps(all_trail_events(server))
    with server.store.session() as session:
        rows = session.execute(select(TrailEvent.actor, TrailEvent.action, TrailEvent.subject, TrailEvent.objects, TrailEvent.payload)).all()
    assert rows and not any(raw in str(value) for row in rows for value in row)
