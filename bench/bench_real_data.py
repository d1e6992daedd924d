"""Real data, real results: load, validate, evaluate, train, gate and serve published data sets as a user would.

For each DATA path given (a MovieLens directory, a Last.fm file, any layout of
:mod:`recommender.datasets`), the benchmark times the load, runs validation
(findings, and the share of users called bots), and evaluates ALS against
popularity, random and item-kNN on one split, as ``recgov evaluate`` does, with
the same defaults (random 80/20 split, ratings of 4 and more are positives,
tuning on a validation split of the training data). It then reports:

* **beyond accuracy**, per model: catalog coverage, exposure Gini, novelty,
  intra-list diversity, average popularity and long-tail share of the lists;
* **fairness by user attributes**: ndcg@k per group of every user attribute
  with few values (MovieLens' gender and occupation), with the worst/best
  ratio. A raw integer ``age`` has too many values to be a group, so the
  benchmark adds ``age_band`` in MovieLens-1M's bands (under 18, 18-24, 25-34,
  35-44, 45-49, 50-55, 56+): what a user would put in the users table to be
  judged by age;
* **timings**: training ALS on every event with the tuned parameters; the
  gate (``recgov audit`` through the Python API: train, record, evaluate, run
  every rule of ``--gate-pack`` and decide, on a throw-away SQLite store); and
  serving, p50/p99 of one governed list (consent granted, the EU pack's
  re-ranking, explanation tags, no decision record) against raw ``implicit``
  for the same users, BLAS on one thread as ``recgov serve`` pins it.

The machine's 1-minute load average is recorded with every timing: on a
shared machine, a timing means little without it. Data sets are never shipped
with recgov: fetch them with ``recgov data download NAME``.

Run:  python bench/bench_real_data.py DATA [DATA ...] [--format NAME] [--trials 20] [--split random]
      [--gate-pack baseline] [--requests 500] [--no-gate] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _hardware import hardware  # noqa: E402

from recommender.data import Dataset  # noqa: E402
from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.loaders import load_data  # noqa: E402
from recommender.pipeline import run_evaluation, train_als  # noqa: E402
from recommender.split import SplitConfig  # noqa: E402
from recommender.validate import validate_events  # noqa: E402

AGE_BANDS = ([0, 18, 25, 35, 45, 50, 56, 200], ["under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"])
"""MovieLens-1M's age bands (edges, labels): left-closed intervals."""
SEGMENTS = ("gender", "age_band", "occupation")
"""The user attributes whose groups are reported (those the data has)."""


def load_average() -> float | None:
    """The 1-minute load average, taken with each timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def with_age_bands(data: Dataset) -> Dataset:
    """``data`` with an ``age_band`` user attribute from a numeric ``age`` (unchanged without one)."""
    users = data.users
    if users is None or "age" not in users.columns or "age_band" in users.columns:
        return data
    age = pd.to_numeric(users["age"], errors="coerce")
    banded = users.assign(age_band=pd.cut(age, bins=AGE_BANDS[0], labels=AGE_BANDS[1], right=False).astype("string"))
    return replace(data, users=banded)


def fairness(models: dict[str, Any]) -> dict[str, Any]:
    """ndcg per group of each reported attribute, per model, with the worst/best ratio."""
    out: dict[str, Any] = {}
    for name, doc in models.items():
        per_attribute = {}
        for attribute, groups in (doc.get("segments") or {}).items():
            if attribute not in SEGMENTS:
                continue
            ndcg = {g: round(m["ndcg"], 4) for g, m in groups.items() if g != "unknown"}
            if ndcg:
                worst, best = min(ndcg.values()), max(ndcg.values())
                per_attribute[attribute] = {
                    "ndcg": ndcg, "users": {g: m["n_users"] for g, m in groups.items()},
                    "worst_to_best": round(worst / best, 3) if best else None,
                }  # fmt: skip
        out[name] = per_attribute
    return out


def time_training(data: Dataset, params: dict[str, Any] | None, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Fit ALS on every event with ``params`` (no tuning); the trained result and its timing."""
    load = load_average()
    t0 = time.perf_counter()
    trained = train_als(data, feedback=FeedbackConfig(rating_threshold=args.threshold), params=params, random_state=args.seed)
    return trained, {"seconds": round(time.perf_counter() - t0, 3), "load_average_1m": load}


def time_serving(data: Dataset, trained: Any, requests: int) -> dict[str, Any]:
    """p50/p99 of a governed list under the EU pack (consent granted) against raw ``implicit``."""
    from governance.consent.state import ConsentRecord
    from governance.policy import load_pack
    from governance.serving import ServeRequest, ServingEngine
    from recommender.als import blas_single_thread

    pack = load_pack(Path(__file__).resolve().parents[1] / "policies" / "eu-gdpr-dsa.yaml")
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
    matrix, model = trained.matrix, trained.model
    rows = np.arange(requests) % matrix.n_users
    engine = ServingEngine(pack, model, data.items)
    load = load_average()
    raw, governed = [], []
    with blas_single_thread():
        for r in rows:
            t = time.perf_counter()
            model.model_.recommend(int(r), matrix.matrix[int(r)], N=10)
            raw.append(time.perf_counter() - t)
        for r in rows:
            t = time.perf_counter()
            engine.serve(ServeRequest(str(matrix.user_ids[r]), k=10, consent=granted))
            governed.append(time.perf_counter() - t)
    ms = {name: np.array(v) * 1e3 for name, v in (("raw_implicit", raw), ("governed", governed))}
    return {
        "requests": requests, "load_average_1m": load,
        **{name: {"p50_ms": round(float(np.percentile(v, 50)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3)} for name, v in ms.items()},
    }  # fmt: skip


def time_gate(data: Dataset, pack_ref: str) -> dict[str, Any]:
    """``recgov audit DATA --pack PACK``: train, record, evaluate, run every rule and decide, timed.

    On a store of its own under ``RECGOV_HOME`` (a throw-away folder :func:`main` sets for the whole run).
    """
    import recgov

    home = Path(os.environ["RECGOV_HOME"])
    folder = Path(tempfile.mkdtemp(prefix="gate-", dir=home))
    store = recgov.open_store(f"sqlite:///{folder}/gate.db")
    try:
        pack = recgov.load_pack(pack_ref)
        load = load_average()
        t0 = time.perf_counter()
        outcome = recgov.audit(pack, data, store=store, out_dir=folder / "gate")
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    statuses = {r["rule_id"]: r["status"] for r in outcome.to_dict()["results"]}
    return {
        "pack": pack_ref, "passed": bool(outcome.decision.passed), "seconds": round(seconds, 3), "load_average_1m": load,
        "rules": statuses, "reasons": list(outcome.decision.reasons),
    }  # fmt: skip


def run(path: str, args: argparse.Namespace) -> dict:
    load = load_average()
    t0 = time.perf_counter()
    data = with_age_bands(load_data(path, format=args.format))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate_events(data)
    validate_s = time.perf_counter() - t0
    n_users = int(data.events["user_id"].nunique())
    bot_rows = report.row_flags.get("bot_users")
    bot_users = int(data.events.loc[bot_rows, "user_id"].nunique()) if bot_rows is not None else 0
    evaluate_load = load_average()
    evaluation = run_evaluation(
        data,
        split_config=SplitConfig(kind=args.split, test_fraction=0.2, random_state=args.seed),
        feedback=FeedbackConfig(rating_threshold=args.threshold),
        k=args.k,
        tune=args.trials > 0,
        n_trials=max(args.trials, 1),
        random_state=args.seed,
    )
    doc = evaluation.to_dict()
    als_params = doc["tuning"].get("als", {}).get("best_params")
    trained, training = time_training(data, als_params, args)
    return {
        "data": data.name,
        "n_events": data.n_events,
        "n_users": n_users,
        "n_items": int(data.events["item_id"].nunique()),
        "load_seconds": round(load_s, 3),
        "validate_seconds": round(validate_s, 3),
        "load_average_1m": load,
        "findings": {f.code: f.count for f in report.findings},
        "bot_user_share": round(bot_users / max(n_users, 1), 6),
        "evaluate_seconds": doc["seconds"],
        "evaluate_load_average_1m": evaluate_load,
        f"ndcg@{args.k}": {name: round(m["metrics"]["ndcg"], 4) for name, m in doc["models"].items()},
        f"recall@{args.k}": {name: round(m["metrics"]["recall"], 4) for name, m in doc["models"].items()},
        "beyond_accuracy": {name: {k: round(v, 4) for k, v in (m.get("beyond") or {}).items()} for name, m in doc["models"].items()},
        "fairness": fairness(doc["models"]),
        "als_params": als_params,
        "training": training,
        "serving": time_serving(data, trained, args.requests) if args.requests > 0 else None,
        "gate": time_gate(data, args.gate_pack) if args.gate else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="+", help="DATA paths of published data sets")
    parser.add_argument("--format", default=None, help="layout of the paths, when their files do not tell")
    parser.add_argument("--split", default="random", choices=["random", "time", "leave_last"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--trials", type=int, default=20, help="ALS tuning budget; 0 for no tuning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=500, help="served lists timed; 0 skips serving")
    parser.add_argument("--gate-pack", default="baseline", help="the pack of the timed gate (one that needs no consent records)")
    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=True, help="time the gate (an audit) too")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recgov-bench-") as home:
        os.environ["RECGOV_HOME"] = home  # the gate's models and files are thrown away with it
        doc = {"machine": hardware(), "runs": [run(path, args) for path in args.data]}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for r in doc["runs"]:
            serving = r["serving"]["governed"]["p50_ms"] if r["serving"] else None
            gate = f"{r['gate']['seconds']} s ({'pass' if r['gate']['passed'] else 'fail'})" if r["gate"] else None
            print(f"{r['data']}: {r['n_events']:,} events, bots {r['bot_user_share']:.2%} of users, "
                  f"ndcg@{args.k} {r[f'ndcg@{args.k}']}, load {r['load_seconds']} s, validate {r['validate_seconds']} s, "
                  f"evaluate {r['evaluate_seconds']} s, train {r['training']['seconds']} s, gate {gate}, "
                  f"serving p50 {serving} ms (load average {r['load_average_1m']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
