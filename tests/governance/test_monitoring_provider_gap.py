"""Monitoring's provider_gap: labels read as the fairness audit reads them, both shares on one base."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from governance.monitoring import WindowInputs, window_figures


def test_monitoring_provider_gap_reads_labels_as_the_audit_and_on_one_base() -> None:
    """Bug pinned: provider_gap took the catalogue share among labelled items but the exposure share among all
    slots, and matched labels byte for byte: with unlabelled items served in proportion, and 'independent '
    spelt with a blank, a perfectly proportional service showed a gap."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    groups = ["independent", "independent ", "major", "major", None, "", "  ", None]
    items = pd.DataFrame({"provider_group": groups}, index=list("abcdefgh"))
    served = [["a", "c"], ["b", "d"], ["e", "f"], ["g", "h"]]  # every item once: exposure in proportion
    decisions = pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(4)], "decided_at": pd.to_datetime([now - timedelta(hours=1)] * 4, utc=True),
        "mode": ["personalized"] * 4, "model_version": ["m1"] * 4, "items": served, "scores": [[0.9, 0.5]] * 4,
        "shadow": [False] * 4,
    })  # fmt: skip
    outcomes = pd.DataFrame({c: [] for c in ("kind", "item_id", "decision_id", "position", "attribution", "occurred_at")})
    inputs = WindowInputs(decisions=decisions, outcomes=outcomes, failed=0, unreadable=0, items=items, profiles={})
    known = [g.strip() for g in groups if isinstance(g, str) and g.strip()]
    slots = [items.loc[i, "provider_group"] for row in served for i in row]
    known_slots = [g.strip() for g in slots if isinstance(g, str) and g.strip()]
    expected = known.count("independent") / len(known) - known_slots.count("independent") / len(known_slots)
    assert window_figures(inputs)["models"]["m1"]["provider_gap"] == pytest.approx(expected) == 0.0
