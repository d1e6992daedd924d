"""Time the overdue count of subject requests (``audits.count_requests(overdue_at=...)``) on a large store.

Fills the store once with N requests (one in a hundred failed, one in seven in progress, the rest completed; a
subject every three requests), then times seven counts and prints the fastest and the median, wall and CPU.
Every audit counts overdue requests once per kind (the ``erasure_deadline`` check), and so do the Art. 30 record
and ``GET /v1/requests?overdue=true``.

    python bench/bench_overdue_requests.py sqlite:////tmp/overdue.db 200000
    python bench/bench_overdue_requests.py 'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench' 200000
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from audits import count_requests, open_request, open_store
from audits.models import SubjectRequest

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fill(store, n: int) -> None:  # noqa: ANN001
    """N requests, once: a store that already holds requests is used as it is."""
    with store.session() as session:
        if session.scalar(select(func.count()).select_from(SubjectRequest)):
            return
        seq = open_request(session, subject_id="bench", kind="access", deadline_days=30).trail_seq
        rows = [
            {
                "kind": ("access", "erasure")[i % 2], "subject": f"{i % max(n // 3, 1):064x}",
                "status": "failed" if i % 100 == 0 else ("completed" if i % 7 else "in_progress"),
                "requested_at": T0 + timedelta(seconds=i), "deadline": T0 + timedelta(days=30, seconds=i),
                "result": None, "trail_seq": seq,
            }  # fmt: skip
            for i in range(n)
        ]
        session.execute(insert(SubjectRequest), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    store = open_store(args.url)
    fill(store, args.n)
    timings = []
    for _ in range(7):
        with store.session() as session:
            cpu, wall = time.process_time(), time.perf_counter()
            overdue = count_requests(session, overdue_at=T0 + timedelta(days=400))
            timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    walls = sorted(t[0] for t in timings)
    print(json.dumps({"requests": args.n, "overdue": overdue, "wall_ms_min": round(walls[0] * 1000, 1),
                      "wall_ms_median": round(walls[3] * 1000, 1), "cpu_ms_min": round(min(t[1] for t in timings) * 1000, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
