"""A small simulated deployment for the lifecycle tests: a world whose tastes shift, served lists, feedback.

Time is simulated: the world's log ends a day before now, decisions and
feedback carry the world's times, and every pass and pipeline run is told its
``now``. Nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from audits.decisions import DecisionLog
from audits.outcomes import BATCH_COLUMNS, record_outcomes
from governance.policy import LoadedPack, parse_pack
from governance.shadow import canary_bucket
from recommender.als import ALSRecommender
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate

K = 10
DAYS = 60
SHIFT_DAY = 45
LIFECYCLE = """
consent:
  purposes:
    personalization:
      lawful_basis: legitimate_interest
      model: opt_out
lifecycle:
  window_hours: 72
  baseline_filter_seen: false
  triggers:
    - id: clicks-below-offline
      kind: performance_drop
      metric: click_rate
      min_drop: 0.4
      confidence: 0.99
      min_served: 500
    - id: taste-drift
      kind: input_drift
      max_psi: 0.05
      min_events: 500
  canary:
    hours: 48
    share: 0.3
    min_decisions: 30
    guardrails:
      - metric: provider_gap
        max: 0.35
"""
_KIND = {"view": "click", "click": "click", "add_to_cart": "click", "rating": "click", "purchase": "conversion"}


def lifecycle_pack(shipped_text: str, extra: str = LIFECYCLE) -> LoadedPack:
    """The shipped baseline pack with a lifecycle section."""
    return parse_pack(shipped_text + extra, "lifecycle.yaml")


@dataclass
class World:
    """The ground truth: every event users will do, shifted at ``SHIFT_DAY``."""

    dataset: Dataset
    start: datetime
    users: list[str]
    served: dict[str, ALSRecommender] = field(default_factory=dict)

    @classmethod
    def make(cls, seed: int = 7) -> World:
        start = (datetime.now(UTC) - timedelta(days=DAYS + 1)).replace(minute=0, second=0, microsecond=0)
        spec = SyntheticSpec(
            n_users=100, n_items=100, n_interactions=48_000, seed=seed, start=start, end=start + timedelta(days=DAYS),
            taste_shift_at=start + timedelta(days=SHIFT_DAY), activity_sigma=0.3, taste_strength=6.0,
        )  # fmt: skip
        dataset = generate(spec)
        users = sorted(dataset.events["user_id"].astype(str).unique().tolist())
        return cls(dataset, start, users)

    def at(self, day: float) -> datetime:
        return self.start + timedelta(days=day)

    def between(self, first_day: float, last_day: float) -> Dataset:
        """The events of days ``[first_day, last_day)``, with the world's user and item tables."""
        events = self.dataset.events
        keep = (events["timestamp"] >= pd.Timestamp(self.at(first_day))) & (events["timestamp"] < pd.Timestamp(self.at(last_day)))
        return Dataset(
            events=events[keep].reset_index(drop=True), users=self.dataset.users, items=self.dataset.items,
            name=f"world-{first_day}-{last_day}", source=f"simulated world, days {first_day} to {last_day}",
        )

    def serve(
        self, store: Any, pack: LoadedPack, *, first_day: int, last_day: int, production: str, canary: str | None = None,
        share: float = 0.0, starve_protected: bool = False, latency_ms: dict[str, float] | None = None,
    ) -> int:  # fmt: skip
        """Serve every user once a day in ``[first_day, last_day)`` and record what they did in the next 24 hours.

        The canary serves the subjects in its bucket; ``starve_protected`` plants a regression in it: its lists
        leave out every item of the protected provider group. ``latency_ms``: the serving latency each model
        version's records give (none: the records give no latency). Returns the number of lists served.
        """
        items = self.dataset.items
        protected = set(items.index[items["provider_group"].astype(str) == pack.pack.fairness.protected_provider_group].astype(str))
        events = self.dataset.events
        stamp = pack.stamp()
        futures, outcomes = [], []
        rng = np.random.default_rng(first_day)
        with DecisionLog(store) as log:
            for day in range(first_day, last_day):
                for user in self.users:
                    at = self.at(day) + timedelta(minutes=int(rng.integers(0, 60)))
                    version = canary if canary is not None and canary_bucket(user) < share else production
                    batch = self.served[version].recommend([user], k=4 * K, filter_seen=False)
                    listed = [(str(i), float(s)) for i, s in zip(batch.item_ids[0], batch.scores[0], strict=True) if i is not None]
                    if starve_protected and version == canary:
                        listed = [(i, s) for i, s in listed if i not in protected]
                    listed = listed[:K]
                    futures.append(log.submit({
                        "mode": "personalized", "pack_name": stamp["pack"], "pack_version": stamp["pack_version"], "pack_hash": stamp["pack_hash"],
                        "model_version": version, "slate": {"items": [i for i, _ in listed], "scores": [s for _, s in listed]},
                        "context": {"latency_ms": latency_ms[version]} if latency_ms else {}, "decided_at": at, "subject_id": user,
                    }))  # fmt: skip
            for future in futures:
                future.result(timeout=120)
        window = (events["timestamp"] >= pd.Timestamp(self.at(first_day))) & (events["timestamp"] < pd.Timestamp(self.at(last_day)))
        done = events[window]
        outcomes = pd.DataFrame(
            {
                "line": np.arange(len(done)) + 1,
                "subject": done["user_id"].astype(str).to_numpy(),
                "kind": done["event_type"].astype(str).map(_KIND).to_numpy(),
                "item_id": done["item_id"].astype(str).to_numpy(),
                "occurred_at": pd.to_datetime(done["timestamp"], utc=True).astype("datetime64[us, UTC]").to_numpy(),
                "value": np.full(len(done), np.nan),
                "decision_id": "",
                "event_id": [f"w{i}" for i in done.index],
            },
            columns=list(BATCH_COLUMNS),
        )
        outcomes["occurred_at"] = pd.to_datetime(outcomes["occurred_at"], utc=True)
        with store.session() as session:
            record_outcomes(session, outcomes, source="import", anchor={"file_sha256": "a" * 64})
        return len(futures)
