"""ANN candidate generation benchmark: recall@k against exact search, speed-up, build time and memory.

The catalog: ``--items`` synthetic item vectors of ``--dim`` dimensions,
clustered like learned embeddings (``--clusters`` Gaussian centres, items
scattered around them, norms spread log-normally as popularity spreads ALS
factor norms), seeded. The queries: ``--queries`` user vectors near the
centres. ``--blocked`` of the items are blocked for every query (excluded in
faiss by an ``IDSelectorBitmap``), and each query has ``--seen`` seen items
(its own exclusions, half of them among its exact top-100, so filtering must
refill).

Two exact searches are timed on the same filtered problem: numpy batched
matmul over the whole catalog (:func:`recommender.ann.exact_search`) and faiss
``IndexFlatIP`` through the same filtered search path; the faster is the
reference time, and recall is measured against the numpy lists (the two agree
up to ties; the agreement is reported). Each ANN configuration is built once,
timed, measured for memory (its serialised size and the process's resident set
growth) and searched; the target: recall@10 >= 0.95 and >= 5x faster than the
faster exact search.

Run:  python bench/bench_ann.py [--items 1000000] [--dim 64] [--queries 2000] [--json out.json]
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
import scipy.sparse as sp  # noqa: E402

from recommender.ann import ItemIndex, exact_search, recall_at_k  # noqa: E402

TARGET_RECALL = 0.95
TARGET_SPEEDUP = 5.0


def _rss_bytes() -> int:
    """The process's resident set now (Linux /proc), 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def synthetic(n_items: int, dim: int, n_queries: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered item vectors with log-normal norms, and queries near the same centres (float32, seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    items = np.empty((n_items, dim), dtype=np.float32)
    step = 200_000
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        m = stop - start
        v = centres[rng.integers(0, n_clusters, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        v *= rng.lognormal(0.0, 0.35, size=(m, 1)).astype(np.float32)
        items[start:stop] = v
    queries = centres[rng.integers(0, n_clusters, n_queries)] + 0.6 * rng.normal(size=(n_queries, dim)).astype(np.float32)
    return items, np.ascontiguousarray(queries, dtype=np.float32)


def seen_matrix(items: np.ndarray, queries: np.ndarray, n_seen: int, blocked: np.ndarray, seed: int) -> sp.csr_matrix:
    """Each query's seen items: half among its exact top-100 (so they must be refilled), half at random."""
    rng = np.random.default_rng(seed + 1)
    n, n_items = len(queries), len(items)
    near, _ = exact_search(items, queries, 100)
    n_near = n_seen // 2
    pick = np.argsort(rng.random((n, 100)), axis=1)[:, :n_near]
    cols = np.hstack([np.take_along_axis(near, pick, axis=1), rng.integers(0, n_items, (n, n_seen - n_near))])
    rows = np.repeat(np.arange(n), cols.shape[1])
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols.ravel())), shape=(n, n_items))
    m.sum_duplicates()
    return m


def _timed(fn: Any, repeat: int) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return out, best


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    items, queries = synthetic(args.items, args.dim, args.queries, args.clusters, args.seed)
    rng = np.random.default_rng(args.seed + 2)
    blocked = rng.random(args.items) < args.blocked
    seen = seen_matrix(items, queries, args.seen, blocked, args.seed)
    data_seconds = time.perf_counter() - started
    k = args.k

    (exact_ids, _), numpy_s = _timed(lambda: exact_search(items, queries, k, exclude=seen, blocked=blocked), args.repeat)
    rss0 = _rss_bytes()
    flat = ItemIndex({"index": "flat"}).fit(items)
    (flat_ids, _), faiss_s = _timed(lambda: flat.search(queries, k, exclude=seen, blocked=blocked), args.repeat)
    exact_ref = min(numpy_s, faiss_s)
    exact = {
        "numpy_matmul_seconds": round(numpy_s, 4),
        "faiss_flat_ip_seconds": round(faiss_s, 4),
        "reference": "numpy_matmul" if numpy_s <= faiss_s else "faiss_flat_ip",
        "reference_seconds": round(exact_ref, 4),
        "agreement_recall": recall_at_k(flat_ids, exact_ids),
    }
    del flat
    rows = []
    configs: list[dict[str, Any]] = []
    if "hnsw" in args.index:
        configs += [{"index": "hnsw", "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": ef} for ef in args.ef_search]
    if "ivf_flat" in args.index:
        configs += [{"index": "ivf_flat", "nlist": args.nlist, "nprobe": p} for p in args.nprobe]
    built: dict[str, tuple[ItemIndex, float, int, int]] = {}
    for config in configs:
        build_key = json.dumps({key: v for key, v in config.items() if key not in ("ef_search", "nprobe")}, sort_keys=True)
        if build_key not in built:
            rss_before = _rss_bytes()
            index = ItemIndex(config).fit(items)
            built.clear()  # one index in memory at a time
            built[build_key] = (index, index.build_seconds_, index.memory_bytes(), max(0, _rss_bytes() - rss_before))
        index, build_s, mem, rss = built[build_key]
        index.config = config
        index.config_ = index.config_.model_copy(update={key: config[key] for key in ("ef_search", "nprobe") if key in config})
        (ids, _), ann_s = _timed(lambda: index.search(queries, k, exclude=seen, blocked=blocked), args.repeat)
        recall = recall_at_k(ids, exact_ids)
        speedup = exact_ref / ann_s
        rows.append({
            "params": index.params, "build_seconds": round(build_s, 2), "index_bytes": mem, "rss_growth_bytes": rss,
            "search_seconds": round(ann_s, 4), "queries_per_second": round(len(queries) / ann_s, 1),
            "recall_at_k": round(recall, 4) if recall is not None else None, "speedup_vs_exact": round(speedup, 2),
            "exact_refills": index.last_exact_rows_,
            "blocked_returned": int(blocked[ids[ids >= 0]].sum()),
            "short_lists": int(((ids >= 0).sum(axis=1) < (exact_ids >= 0).sum(axis=1)).sum()),
            "seen_returned": int(np.asarray(seen[np.repeat(np.arange(len(ids)), k)[ids.ravel() >= 0], ids.ravel()[ids.ravel() >= 0]]).sum()),
            "meets_target": bool(recall is not None and recall >= TARGET_RECALL and speedup >= TARGET_SPEEDUP),
        })  # fmt: skip
    return {
        "benchmark": "ann",
        "items": args.items, "dim": args.dim, "queries": args.queries, "k": k, "clusters": args.clusters,
        "blocked_share": args.blocked, "blocked_items": int(blocked.sum()), "seen_per_query": args.seen, "seed": args.seed,
        "repeat": args.repeat, "data_seconds": round(data_seconds, 2), "vectors_bytes": int(items.nbytes),
        "rss_bytes_before_indexes": rss0,
        "exact": exact, "target": {"recall_at_k": TARGET_RECALL, "speedup": TARGET_SPEEDUP},
        "results": rows, "met": any(r["meets_target"] for r in rows), "hardware": hardware(),
    }  # fmt: skip


def table(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['items']:,} items x {doc['dim']} dims, {doc['queries']:,} queries, k={doc['k']}, "
        f"{doc['blocked_share']:.0%} blocked, {doc['seen_per_query']} seen per query",
        f"exact: numpy matmul {doc['exact']['numpy_matmul_seconds']} s, faiss IndexFlatIP {doc['exact']['faiss_flat_ip_seconds']} s "
        f"(reference: {doc['exact']['reference']})",
        f"{'index':<44} {'build s':>8} {'MB':>8} {'search s':>9} {'recall':>7} {'speedup':>8} {'refill':>6} {'ok':>3}",
    ]
    for r in doc["results"]:
        p = ", ".join(f"{key}={v}" for key, v in r["params"].items())
        lines.append(
            f"{p:<44} {r['build_seconds']:>8} {r['index_bytes'] / 2**20:>8.1f} {r['search_seconds']:>9} "
            f"{r['recall_at_k']:>7} {r['speedup_vs_exact']:>8} {r['exact_refills']:>6} {'yes' if r['meets_target'] else 'no':>3}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--blocked", type=float, default=0.1)
    parser.add_argument("--seen", type=int, default=20)
    parser.add_argument("--index", nargs="+", default=["hnsw", "ivf_flat"], choices=["hnsw", "ivf_flat"])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.blocked < 1:
        parser.error(f"--blocked must be in [0, 1). Got {args.blocked} instead.")
    for name in ("items", "dim", "queries", "clusters", "k", "repeat", "nlist"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1. Got {getattr(args, name)} instead.")
    doc = run(args)
    print(table(doc))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
