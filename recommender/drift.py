"""Distribution drift between two datasets: population stability index and KS statistic.

The features are the two distributions a recommender is most sensitive to: how
active users are (events per user) and how concentrated items are (events per
item). Both are compared as distributions, so datasets of different sizes and
with different users can be compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

__all__ = ["population_stability_index", "drift_statistics", "activity_distributions"]


def population_stability_index(baseline: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI of ``current`` against ``baseline`` over quantile bins of the baseline.

    ``PSI = sum_b (c_b - r_b) * ln(c_b / r_b)`` with ``r_b`` and ``c_b`` the shares
    of the baseline and the current values in bin ``b`` (floored at ``eps``).
    Rule of thumb: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 large.
    """
    baseline = np.asarray(baseline, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if len(baseline) == 0 or len(current) == 0:
        return float("nan")
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([baseline[0] - 0.5, baseline[0] + 0.5])
    inner = edges[1:-1]
    ref = np.bincount(np.searchsorted(inner, baseline, side="right"), minlength=len(edges) - 1) / len(baseline)
    cur = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1) / len(current)
    ref = np.maximum(ref, eps)
    cur = np.maximum(cur, eps)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def activity_distributions(events: pd.DataFrame) -> dict[str, np.ndarray]:
    """Events per user and events per item."""
    return {
        "user_activity": events["user_id"].value_counts(sort=False).to_numpy(dtype=np.float64),
        "item_popularity": events["item_id"].value_counts(sort=False).to_numpy(dtype=np.float64),
    }


def drift_statistics(baseline: pd.DataFrame, current: pd.DataFrame, bins: int = 10) -> dict[str, dict[str, float]]:
    """PSI and KS statistic of user activity and item popularity, current against baseline."""
    ref = activity_distributions(baseline)
    cur = activity_distributions(current)
    out = {}
    for feature in ref:
        out[feature] = {
            "psi": round(population_stability_index(ref[feature], cur[feature], bins), 6),
            "ks": round(float(ks_2samp(ref[feature], cur[feature]).statistic), 6),
        }
    return out
