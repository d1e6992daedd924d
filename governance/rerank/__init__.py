"""Post-processing re-rankers: per user, on a model's candidates, vectorized over users.

Each re-ranker has a stable snake_case name, a pydantic config (unknown keys
rejected, bounds, a docstring per field) and records what it moved and why.
Compose them with :func:`build_pipeline`; a policy pack names them by their
registered name (:func:`get_reranker`, :func:`config_from_params`).

========================  ===========================================  ===========================
name                      what                                         reason code of its moves
========================  ===========================================  ===========================
``fair_star``             FA*IR ranked group fairness (Zehlike 2017)   2 provider_fairness
``mmr``                   MMR diversity (Carbonell & Goldstein 1998)   1 diversity
``calibration``           calibrated lists (Steck 2018)                3 calibration
``provider_calibration``  calibration over provider groups             7 provider_calibration
``popularity_debias``     inverse-popularity re-weighting              4 popularity_debias
``exposure_cap``          cap a group's share of a list's exposure     5 exposure_cap
``exploration``           epsilon or Plackett-Luce randomness          6 exploration
``group_proportions``     target shares of many groups (Geyik 2019)    2 provider_fairness
``amortised_exposure``    group exposure debt across requests (Biega)  2 provider_fairness
``exposure_targets``      each group's exposure share within a window  2 provider_fairness
========================  ===========================================  ===========================

>>> import numpy as np
>>> from governance.rerank import Candidates, build_pipeline, FairStarConfig
>>> cands = Candidates(
...     items=np.array([[0, 1, 2, 3]]), scores=np.array([[4.0, 3.0, 2.0, 1.0]]),
...     item_group=np.array([0, 0, 1, 1]),
... )
>>> out = build_pipeline([FairStarConfig(p=0.5, alpha=0.1, adjust_alpha=False)])(cands, k=4)
>>> out.items.tolist(), out.moves.tolist(), out.constraints_met["fair_star"].tolist()
([[0, 1, 2, 3]], [[0, 0, 0, 0]], [True])
"""

from governance.rerank.amortised import AmortisedExposureConfig, AmortisedExposureReranker, ExposureLedger
from governance.rerank.base import Candidates, CheckedCatalog, Reason, RerankConfig, Reranked, Reranker
from governance.rerank.calibration import (
    CalibrationConfig,
    CalibrationReranker,
    ProviderCalibrationConfig,
    ProviderCalibrationReranker,
    history_category_distribution,
    history_group_distribution,
)
from governance.rerank.exploration import ExplorationConfig, ExplorationReranker
from governance.rerank.exposure_cap import ExposureCapConfig, ExposureCapReranker
from governance.rerank.exposure_targets import ExposureTargetsConfig, ExposureTargetsReranker, exposure_patterns
from governance.rerank.fair_star import (
    FairStarConfig,
    FairStarReranker,
    adjusted_mtable,
    fail_probability,
    mtable,
)
from governance.rerank.mmr import MMRConfig, MMRReranker
from governance.rerank.pipeline import Pipeline, build_pipeline
from governance.rerank.proportions import GroupProportionsConfig, GroupProportionsReranker, minimum_counts
from governance.rerank.popularity import PopularityDebiasConfig, PopularityDebiasReranker
from governance.rerank.registry import (
    UNKNOWN_RERANKER,
    config_from_params,
    get_reranker,
    registered_rerankers,
)

__all__ = [
    "Candidates",
    "CheckedCatalog",
    "Reranked",
    "Reason",
    "RerankConfig",
    "Reranker",
    "Pipeline",
    "build_pipeline",
    "get_reranker",
    "registered_rerankers",
    "config_from_params",
    "UNKNOWN_RERANKER",
    "FairStarConfig",
    "FairStarReranker",
    "mtable",
    "adjusted_mtable",
    "fail_probability",
    "MMRConfig",
    "MMRReranker",
    "CalibrationConfig",
    "CalibrationReranker",
    "history_category_distribution",
    "ProviderCalibrationConfig",
    "ProviderCalibrationReranker",
    "history_group_distribution",
    "PopularityDebiasConfig",
    "PopularityDebiasReranker",
    "ExposureCapConfig",
    "ExposureCapReranker",
    "ExplorationConfig",
    "ExplorationReranker",
    "GroupProportionsConfig",
    "GroupProportionsReranker",
    "minimum_counts",
    "AmortisedExposureConfig",
    "AmortisedExposureReranker",
    "ExposureLedger",
    "ExposureTargetsConfig",
    "ExposureTargetsReranker",
    "exposure_patterns",
]
