"""Feedback import benchmark: outcome events from a CSV file, joined to their decisions, on SQLite (or --database-url).

Sets up ``--subjects`` subjects with ``--decisions`` decisions each (lists of 10
items, one hour apart, logged through :class:`audits.DecisionLog`), writes a CSV
of ``--events`` events (a fifth carrying their decision id, three fifths
clicking a served item within the window, a fifth clicking an item never
served), and times :func:`governance.feedback.import_feedback`: the first
import (judging, pseudonyms, opening the decisions' sealed lists, joining,
storing), then the same file again (every event already stored). Reports
events per second and how the events were joined.

Run:  python bench/bench_feedback.py [--subjects 2000] [--decisions 5] [--events 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from audits import DecisionLog, open_store
from governance.feedback import import_feedback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    store = open_store(args.database_url or f"sqlite:///{folder / 'store.db'}")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    n_items = 500
    subjects = np.asarray([f"bench-user-{i:06d}" for i in range(args.subjects)], dtype=object)
    ids, slates, times = [], [], []
    started = time.perf_counter()
    with DecisionLog(store, max_batch=2048) as log:
        futures = []
        for s in range(args.subjects):
            for d in range(args.decisions):
                slate = rng.choice(n_items, size=10, replace=False)
                decision_id, at = str(uuid.uuid4()), t0 + timedelta(hours=d)
                record = {"mode": "personalized", "pack_name": "bench", "pack_version": "1", "pack_hash": "sha256:" + "0" * 64,
                          "slate": {"items": [f"i{x}" for x in slate], "scores": [1.0] * 10}, "context": {},
                          "decision_id": decision_id, "decided_at": at, "subject_id": subjects[s]}  # fmt: skip
                futures.append(log.submit(record))
                ids.append(decision_id), slates.append(slate), times.append(at)
        for future in futures:
            future.result(timeout=600)
    setup_s = time.perf_counter() - started
    n = args.events
    which = rng.integers(0, len(ids), size=n)
    place = rng.integers(0, 10, size=n)
    kind = rng.random(n)
    served_items = np.asarray([f"i{slates[w][p]}" for w, p in zip(which, place)], dtype=object)
    items = np.where(kind < 0.8, served_items, np.asarray([f"never-{x}" for x in rng.integers(0, 50, size=n)], dtype=object))
    at = pd.to_datetime(np.asarray([times[w] for w in which])) + pd.to_timedelta(rng.integers(1, 3000, size=n), unit="s")
    frame = pd.DataFrame({
        "subject": subjects[which // args.decisions], "item": items, "kind": "click", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "decision_id": np.where(kind < 0.2, np.asarray(ids, dtype=object)[which], ""),
    })  # fmt: skip
    path = folder / "events.csv"
    frame.to_csv(path, index=False)
    started = time.perf_counter()
    first = import_feedback(store, path, window="1h")
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = import_feedback(store, path, window="1h")
    again_s = time.perf_counter() - started
    store.close()
    doc = {
        "subjects": args.subjects, "decisions": len(ids), "events": n, "setup_seconds": round(setup_s, 2),
        "import_seconds": round(first_s, 2), "events_per_second": round(n / first_s),
        "reimport_seconds": round(again_s, 2), "reimport_events_per_second": round(n / again_s),
        "added": first.added, "already_recorded_on_reimport": again.already_recorded, "invalid": first.invalid,
        "by_attribution": first.by_attribution,
    }  # fmt: skip
    if args.json:
        print(json.dumps(doc))
    else:
        for key, value in doc.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
