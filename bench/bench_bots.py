"""Bot detection benchmark: recall on planted bots, false positives on people, synthetic and real.

Synthetic: the generator plants bots of every style (scraper, crawler, click
farm, stealthy) with ground-truth labels on top of its simulated people, at
each ``--bot-events`` size; the benchmark reports, per style, the share of
planted bots that validation flags (recall), and the share of the simulated
people it flags (false positives). Real: each ``--real PATH`` (any DATA a
command takes: a MovieLens directory, a Last.fm file, ...) is validated as
it is, and the share of its users flagged is reported with the reasons; on a
set of real people (MovieLens users are people who rated at least 20 films on
a website) every flag is a false positive. Timings are of
:func:`~recommender.validate.validate_events` alone, data already loaded.

Run:  python bench/bench_bots.py [--users 20000] [--bots-per-style 50] [--real /path/to/ml-100k ...] [--json]
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

from recommender.bots import BOT_REASONS  # noqa: E402
from recommender.loaders import load_data  # noqa: E402
from recommender.synthetic import SyntheticSpec, bot_labels, generate  # noqa: E402
from recommender.validate import validate_events  # noqa: E402

STYLES = ["scraper", "crawler", "click_farm", "stealthy"]


def flagged_users(data, report) -> set[str]:  # noqa: ANN001
    """The users behind the ``bot_users`` finding."""
    return set(data.events.loc[report.row_flags["bot_users"], "user_id"].astype(str))


def synthetic_run(args: argparse.Namespace, bot_events: int) -> dict:
    spec = SyntheticSpec(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed,
        bot_users=args.bots_per_style * len(STYLES), bot_events_per_user=bot_events, bot_styles=STYLES,
    )  # fmt: skip
    data = generate(spec)
    t0 = time.perf_counter()
    report = validate_events(data)
    seconds = time.perf_counter() - t0
    flagged = flagged_users(data, report)
    labels = bot_labels(spec)
    recall = {}
    for style in STYLES:
        ids = [u for u, s in labels.items() if s == style]
        recall[style] = round(sum(u in flagged for u in ids) / len(ids), 4)
    humans_flagged = len(flagged - set(labels))
    finding = report.finding("bot_users")
    return {
        "bot_events_per_user": bot_events,
        "n_events": data.n_events,
        "recall_by_style": recall,
        "recall": round(sum(u in flagged for u in labels) / len(labels), 4),
        "humans_flagged": humans_flagged,
        "false_positive_share": round(humans_flagged / spec.n_users, 6),
        "reasons": {r: finding.details.get(r, 0) for r in BOT_REASONS} if finding else {},
        "validate_seconds": round(seconds, 3),
    }


def real_run(path: str, data_format: str | None) -> dict:
    t0 = time.perf_counter()
    data = load_data(path, format=data_format)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate_events(data)
    seconds = time.perf_counter() - t0
    n_users = int(data.events["user_id"].nunique())
    flagged = flagged_users(data, report)
    finding = report.finding("bot_users")
    return {
        "data": data.name,
        "n_events": data.n_events,
        "n_users": n_users,
        "users_flagged": len(flagged),
        "flagged_user_share": round(len(flagged) / max(n_users, 1), 6),
        "flagged_row_share": round(report.count("bot_users") / max(data.n_events, 1), 6),
        "reasons": {r: finding.details.get(r, 0) for r in BOT_REASONS} if finding else {},
        "other_findings": {f.code: f.count for f in report.findings if f.code != "bot_users"},
        "load_seconds": round(load_s, 3),
        "validate_seconds": round(seconds, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--bots-per-style", type=int, default=50)
    parser.add_argument("--bot-events", type=int, nargs="+", default=[200, 2000, 5000],
                        help="events of each bot account; one synthetic run per value")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", nargs="*", default=[], help="real data sets to validate (DATA paths)")
    parser.add_argument("--format", default=None, help="layout of the --real paths, when their files do not tell")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    doc = {
        "machine": hardware(),
        "synthetic": [synthetic_run(args, n) for n in args.bot_events],
        "real": [real_run(path, args.format) for path in args.real],
        "spec": {"users": args.users, "items": args.items, "interactions": args.interactions,
                 "bots_per_style": args.bots_per_style, "seed": args.seed},  # fmt: skip
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for run in doc["synthetic"]:
            print(f"synthetic, {run['bot_events_per_user']} events per bot: recall {run['recall_by_style']}, "
                  f"people flagged {run['humans_flagged']} ({run['false_positive_share']:.4%}), {run['validate_seconds']} s")  # fmt: skip
        for run in doc["real"]:
            print(f"{run['data']}: {run['users_flagged']} of {run['n_users']} users flagged "
                  f"({run['flagged_user_share']:.2%}) {run['reasons']}, {run['validate_seconds']} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
