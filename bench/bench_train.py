"""Training benchmark: recgov's whole training path against raw ``implicit`` in the same run.

recgov's path is everything ``recgov train`` does to the data after loading:
conversion of events to the confidence matrix, hashing the data for the model's
version id, and the ALS fit. The reference is ``implicit``'s ALS ``fit`` alone on
a matrix built beforehand (the least a raw ``implicit`` user has to run), with the
same parameters and the same thread settings (BLAS limited to one thread, as
``implicit`` recommends). The two alternate, ``--repeats`` times each, and the
medians are compared.

Run:  python bench/bench_train.py [--interactions 2000000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

import numpy as np  # noqa: E402
from implicit.als import AlternatingLeastSquares  # noqa: E402

from recommender.als import ALSRecommender, blas_single_thread  # noqa: E402
from recommender.feedback import FeedbackConfig, to_implicit  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = generate(SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0))
    gen_s = time.perf_counter() - t0
    events = data.events
    feedback = FeedbackConfig()
    params = dict(factors=args.factors, regularization=0.05, alpha=2.0, iterations=args.iterations, random_state=0)
    reference_matrix = to_implicit(events, feedback).matrix

    raw_times, recgov_times, convert_times = [], [], []

    def run_raw() -> AlternatingLeastSquares:
        with blas_single_thread():
            raw = AlternatingLeastSquares(**params, use_gpu=False, calculate_training_loss=False)
            t = time.perf_counter()
            raw.fit(reference_matrix, show_progress=False)
            raw_times.append(time.perf_counter() - t)
        return raw

    def run_recgov() -> tuple[ALSRecommender, object]:
        t = time.perf_counter()
        matrix = to_implicit(events, feedback)
        convert_times.append(time.perf_counter() - t)
        model = ALSRecommender(**params).fit(matrix)
        recgov_times.append(time.perf_counter() - t)
        assert model.version_id_
        return model, matrix

    # Alternate which side goes first so that neither always runs on a warmer
    # (or more loaded) machine.
    for i in range(args.repeats):
        if i % 2 == 0:
            raw = run_raw()
            model, matrix = run_recgov()
        else:
            model, matrix = run_recgov()
            raw = run_raw()

    # Same inputs, same parameters, same seed: the factors must agree.
    same = bool(np.allclose(model.item_factors_, raw.item_factors, atol=1e-4))
    raw_s, recgov_s = statistics.median(raw_times), statistics.median(recgov_times)
    result = {
        "benchmark": "train",
        "interactions": int(len(events)),
        "matrix": {"users": matrix.n_users, "items": matrix.n_items, "nnz": matrix.nnz},
        "params": params,
        "repeats": args.repeats,
        "generate_s": round(gen_s, 3),
        "raw_implicit_fit_s": round(raw_s, 3),
        "recgov_train_path_s": round(recgov_s, 3),
        "recgov_conversion_s": round(statistics.median(convert_times), 3),
        "ratio": round(recgov_s / raw_s, 3),
        "target_ratio": 1.15,
        "same_factors_as_raw": same,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"data: {result['interactions']:,} events -> {matrix.n_users:,} users x {matrix.n_items:,} items, {matrix.nnz:,} pairs")
        print(f"raw implicit fit          {raw_s:8.3f} s  (median of {args.repeats})")
        print(f"recgov training path      {recgov_s:8.3f} s  (conversion {result['recgov_conversion_s']:.3f} s)")
        print(f"ratio recgov / implicit   {result['ratio']:8.3f}   (target <= 1.15); same factors: {same}")
    return 0 if result["ratio"] <= 1.15 else 1


if __name__ == "__main__":
    raise SystemExit(main())
