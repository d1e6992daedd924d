"""Serving benchmark: the governed request path against raw ``implicit.recommend`` in the same run.

At MovieLens-100K scale (943 users, 1,682 items, 100k interactions, 64 factors):

* raw: ``implicit``'s ``recommend`` for one user (top 10, seen items filtered);
* governed: consent decision, harmful-item removal, model candidates, the EU
  pack's re-ranking, explanation tags for every item, and the decision record
  handed to the decision log. The log is measured two ways: submitted (the
  record is queued for group commit and the request does not wait), and durable
  (the request waits until the batch holding its record has committed to SQLite,
  with 8 concurrent request threads sharing the commits); and submitted to
  ``ProcessDecisionLog``, whose commits run in a child process;
* tags: one batched decomposition for a top-10 list against ten ``explain`` calls.

BLAS is pinned to one thread for the whole run, as ``recgov serve`` pins it at
start-up (:func:`recommender.als.pin_blas_single_thread`); raw ``implicit`` runs
under the same setting.

* online store (Redis, ``--redis``): the same governed lists with the model's part read from the
  online store: cached lists (filled first, as for heavy users; each read still checked against
  the blocks and availability), and lists made from the subject's factors read from Redis;
  beside the in-process path (``governed_no_record``), in the same run; and the cached lists again
  with the outbox watch (:class:`audits.online_store.OutboxWatch`, an empty outbox in a SQLite
  store) on, with the watch's cost per request and of one read of the outbox.

Run:  python bench/bench_serving.py [--requests 2000] [--pack PACK.yaml] [--redis URL|none] [--json]
      python bench/bench_serving.py --logging-pools 10,15,20 [--requests 2000] [--json]

``--logging-pools`` measures only what a stochastic logging policy adds: the pack
as given (no logging policy) against the same pack with a Plackett-Luce logging
policy drawing the list of 10 from a governed pool of each size (temperature 1),
every engine serving the same users in process without a sink, alternating engine
by engine per request so that load changes hit all alike; the p50 difference to
the pack without a logging policy is the cost (the must-hold: at most 0.1 ms).

``main`` is long on purpose: it is the benchmark's protocol, read top to bottom
(set up, warm up, measure each path in the same run, report), as its figures are
checked against it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

import numpy as np  # noqa: E402

from audits import open_store  # noqa: E402
from audits.decision_writer import ProcessDecisionLog  # noqa: E402
from audits.decisions import DecisionLog  # noqa: E402
from governance.consent.state import ConsentRecord  # noqa: E402
from governance.explain import explain_als_list  # noqa: E402
from governance.policy import load_pack  # noqa: E402
from governance.serving import ServeRequest, ServingEngine  # noqa: E402
from recommender.als import ALSRecommender, blas_single_thread, pin_blas_single_thread  # noqa: E402
from recommender.feedback import to_implicit  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402



def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4), "mean_ms": round(float(ms.mean()), 4)}


class _Queued:
    """Queue the record for group commit without waiting (the request's own cost)."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    def submit_and_wait(self, record, timeout=5.0):  # noqa: ANN001, ANN201
        return self.log.submit(record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--pack", type=Path, default=Path(__file__).resolve().parents[1] / "policies" / "eu-gdpr-dsa.yaml",
        help="the policy pack served (default: the EU pack); e.g. to compare two re-rankings on one machine",
    )  # fmt: skip
    parser.add_argument(
        "--redis", default=os.environ.get("RECGOV_REDIS_URL") or "redis://127.0.0.1:6379/0",
        help="the online store's Redis for its paths (default: RECGOV_REDIS_URL, else redis://127.0.0.1:6379/0); none: skip them",
    )
    parser.add_argument(
        "--logging-pools", default=None,
        help="comma-separated pool sizes: measure only the Plackett-Luce logging policy's cost at each (see the docstring)",
    )  # fmt: skip
    args = parser.parse_args()
    pin_blas_single_thread()  # as the service does at start-up
    if args.logging_pools:
        return logging_policy_cost(args)

    data = generate(SyntheticSpec(n_users=943, n_items=1682, n_interactions=100_000, seed=0, harmful_share=0.02))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=64, iterations=15).fit(matrix)
    pack = load_pack(args.pack)
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
    rows = np.arange(args.requests) % matrix.n_users
    users = [str(matrix.user_ids[r]) for r in rows]

    raw = []
    inner = model.model_
    with blas_single_thread():
        for r in rows:
            t = time.perf_counter()
            inner.recommend(int(r), matrix.matrix[int(r)], N=10)
            raw.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RECGOV_HOME"] = tmp
        store = open_store(f"sqlite:///{tmp}/bench.db")
        log = DecisionLog(store)
        engine = ServingEngine(pack, model, data.items, sink=_Queued(log))
        governed = []
        for user in users:
            t = time.perf_counter()
            engine.serve(ServeRequest(user, k=10, consent=granted))
            governed.append(time.perf_counter() - t)
        log.flush()

        # The same, with the log's commits in a process of its own (ProcessDecisionLog).
        plog = ProcessDecisionLog(store)
        plog.submit_and_wait({"mode": "fallback", "pack_name": "warm-up", "pack_version": "0", "pack_hash": "0", "slate": {"items": []}}, timeout=60)
        pengine = ServingEngine(pack, model, data.items, sink=_Queued(plog))
        governed_process = []
        for user in users:
            t = time.perf_counter()
            pengine.serve(ServeRequest(user, k=10, consent=granted))
            governed_process.append(time.perf_counter() - t)
        plog.close()

        bare = ServingEngine(pack, model, data.items)  # no decision record: the path's own cost
        no_record = []
        for user in users:
            t = time.perf_counter()
            bare.serve(ServeRequest(user, k=10, consent=granted))
            no_record.append(time.perf_counter() - t)
        online = online_store_paths(args.redis, pack, model, data.items, users, granted)
        plain_pack = pack.pack.model_copy(update={"reranking": pack.pack.reranking.model_copy(update={"enabled": False})})
        plain_loaded = type(pack)(pack=plain_pack, source=pack.source, content_hash=pack.content_hash, positions=pack.positions)
        no_rerank = []
        plain = ServingEngine(plain_loaded, model, data.items)
        for user in users:
            t = time.perf_counter()
            plain.serve(ServeRequest(user, k=10, consent=granted))
            no_rerank.append(time.perf_counter() - t)

        durable_engine = ServingEngine(pack, model, data.items, sink=log)
        durable: list[float] = []

        def one(user: str) -> float:
            t = time.perf_counter()
            durable_engine.serve(ServeRequest(user, k=10, consent=granted))
            return time.perf_counter() - t

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            durable = list(pool.map(one, users))
        durable_wall = time.perf_counter() - started
        log.close()
        store.close()

    # Tags: one batched decomposition vs ten explain calls, for the same lists.
    yty = model.item_factors_.T @ model.item_factors_
    batched, per_item = [], []
    with blas_single_thread():
        for r in rows[:300]:
            recs, _, _ = model.recommend_index(np.array([r]), 10)
            hist = matrix.matrix[int(r)]
            t = time.perf_counter()
            explain_als_list(model.item_factors_, model.regularization, model.alpha, hist.indices, hist.data, recs[0], n=3, yty=yty)
            batched.append(time.perf_counter() - t)
            t = time.perf_counter()
            for item in recs[0]:
                inner.explain(int(r), matrix.matrix, int(item), N=3)
            per_item.append(time.perf_counter() - t)

    raw_p = percentiles(raw)
    result = {
        "benchmark": "serving",
        "scale": {"users": matrix.n_users, "items": matrix.n_items, "interactions": matrix.nnz, "factors": 64},
        "requests": args.requests,
        "raw_implicit_recommend": raw_p,
        "governed_no_record_no_rerank": percentiles(no_rerank),
        "governed_no_record": percentiles(no_record),
        "online_store": online and {
            **online, "cached_to_in_process_p50": round(online["cached_lists"]["p50_ms"] / online["in_process_interleaved"]["p50_ms"], 3),
            "target_cached_to_in_process_p50": 0.5,
        },
        "governed_in_process": {**percentiles(governed), "ratio_p50": round(percentiles(governed)["p50_ms"] / raw_p["p50_ms"], 2)},
        "governed_in_process_writer_process": {
            **percentiles(governed_process), "ratio_p50": round(percentiles(governed_process)["p50_ms"] / raw_p["p50_ms"], 2)
        },
        "governed_durable_8_threads": {**percentiles(durable), "requests_per_s": round(len(users) / durable_wall, 1)},
        "tags_top10": {
            "batched_ms": round(statistics.median(batched) * 1e3, 4),
            "ten_explain_calls_ms": round(statistics.median(per_item) * 1e3, 4),
            "speedup": round(statistics.median(per_item) / statistics.median(batched), 1),
        },
        "targets": {"governed_p50_ms": 1.0, "governed_p99_ms": 3.0, "tags_speedup": 8.0},
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        g, d, tg = result["governed_in_process"], result["governed_durable_8_threads"], result["tags_top10"]
        print(f"raw implicit.recommend      p50 {raw_p['p50_ms']:.3f} ms  p99 {raw_p['p99_ms']:.3f} ms")
        for label, key in (("governed, no record, no re-ranking", "governed_no_record_no_rerank"), ("governed, no record", "governed_no_record")):
            q = result[key]
            print(f"{label:34s} p50 {q['p50_ms']:.3f} ms  p99 {q['p99_ms']:.3f} ms")
        if result["online_store"]:
            o = result["online_store"]
            for label, key in (("in-process (taking turns below)", "in_process_interleaved"), ("online store, cached lists", "cached_lists"), ("online store, factors", "factors")):
                q = o[key]
                print(f"{label:34s} p50 {q['p50_ms']:.3f} ms  p99 {q['p99_ms']:.3f} ms")
            print(f"  cached p50 / in-process p50 = {o['cached_to_in_process_p50']} (target <= 0.5); hits {o['hits']} of {o['cached_lists_requests']}")
            b = o["back_to_back"]
            print(f"  back to back: in-process p50 {b['in_process']['p50_ms']:.3f} ms, cached lists p50 {b['cached_lists']['p50_ms']:.3f} ms, "
                  f"with the outbox watch p50 {b['cached_lists_outbox_watch']['p50_ms']:.3f} ms")
            w = o["outbox_watch"]
            print(f"  outbox watch: {w['holds_us_per_request']} us per request; a read of the (empty) outbox {w['refresh_ms']} ms, "
                  f"at most every {w['refresh_every_s']:g} s")
        print(f"governed (log queued)       p50 {g['p50_ms']:.3f} ms  p99 {g['p99_ms']:.3f} ms  ({g['ratio_p50']}x raw at p50)")
        gp = result["governed_in_process_writer_process"]
        print(f"governed (writer process)   p50 {gp['p50_ms']:.3f} ms  p99 {gp['p99_ms']:.3f} ms  ({gp['ratio_p50']}x raw at p50)")
        print(f"governed (durable, 8 thr)   p50 {d['p50_ms']:.3f} ms  p99 {d['p99_ms']:.3f} ms  {d['requests_per_s']} req/s")
        print(f"tags for a top-10 list      {tg['batched_ms']:.3f} ms vs {tg['ten_explain_calls_ms']:.3f} ms for ten explain calls ({tg['speedup']}x)")
    return 0


def logging_policy_cost(args: argparse.Namespace) -> int:
    """The p50 a Plackett-Luce logging policy adds to the governed list, per pool size (see the module docstring)."""
    pools = [int(p) for p in args.logging_pools.split(",") if p.strip()]
    data = generate(SyntheticSpec(n_users=943, n_items=1682, n_interactions=100_000, seed=0, harmful_share=0.02))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=64, iterations=15).fit(matrix)
    pack = load_pack(args.pack)
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
    users = [str(matrix.user_ids[r]) for r in np.arange(args.requests) % matrix.n_users]
    from governance.policy import LoggingPolicySection

    engines = {"none": ServingEngine(pack, model, data.items)}
    for m in pools:
        section = LoggingPolicySection(kind="plackett_luce", pool=m, temperature=1.0)
        variant = pack.pack.model_copy(update={"logging_policy": section})
        engines[f"plackett_luce_pool_{m}"] = ServingEngine(type(pack)(pack=variant, source=pack.source, content_hash=pack.content_hash, positions=pack.positions), model, data.items)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for user in users[:200]:  # warm-up
        for engine in engines.values():
            engine.serve(ServeRequest(user, k=10, consent=granted))
    for user in users:
        for name, engine in engines.items():
            t = time.perf_counter()
            engine.serve(ServeRequest(user, k=10, consent=granted))
            times[name].append(time.perf_counter() - t)
    base = percentiles(times["none"])["p50_ms"]
    result = {
        "benchmark": "serving_logging_policy",
        "requests": args.requests,
        "pack": pack.name,
        "engines": {name: {**percentiles(ts), "added_p50_ms": round(percentiles(ts)["p50_ms"] - base, 4)} for name, ts in times.items()},
        "target_added_p50_ms": 0.1,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, figures in result["engines"].items():
            print(f"{name:28s} p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms  added at p50 {figures['added_p50_ms']:+.3f} ms")
        print(f"load average {result['load_average']}")
    return 0


def online_store_paths(url: str, pack, model, items, users: list[str], granted) -> dict | None:  # noqa: ANN001
    """The governed lists with the model's part from the online store (Redis at ``url``): cached lists, then lists
    made from factors read from it; None when ``url`` is ``none`` or Redis does not answer (said on stderr)."""
    if url == "none":
        return None
    import uuid

    from audits.online_store import OnlineStore
    from governance.online_store import ListCache, personalize_from_factors, store_factors, warm

    store = OnlineStore.from_url(url, namespace=f"recgov-bench-{uuid.uuid4().hex[:8]}", key=os.urandom(32))
    if not store.ping():
        print(f"online store: Redis at {url} does not answer; its paths are not measured", file=sys.stderr)
        return None
    try:
        cached_engine = ServingEngine(pack, model, items)
        cached_engine.list_cache = cache = ListCache(store)
        distinct = list(dict.fromkeys(users))
        fill_started = time.perf_counter()
        warm(cached_engine, [ServeRequest(u, k=10, consent=granted) for u in distinct])
        fill_s = time.perf_counter() - fill_started
        cache.hits = cache.misses = 0
        factors_engine = ServingEngine(pack, model, items)
        in_process_engine = ServingEngine(pack, model, items)
        store_factors(store, model, distinct)
        item_factors = store.item_factors(model.version_id_)  # once per model version, as a server keeps it
        # The three paths take turns request by request, so a busy machine weighs on each alike.
        cached, from_factors, in_process = [], [], []
        for user in users:
            t = time.perf_counter()
            in_process_engine.serve(ServeRequest(user, k=10, consent=granted))
            in_process.append(time.perf_counter() - t)
            t = time.perf_counter()
            cached_engine.serve(ServeRequest(user, k=10, consent=granted))
            cached.append(time.perf_counter() - t)
            t = time.perf_counter()
            plan = factors_engine.begin(ServeRequest(user, k=10, consent=granted))
            made = personalize_from_factors(store, factors_engine.personalizer, plan, item_factors) if plan.mode == "personalized" else None
            factors_engine.finish(plan, made)
            from_factors.append(time.perf_counter() - t)
        hits = cache.hits
        watch_cost = outbox_watch_cost(store, users)
        # And each path back to back (Redis kept busy, as a server under steady traffic keeps it): on a loaded
        # machine the turn-taking above measures the scheduler's wake-up of redis-server as much as the store.
        back_to_back: dict[str, list[float]] = {"in_process": [], "cached_lists": []}
        back_to_back["cached_lists_outbox_watch"] = []
        for name, engine_ in (("in_process", in_process_engine), ("cached_lists", cached_engine), ("cached_lists_outbox_watch", cached_engine)):
            cache.watch = watch_cost.pop("watch") if name == "cached_lists_outbox_watch" else None
            for user in users:
                t = time.perf_counter()
                engine_.serve(ServeRequest(user, k=10, consent=granted))
                back_to_back[name].append(time.perf_counter() - t)
        cache.watch = None
        watch_cost["closing"].close()
        del watch_cost["closing"]
        return {
            "back_to_back": {name: percentiles(times) for name, times in back_to_back.items()},
            "back_to_back_cached_to_in_process_p50": round(
                percentiles(back_to_back["cached_lists"])["p50_ms"] / percentiles(back_to_back["in_process"])["p50_ms"], 3
            ),
            "in_process_interleaved": percentiles(in_process),
            "cached_lists": percentiles(cached), "cached_lists_requests": len(users), "hits": hits,
            "factors": percentiles(from_factors), "fill_s": round(fill_s, 2), "filled": len(distinct),
            "outbox_watch": watch_cost,
        }
    finally:
        keys = list(store.client.scan_iter(match=f"{store.namespace}:*", count=1000))
        if keys:
            store.client.delete(*keys)


def outbox_watch_cost(store, users: list[str]) -> dict:  # noqa: ANN001
    """The serving path's check of the online store's outbox (:class:`audits.online_store.OutboxWatch`) on an
    empty outbox in a SQLite store at head: one :meth:`holds` per request (a set lookup, the database read at
    most once a second) and one forced read of the outbox; the watch itself is returned under ``watch`` for the
    back-to-back run (``closing``: the store to close after it)."""
    import tempfile

    from audits.db import open_store
    from audits.online_store import OutboxWatch

    folder = tempfile.mkdtemp(prefix="recgov-bench-outbox-")
    db = open_store(f"sqlite:///{folder}/bench.db")
    watch = OutboxWatch(db.engine)
    keys = [store.subject_key(u) for u in users]
    watch.refresh(force=True)
    t = time.perf_counter()
    for key in keys:
        watch.holds(key, store)
    holds_us = (time.perf_counter() - t) / max(len(keys), 1) * 1e6
    t = time.perf_counter()
    for _ in range(50):
        watch.refresh(force=True)
    refresh_ms = (time.perf_counter() - t) / 50 * 1e3
    return {"holds_us_per_request": round(holds_us, 2), "refresh_ms": round(refresh_ms, 3), "refresh_every_s": watch.interval_s,
            "watch": watch, "closing": db}


if __name__ == "__main__":
    raise SystemExit(main())
