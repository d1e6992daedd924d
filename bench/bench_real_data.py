"""Real data, real results: load, validate and evaluate published data sets as a user would.

For each DATA path given (a MovieLens directory, a Last.fm file, any layout of
:mod:`recommender.datasets`), the benchmark times the load, runs validation
(findings, and the share of users called bots), and evaluates ALS against
popularity, random and item-kNN on one split, as ``recgov evaluate`` does, with
the same defaults (random 80/20 split, ratings of 4 and more are positives,
tuning on a validation split of the training data). Data sets are never shipped
with recgov: fetch them with ``recgov data download NAME``.

Run:  python bench/bench_real_data.py DATA [DATA ...] [--format NAME] [--trials 20] [--split random] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.loaders import load_data  # noqa: E402
from recommender.pipeline import run_evaluation  # noqa: E402
from recommender.split import SplitConfig  # noqa: E402
from recommender.validate import validate_events  # noqa: E402


def run(path: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    data = load_data(path, format=args.format)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate_events(data)
    validate_s = time.perf_counter() - t0
    n_users = int(data.events["user_id"].nunique())
    bot_rows = report.row_flags.get("bot_users")
    bot_users = int(data.events.loc[bot_rows, "user_id"].nunique()) if bot_rows is not None else 0
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
    return {
        "data": data.name,
        "n_events": data.n_events,
        "n_users": n_users,
        "n_items": int(data.events["item_id"].nunique()),
        "load_seconds": round(load_s, 3),
        "validate_seconds": round(validate_s, 3),
        "findings": {f.code: f.count for f in report.findings},
        "bot_user_share": round(bot_users / max(n_users, 1), 6),
        "evaluate_seconds": doc["seconds"],
        f"ndcg@{args.k}": {name: round(m["metrics"]["ndcg"], 4) for name, m in doc["models"].items()},
        f"recall@{args.k}": {name: round(m["metrics"]["recall"], 4) for name, m in doc["models"].items()},
        "als_params": doc["tuning"].get("als", {}).get("best_params"),
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
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    doc = {"machine": hardware(), "runs": [run(path, args) for path in args.data]}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for r in doc["runs"]:
            print(f"{r['data']}: {r['n_events']:,} events, bots {r['bot_user_share']:.2%} of users, "
                  f"ndcg@{args.k} {r[f'ndcg@{args.k}']}, load {r['load_seconds']} s, validate {r['validate_seconds']} s, "
                  f"evaluate {r['evaluate_seconds']} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
