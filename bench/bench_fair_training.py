"""In-training fairness against post-processing, on the same synthetic data with its planted biases.

The data: the EU pack's calibration world (``policies/eu-gdpr-dsa.yaml``,
``reranking``): ``--users`` users, the logging policy's exposure bias 3x for the
``major`` providers, gender ``X`` drawn 4x to the ``independent`` providers,
one random 80/20 split per seed, default ALS. For every seed and every
reweighting asked for, :func:`governance.fair_training_tradeoff.training_tradeoff`
measures four lists on the same test users: plain ALS, ALS + the pack's
re-ranking (provider calibration), the reweighted ALS, and the reweighted ALS
re-ranked: NDCG@10, the consumer gap (``max - min`` of per-gender mean
NDCG@10), the provider exposure gap (``max_g |exposure ratio - 1|``, log
attention) and the seconds of the fit (plus re-ranking).

Reweightings (``--configs``, each ``side:attribute:strength``, see
:mod:`recommender.fair_training`): ``consumer:gender:1`` balances every gender's
share of the training confidence mass to its share of the users (Kamiran &
Calders' reweighing adapted to implicit feedback); ``provider:provider_group:s``
moves each provider group's mass share towards its share of the catalog.

Run:  python bench/bench_fair_training.py [--users 2000] [--seeds 1 2 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import cpu_model  # noqa: E402

import numpy as np  # noqa: E402

from governance.fair_training_tradeoff import training_tradeoff  # noqa: E402
from governance.policy import load_pack  # noqa: E402
from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.pipeline import run_evaluation  # noqa: E402
from recommender.split import SplitConfig  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402

PACK = Path(__file__).resolve().parents[1] / "policies" / "eu-gdpr-dsa.yaml"
DEFAULT_CONFIGS = ["consumer:gender:1", "consumer:gender:0.5", "provider:provider_group:0.25", "provider:provider_group:1"]
ROWS = ("als", "als+rerank", "als+fair", "als+fair+rerank")


def _config(text: str) -> dict:
    side, attribute, strength = text.split(":")
    return {"side": side, "attribute": attribute, "strength": float(strength)}


def run(users: int, seeds: list[int], configs: list[str], n_boot: int) -> dict:
    pack = load_pack(str(PACK))
    results: dict[str, dict[str, list[dict]]] = {c: {} for c in configs}
    weights: dict[str, list[dict]] = {c: [] for c in configs}
    for seed in seeds:
        dataset = generate(SyntheticSpec(n_users=users, exposure_bias=3.0, group_provider_affinity={"X": 4.0}, seed=seed))
        ev = run_evaluation(
            dataset, split_config=SplitConfig(kind="random", test_fraction=0.2, random_state=seed),
            feedback=FeedbackConfig(), k=10, tune=False, als_params={}, random_state=0,
        )  # fmt: skip
        for c in configs:
            out = training_tradeoff(ev, dataset, pack, _config(c), attribute="gender", n_boot=n_boot)
            weights[c].append(out["fairness_weights"])
            for name, row in out["rows"].items():
                results[c].setdefault(name, []).append({"seed": seed, **{k: row[k] for k in ("ndcg", "consumer_gap", "exposure_gap", "seconds")}})
    summary: dict[str, dict[str, dict]] = {}
    for c in configs:
        summary[c] = {}
        plain = results[c]["als"]
        for name in ROWS:
            rows = results[c][name]
            agg = {}
            for key in ("ndcg", "consumer_gap", "exposure_gap", "seconds"):
                values = np.array([r[key] for r in rows], dtype=float)
                agg[key] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
            if name != "als":
                for key, base in (("ndcg", "ndcg_lost"), ("consumer_gap", "consumer_gap_closed"), ("exposure_gap", "exposure_gap_closed")):
                    rel = np.array([1 - r[key] / p[key] for r, p in zip(rows, plain)], dtype=float)
                    agg[base] = {"mean": float(rel.mean()), "min": float(rel.min()), "max": float(rel.max())}
            summary[c][name] = agg
    return {
        "users": users,
        "seeds": seeds,
        "pack": PACK.name,
        "configs": configs,
        "fairness_weights": weights,
        "per_seed": results,
        "summary": summary,
        "load_average": os.getloadavg(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def markdown(doc: dict) -> str:
    lines = [
        f"{doc['users']:,} users, seeds {', '.join(map(str, doc['seeds']))}; means over seeds (min to max in brackets); "
        "lost / closed are relative to plain ALS on the same seed.",
        "",
        "| reweighting | lists | NDCG@10 | NDCG lost | consumer gap (gender) | closed | exposure gap | closed | fit (+ re-rank) s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(agg: dict, key: str, pct: bool = False) -> str:
        a = agg.get(key)
        if a is None:
            return "-"
        if pct:
            return f"{a['mean']:+.1%} [{a['min']:+.1%}, {a['max']:+.1%}]"
        return f"{a['mean']:.4f} [{a['min']:.4f}, {a['max']:.4f}]"

    for c in doc["configs"]:
        for name in ROWS:
            agg = doc["summary"][c][name]
            lines.append(
                f"| {c} | {name} | {f(agg, 'ndcg')} | {f(agg, 'ndcg_lost', True)} | {f(agg, 'consumer_gap')} | "
                f"{f(agg, 'consumer_gap_closed', True)} | {f(agg, 'exposure_gap')} | {f(agg, 'exposure_gap_closed', True)} | "
                f"{agg['seconds']['mean']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--n-boot", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args()
    started = time.perf_counter()
    doc = run(args.users, args.seeds, args.configs, args.n_boot)
    doc["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(json.dumps(doc["summary"], indent=2))
        print()
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
