"""Multi-group re-ranking on a synthetic set with four provider groups and a planted exposure bias.

The data: ``recommender.synthetic`` with four provider groups (``major`` 25%
of the items, logged ``--bias`` times more often than its appeal warrants,
and three independent groups), an ALS model trained on a random 80% split, and
each test user's top ``--candidates`` items (training items filtered). Every
Geyik et al. algorithm of the ``group_proportions`` step re-ranks them toward
equal shares (``--targets``, default 0.25 each), counting places (the paper's)
or, for greedy, attention (``weighting: attention``); so does the
``exposure_targets`` step (its constraint *is* the window on attention shares,
``tolerance`` = ``--tolerance``), optimal and greedy. The figures are:

* the share of lists where *every* group's exposure share is within 5 points
  of its target, under log attention (``1/log2(rank+1)``) and under plain
  counts (the share of places), for the model's lists and the re-ranked ones,
  and per group the share of lists where that group's exposure share is;
* NDCG@k on the test positives, and its relative loss;
* the share of lists meeting the step's own constraint (every prefix holds each
  group's ``floor(i p)``; for ``exposure_targets`` the window, which the bench
  recomputes here with its own share function and checks equal);
* the wall time of the step (measured on a shared machine: indicative).

Run:  python bench/bench_group_proportions.py [--users 3000] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from governance.rerank import Candidates, ExposureTargetsReranker, GroupProportionsReranker  # noqa: E402
from recommender import metrics as M  # noqa: E402
from recommender.als import ALSRecommender  # noqa: E402
from recommender.fairness import attention_weights  # noqa: E402
from recommender.split import SplitConfig, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402

GROUPS = ("major", "indie_a", "indie_b", "indie_c")


def _shares(items: np.ndarray, group: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """``(n, G)`` each group's share of each list's weight."""
    filled = items >= 0
    w = np.where(filled, weights[None, : items.shape[1]], 0.0)
    g = np.where(filled, group[np.maximum(items, 0)], 0)
    out = np.zeros((items.shape[0], n_groups))
    np.add.at(out, (np.repeat(np.arange(items.shape[0]), items.shape[1]), g.ravel()), w.ravel())
    return out / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--interactions", type=int, default=120_000)
    ap.add_argument("--bias", type=float, default=3.0)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--targets", type=float, nargs=4, default=[0.25, 0.25, 0.25, 0.25])
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    spec = SyntheticSpec(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=7,
        provider_groups={g: 0.25 for g in GROUPS}, favoured_group="major", exposure_bias=args.bias,
    )  # fmt: skip
    dataset = generate(spec)
    mats = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2)))
    model = ALSRecommender(factors=32, iterations=10, random_state=0).fit(mats.train)
    rows = np.flatnonzero(np.diff(mats.test.matrix.indptr) > 0)
    cand_items, cand_scores, _ = model.recommend_index(rows, args.candidates, filter_seen=True)
    labels = dataset.items["provider_group"].reindex(pd.Index(mats.train.item_ids.astype(str))).to_numpy(dtype=object)
    group = np.array([GROUPS.index(g) if g in GROUPS else -1 for g in labels], dtype=np.int64)
    relevant = mats.test.matrix[rows]
    cands = Candidates(items=cand_items, scores=np.where(cand_items >= 0, cand_scores, 0).astype(np.float32), item_group=group)
    k, targets = args.k, np.asarray(args.targets)
    log_w, count_w = attention_weights(k, "log"), np.ones(k)

    def figures(items: np.ndarray) -> dict[str, float]:
        out = {"ndcg": float(np.nanmean(M.ndcg_at_k(items, relevant, k)))}
        for name, w in (("log", log_w), ("count", count_w)):
            shares = _shares(items, group, w, len(GROUPS))
            close = np.abs(shares - targets[None, :]) <= args.tolerance + 1e-9
            within = close.all(axis=1)
            out[f"within_{name}"] = float(within.mean())
            out[f"within_{name}_by_group"] = {g: float(close[:, j].mean()) for j, g in enumerate(GROUPS)}
            out[f"_within_{name}_lists"] = within
            out[f"mean_share_{name}"] = {g: float(shares[:, j].mean()) for j, g in enumerate(GROUPS)}
        return out

    plain = figures(cand_items[:, :k])
    results = {"model": plain}
    variants = [(a, "positions") for a in ("greedy", "conservative", "relaxed", "constrained")] + [("greedy", "attention")]
    steps = {
        (algorithm if weighting == "positions" else f"{algorithm}/attn"): GroupProportionsReranker(
            targets=dict(enumerate(targets.tolist())), algorithm=algorithm, weighting=weighting
        )
        for algorithm, weighting in variants
    }
    for algorithm in ("optimal", "greedy"):
        steps[f"exposure/{algorithm[:3]}"] = ExposureTargetsReranker(
            targets=dict(enumerate(targets.tolist())), tolerance=args.tolerance, algorithm=algorithm
        )
    for name, step in steps.items():
        start = time.perf_counter()
        out = step(cands, k)
        seconds = time.perf_counter() - start
        fig = figures(out.items)
        fig["ndcg_loss"] = 1 - fig["ndcg"] / plain["ndcg"]
        met = out.constraints_met[step.name]
        fig["constraint_met"] = float(met.mean())
        if step.name == "exposure_targets":  # its constraint is the window: the bench's own shares must agree
            assert (met == fig["_within_log_lists"]).all(), "exposure_targets' constraint disagrees with the bench's shares"
        fig["seconds"] = seconds
        results[name] = fig
    for fig in results.values():
        for key in [key for key in fig if key.startswith("_")]:
            del fig[key]
    report = {"users": int(len(rows)), "k": k, "candidates": args.candidates, "bias": args.bias,
              "targets": targets.tolist(), "tolerance": args.tolerance, "results": results}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(rows)} users, k={k}, {args.candidates} candidates, major logged x{args.bias}, targets {targets.tolist()}")
    by_group = " ".join(f"{g[:7]:>7}" for g in GROUPS)
    print(f"{'':13} {'NDCG@k':>8} {'loss':>7} {'within(log)':>12} {by_group} {'within(count)':>14} {'constraint':>11} {'s':>6}")
    for name, fig in results.items():
        loss = f"{fig['ndcg_loss']:.1%}" if "ndcg_loss" in fig else ""
        met = f"{fig['constraint_met']:.1%}" if "constraint_met" in fig else ""
        sec = f"{fig['seconds']:.2f}" if "seconds" in fig else ""
        groups = " ".join(f"{v:7.1%}" for v in fig["within_log_by_group"].values())
        print(
            f"{name:13} {fig['ndcg']:8.4f} {loss:>7} {fig['within_log']:12.1%} {groups} "
            f"{fig['within_count']:14.1%} {met:>11} {sec:>6}"
        )
    print("mean log-exposure share, model:", {g: round(v, 3) for g, v in plain["mean_share_log"].items()})


if __name__ == "__main__":
    main()
