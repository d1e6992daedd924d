"""Monitoring pass benchmark: one ``run_monitor`` over a window of recorded lists and feedback.

Fills a fresh store (SQLite, or PostgreSQL with ``--database-url``) with
``--decisions`` top-10 lists from ``--subjects`` subjects of one model, all in
the last day, and one click per list on its first item, then times one
monitoring pass over that day under a pack with drift, performance and
exposure triggers (the figures, the triggers, storing the pass). Reports the
pass's wall time, and the time to fill the store for scale.

Run:  python bench/bench_monitor.py [--decisions 20000] [--subjects 2000] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits import open_store  # noqa: E402
from audits.decisions import DecisionLog  # noqa: E402
from audits.outcomes import BATCH_COLUMNS, record_outcomes  # noqa: E402
from governance.packs import resolve_pack  # noqa: E402
from governance.policy import parse_pack  # noqa: E402

LIFECYCLE = """
lifecycle:
  window_hours: 24
  triggers:
    - {id: drift, kind: input_drift, max_psi: 0.25}
    - {id: clicks, kind: performance_drop, min_drop: 0.3}
    - {id: gap, kind: exposure_regression, metric: provider_gap, max: 0.2}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--subjects", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from governance.lifecycle.passes import run_monitor

    pack = parse_pack(Path(resolve_pack("baseline")).read_text() + LIFECYCLE, "bench.yaml")
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(args.database_url or f"sqlite:///{folder}/store.db")
        rng = np.random.default_rng(0)
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        items = [f"i{n:05d}" for n in range(args.items)]
        stamp = pack.stamp()
        started = time.perf_counter()
        clicks = []
        with DecisionLog(store) as log:
            futures = []
            for n in range(args.decisions):
                at = now - timedelta(seconds=int(rng.integers(60, 86_000)))
                slate = [items[i] for i in rng.choice(args.items, 10, replace=False)]
                subject = f"u{n % args.subjects}"
                futures.append(log.submit({
                    "mode": "personalized", "pack_name": stamp["pack"], "pack_version": stamp["pack_version"], "pack_hash": stamp["pack_hash"],
                    "model_version": "m1", "slate": {"items": slate, "scores": rng.random(10).round(4).tolist()}, "context": {}, "decided_at": at, "subject_id": subject,
                }))  # fmt: skip
                clicks.append((subject, slate[0], at + timedelta(seconds=5), futures[-1]))
            for future in futures:
                future.result(timeout=600)
        frame = pd.DataFrame(
            [{"line": i, "subject": s, "kind": "click", "item_id": item, "occurred_at": t, "value": np.nan, "decision_id": f.result().decision_id, "event_id": ""} for i, (s, item, t, f) in enumerate(clicks)],
            columns=list(BATCH_COLUMNS),
        )
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
        with store.session() as session:
            record_outcomes(session, frame, source="import", anchor={"file_sha256": "b" * 64})
        filled = time.perf_counter() - started
        started = time.perf_counter()
        doc = run_monitor(store, pack, now=now)
        seconds = time.perf_counter() - started
        store.close()
    figures = doc["metrics"]["models"]["m1"]
    result = {
        "engine": "postgresql" if args.database_url else "sqlite",
        "decisions": args.decisions, "served_items": figures["served"], "feedback_events": len(frame),
        "fill_s": round(filled, 2), "pass_s": round(seconds, 3), "click_rate": figures["click_rate"],
    }  # fmt: skip
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
