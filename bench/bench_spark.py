"""The governed batch on Spark beside the same batch in process, and raw ``implicit``, in one run.

Both engines run ``recgov batch`` end to end on the same synthetic events under the California
pack (a share of the subjects opted out by GPC, so the filter has work): the pack's filter, ALS
with recgov's default parameters, every allowed user's governed list (candidates, the pack's
re-rankers, explanation tags) and its decision record, chained per partition, written as Parquet
and anchored on the trail. The reference is ``implicit``'s ALS ``fit`` alone on the kept events'
matrix built beforehand (what other benchmarks compare against). Spark runs with the master
given (``local[2]`` by default, the two cores here); its session start-up is reported apart.

Run:  python bench/bench_spark.py [--interactions 1000000] [--master local[2]] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--opted-out", type=float, default=0.05, help="share of subjects opted out by GPC")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    os.environ["RECGOV_HOME"] = str(home)
    import numpy as np
    from implicit.als import AlternatingLeastSquares

    from audits import open_store
    from governance.packs import resolve_pack
    from governance.policy import load_pack
    from governance.privacy import filter_training_events, record_consent_from_request
    from governance.spark.batch import batch_lists
    from governance.spark.session import spark_session
    from recommender.als import blas_single_thread
    from recommender.feedback import FeedbackConfig, to_implicit
    from recommender.synthetic import SyntheticSpec, generate

    t = time.perf_counter()
    data = generate(SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0))
    generate_s = time.perf_counter() - t
    now = datetime(2024, 7, 2, tzinfo=UTC)
    pack = load_pack(resolve_pack("california-ccpa"))
    store = open_store()
    subjects = sorted(data.events["user_id"].astype(str).unique())
    rng = np.random.default_rng(0)
    for subject in rng.choice(subjects, size=int(len(subjects) * args.opted_out), replace=False):
        record_consent_from_request(store, str(subject), pack=pack, headers={"Sec-GPC": "1"})

    result: dict = {
        "events": len(data.events), "users": len(subjects), "items": args.items, "k": args.k, "master": args.master,
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "generate_s": round(generate_s, 2),
    }  # fmt: skip

    # raw implicit: the fit alone on the kept events' matrix, built beforehand
    kept, _ = filter_training_events(data, pack, store, now=now, record=False)
    matrix = to_implicit(kept.events, FeedbackConfig()).matrix
    with blas_single_thread():
        raw = AlternatingLeastSquares(factors=64, regularization=0.05, alpha=2.0, iterations=15, random_state=0, use_gpu=False, calculate_training_loss=False)
        t = time.perf_counter()
        raw.fit(matrix, show_progress=False)
        result["raw_implicit_fit_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    inproc = batch_lists(data, pack, store, out=str(home / "inprocess"), engine="inprocess", k=args.k, models_dir=home / "models", now=now)
    result["inprocess"] = {"total_s": round(time.perf_counter() - t, 2), **inproc.to_dict()["timings"], "records": inproc.lists["records"]}

    t = time.perf_counter()
    spark = spark_session(args.master)
    session_s = time.perf_counter() - t
    t = time.perf_counter()
    run = batch_lists(data, pack, store, out=str(home / "spark"), engine="spark", k=args.k, models_dir=home / "models", now=now, spark=spark)
    result["spark"] = {"session_s": round(session_s, 2), "total_s": round(time.perf_counter() - t, 2), **run.to_dict()["timings"], "records": run.lists["records"]}
    spark.stop()
    store.close()
    raw_s = result["raw_implicit_fit_s"]
    result["ratio_inprocess_to_raw"] = round(result["inprocess"]["total_s"] / raw_s, 2)
    result["ratio_spark_to_raw"] = round(result["spark"]["total_s"] / raw_s, 2)
    result["ratio_spark_to_inprocess"] = round(result["spark"]["total_s"] / result["inprocess"]["total_s"], 2)
    try:
        result["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    except OSError:
        pass
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['events']:,} events, {result['users']:,} users, {args.items:,} items on {result['cpu']} ({result['cores']} cores), Spark {args.master}")
        print(f"raw implicit fit              {raw_s:8.2f} s")
        print(f"in-process batch (all stages) {result['inprocess']['total_s']:8.2f} s  ratio to raw {result['ratio_inprocess_to_raw']}")
        print(f"Spark batch (all stages)      {result['spark']['total_s']:8.2f} s  ratio to raw {result['ratio_spark_to_raw']}  (+{session_s:.1f} s session start)")
        print(f"stages in process: {result['inprocess']}")
        print(f"stages on Spark:   {result['spark']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
