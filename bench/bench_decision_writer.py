"""Decision writer benchmark: CPU milliseconds per committed batch, by batch size and store.

Runs the commit the decision writer process runs for each batch
(:meth:`audits.decisions.DecisionLog._commit`: pseudonyms, sealing, the trail
events, the rows, one transaction) in this process, on batches of
governed-list decisions as the API submits them (a top-10 slate with
explanation tags, and the API call's own trail event). The subjects are a pool
of ``--subjects`` whose secrets and record keys are filed before the run, as in
a serving store after its warm-up. Reports, per store and batch size, the
median over ``--repeats`` runs of the process CPU time per batch (and per
list); the batches' records are built before the clock starts.

PostgreSQL runs in a schema of its own (created and dropped) in the database
of ``--postgres-url``.

Run:  python bench/bench_decision_writer.py [--stores sqlite,postgresql] [--sizes 1,5,20,256]
      [--batches 200] [--repeats 5] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--json]
      [--profile FILE]   (cProfile of one run of the smallest size, to FILE)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits.decision_record import _Pending, _prepare  # noqa: E402
from audits.decisions import DecisionLog  # noqa: E402
from audits.trail import NewEvent  # noqa: E402

try:
    from audits.db import HeldConnection  # noqa: E402  (the writer process's one connection, where there is one)
except ImportError:
    HeldConnection = None

TAG = {
    "kind": "because_you_interacted",
    "text": "because you interacted with i00001, i00002, i00003",
    "items": ["i00001", "i00002", "i00003"],
    "weights": [0.5, 0.3, 0.2],
}
SLATE = {"items": [f"i{n:05d}" for n in range(10)], "scores": [0.912345] * 10, "tags": [[TAG] for _ in range(10)]}


def _batch(size: int, start: int, subjects: int) -> list[_Pending]:
    """``size`` decisions as the writer process receives them (validated, encoded, each with its call's event)."""
    out = []
    for n in range(start, start + size):
        record = {"subject_id": f"u{n % subjects:06d}", "mode": "personalized", "pack_name": "eu", "pack_version": "1",
                  "pack_hash": "sha256:x", "model_version": "m", "slate": SLATE, "context": {"consent": "granted", "gpc": False}}  # fmt: skip
        event = NewEvent(actor="key:1:bench", action="api.recommendations.create", objects={"model": "m"}, payload={"gpc": False})
        out.append(_prepare(record, None, (event,)))
    return out


def _writer(store) -> DecisionLog:
    """The writer as the writer process sets it up: the store, the actor, the filed record keys."""
    writer = DecisionLog.__new__(DecisionLog)
    writer.store, writer.actor, writer._filed = store, "bench", set()
    if HeldConnection is not None:
        writer._held = HeldConnection(store)
    return writer


def _run(store, size: int, batches: int, subjects: int, start: int) -> float:
    """CPU ms per batch over ``batches`` batches of ``size``."""
    prepared = [_batch(size, start + i * size, subjects) for i in range(batches)]
    writer = _writer(store)
    DecisionLog._commit(writer, _batch(subjects, 0, subjects))  # this writer's filed keys, as after a warm-up
    gc.collect()
    gc.freeze()  # as the writer process does after its first batch: what is loaded stays out of collections
    cpu = time.process_time()
    for batch in prepared:
        DecisionLog._commit(writer, batch)
    cpu = (time.process_time() - cpu) * 1000 / batches
    _release(writer)
    return cpu


def _release(writer: DecisionLog) -> None:
    if getattr(writer, "_held", None) is not None:
        writer._held.close()


def _measure(kind: str, url: str, args: argparse.Namespace) -> list[dict]:
    from audits import open_store

    store = open_store(url)
    try:
        warm = _writer(store)
        DecisionLog._commit(warm, _batch(args.subjects, 0, args.subjects))  # secrets and keys exist
        _release(warm)
        results = []
        offset = 0
        for size in args.sizes:
            batches = max(3, min(args.batches, args.lists // size))
            runs = []
            for _ in range(args.repeats):
                runs.append(_run(store, size, batches, args.subjects, offset))
                offset += size * batches
            median = statistics.median(runs)
            results.append({"store": kind, "batch": size, "batches": batches, "repeats": args.repeats,
                            "cpu_ms_per_batch": round(median, 3), "cpu_ms_per_list": round(median / size, 4),
                            "runs": [round(r, 3) for r in runs]})  # fmt: skip
            if not args.json:
                print(f"{kind:10s} batch {size:4d}: {median:8.3f} ms CPU/batch  {median / size:7.4f} ms/list  (runs {', '.join(f'{r:.3f}' for r in runs)})", flush=True)
        if args.profile:
            import cProfile

            size = args.sizes[0]
            profiler = cProfile.Profile()
            prepared = [_batch(size, offset + i * size, args.subjects) for i in range(args.batches)]
            writer = _writer(store)
            DecisionLog._commit(writer, _batch(args.subjects, 0, args.subjects))
            profiler.enable()
            for batch in prepared:
                DecisionLog._commit(writer, batch)
            profiler.disable()
            _release(writer)
            profiler.dump_stats(f"{args.profile}.{kind}")
        from audits.verify import verify_trail
        from audits.decisions import verify_decisions

        with store.engine.connect() as connection:
            if not verify_trail(connection).intact or verify_decisions(connection):
                raise SystemExit(f"[{kind}] the trail or the decisions do not verify after the run")
        return results
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="1,5,20,256")
    parser.add_argument("--batches", type=int, default=200, help="batches per run (fewer for large sizes: see --lists)")
    parser.add_argument("--lists", type=int, default=5120, help="at most this many lists per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subjects", type=int, default=943)
    parser.add_argument("--postgres-url", default=os.environ.get("RECGOV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RECGOV_HOME"] = tmp
        for kind in args.stores.split(","):
            if kind == "sqlite":
                results += _measure(kind, f"sqlite:///{tmp}/bench.db", args)
            elif kind == "postgresql":
                from sqlalchemy import create_engine, make_url, text

                schema = f"bench_writer_{uuid.uuid4().hex[:12]}"
                admin = create_engine(args.postgres_url)
                with admin.begin() as connection:
                    connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                try:
                    url = make_url(args.postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
                    results += _measure(kind, url.render_as_string(hide_password=False), args)
                finally:
                    with admin.begin() as connection:
                        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
            else:
                raise SystemExit(f"unknown store {kind!r}: sqlite or postgresql")
    if args.json:
        print(json.dumps({"benchmark": "decision_writer", "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
