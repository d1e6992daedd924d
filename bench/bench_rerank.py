"""Re-ranking benchmark: every user of a large synthetic batch through all re-rankers composed.

The batch: ``--users`` users with ``--candidates`` distinct candidates each
(scores sorted best first), a catalog of ``--items`` items with power-law
popularity, two provider groups (``--protected-share`` of items protected, and
less popular), 1 to 3 of ``--categories`` categories per item, a Dirichlet
history distribution per user (of categories, and of the two provider groups),
and a seed per user. The pipeline composes popularity de-biasing, MMR,
calibration, provider calibration, exploration, exposure cap and FA*IR
(constraint steps last), cutting to ``--k``. Each step is also timed alone.
The target: the composed pipeline under 60 s for 100,000 users (c=100, k=10).

Run:  python bench/bench_rerank.py [--users 100000] [--candidates 100] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from governance.rerank import (  # noqa: E402
    CalibrationConfig,
    Candidates,
    ExplorationConfig,
    ExposureCapConfig,
    FairStarConfig,
    MMRConfig,
    PopularityDebiasConfig,
    ProviderCalibrationConfig,
    build_pipeline,
)

TARGET_SECONDS = 60.0


def _next_prime(n: int) -> int:
    def prime(m: int) -> bool:
        return m > 1 and all(m % d for d in range(2, int(m**0.5) + 1))

    while not prime(n):
        n += 1
    return n


def synthetic_candidates(
    n_users: int, c: int, n_items: int, n_categories: int, protected_share: float, seed: int = 0
) -> Candidates:
    """A reproducible synthetic batch (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_items = _next_prime(max(n_items, c + 1))
    popularity = np.floor(1000.0 / np.arange(1, n_items + 1) ** 0.9 * rng.uniform(0.5, 1.5, n_items))
    protected = rng.random(n_items) < protected_share * (0.5 + np.arange(n_items) / n_items)  # more in the tail
    item_group = protected.astype(np.int64)
    n_cats = rng.integers(1, 4, n_items)
    rows = np.repeat(np.arange(n_items), n_cats)
    cols = rng.integers(0, n_categories, len(rows))
    item_categories = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n_items, n_categories))
    # distinct candidates per user: j -> (a*j + b) mod prime is a bijection; j biased to the head
    j = np.sort(rng.choice(n_items, size=c, replace=False, p=popularity / popularity.sum() * 0.5 + 0.5 / n_items))
    a = rng.integers(1, 50, n_users)[:, None]
    b = rng.integers(0, 200, n_users)[:, None]
    items = (a * j[None, :] + b) % n_items
    scores = np.sort(rng.random((n_users, c), dtype=np.float32), axis=1)[:, ::-1]
    user_dist = rng.dirichlet(np.full(n_categories, 0.3), size=n_users)
    group_mix = rng.dirichlet(np.ones(2), size=n_users)
    return Candidates(
        items=items.astype(np.int64),
        scores=np.ascontiguousarray(scores),
        item_group=item_group,
        item_popularity=popularity,
        item_categories=item_categories,
        user_category_dist=user_dist,
        user_group_dist=group_mix,
        seeds=np.arange(n_users, dtype=np.int64) * 7919 + 1,
    )


STEPS = [
    PopularityDebiasConfig(beta=0.2),
    MMRConfig(tradeoff=0.3),
    CalibrationConfig(tradeoff=0.3),
    ProviderCalibrationConfig(tradeoff=0.75),
    ExplorationConfig(method="epsilon", epsilon=0.05),
    ExposureCapConfig(max_share=0.7),
    FairStarConfig(p=0.3, alpha=0.1),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--protected-share", type=float, default=0.3)
    parser.add_argument("--skip-single", action="store_true", help="time the composed pipeline only")
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    args = parser.parse_args()

    t0 = time.perf_counter()
    cands = synthetic_candidates(args.users, args.candidates, args.items, args.categories, args.protected_share)
    gen_s = time.perf_counter() - t0

    pipe = build_pipeline(STEPS)
    t0 = time.perf_counter()
    out = pipe(cands, args.k)
    total_s = time.perf_counter() - t0

    single: dict[str, float] = {}
    if not args.skip_single:
        for config in STEPS:
            step = build_pipeline([config])
            t0 = time.perf_counter()
            step(cands, args.k)
            single[step.labels[0]] = round(time.perf_counter() - t0, 3)

    summary = out.summary()
    report = {
        "benchmark": "rerank",
        "users": args.users,
        "candidates": args.candidates,
        "k": args.k,
        "items": int(cands.n_items),
        "categories": args.categories,
        "steps": pipe.labels,
        "generate_s": round(gen_s, 3),
        "pipeline_s": round(total_s, 3),
        "users_per_s": round(args.users / total_s, 1),
        "target_s": TARGET_SECONDS,
        "within_target": total_s < TARGET_SECONDS,
        "single_step_s": single,
        "places_by_reason": summary["places_by_reason"],
        "constraints_met_share": summary["constraints_met_share"],
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    if not args.json:
        print(
            f"re-ranked {args.users} users (c={args.candidates}, k={args.k}) through {len(STEPS)} steps "
            f"in {total_s:.1f} s (target {TARGET_SECONDS:.0f} s)",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if total_s < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
