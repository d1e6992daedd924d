"""The statistics of governed A/B experiments: sizing, sample-ratio checks, sequential looks, guardrails.

A pure library: it reads sufficient statistics (counts, sums, sums of squares
per arm) and returns frozen dataclasses; it stores nothing and knows nothing of
governance. The governed experiment (its pack section, its assignment, its
record on the trail) is built on top of it.

* :func:`plan_sample_size` -- units per arm for a fixed, group-sequential or mSPRT design;
* :func:`srm_check` -- sample ratio mismatch (chi-square against the allocation);
* :func:`analyze_look` -- one look: estimate, interval, p-value, boundary, decision;
* :func:`guardrail_check` -- non-inferiority of a metric that must not get worse;
* :func:`correct` -- p-values corrected for several comparisons;
* :func:`ratio_noninferiority`, :func:`gap_noninferiority`, :func:`quality_gap_noninferiority` -- arm-level guardrails
  (a ratio of sums, an exposure gap, a quality gap between consumer groups).

The methods and their sources are in the documentation (Reference, Experiments).
"""

from recommender.experiments.analysis import (
    AnalysisPlan,
    Decision,
    LookResult,
    analyze_look,
    rejection_looks,
    stopping_looks,
)
from recommender.experiments.arm_level import (
    ArmLevelResult,
    exposure_gap,
    gap_noninferiority,
    group_gap,
    quality_gap_noninferiority,
    ratio_noninferiority,
)
from recommender.experiments.arms import ArmData
from recommender.experiments.boundaries import spending_boundaries
from recommender.experiments.guardrail import GuardrailResult, guardrail_check
from recommender.experiments.multiple import correct
from recommender.experiments.sample_size import SampleSizePlan, plan_sample_size
from recommender.experiments.srm import SrmResult, srm_check, srm_sample_size

__all__ = [
    "AnalysisPlan",
    "ArmData",
    "ArmLevelResult",
    "Decision",
    "GuardrailResult",
    "LookResult",
    "SampleSizePlan",
    "SrmResult",
    "analyze_look",
    "correct",
    "exposure_gap",
    "gap_noninferiority",
    "group_gap",
    "guardrail_check",
    "plan_sample_size",
    "quality_gap_noninferiority",
    "ratio_noninferiority",
    "rejection_looks",
    "spending_boundaries",
    "srm_check",
    "srm_sample_size",
    "stopping_looks",
]
