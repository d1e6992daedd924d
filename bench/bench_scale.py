"""Scale benchmark: the full EU-pack gate on 1M, 4M and 20M synthetic events, against raw ``implicit`` in the same run.

For each size a fresh child process (so that its peak resident memory is its
own, read from ``os.wait4``'s ``ru_maxrss``: numpy's buffers are invisible to
tracemalloc) does what a platform does before a release:

1. generates the synthetic data set (MovieLens-shaped sizes; 20M has
   MovieLens-20M's 138,000 users and 27,000 items) and its consent export
   (:func:`governance.consent.synthetic_export.synthetic_consent_export`:
   refusals, withdrawals and GPC opt-outs), and imports the export into a fresh
   embedded store (:func:`governance.consent.imports.import_consent`, under the
   pack); these are set-up, timed but not part of the gate;
2. runs the gate as ``recgov gate DATA --pack eu-gdpr-dsa --baseline BASE``
   does (:func:`governance.audit.run_audit` with ``train=True``): consent and
   retention filter, validation, tuning and training with their records, the
   offline evaluation against the baselines with the pack's re-ranking,
   fairness with bootstrap intervals, proxy leakage, drift against the
   baseline (the data set's earliest fifth of events), the decision and its
   records. Every stage is timed exclusively (a stage nested in another is
   subtracted from it), so that the time in ML (matrix building, fits, tuning,
   scoring) and the gate's own overhead add up to the wall time;
3. runs the raw ``implicit`` path on the same events with the gate's tuned
   parameters: build the user x item confidence matrix, fit, and recommend 10
   items to every user with ``implicit``'s ``recommend`` (seen items filtered):
   the least a platform without governance runs. The ratio is gate / raw.

The machine may be shared: the 1-minute load average is printed before and
after each size, and timings under load are inflated.

Run:  python bench/bench_scale.py [--sizes 1m,4m,20m] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

SIZES: dict[str, tuple[int, int, int]] = {
    "1m": (6040, 3706, 1_000_000),
    "4m": (24_160, 7412, 4_000_000),
    "20m": (138_000, 27_000, 20_000_000),
}
"""Size name -> (users, items, events): ML-1M's counts, four times ML-1M's users and twice its items, ML-20M's."""

ML_STAGES = ("matrix", "tuning", "fit", "scoring")
"""The stages a recommender without governance runs too (building the matrix, tuning, fitting, scoring lists)."""
TARGETS = {"20m_seconds": 15 * 60, "20m_peak_gb": 8.0, "overhead_share": 0.25, "growth_4m_to_20m": 5.0}


class _Stages:
    """Exclusive wall time per stage: time inside a nested stage is charged to it, not to its caller."""

    def __init__(self, report_after: float = 10.0) -> None:
        self.report_after = report_after
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [stage, started, nested wall, cpu at start, nested cpu]

    def wrap(self, stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [stage, time.perf_counter(), 0.0, _cpu_s(), 0.0]
            self._stack.append(frame)
            try:
                return func(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = time.perf_counter() - frame[1]
                cpu = _cpu_s() - frame[3]
                self.seconds[stage] += spent - frame[2]
                self.cpu[stage] += cpu - frame[4]
                self.calls[stage] += 1
                if spent >= self.report_after:
                    # A size that runs for long still says where its time went if it never finishes.
                    print(f"[{time.strftime('%H:%M:%S')}] {func.__qualname__} ({stage}): {spent:.1f} s", file=sys.stderr, flush=True)
                if self._stack:
                    self._stack[-1][2] += spent
                    self._stack[-1][4] += cpu

        timed.__wrapped_stage__ = stage  # type: ignore[attr-defined]
        return timed


def _instrument(stages: _Stages) -> None:
    """Wrap the gate's stages, wherever they were imported to, in exclusive timers."""
    import governance.audit
    import governance.collect
    import governance.collect_fairness
    import governance.suppressed
    import governance.tradeoff
    import governance.training
    import governance.training_filter
    import recommender.data
    import recommender.drift
    import recommender.evaluate
    import recommender.feedback
    import recommender.pipeline
    import recommender.scoring
    import recommender.split
    import recommender.tuning
    import recommender.validate
    from recommender.base import Recommender

    plan: list[tuple[Any, str, str]] = [
        (governance.training_filter, "filter_training_events", "consent_filter"),
        (governance.suppressed, "drop_erased_events", "consent_filter"),
        (recommender.validate, "validate_events", "validation"),
        (recommender.drift, "drift_statistics", "drift"),
        (recommender.feedback, "to_implicit", "matrix"),
        (recommender.split, "split", "matrix"),
        (recommender.split, "train_test_matrices", "matrix"),
        (recommender.tuning, "tune_als", "tuning"),
        (recommender.tuning, "tune_item_knn", "tuning"),
        (recommender.scoring, "factor_top_k", "scoring"),
        (recommender.scoring, "ranked_lists", "scoring"),
        (recommender.evaluate, "compare_models", "evaluation_metrics"),
        (governance.tradeoff, "rerank_evaluation", "rerank"),
        (governance.collect_fairness, "fairness_facts", "fairness"),
        (governance.collect, "privacy_facts", "privacy"),
        (governance.training, "_record_training", "records"),
        (governance.training, "_record_model", "records"),
        (governance.audit, "_decide_and_record", "records"),
    ]
    for module, name, stage in plan:
        original = getattr(module, name)
        timed = stages.wrap(stage, original)
        for loaded in list(sys.modules.values()):
            mod_name = getattr(loaded, "__name__", "") or ""
            if mod_name.startswith(("recommender", "governance")) and getattr(loaded, name, None) is original:
                setattr(loaded, name, timed)
    Recommender.fit = stages.wrap("fit", Recommender.fit)  # type: ignore[method-assign]
    Recommender.recommend_index = stages.wrap("scoring", Recommender.recommend_index)  # type: ignore[method-assign]
    recommender.data.Dataset.content_hash = stages.wrap("hashing", recommender.data.Dataset.content_hash)  # type: ignore[method-assign]
    recommender.data.Dataset.content_hashes = stages.wrap("hashing", recommender.data.Dataset.content_hashes)  # type: ignore[method-assign]


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_s() -> float:
    """CPU seconds this process has used (all threads): on a shared machine, what the work cost when wall time is inflated."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _raw_implicit(events: Any, params: dict[str, Any]) -> dict[str, Any]:
    """What a platform without governance runs: the confidence matrix, one fit, top-10 for every user."""
    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    users = events["user_id"].astype("category").cat.codes.to_numpy()
    items = events["item_id"].astype("category").cat.codes.to_numpy()
    conf = np.ones(len(events), dtype=np.float32)
    matrix = sp.csr_matrix((conf, (users, items)), shape=(int(users.max()) + 1, int(items.max()) + 1))
    matrix.sum_duplicates()
    built = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(**params, use_gpu=False, calculate_training_loss=False)
        model.fit(matrix, show_progress=False)
        fitted = time.perf_counter()
        all_users = np.arange(matrix.shape[0])
        for s in range(0, len(all_users), 8192):
            block = all_users[s : s + 8192]
            model.recommend(block, matrix[block], N=10, filter_already_liked_items=True)
    ended = time.perf_counter()
    return {
        "seconds": round(ended - started, 2),
        "matrix_s": round(built - started, 2),
        "fit_s": round(fitted - built, 2),
        "recommend_s": round(ended - fitted, 2),
        "nnz": int(matrix.nnz),
    }


def _child(size: str, seed: int, out: Path) -> None:
    """One size in this process: set-up, the gate with its stages timed, then raw implicit."""
    n_users, n_items, n_events = SIZES[size]
    home = Path(tempfile.mkdtemp(prefix=f"recgov-scale-{size}-"))
    os.environ["RECGOV_HOME"] = str(home)
    os.environ.pop("RECGOV_DATABASE_URL", None)

    from audits import open_store
    from governance.audit import run_audit
    from governance.consent.imports import import_consent
    from governance.consent.synthetic_export import synthetic_consent_export, write_consent_export
    from governance.packs import resolve_pack
    from governance.policy import load_pack
    from recommender.data import Dataset
    from recommender.synthetic import SyntheticSpec, generate

    result: dict[str, Any] = {"size": size, "users": n_users, "items": n_items, "events": n_events, "seed": seed}
    result["load_before"] = _load()
    t = time.perf_counter()
    # Half a year of events ending today: all of it inside the pack's 730-day retention window.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spec = SyntheticSpec(
        n_users=n_users, n_items=n_items, n_interactions=n_events, seed=seed, start=end - timedelta(days=182), end=end
    )
    dataset = generate(spec)
    result["generate_s"] = round(time.perf_counter() - t, 2)
    result["generated_events"] = int(len(dataset.events))
    result["rss_after_generate_mb"] = round(_maxrss_mb())
    loaded = load_pack(resolve_pack("eu-gdpr-dsa"))
    purposes = loaded.pack.consent.purposes
    t = time.perf_counter()
    export = synthetic_consent_export(
        dataset,
        opt_in_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_in"),
        opt_out_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_out"),
        random_state=seed,
    )
    consent_file = write_consent_export(export, home / "consent.parquet")
    del export
    store = open_store()
    report = import_consent(store, consent_file, pack=loaded)
    result["consent_import_s"] = round(time.perf_counter() - t, 2)
    result["consent_records"] = {"rows": report.rows, "added": report.added, "invalid": report.invalid}
    ev = dataset.events
    cut = ev["timestamp"].quantile(0.2)
    baseline = Dataset(events=ev[ev["timestamp"] <= cut].reset_index(drop=True), name=f"{dataset.name}-earliest-fifth")
    result["rss_before_gate_mb"] = round(_maxrss_mb())

    stages = _Stages()
    _instrument(stages)
    result["load_gate_start"] = _load()
    cpu = _cpu_s()
    t = time.perf_counter()
    outcome = run_audit(
        loaded, dataset, store=store, out_dir=home / "gate", models_dir=home / "models", train=True, baseline=baseline
    )
    gate_s = time.perf_counter() - t
    result["gate_cpu_s"] = round(_cpu_s() - cpu, 1)
    store.close()
    result["load_gate_end"] = _load()
    result["gate_s"] = round(gate_s, 2)
    result["gate_passed"] = outcome.decision.passed
    result["gate_counts"] = outcome.report.counts()
    result["gate_not_passed"] = sorted(r.rule_id for r in outcome.report.results if r.status.value != "pass")
    result["rss_after_gate_mb"] = round(_maxrss_mb())
    timed = dict(stages.seconds)
    timed["other"] = gate_s - sum(timed.values())
    result["stages_s"] = {k: round(v, 2) for k, v in sorted(timed.items(), key=lambda kv: -kv[1])}
    cpu_by_stage = dict(stages.cpu)
    cpu_by_stage["other"] = result["gate_cpu_s"] - sum(cpu_by_stage.values())
    # CPU seconds (all threads) per stage: on a loaded machine these say where the work went when wall times are inflated.
    result["stages_cpu_s"] = {k: round(v, 2) for k, v in sorted(cpu_by_stage.items(), key=lambda kv: -kv[1])}
    result["stage_calls"] = dict(stages.calls)
    ml = sum(timed.get(s, 0.0) for s in ML_STAGES)
    result["ml_s"] = round(ml, 2)
    result["overhead_s"] = round(gate_s - ml, 2)
    result["overhead_share"] = round((gate_s - ml) / gate_s, 3)
    evaluation = outcome.facts.evaluation
    result["test_ndcg@10"] = {m: f.metrics.get("ndcg") for m, f in evaluation.models.items()} if evaluation else None

    from audits.models import ModelVersion, TrainingRun

    store = open_store()
    with store.session() as session:
        model = session.get(ModelVersion, outcome.report.model_version)
        run = session.get(TrainingRun, model.training_run_id)
        params = {k: run.params[k] for k in ("factors", "regularization", "alpha", "iterations")}
        result["als_params"] = params
        result["trained_on_events"] = ((run.params.get("privacy_filter") or {}).get("events") or {}).get("kept")
    store.close()
    raw = _raw_implicit(dataset.events, {**params, "random_state": seed})
    result["raw_implicit"] = raw
    result["ratio_gate_to_raw"] = round(gate_s / raw["seconds"], 2)
    result["load_after"] = _load()
    out.write_text(json.dumps(result))


def _run_size(size: str, seed: int) -> dict[str, Any]:
    """Run one size in a child process; its peak memory is the child's own ``ru_maxrss``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.Popen([sys.executable, __file__, "--child", size, "--seed", str(seed), "--child-out", str(out)])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            return {"size": size, "error": f"child exited with {proc.returncode}", "peak_rss_mb": round(usage.ru_maxrss / 1024)}
        result = json.loads(out.read_text())
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    result["child_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    return result


def _verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["size"]: r for r in runs if "error" not in r}
    out: dict[str, Any] = {}
    if "20m" in by:
        out["20m_under_15_min"] = by["20m"]["gate_s"] < TARGETS["20m_seconds"]
        out["20m_under_8_gb"] = by["20m"]["peak_rss_mb"] / 1024 < TARGETS["20m_peak_gb"]
    if "4m" in by and "20m" in by:
        growth = by["20m"]["gate_s"] / by["4m"]["gate_s"]
        out["time_growth_4m_to_20m"] = round(growth, 2)
        out["at_most_linear"] = growth <= TARGETS["growth_4m_to_20m"]
    out["overhead_under_25%"] = {s: r["overhead_share"] < TARGETS["overhead_share"] for s, r in by.items()}
    return out


def _print_table(runs: list[dict[str, Any]]) -> None:
    print(f"{'size':>5} {'events':>11} {'gate s':>8} {'peak MB':>8} {'ML s':>8} {'overhead':>9} {'raw s':>7} {'ratio':>6} {'load':>5}")
    for r in runs:
        if "error" in r:
            print(f"{r['size']:>5} {r['error']}")
            continue
        print(
            f"{r['size']:>5} {r['generated_events']:>11,} {r['gate_s']:>8.1f} {r['peak_rss_mb']:>8,} {r['ml_s']:>8.1f} "
            f"{r['overhead_share']:>9.1%} {r['raw_implicit']['seconds']:>7.1f} {r['ratio_gate_to_raw']:>6.1f} {r['load_gate_end']!s:>5}"
        )
        print("      stages: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items()))
        print(f"      gate CPU {r['gate_cpu_s']:.1f} s; by stage: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_cpu_s"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1m,4m,20m", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.seed, args.child_out)
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    runs = []
    for size in sizes:
        runs.append(_run_size(size, args.seed))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    doc = {"benchmark": "scale", "hardware": hardware(), "targets": TARGETS, "runs": runs, "verdict": _verdict(runs)}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_table(runs)
        print("verdict:", json.dumps(doc["verdict"]))
        print("hardware:", json.dumps(doc["hardware"]))
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
