"""Process entry points for the concurrency tests (importable by spawned children)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from audits import NewEvent, append_many, open_store


def append_worker(url: str, worker: int, n_events: int, batch: int, start: Any) -> None:
    """Append ``n_events`` events in batches of ``batch``, starting when ``start`` is set."""
    store = open_store(url)
    try:
        start.wait(60)
        for first in range(0, n_events, batch):
            with store.session() as session:
                append_many(
                    session,
                    [
                        NewEvent(actor=f"worker-{worker}", action="test.appended", payload={"worker": worker, "i": i})
                        for i in range(first, min(first + batch, n_events))
                    ],
                )
    finally:
        store.close()


def stalled_batch_worker(url: str, before_stall: int, stalled: Any) -> None:
    """Write a batch in one transaction, then stall mid-batch (to be killed) after ``before_stall`` events."""

    def events() -> Iterator[NewEvent]:
        for i in range(before_stall):
            yield NewEvent(actor="doomed", action="test.half_written", payload={"i": i})
        stalled.set()
        time.sleep(120)
        yield NewEvent(actor="doomed", action="test.half_written", payload={"i": before_stall})

    store = open_store(url)
    with store.session() as session:
        append_many(session, events(), chunk_size=500)
