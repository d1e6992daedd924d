"""What the lifecycle's steps read alike: the pack's lifecycle section, and when model versions were trained."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from audits.models import ModelVersion, TrainingRun
from governance.lifecycle_section import LifecycleSection
from governance.policy import LoadedPack

__all__ = ["lifecycle_of", "trained_at"]


def lifecycle_of(pack: LoadedPack) -> LifecycleSection:
    """The pack's lifecycle section, or the defaults (a day's window, no trigger) when it declares none."""
    return pack.pack.lifecycle or LifecycleSection()


def trained_at(session: Any, versions: list[str]) -> dict[str, datetime]:
    """When each model version's training run ended (those recorded)."""
    if not versions:
        return {}
    rows = session.execute(
        select(ModelVersion.version_id, TrainingRun.ended_at).join(TrainingRun, ModelVersion.training_run_id == TrainingRun.id).where(ModelVersion.version_id.in_(versions))
    ).all()
    return {v: t for v, t in rows if t is not None}
