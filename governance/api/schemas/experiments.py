"""Bodies of ``/v1/experiments``: a plan's summary, a look at the data, the requests that start and analyse."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from governance.api.schemas import _Body
from governance.experiments.lifecycle import NOT_PER_SUBJECT, SEGMENTS
from governance.experiments.spec import METRICS

__all__ = ["AnalysisCreate", "ExperimentList", "ExperimentLookOut", "ExperimentStart", "ExperimentStatus", "ExperimentSummary"]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
PACK_DRIFT = (
    "Per arm, the lists served under a pack whose content hash is not the one the plan pinned ({lists, subjects, "
    "pinned}); empty when none was. A planned look with any is invalid_pack and names no winner."
)


class ExperimentSummary(BaseModel):
    """An experiment as frozen, and where it stands."""

    id: int
    name: str
    status: Literal["planned", "running", "stopped"]
    plan_hash: str = Field(description="SHA-256 of the normalized plan, frozen at plan time.")
    hypothesis: str
    primary_metric: str
    variants: list[dict[str, Any]]
    allocation: dict[str, float]
    holdback: float
    design: dict[str, Any]
    guardrails: list[dict[str, Any]]
    sample_size: dict[str, Any] = Field(description="What the design needs, computed at plan time (per arm and in total).")
    planned_at: str
    started_at: str | None
    stopped_at: str | None
    holdback_days: int = Field(0, description="How long after the stop the holdback stays on the control (0: it ends with the stop).")
    holdback_until: str | None = Field(None, description="Until when a stopped experiment keeps its holdback on the control; null: it does not.")
    plan_seq: int = Field(description="The trail event that froze the plan.")
    start_seq: int | None
    stop_seq: int | None
    looks: list[dict[str, Any]] | None = None


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ExperimentStatus(ExperimentSummary):
    """Subjects per variant and reason (randomised, holdback, not_profiled, arm_refused) and the SRM check."""

    counts: dict[str, dict[str, int]]
    srm: dict[str, Any] | None
    consent: dict[str, Any] | None = Field(None, description="Subjects left out because their consent does not cover analytics (per arm), and the rule applied.")
    pack_drift: dict[str, Any] | None = Field(None, description=PACK_DRIFT)
    viewed_seq: int | None = Field(description="The trail event of this look at the data (null before the start).")


class ExperimentStart(_Body):
    """Start a planned experiment."""

    plan_hash: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="The plan's hash as the caller has it: refused (409) unless it is the frozen plan's.",
    )  # fmt: skip


class AnalysisCreate(_Body):
    """One look at the data: the plan's primary metric on every randomised subject, or an exploratory one."""

    metric: Literal[tuple(m for m in METRICS if m not in NOT_PER_SUBJECT)] | None = Field(  # type: ignore[valid-type]
        None, description="Another metric than the primary one makes the look exploratory (the arm-level guardrail metrics are judged as guardrails only)."
    )
    segment: Literal[SEGMENTS] | None = Field(None, description="A segment (known or new subjects) makes the look exploratory.")  # type: ignore[valid-type]


class ExperimentLookOut(BaseModel):
    """A look: planned (pre-registered) or exploratory, with what it found and its trail event."""

    experiment: str
    status: str
    plan_hash: str
    id: int
    look: int | None = Field(description="The planned look's number; null for an exploratory look.")
    kind: Literal["planned", "exploratory"]
    metric: str
    segment: str | None
    at: str
    decision: str
    verdict: str = Field(description="treatment_won, no_win, continue, futility, guardrail_failed, invalid_pack, invalid_srm or exploratory.")
    recommendation: str | None = Field(None, description="What the verdict tells the experimenter to do (e.g. 'stop for futility: ...').")
    exploratory_because: list[str]
    counts: dict[str, dict[str, int]]
    srm: dict[str, Any]
    comparisons: list[dict[str, Any]]
    guardrails: list[dict[str, Any]]
    winners: list[str]
    correction: str
    randomised: int
    consent: dict[str, Any] | None = Field(None, description="Subjects left out because their consent does not cover analytics (per arm), and the rule applied.")
    pack_drift: dict[str, Any] | None = Field(None, description=PACK_DRIFT)
    trail_seq: int
    actor: str
