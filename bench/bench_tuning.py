"""Tuning benchmark: successive halving against the full random search, and block scoring against ``implicit``'s lists.

For each size, synthetic data of that many events (MovieLens-shaped: ML-100K's
and ML-1M's user and item counts, and four times ML-1M for 4M) is tuned twice on
the same validation split and the same candidates: ``tune_als(search="random")``
(every candidate fitted for 15 sweeps, then the winner at 8 and 30) and
``tune_als(search="halving")`` (the default). Each reports its wall time and its
best validation NDCG@10. The evaluation path is timed on its own: one ALS model
with the default parameters, the validation users' top-10 lists made through
``recommend_index`` in batches (``implicit``'s recommend, the path before) and
through :func:`recommender.scoring.factor_top_k` (block scoring), with a check
that both give the same lists.

The machine may be shared: the 1-minute load average is printed before and after
each size, and timings under load are comparisons within one run, not absolutes.

Run:  python bench/bench_tuning.py [--sizes 100k,1m,4m] [--seeds 1,2,3] [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

import numpy as np  # noqa: E402

from recommender.als import ALSRecommender  # noqa: E402
from recommender.data import InteractionMatrix  # noqa: E402
from recommender.feedback import to_implicit  # noqa: E402
from recommender.scoring import factor_top_k  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402
from recommender.tuning import carve_validation, tune_als  # noqa: E402

SIZES: dict[str, tuple[int, int, int]] = {
    "100k": (943, 1682, 100_000),
    "1m": (6040, 3706, 1_000_000),
    "4m": (24_160, 7412, 4_000_000),
}
"""Size name -> (users, items, events)."""


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _evaluation_paths(train: InteractionMatrix, seed: int) -> dict[str, Any]:
    """Validation lists of one default ALS model: implicit's recommend in batches vs block scoring."""
    inner, valid = carve_validation(train, 0.2, seed)
    model = ALSRecommender(random_state=seed).fit(inner)
    users = np.flatnonzero(np.diff(valid.matrix.indptr) > 0)
    started = time.perf_counter()
    old = np.vstack([model.recommend_index(users[s : s + 4096], 10)[0] for s in range(0, len(users), 4096)])
    old_s = time.perf_counter() - started
    started = time.perf_counter()
    new, _ = factor_top_k(model.user_factors_, model.item_factors_, users, 10, seen=inner.matrix)
    new_s = time.perf_counter() - started
    return {
        "users": len(users),
        "implicit_recommend_s": round(old_s, 3),
        "block_scoring_s": round(new_s, 3),
        "speedup": round(old_s / max(new_s, 1e-9), 2),
        "same_lists": bool(np.array_equal(old, new)),
    }


def _run(size: str, seed: int, trials: int) -> dict[str, Any]:
    n_users, n_items, n_events = SIZES[size]
    data = generate(SyntheticSpec(n_users=n_users, n_items=n_items, n_interactions=n_events, seed=seed))
    train = to_implicit(data.events)
    out: dict[str, Any] = {"size": size, "seed": seed, "events": n_events, "matrix_nnz": train.nnz}
    out["load_before"] = _load()
    for search in ("random", "halving"):
        result = tune_als(train, n_trials=trials, random_state=seed, search=search)
        out[search] = {
            "seconds": round(result.seconds, 2),
            "ndcg@10": round(result.best_score, 6),
            "best_params": result.best_params,
            "trials": len(result.trials),
        }
        out[f"load_after_{search}"] = _load()
    out["speedup"] = round(out["random"]["seconds"] / max(out["halving"]["seconds"], 1e-9), 2)
    out["ndcg_delta"] = round(out["halving"]["ndcg@10"] - out["random"]["ndcg@10"], 6)
    out["evaluation"] = _evaluation_paths(train, seed)
    out["load_after"] = _load()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1m", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--seeds", default="1,2,3", help="seeds for 100k (larger sizes use the first only)")
    parser.add_argument("--trials", type=int, default=20, help="tune_als's n_trials (the gate's default is 20)")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for size in sizes:
        for seed in seeds if size == "100k" else seeds[:1]:
            runs.append(_run(size, seed, args.trials))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"hardware": hardware(), "n_trials": args.trials, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
