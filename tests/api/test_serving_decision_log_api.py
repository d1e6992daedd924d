"""The service's decision log over real HTTP, on SQLite and PostgreSQL: a batch never waits for more lists.

Lists reach the log spaced by the server's own work on each; a log that waits for the next one while they keep
coming holds every batch open, and the lists of a batch wait for one another (measured: 20 to 35% fewer lists a
second at 8 and 16 connections). The service's log takes what has queued and commits it
(:data:`governance.api.services.engines.SERVING_BATCH_DELAY_MS`).
"""

from __future__ import annotations

import json
import queue
from concurrent.futures import ThreadPoolExecutor

from audits import record_consent
from governance.api.services.engines import engines_of


def test_the_services_log_takes_what_queued_and_never_waits_for_more(server) -> None:  # noqa: ANN001
    cache = engines_of(server.app)
    log = cache.start_decision_log()
    waits: list[float] = []
    get = log._queue.get

    def watched(block: bool = True, timeout: float | None = None):  # noqa: ANN202
        if block and timeout is not None:
            waits.append(timeout)  # a wait for a next decision while a batch is open
        return get(block, timeout)

    subjects = [f"u{n:06d}" for n in range(900, 912)]
    with server.store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    log._queue.get = watched  # the writer thread reads the queue through this from its next batch on
    try:
        with server.client("operator") as client, ThreadPoolExecutor(6) as pool:
            def one(subject: str) -> int:
                body = {"subject": subject, "k": 5, "model_version": server.model_version, "pack": "eu-gdpr-dsa"}
                return client.post("/v1/recommendations", content=json.dumps(body), headers={"Content-Type": "application/json"}).status_code

            statuses = list(pool.map(one, subjects * 3))
    finally:
        log._queue.get = get
    assert statuses == [200] * len(statuses)
    assert waits == [], f"the writer held a batch open for more decisions: {waits[:5]}"
    assert log.max_delay_ms == 0
    assert isinstance(log._queue, queue.Queue)
