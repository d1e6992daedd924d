"""Cold start: ALS, content_tfidf and the hybrid (both fusions) on new items and on the rest.

A synthetic set with ``n_new_items`` items that have content but no
interactions in training (:func:`recommender.cold_start.cold_start_split`):
every event on them is held out, with a random 20% of the other events. Each
model ranks the new items among themselves for each test user who used one,
and the warm items among the warm ones (seen items excluded); NDCG@10 and
recall@10 come from :func:`recommender.metrics.ranking_metrics`. ALS cannot
score an item it never saw: on the new items it ranks in a seeded random order
(what it knows of them, nothing). The content model and the hybrid learn the
new items from the item table through ``add_items``, after fitting on the warm
catalog only.

The claims checked: the hybrid beats both parents on the new items (its mean
NDCG@10 exceeds the better parent's by more than two paired standard errors of
the per-user difference), and matches ALS on the rest within ``--tolerance``
(absolute NDCG@10; default 0.01, about two standard errors of a per-user mean
at the default size). The exit status is 1 when a claim fails.

Usage::

    python bench/bench_hybrid.py                       # the default size
    python bench/bench_hybrid.py --users 400 --items 300 --events 20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.als import ALSRecommender
from recommender.base import top_k_from_scores
from recommender.cold_start import cold_start_split
from recommender.families.content import ContentRecommender
from recommender.families.hybrid import HybridRecommender
from recommender.metrics import ranking_metrics
from recommender.synthetic import SyntheticSpec, generate

K = 10
TEXT = ("text", "keywords")


def _metrics(lists: np.ndarray, relevant: Any) -> dict[str, float]:
    m = ranking_metrics(lists, relevant, K)
    ndcg, recall = m.per_user["ndcg"], m.per_user["recall"]
    ok = np.isfinite(ndcg)
    return {
        "per_user_ndcg": ndcg,
        "ndcg": float(np.mean(ndcg[ok])),
        "ndcg_se": float(np.std(ndcg[ok]) / max(np.sqrt(ok.sum()), 1.0)),
        "recall": float(np.mean(recall[ok])),
        "users": int(ok.sum()),
    }


def _paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Mean and standard error of the per-user NDCG difference ``a - b`` (same users, same test)."""
    diff = a["per_user_ndcg"] - b["per_user_ndcg"]
    diff = diff[np.isfinite(diff)]
    return {"mean": float(diff.mean()), "se": float(diff.std() / max(np.sqrt(len(diff)), 1.0))}


def run(
    users: int, items: int, events: int, new_items: int, seed: int, factors: int, tolerance: float
) -> dict[str, Any]:
    """Fit the four models and measure them on the new items and on the rest."""
    spec = SyntheticSpec(n_users=users, n_items=items, n_interactions=events, seed=seed, n_new_items=new_items)
    data = generate(spec)
    new_ids = data.items.index[data.items["new_item"].to_numpy()]
    split = cold_start_split(data.events, new_ids, random_state=seed)
    train = split.train
    warm_table = data.items.loc[data.items.index.isin(train.item_ids.astype(str))]
    new_table = data.items.loc[new_ids]
    als_params = {"factors": factors, "iterations": 15, "regularization": 0.05, "random_state": seed, "num_threads": 1}
    content_params = {"text_columns": TEXT}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    als = ALSRecommender(**als_params).fit(train)
    timings["als"] = time.perf_counter() - t
    t = time.perf_counter()
    content = ContentRecommender(**content_params).fit(train, items=warm_table).add_items(new_table)
    timings["content_tfidf"] = time.perf_counter() - t
    hybrids = {}
    for fusion in ("linear", "learned"):
        t = time.perf_counter()
        hybrids[f"hybrid_{fusion}"] = (
            HybridRecommender(fusion=fusion, als_params=als_params, content_params=content_params, random_state=seed)
            .fit(train, items=warm_table)
            .add_items(new_table)
        )
        timings[f"hybrid_{fusion}"] = time.perf_counter() - t

    rows = np.arange(train.n_users)
    warm_cols = np.arange(train.n_items)
    new_cols = content.train_.item_index(new_ids)  # the same columns in the hybrids (same content parent order)
    seen = train.matrix
    new_users = np.flatnonzero(np.diff(split.test_new.indptr) > 0)
    rng = np.random.default_rng(seed)

    def lists(score: Any, users_: np.ndarray, cols: np.ndarray, exclude: Any) -> np.ndarray:
        return top_k_from_scores(score(users_, cols), K, exclude=exclude)[0]

    scorers = {
        "als": (
            lambda u, c: (
                np.asarray(als.user_factors_)[u] @ np.asarray(als.item_factors_)[c].T
                if c is warm_cols
                else rng.random((len(u), len(c)))
            )
        ),
        "content_tfidf": content.score_items,
        **{name: h.score_items for name, h in hybrids.items()},
    }
    results: dict[str, Any] = {}
    for name, score in scorers.items():
        warm = _metrics(lists(score, rows, warm_cols, seen), split.test_warm.matrix)
        new = _metrics(lists(score, new_users, new_cols, None), split.test_new[new_users])
        results[name] = {"new_items": new, "rest": warm, "fit_seconds": round(timings[name], 3)}
    checks = {}
    best_parent = max(("als", "content_tfidf"), key=lambda n: results[n]["new_items"]["ndcg"])
    for name in hybrids:
        # Paired differences over the same users: the noise the comparisons are judged against.
        new_diff = _paired(results[name]["new_items"], results[best_parent]["new_items"])
        rest_diff = _paired(results[name]["rest"], results["als"]["rest"])
        results[name]["paired"] = {f"new_items_minus_{best_parent}": new_diff, "rest_minus_als": rest_diff}
        checks[name] = {
            # better than the better parent by more than two paired standard errors
            "beats_parents_on_new_items": new_diff["mean"] > 2 * new_diff["se"],
            "matches_als_on_rest": rest_diff["mean"] >= -tolerance,
        }
    for r in results.values():
        for side in ("new_items", "rest"):
            r[side].pop("per_user_ndcg")
    return {
        "spec": {
            "users": users,
            "items": items,
            "events": events,
            "new_items": new_items,
            "seed": seed,
            "factors": factors,
        },
        "k": K,
        "tolerance": tolerance,
        "train": {"users": train.n_users, "items": train.n_items, "interactions": train.nnz},
        "test": {
            "warm_pairs": int(split.test_warm.matrix.nnz),
            "new_item_pairs": int(split.test_new.nnz),
            "new_item_users": len(new_users),
        },
        "hybrid_weights": {name: h.weights_ for name, h in hybrids.items() if h.fusion == "linear"},
        "results": results,
        "checks": checks,
    }


def table(report: dict[str, Any]) -> str:
    """A readable table of the report."""
    lines = [
        f"{'model':<16} {'NDCG@10 new':>12} {'recall new':>11} {'NDCG@10 rest':>13} {'recall rest':>12} {'fit s':>7}"
    ]
    for name, r in report["results"].items():
        lines.append(
            f"{name:<16} {r['new_items']['ndcg']:>12.4f} {r['new_items']['recall']:>11.4f} "
            f"{r['rest']['ndcg']:>13.4f} {r['rest']['recall']:>12.4f} {r['fit_seconds']:>7.2f}"
        )
    se = max(r["rest"]["ndcg_se"] for r in report["results"].values())
    lines.append(f"tolerance on the rest: {report['tolerance']} NDCG (largest standard error of a mean here: {se:.4f})")
    for name, c in report["checks"].items():
        for what, d in report["results"][name]["paired"].items():
            lines.append(f"{name} {what}: {d['mean']:+.4f} NDCG@10 (paired standard error {d['se']:.4f})")
    for name, c in report["checks"].items():
        lines.append(
            f"{name}: beats both parents on new items: {c['beats_parents_on_new_items']}; matches ALS on the rest: {c['matches_als_on_rest']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--new-items", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    report = run(args.users, args.items, args.events, args.new_items, args.seed, args.factors, args.tolerance)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
    ok = all(all(c.values()) for c in report["checks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
