"""The split facts of an audit: temporal leakage of the evaluation's split and the construction of its labels.

The evaluation run keeps its matrices, not its event tables: the split is
made again here with the run's own configuration (every protocol is
deterministic for its seed) and measured by :mod:`recommender.split_audit`
against the pack's declared feedback (``quality.rating_threshold`` and the
event weights), next to the matrices and the evaluated users the run really used.
"""

from __future__ import annotations

from typing import Any

from governance.facts import LabelFacts, TemporalFacts
from recommender.data import Dataset

__all__ = ["split_facts"]


def split_facts(
    pack: Any, dataset: Dataset, run: Any, needs: set[str], *, random_state: int = 0
) -> tuple[TemporalFacts | None, LabelFacts | None]:
    """``(temporal, labels)`` facts of the run's split, each only when a rule needs it (None without a run)."""
    from recommender.feedback import FeedbackConfig
    from recommender.split import SplitConfig, split
    from recommender.split_audit import label_audit

    if run is None or run.matrices is None or not needs & {"temporal", "labels"}:
        return None, None
    q = pack.quality
    config = SplitConfig(kind=q.split, test_fraction=q.test_fraction, random_state=random_state)
    declared = FeedbackConfig(rating_threshold=q.rating_threshold)
    train_events, test_events = split(dataset.events, config)
    temporal = None
    if "temporal" in needs:
        temporal = _temporal(q.split, train_events, test_events, declared)
    labels = None
    if "labels" in needs:
        rows = {label: ev.user_index for label, ev in run.comparison.evaluations.items()}
        mats = run.matrices
        labels = LabelFacts(**label_audit(test_events, mats.train, mats.test, declared, rows))
    return temporal, labels


def _temporal(split_kind: str, train_events: Any, test_events: Any, declared: Any) -> TemporalFacts:
    """The split's look-ahead; when the events' times cannot place them (a split that needs no time, e.g.
    ``random``, runs without), facts that say why, so the rule fails instead of the whole audit aborting."""
    from recommender.errors import DataError
    from recommender.split_audit import positive_events, temporal_leakage

    counts = {"n_train_events": len(train_events), "n_test_labels": int(positive_events(test_events, declared).sum())}
    if "timestamp" not in train_events.columns or "timestamp" not in test_events.columns:
        return TemporalFacts(split=split_kind, **counts, measurable=False, reason="the events have no timestamp column")
    try:
        return TemporalFacts(split=split_kind, **temporal_leakage(train_events, test_events, declared))
    except DataError as err:
        reason = str(err).removeprefix("temporal_leakage: ").split("; ")[0]
        return TemporalFacts(split=split_kind, **counts, measurable=False, reason=reason)
