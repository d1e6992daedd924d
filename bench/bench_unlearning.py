"""Unlearning benchmark: removing one user from a fitted ALS model against a full retrain without them.

At MovieLens-100K scale (synthetic: 943 users, 1682 items, 100,000 events, as
implicit feedback), fit ALS once, then for ``--subjects`` different users (drawn
with ``--seed``) time :func:`recommender.unlearning.forget_users` (without and
with one ``propagate`` sweep) and a full refit of the same parameters on the same
remaining data, in the same run. A first, untimed removal warms the code paths up
(its time is reported apart). For each user the residual influence is measured
against the retrain, with the original model as the reference, and once, as a
noise floor, two retrains that differ only by their seed are compared.

Prints one JSON document.

Run:  python bench/bench_unlearning.py [--subjects 20] [--factors 64] [--iterations 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

import numpy as np

from recommender.als import ALSRecommender, library_versions
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate
from recommender.unlearning import forget_users, residual_influence

TARGET_MS = 50.0



def _mean_of(reports: list[dict[str, Any]], section: str) -> dict[str, float]:
    keys = reports[0][section].keys()
    return {key: round(float(np.mean([r[section][key] for r in reports])), 5) for key in keys}


def _subject_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean fold-in AUC of the forgotten user's own items, per model, and the share of the
    original-to-retrained gap the unlearned model closed (1: as if never seen; 0: unchanged)."""
    auc = {
        m: float(np.mean([r["subject"][m]["own_items_auc"] for r in reports]))
        for m in ("original", "unlearned", "retrained")
    }
    recall = {
        m: float(np.mean([r["subject"][m]["own_items_recall_at_k"] for r in reports]))
        for m in ("original", "unlearned", "retrained")
    }
    gap = auc["original"] - auc["retrained"]
    return {
        "own_items_auc": {m: round(v, 4) for m, v in auc.items()},
        "own_items_recall_at_k": {m: round(v, 4) for m, v in recall.items()},
        "gap_closed": round((auc["original"] - auc["unlearned"]) / gap, 3) if gap > 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--subjects", type=int, default=20, help="users removed, one at a time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = generate(
        SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed)
    )
    train = to_implicit(data.events)
    params = {
        "factors": args.factors,
        "regularization": 0.05,
        "alpha": 2.0,
        "iterations": args.iterations,
        "random_state": 0,
    }
    t = time.perf_counter()
    original = ALSRecommender(**params).fit(train)
    fit_s = time.perf_counter() - t

    active = np.flatnonzero(np.diff(train.matrix.indptr) > 0)
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(active, size=args.subjects + 1, replace=False)
    warmup_user, subjects = str(train.user_ids[picked[0]]), [str(train.user_ids[r]) for r in picked[1:]]
    first_call_ms = forget_users(original, [warmup_user]).seconds * 1e3

    # Timings first, each kind in a loop of its own, so that no retrain or
    # measurement (with its busy thread pools) runs right before a timed removal.
    results = [forget_users(original, [uid]) for uid in subjects]
    results_prop = [forget_users(original, [uid], propagate=1) for uid in subjects]
    forget_ms = [r.seconds * 1e3 for r in results]
    forget_prop_ms = [r.seconds * 1e3 for r in results_prop]
    n_items = [r.n_items_refreshed for r in results]
    n_interactions = [r.n_interactions_removed for r in results]
    retrain_s, retrained_models = [], []
    for result in results:
        t = time.perf_counter()
        retrained_models.append(ALSRecommender(**params).fit(result.model.train_))
        retrain_s.append(time.perf_counter() - t)

    reports, reports_prop = [], []
    for uid, result, result_prop, retrained in zip(subjects, results, results_prop, retrained_models):
        reports.append(residual_influence(result.model, retrained, original=original, forgotten=[uid]))
        reports_prop.append(residual_influence(result_prop.model, retrained, original=original, forgotten=[uid]))
    other_seed = ALSRecommender(**{**params, "random_state": 1}).fit(results[0].model.train_)
    noise_floor = residual_influence(other_seed, retrained_models[0])["unlearned_vs_retrained"]

    median_forget = statistics.median(forget_ms)
    median_retrain = statistics.median(retrain_s)
    out = {
        "benchmark": "unlearning",
        "data": {
            "n_users": train.n_users,
            "n_items": train.n_items,
            "n_events": int(data.n_events),
            "nnz": train.nnz,
            "spec": f"SyntheticSpec(n_users={args.users}, n_items={args.items}, n_interactions={args.interactions}, seed={args.seed})",
        },
        "params": params,
        "subjects": len(subjects),
        "subject_interactions_median": statistics.median(n_interactions),
        "items_refreshed_median": statistics.median(n_items),
        "fit_original_s": round(fit_s, 3),
        "forget_ms": {
            "median": round(median_forget, 2),
            "min": round(min(forget_ms), 2),
            "max": round(max(forget_ms), 2),
            "first_call": round(first_call_ms, 2),
        },
        "forget_propagate1_ms": {
            "median": round(statistics.median(forget_prop_ms), 2),
            "max": round(max(forget_prop_ms), 2),
        },
        "retrain_s": {
            "median": round(median_retrain, 3),
            "min": round(min(retrain_s), 3),
            "max": round(max(retrain_s), 3),
        },
        "speedup_retrain_over_forget": round(median_retrain * 1e3 / median_forget, 1),
        "target_ms": TARGET_MS,
        "meets_target": median_forget < TARGET_MS,
        "residual_influence": {
            "k": reports[0]["k"],
            "unlearned_vs_retrained": _mean_of(reports, "unlearned_vs_retrained"),
            "unlearned_propagate1_vs_retrained": _mean_of(reports_prop, "unlearned_vs_retrained"),
            "original_vs_retrained": _mean_of(reports, "original_vs_retrained"),
            "seed_noise_floor": {key: round(v, 5) for key, v in noise_floor.items()},
            "residual_share": _mean_of(reports, "residual_share"),
            "residual_share_propagate1": _mean_of(reports_prop, "residual_share"),
            "subject": _subject_summary(reports),
            "subject_propagate1": _subject_summary(reports_prop),
        },
        "hardware": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "libraries": library_versions(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
