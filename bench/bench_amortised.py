"""Amortised versus per-list exposure re-ranking: the pooled group exposure gap over 1,000 requests at equal NDCG.

The data (as ``bench_group_proportions.py``): ``recommender.synthetic`` with
four provider groups (``major`` logged ``--bias`` times more often than its
appeal warrants, three independent groups), an ALS model on a random 80%
split, and each of ``--users`` test users' top ``--candidates`` items. The same
users ask again and again: ``--requests`` requests in rounds over the users
(1,000 by default: 100 users, 10 rounds).

Both arms are the ``amortised_exposure`` step toward equal attention shares
(0.25 each, ``1/log2(rank+1)``): ``memory: per_list`` pays each list's own
debt only, ``memory: amortised`` carries each group's debt from request to
request. Each arm runs over the same grid of ``weight`` and ``ndcg_budget`` values. The *pooled gap* is, over all the requests' lists, the largest
``|share_g - 0.25|`` of a group's share of all attention given out.

Equal NDCG, at three levels of NDCG@10 loss against the plain lists (at
most 0.5, 1, 2 and 3 points): the per-list arm is taken at its smallest pooled gap
among the settings losing at most that much;
the amortised arm at its smallest pooled gap among the settings whose NDCG@10
(mean over the requests, test positives) is at least the per-list arm's minus
0.5 points. Both NDCGs are reported, with the gaps, the ratio of the gaps
(must-hold: at most 0.5) and the time per list of each arm as a ratio to the
plain list (the model's top-``k`` cut of the same candidates plus the model
scoring of one user: what a served list costs without re-ranking).

Matched NDCG, interpolated (``matched``): each arm's settings give points
(NDCG@10, pooled gap); the plain lists are a point of both (no re-ranking is a
setting of either). Each arm's *frontier* is its points no other point beats on
both; between two neighbouring frontier points the gap is interpolated linearly
in NDCG (what mixing the two settings over the requests would give, to first
order). At each NDCG@10 level (the plain lists' minus 0.25 to 3 points) the
bench reports both arms' gap there, interpolated and measured (the smallest
gap of a setting at or above that NDCG), and their ratio. The per-list side
is the stronger of two per-list re-rankers at each level: ``amortised_exposure``
with ``memory: per_list`` and ``exposure_targets`` (each list's attention shares
held within a tolerance, swept from 0.02 to 0.3).

Run:  python bench/bench_amortised.py [--users 100] [--requests 1000]
Prints JSON.
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from governance.rerank import AmortisedExposureReranker, Candidates, ExposureTargetsReranker  # noqa: E402
from recommender import metrics as M  # noqa: E402
from recommender.als import ALSRecommender  # noqa: E402
from recommender.fairness import attention_weights  # noqa: E402
from recommender.split import SplitConfig, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402

GROUPS = ("major", "indie_a", "indie_b", "indie_c")
BUDGETS = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)
WEIGHTS = (0.25, 1.0, 5.0)
MAX_NDCG_LOSS = (0.005, 0.01, 0.02, 0.03)
"""Each match takes the per-list arm at its smallest pooled gap among settings losing at most this much NDCG@10
(0.5, 1, 2, 3 points) against the plain lists."""


def match(grid: dict[str, list[dict[str, Any]]], plain_ndcg: float, max_loss: float) -> dict[str, Any]:
    """The per-list arm's smallest gap losing at most ``max_loss`` NDCG@10, and the amortised arm's smallest gap
    at an NDCG@10 at least the per-list arm's minus :data:`NDCG_SLACK`."""
    affordable = [a for a in grid["per_list"] if a["ndcg"] >= plain_ndcg - max_loss] or grid["per_list"]
    per_list = min(affordable, key=lambda a: (a["pooled_gap"], -a["ndcg"]))
    eligible = [a for a in grid["amortised"] if a["ndcg"] >= per_list["ndcg"] - NDCG_SLACK]
    amortised = min(eligible, key=lambda a: (a["pooled_gap"], -a["ndcg"])) if eligible else None
    return {
        "max_ndcg_loss": max_loss,
        "per_list": per_list,
        "amortised": amortised,
        "gap_ratio": (amortised["pooled_gap"] / per_list["pooled_gap"]) if amortised and per_list["pooled_gap"] > 0 else None,
        "ndcg_difference_points": (100 * (amortised["ndcg"] - per_list["ndcg"])) if amortised else None,
    }
NDCG_SLACK = 0.005
"""Equal NDCG: the amortised arm's NDCG@10 may be at most this (0.5 points) below the per-list arm's."""
TOLERANCES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
"""The per-list window re-ranker's (``exposure_targets``) tolerances."""
LEVELS = (0.0025, 0.005, 0.01, 0.015, 0.02, 0.03)
"""The NDCG@10 levels of the interpolated match: the plain lists' NDCG minus these (0.25 to 3 points)."""


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ``(ndcg, gap)`` points no other point beats on both (higher NDCG and lower gap), by NDCG descending.

    >>> frontier([(0.30, 0.3), (0.29, 0.2), (0.28, 0.25), (0.27, 0.1)])
    [(0.3, 0.3), (0.29, 0.2), (0.27, 0.1)]
    """
    out: list[tuple[float, float]] = []
    for ndcg, gap in sorted(points, key=lambda p: (-p[0], p[1])):
        if not out or gap < out[-1][1]:
            out.append((ndcg, gap))
    return out


def gap_at(points: list[tuple[float, float]], level: float, interpolate: bool = True) -> float | None:
    """The smallest pooled gap at NDCG@10 ``level`` or above: measured (the best point at or above it) or
    interpolated linearly in NDCG between the two frontier points around it. None when no point reaches it.

    >>> pts = [(0.30, 0.3), (0.28, 0.1)]
    >>> round(gap_at(pts, 0.29), 6), gap_at(pts, 0.29, interpolate=False), gap_at(pts, 0.27), gap_at(pts, 0.31)
    (0.2, 0.3, 0.1, None)
    """
    front = frontier(points)
    above = [p for p in front if p[0] >= level]
    if not above:
        return None
    best = above[-1]  # the lowest-NDCG frontier point still at or above the level: its smallest gap there
    if not interpolate or best[0] == level or len(above) == len(front):
        return best[1]
    below = front[len(above)]
    t = (best[0] - level) / (best[0] - below[0])
    return best[1] + t * (below[1] - best[1])


def matched(grid: dict[str, list[dict[str, Any]]], plain: dict[str, Any], levels: tuple[float, ...] = LEVELS) -> list[dict[str, Any]]:
    """Per NDCG level, each arm's pooled gap there (interpolated and measured) and the ratio amortised / per-list."""
    plain_point = (plain["ndcg"], plain["pooled_gap"])
    arms = {
        "amortised": [plain_point] + [(a["ndcg"], a["pooled_gap"]) for a in grid["amortised"]],
        "per_list": [plain_point] + [(a["ndcg"], a["pooled_gap"]) for m in ("per_list", "per_list_window") for a in grid.get(m, [])],
        "per_list_debt": [plain_point] + [(a["ndcg"], a["pooled_gap"]) for a in grid["per_list"]],
        "per_list_window": [plain_point] + [(a["ndcg"], a["pooled_gap"]) for a in grid.get("per_list_window", [])],
    }
    out = []
    for loss in levels:
        level = plain["ndcg"] - loss
        row: dict[str, Any] = {"ndcg_loss_points": 100 * loss, "ndcg": level}
        for how, interpolate in (("interpolated", True), ("measured", False)):
            gaps = {arm: gap_at(points, level, interpolate) for arm, points in arms.items()}
            ratio = gaps["amortised"] / gaps["per_list"] if gaps["amortised"] is not None and gaps["per_list"] else None
            row[how] = {**gaps, "ratio": ratio}
        out.append(row)
    return out


WINDOW_TOLERANCE = 0.05
"""The per-list window of the multi-group requirement: every group's share of each list within 5 points of its target."""


def at_window(grid: dict[str, list[dict[str, Any]]], plain: dict[str, Any], tolerance: float = WINDOW_TOLERANCE) -> dict[str, Any] | None:
    """The amortised arm at the NDCG@10 of the per-list window re-ranker run at ``tolerance``.

    This is the per-list re-ranking a pack would deploy to hold every list within the window; the amortised arm's gap
    is taken at that same NDCG (interpolated on its frontier, and measured: its best setting at or above it).
    """
    window = next((a for a in grid.get("per_list_window", []) if abs(a["tolerance"] - tolerance) < 1e-12), None)
    if window is None:
        return None
    points = [(plain["ndcg"], plain["pooled_gap"])] + [(a["ndcg"], a["pooled_gap"]) for a in grid["amortised"]]
    out: dict[str, Any] = {"tolerance": tolerance, "ndcg": window["ndcg"], "ndcg_loss_points": 100 * (plain["ndcg"] - window["ndcg"]),
                           "per_list_gap": window["pooled_gap"]}  # fmt: skip
    for how, interpolate in (("interpolated", True), ("measured", False)):
        gap = gap_at(points, window["ndcg"], interpolate)
        out[how] = {"amortised_gap": gap, "ratio": (gap / window["pooled_gap"]) if gap is not None and window["pooled_gap"] > 0 else None}
    return out


def pooled_gap(items: np.ndarray, group: np.ndarray, targets: np.ndarray) -> tuple[float, list[float]]:
    """The largest ``|share_g - target_g|`` of the groups' shares of all attention the lists gave out, and the shares."""
    k = items.shape[1]
    w = np.where(items >= 0, attention_weights(k, "log")[None, :], 0.0)
    g = group[np.maximum(items, 0)]
    held = np.array([(w * (g == j)).sum() for j in range(len(targets))])
    shares = held / w.sum()
    return float(np.abs(shares - targets).max()), shares.round(4).tolist()


def make_world(users: int, items: int, interactions: int, bias: float, candidates: int, seed: int = 7) -> dict[str, Any]:
    """The synthetic set, the model, and ``users`` test users' candidates."""
    spec = SyntheticSpec(
        n_users=max(users * 4, 400), n_items=items, n_interactions=interactions, seed=seed,
        provider_groups={g: 0.25 for g in GROUPS}, favoured_group="major", exposure_bias=bias,
    )  # fmt: skip
    dataset = generate(spec)
    mats = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2)))
    model = ALSRecommender(factors=32, iterations=10, random_state=0).fit(mats.train)
    rows = np.flatnonzero(np.diff(mats.test.matrix.indptr) > 0)[:users]
    cand_items, cand_scores, _ = model.recommend_index(rows, candidates, filter_seen=True)
    labels = dataset.items["provider_group"].reindex(pd.Index(mats.train.item_ids.astype(str))).to_numpy(dtype=object)
    group = np.array([GROUPS.index(g) if g in GROUPS else -1 for g in labels], dtype=np.int64)
    return {"model": model, "rows": rows, "items": cand_items, "scores": cand_scores, "group": group, "relevant": mats.test.matrix[rows]}


def run_arm(
    world: dict[str, Any], memory: str, budget: float, weight: float, requests: int, k: int, targets: np.ndarray, one_by_one: bool = True
) -> dict[str, Any]:
    """``requests`` one-list requests in rounds over the users, through one step (its ledger carried).

    ``one_by_one=False`` passes them as one batch: the step takes a batch's rows in order, each on the
    ledger the rows before it left, so the lists are the same (faster; the time is then not a served list's)."""
    n = len(world["rows"])
    step = AmortisedExposureReranker(targets=dict(enumerate(targets.tolist())), weight=weight, ndcg_budget=budget, memory=memory)
    order = np.arange(requests) % n
    lists = np.full((requests, k), -1, dtype=np.int64)
    start = time.perf_counter()
    if one_by_one:
        for r, u in enumerate(order):
            cands = Candidates(items=world["items"][u : u + 1], scores=world["scores"][u : u + 1].astype(np.float32), item_group=world["group"])
            lists[r] = step(cands, k).items[0]
    else:
        lists[:] = step(Candidates(items=world["items"][order], scores=world["scores"][order].astype(np.float32), item_group=world["group"]), k).items
    seconds = time.perf_counter() - start
    gap, shares = pooled_gap(lists, world["group"], targets)
    ndcg = float(np.nanmean(M.ndcg_at_k(lists, world["relevant"][order], k)))
    return {"memory": memory, "ndcg_budget": budget, "weight": weight, "pooled_gap": gap, "shares": shares, "ndcg": ndcg,
            "seconds_per_list": seconds / requests, "ledger": step.ledger.counts()}  # fmt: skip


def run_window(world: dict[str, Any], tolerance: float, requests: int, k: int, targets: np.ndarray) -> dict[str, Any]:
    """The per-list window step (``exposure_targets``) over the same requests (it keeps no state: one batch)."""
    order = np.arange(requests) % len(world["rows"])
    step = ExposureTargetsReranker(targets=dict(enumerate(targets.tolist())), tolerance=tolerance)
    start = time.perf_counter()
    cands = Candidates(items=world["items"][order], scores=world["scores"][order].astype(np.float32), item_group=world["group"])
    lists = step(cands, k).items
    seconds = time.perf_counter() - start
    gap, shares = pooled_gap(lists, world["group"], targets)
    ndcg = float(np.nanmean(M.ndcg_at_k(lists, world["relevant"][order], k)))
    return {"memory": "per_list_window", "tolerance": tolerance, "pooled_gap": gap, "shares": shares, "ndcg": ndcg,
            "seconds_per_list": seconds / requests}  # fmt: skip


def compare(
    world: dict[str, Any], *, requests: int, k: int, weights: tuple[float, ...] = WEIGHTS, budgets: tuple[float, ...] = BUDGETS,
    max_ndcg_loss: tuple[float, ...] = MAX_NDCG_LOSS, one_by_one: bool = True, tolerances: tuple[float, ...] = TOLERANCES,
) -> dict[str, Any]:
    """Both arms over the budget grid, matched at equal NDCG (see the module docstring)."""
    targets = np.full(len(GROUPS), 1.0 / len(GROUPS))
    order = np.arange(requests) % len(world["rows"])
    plain_lists = world["items"][order, :k]
    plain_gap, plain_shares = pooled_gap(plain_lists, world["group"], targets)
    plain = {"pooled_gap": plain_gap, "shares": plain_shares, "ndcg": float(np.nanmean(M.ndcg_at_k(plain_lists, world["relevant"][order], k)))}
    grid = {m: [run_arm(world, m, b, w, requests, k, targets, one_by_one) for w in weights for b in budgets] for m in ("per_list", "amortised")}
    grid["per_list_window"] = [run_window(world, tol, requests, k, targets) for tol in tolerances]
    matches = [match(grid, plain["ndcg"], loss) for loss in max_ndcg_loss]
    return {
        "plain": plain,
        "matches": matches,
        "matched": matched(grid, plain),
        "at_window": at_window(grid, plain),
        "grid": {m: [{key: a[key] for key in ("weight", "ndcg_budget", "tolerance", "pooled_gap", "ndcg") if key in a} for a in arms] for m, arms in grid.items()},
    }


def plain_seconds_per_list(world: dict[str, Any], k: int, candidates: int, repeats: int) -> float:
    """A served list without re-ranking: the model's scoring of one user and its top ``candidates``, cut to ``k``."""
    model = world["model"]
    rows = world["rows"]
    start = time.perf_counter()
    for r in range(repeats):
        items, _, _ = model.recommend_index(rows[r % len(rows) : r % len(rows) + 1], candidates, filter_seen=True)
        items[:, :k].copy()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--interactions", type=int, default=60_000)
    ap.add_argument("--bias", type=float, default=3.0)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS), help="the debt weights of both arms")
    ap.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS), help="the NDCG budgets of both arms")
    ap.add_argument("--batch", action="store_true", help="pass each arm's requests as one batch (same lists, faster; no served-list time)")
    args = ap.parse_args()
    world = make_world(args.users, args.items, args.interactions, args.bias, args.candidates)
    result = compare(world, requests=args.requests, k=args.k, weights=tuple(args.weights), budgets=tuple(args.budgets), one_by_one=not args.batch)
    plain_s = plain_seconds_per_list(world, args.k, args.candidates, 300)
    for found in result["matches"]:
        for arm in ("per_list", "amortised"):
            if found[arm] is not None:
                found[arm]["time_ratio_to_plain_list"] = (plain_s + found[arm]["seconds_per_list"]) / plain_s
    result |= {"users": int(len(world["rows"])), "requests": args.requests, "k": args.k, "candidates": args.candidates,
               "bias": args.bias, "max_ndcg_loss": MAX_NDCG_LOSS, "ndcg_slack": NDCG_SLACK, "plain_seconds_per_list": plain_s,
               "load_average": os.getloadavg()[0]}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
