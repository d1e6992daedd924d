"""Unlearning benchmark: removing one user from a fitted ALS model against a full retrain without them.

At MovieLens-100K scale (synthetic: 943 users, 1682 items, 100,000 events, as
implicit feedback), fit ALS once, then for ``--subjects`` different users (drawn
with ``--seed``) time :func:`recommender.unlearning.forget_users` (without and
with one ``propagate`` sweep) and a full refit of the same parameters on the same
remaining data, in the same run. A first, untimed removal warms the code paths up
(its time is reported apart). For each user the residual influence is measured
against the retrain, with the original model as the reference, and once, as a
noise floor, two retrains that differ only by their seed are compared.

Then the held-out-half protocol (:mod:`recommender.unlearning_quality`): for
``--quality-subjects`` users with at least 4 items, over ``--seeds`` ALS seeds,
half of each user's items is folded into the original model, the model
unlearned from it (``forget_users`` with ``propagate=1`` and each of
``--sweeps``; ``propagate=1, sweeps=0`` is what ``recgov subject erase`` does)
and a retrain without the user, and the AUC of the other half is measured.
The verdict per method says whether the unlearned models are distinguishable
from the retrains.

``--data DIR`` runs on a MovieLens-100K-layout directory (``u.data``) instead
of the synthetic data. Prints one JSON document, with the hardware.

Run:  python bench/bench_unlearning.py [--subjects 20] [--quality-subjects 20] [--seeds 5] [--sweeps 0,2,5]
      python bench/bench_unlearning.py --data path/to/ml-100k

``main`` is long on purpose: it is the benchmark's protocol, read top to bottom
(set up, warm up, measure each path in the same run, report), as its figures are
checked against it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _hardware import hardware

from recommender.als import ALSRecommender, library_versions
from recommender.data import InteractionMatrix
from recommender.feedback import to_implicit
from recommender.loaders import load_movielens_100k
from recommender.synthetic import SyntheticSpec, generate
from recommender.unlearning import forget_users, residual_influence
from recommender.unlearning_quality import UnlearningMethod, measure_unlearning_quality

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


def _held_out_half(train: InteractionMatrix, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The held-out-half protocol on ``--quality-subjects`` users with at least 4 (and not all) items."""
    counts = np.diff(train.matrix.indptr)
    eligible = np.flatnonzero((counts >= 4) & (counts < train.n_items))
    rng = np.random.default_rng(args.seed + 1)
    rows = rng.choice(eligible, size=min(args.quality_subjects, eligible.size), replace=False)
    methods = [UnlearningMethod(propagate=1, sweeps=int(s)) for s in args.sweeps.split(",")]
    quality = measure_unlearning_quality(
        train,
        [str(train.user_ids[r]) for r in rows],
        params={k: v for k, v in params.items() if k != "random_state"} | {"num_threads": args.threads},
        seeds=tuple(range(args.seeds)),
        methods=methods,
        random_state=args.seed,
    )
    out = quality.as_dict()
    out["subject_items_median"] = float(np.median(counts[rows]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--subjects", type=int, default=20, help="users removed, one at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality-subjects", type=int, default=20, help="users in the held-out-half protocol")
    parser.add_argument("--seeds", type=int, default=5, help="ALS seeds of the held-out-half protocol (at least 2)")
    parser.add_argument("--sweeps", default="0,2,5", help="comma-separated forget_users sweeps to measure")
    parser.add_argument("--threads", type=int, default=1, help="implicit threads in the held-out-half protocol")
    parser.add_argument("--data", type=Path, default=None, help="a MovieLens-100K-layout directory (u.data)")
    parser.add_argument("--skip-timing", action="store_true", help="run the held-out-half protocol only")
    args = parser.parse_args()

    if args.data is not None:
        data = load_movielens_100k(args.data)
        spec = f"MovieLens-100K layout from {args.data.name}"
    else:
        data = generate(
            SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed)
        )
        spec = (
            f"SyntheticSpec(n_users={args.users}, n_items={args.items}, "
            f"n_interactions={args.interactions}, seed={args.seed})"
        )
    train = to_implicit(data.events)
    params = {
        "factors": args.factors,
        "regularization": 0.05,
        "alpha": 2.0,
        "iterations": args.iterations,
        "random_state": 0,
    }
    described = {
        "n_users": train.n_users,
        "n_items": train.n_items,
        "n_events": int(data.n_events),
        "nnz": train.nnz,
        "spec": spec,
    }
    if args.skip_timing:
        out = {"benchmark": "unlearning", "data": described, "params": params}
        out["held_out_half"] = _held_out_half(train, params, args)
        out.update(hardware=hardware(), libraries=library_versions())
        print(json.dumps(out, indent=2))
        return 0
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
        "data": described,
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
        "held_out_half": _held_out_half(train, params, args),
        "hardware": hardware(),
        "libraries": library_versions(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
