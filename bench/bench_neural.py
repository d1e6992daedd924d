"""Neural families on the CPU at MovieLens-100K scale: fit time, NDCG@10 against ALS and popularity, carbon, int8.

The data is recgov's synthetic generator at MovieLens-100K's shape (943 users,
1,682 items, 100,000 events), split by time (the last 20% of events are the
test set; ratings of 4+ and every engagement are positives, as ``recgov
evaluate`` does). ALS runs at its defaults and tuned
(``--als-trials`` trials on a validation split carved from the training
matrix, as ``recgov evaluate`` tunes it). Every model is fitted on the same training matrix and
evaluated by :func:`recommender.evaluate.evaluate_model` on the same test
positives; each fit runs inside :func:`governance.carbon.measure` (codecarbon,
offline), as a governed training run records its carbon.

For the two-tower model, the retrieval step (every test user scored against
the whole catalogue, then the top 10) is timed in float32 and with the int8
item matrix (:func:`recommender.families.neural_two_tower.quantize_two_tower`:
int8 per item, fbgemm's int8 GEMM), with the same threads (``--threads``), the
same user blocks and the same selection (one user per call: the row path of
both, ``QuantizedTwoTower._row_top_k``), at several batch sizes; the user
tower (float, shared by both paths) is timed on its own. NDCG@10 of the int8
lists is computed on the same users with :func:`recommender.metrics.ndcg_at_k`,
and the float lists of that path are checked to give evaluate_model's NDCG (the
two computations cross-check each other). Required: int8 NDCG@10 within 1% of
float, and int8 at least 1.5x faster; both verdicts are printed, met or not.
Retrieval is what int8 can speed up, so run it on a large synthetic catalogue
too: ``--items 100000 --int8-only`` fits only the two-tower model.

Timings on a shared machine are indicative; the load average is reported.

Run:  python bench/bench_neural.py [--users 943] [--items 1682] [--interactions 100000] [--json] [--no-carbon]
      python bench/bench_neural.py --items 100000 --int8-only --no-carbon
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from governance.carbon import measure  # noqa: E402
from recommender.als import ALSRecommender  # noqa: E402
from recommender.baselines import PopularityRecommender  # noqa: E402
from recommender.evaluate import evaluate_model  # noqa: E402
from recommender.families.neural_ncf import NCFRecommender  # noqa: E402
from recommender.families.neural_session import SessionRecommender  # noqa: E402
from recommender.families.neural_two_tower import TwoTowerRecommender, quantize_two_tower  # noqa: E402
from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.metrics import defined_mean, ndcg_at_k  # noqa: E402
from recommender.pipeline import item_categories_for  # noqa: E402
from recommender.split import SplitConfig, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402
from recommender.tuning import tune_als  # noqa: E402

K = 10


def _carbon(facts: Any) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {"energy_kwh": facts.energy_kwh, "emissions_kg": facts.emissions_kg, "duration_s": round(facts.duration_s, 3), "method": facts.method}


def _faiss_served(flat: Any, seen: Any, rows: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Float lists through faiss ``IndexFlatIP`` with each row's seen items left out (``-1`` past the unseen items).

    One user per call: an ``IDSelectorBitmap`` of the unseen items (one bit per item, cleared for the history; faiss
    skips the cleared ids during its scan: a bit test per item, cheaper than ``IDSelectorBatch``'s hash lookup at
    every catalogue size measured, 1,681 to 56,448 items). More users per call: one search for ``k`` plus the call's
    longest history, then the seen items dropped (a selector applies to a whole call). Each is the faster form at its
    batch size.
    """
    import faiss

    n_items = flat.ntotal
    if len(rows) == 1:
        unseen = np.ones(n_items, dtype=bool)
        unseen[seen.indices[seen.indptr[rows[0]] : seen.indptr[rows[0] + 1]]] = False
        bitmap = np.packbits(unseen, bitorder="little")  # faiss reads bit (id & 7) of byte (id >> 3)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(n_items, faiss.swig_ptr(bitmap)))
        return flat.search(vectors, k, params=params)[1]
    counts = seen.indptr[rows + 1] - seen.indptr[rows]
    values, cols = flat.search(vectors, min(k + int(counts.max(initial=0)), n_items))
    keys = np.repeat(np.arange(len(rows)), counts) * n_items + np.concatenate([seen.indices[seen.indptr[r] : seen.indptr[r + 1]] for r in rows])
    values[np.isin(np.arange(len(rows))[:, None] * n_items + cols, keys)] = -np.inf
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cols, order, axis=1)
    out[~np.isfinite(np.take_along_axis(values, order, axis=1))] = -1
    return out


def _time_batch(q: Any, users: np.ndarray, vectors: torch.Tensor, batch: int, repeats: int, flat: Any = None, clock: str = "cpu") -> dict[str, Any]:
    """Microseconds per user of the user tower, of scoring (float vs int8), of retrieval and of the served step, in batches of ``batch``.

    * retrieval: scoring + top-10 over the whole catalogue, no seen filter (``QuantizedTwoTower.top_k``);
    * served: the step after the tower that serves the lists, seen items masked, ties ordered
      (``QuantizedTwoTower.recommend_vectors``, what ``recommend_index`` runs; at batch 1 its one-user row path,
      the same call serving runs).

    With ``flat`` (a faiss ``IndexFlatIP`` over the float item matrix), exact float retrieval and serving through
    faiss are timed too (its fused scan and heap can beat sgemm + top-k); the ``*_vs_best_float`` speed-ups divide
    the faster of the two float paths by the int8 path.

    Every job alternates within each repeat (after a warm-up pass of each), so a change in the machine's load hits
    all; each figure is the median over ``repeats`` passes over every test user. ``clock="cpu"`` times the calling
    thread's CPU time (1 thread: all the work runs on it), which time-slicing by other processes does not inflate;
    ``"wall"`` times wall-clock.
    """
    starts = range(0, len(users), batch)
    now = time.thread_time if clock == "cpu" else time.perf_counter

    def tower() -> None:
        for s in starts:
            q.user_vectors(users[s : s + batch])

    def scoring(int8: bool) -> None:
        for s in starts:
            q.item_scores(vectors[s : s + batch], int8=int8)

    def retrieval(int8: bool) -> None:
        for s in starts:
            q.top_k(vectors[s : s + batch], K, int8=int8)

    def served(int8: bool) -> None:
        for s in starts:
            q.recommend_vectors(vectors[s : s + batch], users[s : s + batch], K, int8=int8)

    arrays = vectors.numpy()
    seen = q.model._binary_

    def retrieval_faiss() -> None:
        for s in starts:
            flat.search(arrays[s : s + batch], K)

    def served_faiss() -> None:
        for s in starts:
            _faiss_served(flat, seen, users[s : s + batch], arrays[s : s + batch], K)

    jobs = {
        "tower": tower,
        "scoring_float": lambda: scoring(False),
        "scoring_int8": lambda: scoring(True),
        "retrieval_float": lambda: retrieval(False),
        "retrieval_int8": lambda: retrieval(True),
        "served_float": lambda: served(False),
        "served_int8": lambda: served(True),
    }
    if flat is not None:
        jobs["retrieval_float_faiss"] = retrieval_faiss
        jobs["served_float_faiss"] = served_faiss
    for job in jobs.values():
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            t0 = now()
            job()
            times[name].append((now() - t0) / len(users))
    us = {name: float(np.median(values)) * 1e6 for name, values in times.items()}
    out = {"batch": batch, **{f"{name}_us_per_user": round(value, 2) for name, value in us.items()}}
    out["speedup_scoring"] = round(us["scoring_float"] / us["scoring_int8"], 3)
    for step in ("retrieval", "served"):
        best_float = min(us[f"{step}_float"], us.get(f"{step}_float_faiss", float("inf")))
        out[f"best_float_{step}"] = "faiss" if best_float < us[f"{step}_float"] else "torch"
        out[f"speedup_{step}"] = round(us[f"{step}_float"] / us[f"{step}_int8"], 3)
        out[f"speedup_{step}_vs_best_float"] = round(best_float / us[f"{step}_int8"], 3)
        out[f"speedup_{step}_end_to_end_vs_best_float"] = round((us["tower"] + best_float) / (us["tower"] + us[f"{step}_int8"]), 3)
    out["speedup_end_to_end"] = round((us["tower"] + us["retrieval_float"]) / (us["tower"] + us["retrieval_int8"]), 3)
    return out


def _faiss_flat(q: Any, threads: int) -> Any:
    """An exact inner-product faiss index over the float item matrix (the float reference's other form), or None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(q.item_float.shape[1])
    index.add(np.ascontiguousarray(q.item_float.numpy()))
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every neural model's epochs (quick runs)")
    parser.add_argument("--country", default="USA", help="ISO code of the grid for codecarbon")
    parser.add_argument("--no-carbon", action="store_true", help="skip codecarbon")
    parser.add_argument("--batches", default="1,32,256", help="batch sizes (users per call) for the int8 timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both paths of the int8 timing")
    parser.add_argument("--int8-only", action="store_true", help="fit only the two-tower model (large synthetic catalogues)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="time the thread's CPU time (1 thread only) or wall-clock")
    parser.add_argument("--als-trials", type=int, default=20, help="ALS tuning trials on a validation split of the training data (0: defaults)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON document here")
    args = parser.parse_args()

    started = time.perf_counter()
    dataset = generate(SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed))
    train_events, test_events = split(dataset.events, SplitConfig())
    mats = train_test_matrices(train_events, test_events, FeedbackConfig())
    train, test = mats.train, mats.test
    categories = item_categories_for(dataset, train)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    als_params: dict[str, Any] = {}
    if args.als_trials and not args.int8_only:
        # as `recgov evaluate` does: tuned on a validation split carved from the training matrix, never the test set
        tuned = tune_als(train, n_trials=args.als_trials, k=K, random_state=args.seed).best_params
        als_params = {key: value for key, value in tuned.items() if key != "random_state"}

    candidates: dict[str, tuple[Any, dict[str, Any]]] = {
        "popularity": (PopularityRecommender(), {}),
        "als": (ALSRecommender(random_state=args.seed, num_threads=1), {}),
        "als_tuned": (ALSRecommender(**als_params, random_state=args.seed, num_threads=1), {}),
        "two_tower": (TwoTowerRecommender(random_state=args.seed, **epochs), {"item_categories": categories}),
        "two_tower_hard": (TwoTowerRecommender(random_state=args.seed, hard_negatives=4, **epochs), {"item_categories": categories}),
        "ncf": (NCFRecommender(random_state=args.seed, **epochs), {}),
        "session": (SessionRecommender(random_state=args.seed, **epochs), {"events": train_events}),
        "session_user": (SessionRecommender(random_state=args.seed, sequences="user", **epochs), {"events": train_events}),
    }
    if args.int8_only:
        candidates = {"two_tower": candidates["two_tower"]}
    rows: list[dict[str, Any]] = []
    fitted: dict[str, Any] = {}
    for name, (model, side) in candidates.items():
        with measure(args.country, enabled=not args.no_carbon) as meter:
            t0 = time.perf_counter()
            model.fit(train, **side)
            fit_s = time.perf_counter() - t0
        result = evaluate_model(model, train, test, K).to_dict()["metrics"]
        row = {
            "model": name,
            "fit_seconds": round(fit_s, 2),
            "ndcg@10": round(result["ndcg"], 4),
            "recall@10": round(result["recall"], 4),
            "carbon": _carbon(meter.facts),
        }
        if hasattr(model, "training_report"):
            report = model.training_report()
            row["training"] = {key: report[key] for key in ("epochs", "loss", "grad_norm_max", "unstable")}
            if "sessions_from" in report:
                row["training"]["sessions_from"] = report["sessions_from"]
        rows.append(row)
        fitted[name] = model
        print(f"  {name}: {row['fit_seconds']} s, NDCG@10 {row['ndcg@10']}", file=sys.stderr, flush=True)

    # int8 vs float on the two-tower retrieval path
    tt = fitted["two_tower"]
    q = quantize_two_tower(tt)
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    relevant = test.matrix[users]
    lists_f = q.recommend_index(users, K, int8=False)
    lists_i = q.recommend_index(users, K, int8=True)
    ndcg_f, ndcg_i = defined_mean(ndcg_at_k(lists_f, relevant)), defined_mean(ndcg_at_k(lists_i, relevant))
    evaluated = next(r["ndcg@10"] for r in rows if r["model"] == "two_tower")
    timing = []
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        vectors = q.user_vectors(users)
        flat = _faiss_flat(q, args.threads)
        if flat is not None:
            # faiss's exact search must return the float path's top-10 (same scores; ties aside)
            faiss_v, _ = flat.search(vectors.numpy()[:64], K)
            torch_v, _ = q.top_k(vectors[:64], K, int8=False)
            assert np.allclose(faiss_v, torch_v.numpy(), atol=1e-5), "faiss IndexFlatIP disagrees with the float path"
            for j in range(min(64, len(users))):  # and its served lists, the float path's (ties aside)
                faiss_list = _faiss_served(flat, q.model._binary_, users[j : j + 1], vectors.numpy()[j : j + 1], K)
                assert np.array_equal(faiss_list, lists_f[j : j + 1]), "faiss served lists disagree with the float path"
            assert np.array_equal(_faiss_served(flat, q.model._binary_, users[:64], vectors.numpy()[:64], K), lists_f[:64])
        clock = args.clock if args.threads == 1 else "wall"  # other threads' work is not on the calling thread's clock
        for batch in (int(b) for b in args.batches.split(",")):
            timing.append(_time_batch(q, users, vectors, batch, args.repeats, flat, clock))
    finally:
        torch.set_num_threads(threads)
    drop_pct = 100.0 * (ndcg_f - ndcg_i) / ndcg_f if ndcg_f > 0 else 0.0
    best = max(timing, key=lambda t: t["speedup_retrieval"])
    quant = {
        "ndcg@10_float": round(ndcg_f, 4),
        "ndcg@10_int8": round(ndcg_i, 4),
        "ndcg_drop_pct": round(drop_pct, 3),
        "float_path_matches_evaluate_model": abs(round(ndcg_f, 4) - evaluated) <= 1e-4,
        "top10_overlap": round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(lists_f, lists_i)])), 4),
        "threads": args.threads,
        "timing": timing,
        "size_bytes": q.size_bytes(),
        "items": train.n_items,
        "clock": clock,
        "requirement_ndcg_within_1pct": abs(drop_pct) <= 1.0,
        "requirement_1_5x_faster_retrieval": {str(t["batch"]): t["speedup_retrieval"] >= 1.5 for t in timing},
        "requirement_1_5x_faster_end_to_end": {str(t["batch"]): t["speedup_end_to_end"] >= 1.5 for t in timing},
        "requirement_1_5x_faster_retrieval_vs_best_float": {str(t["batch"]): t["speedup_retrieval_vs_best_float"] >= 1.5 for t in timing},
        "requirement_1_5x_faster_served_vs_best_float": {str(t["batch"]): t["speedup_served_vs_best_float"] >= 1.5 for t in timing},
        "requirement_1_5x_faster_served_end_to_end_vs_best_float": {
            str(t["batch"]): t["speedup_served_end_to_end_vs_best_float"] >= 1.5 for t in timing
        },
        "best": best,
    }
    doc = {
        "data": {
            "users": train.n_users,
            "items": train.n_items,
            "train_positives": train.nnz,
            "test_positives": int(test.nnz),
            "events": dataset.n_events,
            "split": "time, last 20% of events",
        },
        "als_tuned_params": als_params,
        "models": rows,
        "int8_two_tower": quant,
        "hardware": hardware(),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{'model':<16}{'fit s':>8}{'NDCG@10':>9}{'recall@10':>10}{'kg CO2e':>11}  training")
    for row in rows:
        carbon = row["carbon"]["emissions_kg"] if row["carbon"] else float("nan")
        tr = row.get("training")
        note = f"{tr['epochs']} epochs, loss {tr['loss'][0]} -> {tr['loss'][-1]}, unstable={tr['unstable']}" if tr else ""
        print(f"{row['model']:<16}{row['fit_seconds']:>8}{row['ndcg@10']:>9}{row['recall@10']:>10}{carbon:>11.2e}  {note}")
    print(
        f"\ntwo_tower int8: NDCG@10 {quant['ndcg@10_int8']} vs float {quant['ndcg@10_float']} "
        f"(drop {quant['ndcg_drop_pct']}%, within 1%: {quant['requirement_ndcg_within_1pct']}; top-10 overlap {quant['top10_overlap']})"
    )
    print(f"  retrieval over {train.n_items} items, top-{K}, {args.threads} thread(s), {clock} microseconds per user (median of {args.repeats}):")
    for t in timing:
        print(
            f"  batch {t['batch']:>4}: tower {t['tower_us_per_user']}; scoring float {t['scoring_float_us_per_user']} / int8 {t['scoring_int8_us_per_user']} "
            f"({t['speedup_scoring']}x); scoring+top-k float {t['retrieval_float_us_per_user']} / int8 {t['retrieval_int8_us_per_user']} "
            f"({t['speedup_retrieval']}x, >= 1.5x: {t['speedup_retrieval'] >= 1.5}); with the tower {t['speedup_end_to_end']}x"
        )
        if "retrieval_float_faiss_us_per_user" in t:
            print(
                f"             float through faiss IndexFlatIP {t['retrieval_float_faiss_us_per_user']}; against the best float path "
                f"({t['best_float_retrieval']}): retrieval {t['speedup_retrieval_vs_best_float']}x"
            )
        print(
            f"             served (seen items masked) float {t['served_float_us_per_user']} / faiss {t.get('served_float_faiss_us_per_user')} / "
            f"int8 {t['served_int8_us_per_user']}: {t['speedup_served_vs_best_float']}x the best float ({t['best_float_served']}), "
            f"with the tower {t['speedup_served_end_to_end_vs_best_float']}x"
        )
    print(f"load average {doc['hardware']['load_average_1m']} on {doc['hardware']['cores']} cores; {doc['seconds']} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
