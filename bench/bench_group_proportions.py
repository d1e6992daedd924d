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
* NDCG@k, and its relative loss, on two test sets of the same size per user:
  ``log`` -- the test positives held out of the logged events, which carry the
  planted exposure bias (``major`` over-represented), so a re-ranker that
  corrects the bias is scored down *for the bias itself*; and ``appeal`` --
  the same number of positives per user drawn from the world's true appeal
  without the logging bias (``recommender.synthetic.appeal_sample``: same
  popularity, tastes and affinities, the exposure factor taken out; the user's
  training positives excluded, only items the model knows). The share of
  ``major`` among each set's positives is printed, to show what each one rewards;
* the share of lists meeting the step's own constraint (every prefix holds each
  group's ``floor(i p)``; for ``exposure_targets`` the window, which the bench
  recomputes here with its own share function and checks equal);
* the wall time of the step (measured on a shared machine: indicative);
* an exploration row, ``window/score`` (not a step): the exposure window's exact
  optimum for the model's scores instead of the step's rank objective, and a
  cross-check that the step's own objective, re-implemented here, gives its lists.

Run:  python bench/bench_group_proportions.py [--users 3000] [--k 10] [--candidates 100] [--targets ...] [--json]
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
import scipy.sparse as sp  # noqa: E402

from governance.rerank import Candidates, ExposureTargetsReranker, GroupProportionsReranker  # noqa: E402
from governance.rerank.exposure_targets import exposure_patterns  # noqa: E402
from recommender import metrics as M  # noqa: E402
from recommender.als import ALSRecommender  # noqa: E402
from recommender.fairness import attention_weights  # noqa: E402
from recommender.split import SplitConfig, SplitMatrices, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, appeal_sample, generate  # noqa: E402

GROUPS = ("major", "indie_a", "indie_b", "indie_c")


def _shares(items: np.ndarray, group: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """``(n, G)`` each group's share of each list's weight."""
    filled = items >= 0
    w = np.where(filled, weights[None, : items.shape[1]], 0.0)
    g = np.where(filled, group[np.maximum(items, 0)], 0)
    out = np.zeros((items.shape[0], n_groups))
    np.add.at(out, (np.repeat(np.arange(items.shape[0]), items.shape[1]), g.ravel()), w.ravel())
    return out / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def _appeal_test(spec: SyntheticSpec, mats: SplitMatrices, rows: np.ndarray, relevant: sp.csr_matrix) -> sp.csr_matrix:
    """Test positives free of the exposure bias, aligned with ``relevant``: for each test user as many
    items as it has logged test positives, drawn from the world's true appeal among the items the model
    knows, its training positives excluded (a model filters them out, as the split drops them)."""
    user_ids = mats.train.user_ids.astype(str)
    item_ids = pd.Index(mats.train.item_ids.astype(str))
    counts = pd.Series(np.diff(relevant.indptr).astype(np.int64), index=pd.Index(user_ids[rows]))
    seen = mats.train.matrix[rows].tocoo()
    exclude = pd.DataFrame({"user_id": user_ids[rows][seen.row], "item_id": item_ids.to_numpy()[seen.col]})
    drawn = appeal_sample(spec, counts, exclude=exclude, items=item_ids)
    row = counts.index.get_indexer(drawn["user_id"])
    col = item_ids.get_indexer(drawn["item_id"])
    return sp.csr_matrix((np.ones(len(drawn), dtype=np.float32), (row, col)), shape=relevant.shape)


def _best_pattern(cands: Candidates, k: int, targets: np.ndarray, tolerance: float, gain: str) -> np.ndarray:
    """An exploration, not a step: the exposure window's exact optimum for another objective.

    ``exposure_targets`` (optimal) picks, among the feasible patterns, the one of
    maximum ``sum_i w_i * w(input rank)``: the DCG of the list if the model's
    order were the truth. Here the same feasible patterns are scored by
    ``sum_i w_i * score_i``, the model's own scores (``gain="score"``; each group's
    places filled by its best items, optimal per pattern by the rearrangement
    inequality). ``gain="rank"`` uses the step's own objective, an independent
    re-implementation to cross-check it. Lists that can fill no pattern keep the model's order.
    """
    pats = exposure_patterns(k, targets, tolerance).astype(np.int64)  # (P, k)
    n_groups, w = len(targets), attention_weights(k, "log")
    n, c = cands.items.shape
    group = np.where(cands.items >= 0, cands.item_group[np.maximum(cands.items, 0)], -1)
    heads = np.full((n, n_groups, k), -1, dtype=np.int64)  # the j-th best candidate of each group
    for g in range(n_groups):
        mask = group == g
        j = np.cumsum(mask, axis=1) - 1
        rows, cols = np.nonzero(mask & (j < k))
        heads[rows, g, j[rows, cols]] = cols
    value = cands.scores if gain == "score" else np.broadcast_to(1 / np.log2(np.arange(c) + 2.0), (n, c))
    score = np.where(heads >= 0, value[np.arange(n)[:, None, None], np.maximum(heads, 0)], -1e9)
    occurrence = np.zeros_like(pats)
    for g in range(n_groups):
        occurrence += np.where(pats == g, np.cumsum(pats == g, axis=1) - 1, 0)
    coef = np.zeros((n_groups * k, len(pats)))
    np.add.at(coef, (pats * k + occurrence, np.broadcast_to(np.arange(len(pats))[:, None], pats.shape)), w[None, :])
    flat = score.reshape(n, -1).astype(np.float64)
    best = np.concatenate([(flat[i : i + 256] @ coef).argmax(axis=1) for i in range(0, n, 256)])
    place = heads[np.arange(n)[:, None], pats[best], occurrence[best]]  # (n, k) candidate column
    feasible = (place >= 0).all(axis=1)
    out = cands.items[:, :k].copy()
    out[feasible] = np.take_along_axis(cands.items[feasible], place[feasible], axis=1)
    return out


def _loss_interval(after: np.ndarray, before: np.ndarray, draws: int = 1000) -> list[float]:
    """95% percentile bootstrap interval of the relative NDCG loss ``1 - mean(after) / mean(before)``,
    users resampled with both lists paired (the spread of the test sample, not of the model)."""
    keep = ~(np.isnan(after) | np.isnan(before))
    a, b = after[keep], before[keep]
    pick = np.random.default_rng(0).integers(0, len(a), size=(draws, len(a)))
    loss = 1 - a[pick].mean(axis=1) / b[pick].mean(axis=1)
    return [float(v) for v in np.percentile(loss, [2.5, 97.5])]


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
    appeal = _appeal_test(spec, mats, rows, relevant)
    cands = Candidates(items=cand_items, scores=np.where(cand_items >= 0, cand_scores, 0).astype(np.float32), item_group=group)
    k, targets = args.k, np.asarray(args.targets)
    log_w, count_w = attention_weights(k, "log"), np.ones(k)

    def figures(items: np.ndarray) -> dict[str, float]:
        out: dict = {}
        for test, matrix in (("log", relevant), ("appeal", appeal)):
            per_user = M.ndcg_at_k(items, matrix, k)
            out[f"ndcg_{test}"] = float(np.nanmean(per_user))
            out[f"_ndcg_users_{test}"] = per_user
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
        for test in ("log", "appeal"):
            fig[f"ndcg_loss_{test}"] = 1 - fig[f"ndcg_{test}"] / plain[f"ndcg_{test}"]
            fig[f"ndcg_loss_{test}_95"] = _loss_interval(fig[f"_ndcg_users_{test}"], plain[f"_ndcg_users_{test}"])
        met = out.constraints_met[step.name]
        fig["constraint_met"] = float(met.mean())
        if step.name == "exposure_targets":  # its constraint is the window: the bench's own shares must agree
            assert (met == fig["_within_log_lists"]).all(), "exposure_targets' constraint disagrees with the bench's shares"
        fig["seconds"] = seconds
        results[name] = fig
    # An exploration (not a step): the window's exact optimum for the model's scores instead of its ranks,
    # and the step's own objective re-implemented here, which must give the step's lists.
    explored = {gain: _best_pattern(cands, k, targets, args.tolerance, gain) for gain in ("rank", "score")}
    same = float((explored["rank"] == steps["exposure/opt"](cands, k).items).all(axis=1).mean())
    fig = figures(explored["score"])
    for test in ("log", "appeal"):
        fig[f"ndcg_loss_{test}"] = 1 - fig[f"ndcg_{test}"] / plain[f"ndcg_{test}"]
        fig[f"ndcg_loss_{test}_95"] = _loss_interval(fig[f"_ndcg_users_{test}"], plain[f"_ndcg_users_{test}"])
    results["window/score"] = fig
    for fig in results.values():
        for key in [key for key in fig if key.startswith("_")]:
            del fig[key]
    major_share = {
        test: float(np.isin(matrix.indices, np.flatnonzero(group == 0)).mean())
        for test, matrix in (("log", relevant), ("appeal", appeal))
    }
    report = {"users": int(len(rows)), "k": k, "candidates": args.candidates, "bias": args.bias,
              "targets": targets.tolist(), "tolerance": args.tolerance,
              "major_share_of_test_positives": major_share,
              "exposure_optimal_reimplemented_same_lists": same, "results": results}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(rows)} users, k={k}, {args.candidates} candidates, major logged x{args.bias}, targets {targets.tolist()}")
    by_group = " ".join(f"{g[:7]:>7}" for g in GROUPS)
    print(
        f"test positives: 'log' held out of the biased log (major {major_share['log']:.1%}), "
        f"'appeal' drawn from the true appeal without the bias (major {major_share['appeal']:.1%})"
    )
    print(
        f"{'':13} {'NDCG log':>8} {'loss':>6} {'NDCG app':>8} {'loss':>6} {'within(log)':>12} {by_group} "
        f"{'within(count)':>14} {'constraint':>11} {'s':>6}"
    )
    for name, fig in results.items():
        loss = {t: f"{fig[f'ndcg_loss_{t}']:.1%}" if f"ndcg_loss_{t}" in fig else "" for t in ("log", "appeal")}
        met = f"{fig['constraint_met']:.1%}" if "constraint_met" in fig else ""
        sec = f"{fig['seconds']:.2f}" if "seconds" in fig else ""
        groups = " ".join(f"{v:7.1%}" for v in fig["within_log_by_group"].values())
        print(
            f"{name:13} {fig['ndcg_log']:8.4f} {loss['log']:>6} {fig['ndcg_appeal']:8.4f} {loss['appeal']:>6} "
            f"{fig['within_log']:12.1%} {groups} "
            f"{fig['within_count']:14.1%} {met:>11} {sec:>6}"
        )
    print("95% bootstrap intervals of the loss (users resampled, lists paired), log test | appeal test:")
    for name, fig in results.items():
        if "ndcg_loss_log_95" in fig:
            lo_log, hi_log = fig["ndcg_loss_log_95"]
            lo_app, hi_app = fig["ndcg_loss_appeal_95"]
            print(f"  {name:13} [{lo_log:6.1%}, {hi_log:6.1%}] | [{lo_app:6.1%}, {hi_app:6.1%}]")
    print(f"window/score: the window's exact optimum for the model's scores (exploration); the step's objective "
          f"re-implemented here gives exposure/opt's list for {same:.1%} of users")
    print("mean log-exposure share, model:", {g: round(v, 3) for g, v in plain["mean_share_log"].items()})


if __name__ == "__main__":
    main()
