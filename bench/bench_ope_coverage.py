"""How often each slate estimator's 95% interval covers the truth, over many simulated logs.

The world is the one of the slate estimators' tests (``tests/ope/ope_world.py``: a
Plackett-Luce logger over five items, three positions, a position-based click
model whose truth is computed exactly). For each of three targets (the
deterministic top 3, a Plackett-Luce policy at temperature 0.5, an epsilon-slots
policy), ``--seeds`` logs of ``--n`` slates each are drawn (seeds 100 on, the
same as the test's), and each estimator (standard, independent, cascade IPS and
the pseudo-inverse) reports whether its percentile-bootstrap interval (300
resamples) holds the truth.

The suite runs the first seeds of this sweep (``test_slate_interval_coverage_over_seeds``);
this is the full sweep, held to the same floor of 90% (``--floor``). Exit status 1
when an estimator's coverage falls below it.

Run: ``python bench/bench_ope_coverage.py`` (100 seeds: about a minute of one core
per target); ``--seeds 1000`` for a finer figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from _hardware import hardware

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ope"))

from ope_world import coverage_over_seeds  # noqa: E402  (the tests' simulated world)

from recommender.ope import SlatePolicy  # noqa: E402

TARGETS: dict[str, SlatePolicy | str] = {
    "deterministic": "deterministic",
    "pl": SlatePolicy("plackett_luce", temperature=0.5),
    "epsilon": SlatePolicy("epsilon_slots", epsilon=0.3, explore=(1, 2)),
}


def main() -> int:
    """Run the sweep, print its figures as JSON; 1 when some estimator covers less than the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--n", type=int, default=5000, help="slates per log")
    parser.add_argument("--floor", type=float, default=0.90, help="the coverage every estimator must reach")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of: " + ", ".join(TARGETS))
    args = parser.parse_args()
    rows = {}
    below = []
    for name in args.targets.split(","):
        start = time.perf_counter()
        covered = coverage_over_seeds(TARGETS[name], range(args.seeds), args.n)
        rows[name] = {est: round(sum(hits) / len(hits), 4) for est, hits in covered.items()}
        rows[name]["seconds"] = round(time.perf_counter() - start, 1)
        below += [f"{name}/{est}" for est, hits in covered.items() if sum(hits) < args.floor * len(hits)]
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "n": args.n,
                "floor": args.floor,
                "two_se_at_95": round(2 * math.sqrt(0.95 * 0.05 / args.seeds), 4),
                "hardware": hardware(),
                "coverage": rows,
                "below_floor": below,
            },
            indent=2,
        )
    )
    return 1 if below else 0


if __name__ == "__main__":
    raise SystemExit(main())
