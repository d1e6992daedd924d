"""How often a consumer-gap rule fails when there is nothing to find, and how often its intervals cover.

Draws datasets of per-user NDCG-like values (55% zeros, the rest Beta(2, 3))
with group labels assigned at random, so every gap between groups is noise.
For each number of groups it measures, over ``--runs`` datasets:

* the share of datasets where a ``consumer_gap`` rule (``judge: ci``,
  ``max_difference: 0``, the strictest bound) fails, uncorrected (any pair's raw
  p-value at most alpha), with Holm and with Benjamini-Hochberg;
* the coverage of the true gap (0) by each pair's 95% interval: Welch's (what
  the facts hold) and the percentile bootstrap of the difference (what they held
  before).

Run: ``python bench/bench_gap_tests.py --runs 4000``; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

import numpy as np
from _hardware import hardware

import governance.checks  # noqa: F401  (registers the checks)
from governance.checks._significance import adjust
from governance.facts import AuditFacts, FairnessFacts, GroupFigure, GroupMetricFacts
from governance.registry import get_check
from recommender import fairness as F
from recommender.significance import difference_interval

ALPHA = 0.05


def draw(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Values and permuted group codes for groups of ``sizes``."""
    n = sum(sizes)
    values = np.where(rng.random(n) < 0.55, 0.0, rng.beta(2.0, 3.0, n))
    return values, rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def one(values: np.ndarray, codes: np.ndarray, n_groups: int, n_boot: int, seed: int) -> dict[str, float]:
    """Verdicts and coverage for one dataset."""
    stats = [
        (values[codes == g].mean(), values[codes == g].std(ddof=1), int((codes == g).sum())) for g in range(n_groups)
    ]
    groups = {f"g{g}": GroupFigure(n=n, value=float(m), sd=float(s)) for g, (m, s, n) in enumerate(stats)}
    facts = AuditFacts(fairness=FairnessFacts(consumer={"a": {"ndcg": GroupMetricFacts(groups=groups)}}))
    cls = get_check("consumer_gap")
    out: dict[str, float] = {}
    for correction in ("holm", "bh"):
        config = cls.Config.model_validate(
            {"attribute": "a", "max_difference": 0.0, "judge": "ci", "correction": correction}
        )
        result = cls().evaluate(config, facts, None)
        out[correction] = float(result.status.value == "fail")
        raw = [h["p_value"] for h in result.evidence["tests"]["hypotheses"]]
    out["uncorrected"] = float(min(raw) <= ALPHA)
    out["holm_check"] = float(min(adjust(raw, "holm")) <= ALPHA)
    draws = F.bootstrap_means(values, codes, n_groups, n_boot=n_boot, random_state=seed)[:, :, 0]
    welch = boot = pairs = 0
    for a, b in itertools.combinations(range(n_groups), 2):
        (ma, sa, na), (mb, sb, nb) = stats[a], stats[b]
        low, high = difference_interval(ma, sa / math.sqrt(na), na, mb, sb / math.sqrt(nb), nb, 0.95)
        welch += low <= 0.0 <= high
        b_low, b_high = np.quantile(draws[:, a] - draws[:, b], [0.025, 0.975])
        boot += b_low <= 0.0 <= b_high
        pairs += 1
    out["welch_coverage"], out["bootstrap_coverage"] = welch / pairs, boot / pairs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    designs = {
        "2 groups (40, 260)": [40, 260],
        "5 groups (40..260)": [40, 60, 90, 150, 260],
        "10 groups (30..200)": [30, 40, 50, 60, 80, 100, 120, 150, 170, 200],
    }
    rng = np.random.default_rng(args.seed)
    rows = {}
    for name, sizes in designs.items():
        start = time.perf_counter()
        sums: dict[str, float] = {}
        for run in range(args.runs):
            for key, value in one(*draw(rng, sizes), len(sizes), args.n_boot, run).items():
                sums[key] = sums.get(key, 0.0) + value
        rows[name] = {k: round(v / args.runs, 4) for k, v in sums.items()} | {
            "seconds": round(time.perf_counter() - start, 1)
        }
    margin = round(3 * math.sqrt(ALPHA * (1 - ALPHA) / args.runs), 4)
    print(
        json.dumps(
            {
                "runs": args.runs,
                "n_boot": args.n_boot,
                "alpha": ALPHA,
                "three_se": margin,
                "hardware": hardware(),
                "designs": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
