"""What an offline evaluation returns: one model's figures, several models compared, and their reports.

:class:`ModelEvaluation` holds one model's lists, per-user metrics, means,
beyond-accuracy figures and segment means; :class:`Comparison` several
evaluations on one split with the lift over the baselines. Both keep the
per-user arrays (for fairness audits) and render themselves two ways:
``to_dict()`` (JSON-ready: plain floats, ``None`` for undefined values) and
``table_rows()`` (formatted strings for a console table). They are computed by
:mod:`recommender.evaluate`, which re-exports them; kept apart so that the
computation reads without the reporting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recommender import metrics as M

__all__ = ["BEYOND_METRICS", "Comparison", "ModelEvaluation"]

BEYOND_METRICS: tuple[str, ...] = (
    "coverage",
    "exposure_gini",
    "exposure_gini_weighted",
    "novelty",
    "intra_list_diversity",
    "average_popularity",
    "long_tail_share",
)
"""The beyond-accuracy metrics of a :class:`ModelEvaluation`, in report order."""


def _num(value: Any) -> float | None:
    """A plain float, or None for NaN/inf/None."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays and NaN into JSON-ready Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _num(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _fmt(value: float | None, digits: int = 4) -> str:
    value = _num(value)
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class ModelEvaluation:
    """The offline evaluation of one model.

    Attributes
    ----------
    model:
        The label of the model (the key given to :func:`~recommender.evaluate.compare_models`, or its ``name``).
    params:
        The model's constructor parameters (``get_params()``).
    k:
        The list length.
    user_index:
        ``(n,)`` training-matrix rows of the evaluated users (those with a test positive).
    recommended:
        ``(n, k)`` the lists (item columns, ``-1`` padding), rows aligned with ``user_index``.
    per_user:
        Metric name -> ``(n,)`` float64: :data:`recommender.metrics.ACCURACY_METRICS`
        plus ``novelty``, ``average_popularity``, ``long_tail_share`` and, when item
        categories were given, ``intra_list_diversity``.
    metrics:
        Mean of each accuracy metric over the evaluated users.
    beyond:
        :data:`BEYOND_METRICS` (None where undefined, e.g. diversity without categories).
    segments:
        Segment name -> group label -> ``{"n_users": ..., metric: mean, ...}``.
    n_test_users:
        Users with at least one test positive (= evaluated users).
    n_fallback:
        Evaluated users served by the popularity fallback.
    seconds:
        Wall time of the evaluation.
    train_hash, test_hash:
        :meth:`recommender.data.InteractionMatrix.content_hash` of the matrices, for lineage.
    """

    model: str
    params: dict[str, Any]
    k: int
    user_index: np.ndarray = field(repr=False)
    recommended: np.ndarray = field(repr=False)
    per_user: dict[str, np.ndarray] = field(repr=False)
    metrics: dict[str, float]
    beyond: dict[str, float | None]
    segments: dict[str, dict[str, dict[str, float]]]
    n_test_users: int
    n_fallback: int
    seconds: float
    train_hash: str
    test_hash: str

    def per_user_frame(self, user_ids: np.ndarray | None = None) -> pd.DataFrame:
        """The per-user metrics as a DataFrame indexed by training row (or by ``user_ids[row]``)."""
        index = pd.Index(self.user_index, name="user_index")
        if user_ids is not None:
            index = pd.Index(np.asarray(user_ids, dtype=object)[self.user_index], name="user_id")
        return pd.DataFrame(self.per_user, index=index)

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready summary; ``per_user=True`` adds the per-user arrays (large)."""
        out: dict[str, Any] = {
            "model": self.model,
            "params": _plain(self.params),
            "k": self.k,
            "n_test_users": self.n_test_users,
            "n_fallback": self.n_fallback,
            "metrics": _plain(self.metrics),
            "beyond": _plain(self.beyond),
            "segments": _plain(self.segments),
            "seconds": round(self.seconds, 4),
            "train_hash": self.train_hash,
            "test_hash": self.test_hash,
        }
        if per_user:
            out["per_user"] = {"user_index": _plain(self.user_index), **_plain(self.per_user)}
        return out

    def table_rows(self) -> list[dict[str, str]]:
        """One row per metric; columns ``metric``, ``all`` and one per segment group (``segment=group``)."""
        groups = [
            (f"{seg}={group}", values) for seg, by_group in self.segments.items() for group, values in by_group.items()
        ]
        rows = [
            {
                "metric": f"{name}@{self.k}",
                "all": _fmt(self.metrics.get(name)),
                **{col: _fmt(values.get(name)) for col, values in groups},
            }
            for name in M.ACCURACY_METRICS
        ]
        rows.append(
            {
                "metric": "n_users",
                "all": str(self.n_test_users),
                **{col: str(int(values["n_users"])) for col, values in groups},
            }
        )
        rows.extend(
            {"metric": name, "all": _fmt(self.beyond.get(name)), **{col: "" for col, _ in groups}}
            for name in BEYOND_METRICS
        )
        return rows


@dataclass(frozen=True)
class Comparison:
    """Several models evaluated on the same split.

    Attributes
    ----------
    evaluations:
        Label -> :class:`ModelEvaluation`, in the order given.
    baselines:
        Baseline kind (``"popularity"``, ``"random"``) -> the label of that model.
    lift:
        Label -> baseline kind -> accuracy metric -> ``model mean / baseline mean``
        (None when the baseline's mean is 0 or undefined).
    """

    k: int
    evaluations: dict[str, ModelEvaluation]
    baselines: dict[str, str]
    lift: dict[str, dict[str, dict[str, float | None]]]

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready: every evaluation, the baselines used and the lifts."""
        return {
            "k": self.k,
            "models": {label: ev.to_dict(per_user=per_user) for label, ev in self.evaluations.items()},
            "baselines": dict(self.baselines),
            "lift": _plain(self.lift),
        }

    def table_rows(self) -> list[dict[str, str]]:
        """One row per model: accuracy, beyond-accuracy and NDCG lift over each baseline."""
        rows = []
        for label, ev in self.evaluations.items():
            row = {"model": label}
            row.update({f"{name}@{self.k}": _fmt(ev.metrics.get(name)) for name in M.ACCURACY_METRICS})
            row.update({name: _fmt(ev.beyond.get(name)) for name in BEYOND_METRICS})
            for kind in self.baselines:
                row[f"ndcg_lift_vs_{kind}"] = _fmt(self.lift.get(label, {}).get(kind, {}).get("ndcg"), 2)
            rows.append(row)
        return rows
