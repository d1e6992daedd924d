"""Decision log benchmark: the writer's cost per recorded list, sealing included.

Submits ``--decisions`` personalized decisions (a top-10 slate with explanation
tags, about 2 KB of JSON, from ``--subjects`` subjects) to a thread
:class:`~audits.decisions.DecisionLog` on a fresh SQLite store, then waits for
all to commit. Reports the wall time and the process's CPU time (the writer
thread's pseudonyms, sealing, digest and inserts, plus the callers' encoding).

Run:  python bench/bench_decision_log.py [--decisions 4000] [--subjects 943] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits import open_store  # noqa: E402
from audits.decisions import DecisionLog  # noqa: E402

TAG = {
    "kind": "because_you_interacted",
    "text": "because you interacted with i00001, i00002, i00003",
    "items": ["i00001", "i00002", "i00003"],
    "weights": [0.5, 0.3, 0.2],
}
SLATE = {"items": [f"i{n:05d}" for n in range(10)], "scores": [0.912345] * 10, "tags": [[TAG] for _ in range(10)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=4000)
    parser.add_argument("--subjects", type=int, default=943)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RECGOV_HOME"] = tmp
        store = open_store(f"sqlite:///{tmp}/bench.db")
        with DecisionLog(store) as log:
            log.submit_and_wait({"mode": "fallback", "pack_name": "w", "pack_version": "0", "pack_hash": "0", "slate": {"items": []}})
            wall, cpu = time.perf_counter(), time.process_time()
            for n in range(args.decisions):
                log.submit(
                    {"subject_id": f"u{n % args.subjects:06d}", "mode": "personalized", "pack_name": "eu",
                     "pack_version": "1", "pack_hash": "sha256:x", "model_version": "m", "slate": SLATE,
                     "context": {"consent": "granted", "gpc": False}}
                )  # fmt: skip
            log.flush()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            batches = log.batches_committed - 1
        store.close()
    result = {
        "benchmark": "decision_log",
        "decisions": args.decisions,
        "subjects": args.subjects,
        "batches": batches,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_decision": round(cpu / args.decisions * 1e6, 1),
        "decisions_per_s": round(args.decisions / wall, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.decisions} decisions in {batches} batches: {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"({result['cpu_us_per_decision']} µs per decision), {result['decisions_per_s']} decisions/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
