"""Audit trail benchmark: batched appends and verification on SQLite and PostgreSQL.

Measures, each on a fresh database:

* batched appends per second, one writer, on SQLite and on PostgreSQL;
* batched appends per second with 8 writer processes at once (spawned; the
  rate is all events over the wall time from the start signal to the last commit);
* verified events per second (``verify_trail``, the work of ``recgov trail verify``)
  on both engines, and of an exported file (``verify_export``, no database).

Targets on a 2-core machine: 20,000 appends/s on SQLite, 5,000/s on PostgreSQL
with 8 concurrent writers, 200,000 verified events/s.

Run:  python bench/bench_trail.py [--events 200000] [--json] [--skip-postgres]
PostgreSQL: RECGOV_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test
(a scratch schema is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from audits import (  # noqa: E402
    NewEvent,
    append_many,
    create_checkpoint,
    export_trail,
    load_signing_key,
    open_store,
    verify_export,
    verify_trail,
)

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 1000
N_WRITERS = 8



def _events(n: int, worker: int = 0) -> Iterator[NewEvent]:
    """Decision events of a realistic size (about 300 bytes of JSON each)."""
    for i in range(n):
        yield NewEvent(
            actor="svc:serving",
            action="decision.served",
            subject=f"{(worker * 1_000_003 + i * 7919) % (1 << 64):064x}",
            objects={"model": "3f2a9c1e", "policy": "default@3", "decision": i},
            payload={
                "items": [(i * 31 + k * 17) % 5000 for k in range(10)],
                "explanations": ["popular", "similar-to-history"],
                "personalized": True,
                "latency_us": 1800 + i % 400,
            },
        )


def _append(url: str, n: int, batch: int, worker: int = 0) -> float:
    """Append ``n`` events in transactions of ``batch``; return seconds."""
    store = open_store(url)
    try:
        events = _events(n, worker)
        started = time.perf_counter()
        for first in range(0, n, batch):
            with store.session() as session:
                append_many(session, (next(events) for _ in range(min(batch, n - first))), chunk_size=batch)
        return time.perf_counter() - started
    finally:
        store.close()


def _writer(url: str, n: int, batch: int, worker: int, start: Any, results: Any) -> None:
    store = open_store(url)  # connect and import before the start signal
    store.close()
    start.wait(120)
    began = time.time()
    _append(url, n, batch, worker)
    results.put((began, time.time()))


def _concurrent(url: str, n_per_writer: int, batch: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    writers = [
        context.Process(target=_writer, args=(url, n_per_writer, batch, w, start, results)) for w in range(N_WRITERS)
    ]
    for process in writers:
        process.start()
    time.sleep(3.0)  # let every writer import and connect
    start.set()
    spans = [results.get(timeout=600) for _ in writers]
    for process in writers:
        process.join()
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    total = n_per_writer * N_WRITERS
    return {
        "writers": N_WRITERS,
        "events": total,
        "batch": batch,
        "seconds": round(wall, 3),
        "per_s": round(total / wall),
    }


def _verify_rate(url: str, repeats: int = 3) -> dict[str, Any]:
    store = open_store(url)
    try:
        best = None
        for _ in range(repeats):
            with store.snapshot() as connection:
                report = verify_trail(connection)
            assert report.intact, report.summary()
            best = report if best is None or report.elapsed_s < best.elapsed_s else best
        assert best is not None
        return {"events": best.n_events, "seconds": round(best.elapsed_s, 3), "per_s": round(best.events_per_s)}
    finally:
        store.close()


def _export_verify_rate(url: str, folder: Path) -> dict[str, Any]:
    store = open_store(url)
    try:
        key = load_signing_key()
        with store.session() as session:
            create_checkpoint(session, key)
        with store.snapshot() as connection:
            started = time.perf_counter()
            summary = export_trail(connection, folder / "trail.jsonl", signing_key=key)
            export_s = time.perf_counter() - started
    finally:
        store.close()
    report = verify_export(folder / "trail.jsonl", key.public_key_pem)
    assert report.intact, report.summary()
    return {
        "events": summary.n_events,
        "export_per_s": round(summary.n_events / export_s),
        "verify_seconds": round(report.elapsed_s, 3),
        "verify_per_s": round(report.events_per_s),
    }


def _engine_run(url: str, n_events: int, folder: Path) -> dict[str, Any]:
    one = _append(url, n_events, BATCH)
    result: dict[str, Any] = {
        "append_1_writer": {
            "events": n_events,
            "batch": BATCH,
            "seconds": round(one, 3),
            "per_s": round(n_events / one),
        },
        "append_8_writers": _concurrent(url, max(n_events // (2 * N_WRITERS), 500), 500),
    }
    result["verify"] = _verify_rate(url)
    result["export"] = _export_verify_rate(url, folder)
    return result


def _postgres_schema(admin_url: str) -> tuple[str, Any]:
    schema = f"recgov_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()

    return url.render_as_string(hide_password=False), drop


def _table(results: dict[str, Any]) -> str:
    rows = [("engine", "measure", "events", "seconds", "per second")]
    for engine, measures in results["engines"].items():
        rows.append((engine, "append, 1 writer, batches of 1000", *_figures(measures["append_1_writer"])))
        rows.append((engine, "append, 8 writer processes, batches of 500", *_figures(measures["append_8_writers"])))
        rows.append((engine, "verify (recgov trail verify)", *_figures(measures["verify"])))
        export = measures["export"]
        rows.append(
            (
                engine,
                "verify an export offline",
                str(export["events"]),
                str(export["verify_seconds"]),
                f"{export['verify_per_s']:,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _figures(measure: dict[str, Any]) -> tuple[str, str, str]:
    return str(measure["events"]), str(measure["seconds"]), f"{measure['per_s']:,}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per engine for one writer and verification")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only one JSON document")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "engines": {},
    }
    with tempfile.TemporaryDirectory(prefix="recgov-bench-") as scratch:
        folder = Path(scratch)
        os.environ["RECGOV_HOME"] = str(folder / "home")
        os.environ.pop("RECGOV_DATABASE_URL", None)
        results["engines"]["sqlite"] = _engine_run(f"sqlite:///{folder / 'bench.db'}", args.events, folder)
        if not args.skip_postgres:
            admin = os.environ.get("RECGOV_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
            url, drop = _postgres_schema(admin)
            try:
                results["engines"]["postgresql"] = _engine_run(url, args.events, folder)
            finally:
                drop()
    if not args.json:
        print(
            "machine: {cpu}, {cores} cores, Python {python}".format(**results["machine"])
        )
        print(_table(results))
        print()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
