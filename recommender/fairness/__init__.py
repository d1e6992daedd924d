"""Fairness of ranked lists: per-user quality by group, parity, provider exposure, popularity, calibration.

fairlearn and aif360 measure classifiers, one prediction per row. A recommender
emits a ranked list per user, so this package first reduces the lists to what
those libraries can measure, then adds the ranking measures they lack. Every
function works on a whole batch of users at once (no per-user Python loop); rows
of ``recommended`` (``(n_users, k)`` item columns, best first, ``-1`` padding),
``relevant`` (the users' test positives) and ``history`` (their training
positives) are the same users, as in :class:`recommender.evaluate.ModelEvaluation`.

The implementation sits in private modules, one per side of fairness, and the
public names are re-exported here: import them from ``recommender.fairness``.

Consumer side (users grouped by an audit attribute such as gender):

* :func:`compare_groups` (``_groups``) -- the mean of per-user NDCG, recall or
  hit rate at k by group, the gap (``max - min``) and the ratio (``min / max``)
  between groups, computed through fairlearn's
  :class:`~fairlearn.metrics.MetricFrame`, each with a bootstrap confidence
  interval, plus every pair of groups (Welch's interval of the difference,
  Fieller's of the ratio: :mod:`recommender.significance`) so that a rule may
  leave out groups too small to judge;
* :func:`parity` (``_parity``) -- disparate impact (``P(hit | unprivileged) /
  P(hit | privileged)``) and statistical parity difference (``P(hit |
  unprivileged) - P(hit | privileged)``) of the binary outcome "a relevant item
  in the top k", through aif360's ``BinaryLabelDatasetMetric``;
* :func:`calibration_kl` (``_calibration``) -- Steck's (2018) miscalibration of
  each list against the user's history: ``KL(p || (1 - a) q + a p)`` over item
  categories.

Provider side (items grouped by provider, e.g. major vs independent labels):

* :func:`provider_exposure` (``_exposure``) -- position-weighted exposure share
  per provider group against its share of relevance (disparate exposure after
  Singh & Joachims 2018), exposure Gini and catalog coverage per group;
* :func:`popularity_bias` (``_popularity``) -- average recommendation
  popularity against the users' own profiles and the catalog, long-tail share,
  and recall on test positives per popularity stratum (head/mid/tail) with the
  gap between strata.

Uncertainty (``_intervals``): :func:`bootstrap_means` resamples users with
replacement within each group, and every interval is the percentile interval
of the resampled statistic; all measures share it but :func:`parity`, whose
0/1 rates take closed-form score intervals (the percentile bootstrap of a rate
of 0 is the point 0). ``_common`` holds the input
checks and the group coding the measures share.

What keeps the figures honest: the point values of the group comparison are
fairlearn's own, and disparate impact and parity are aif360's; the tests
cross-check them against a plain pandas groupby, fairlearn's own bootstrap,
a hand computation and aif360 on random data, and every other measure against
hand-worked tiny cases and a per-user loop.
"""

from recommender.fairness._amortised import (
    AmortisedFigure,
    EquityOfAttention,
    ExpectedExposure,
    equity_of_attention,
    expected_exposure,
)
from recommender.fairness._calibration import BAD_ALPHA, CALIBRATION_ALPHA, calibration_kl
from recommender.fairness._common import BAD_LENGTH, BAD_ROWS, MISSING_GROUP, RESERVED_LABEL, group_labels, read_label, read_labels, reserved_label
from recommender.fairness._disparity import BiasDisparity, GroupMAD, bias_disparity, item_mad, user_mad
from recommender.fairness._distribution import (
    aggregate_diversity,
    exposure_distribution,
    exposure_entropy,
    exposure_kl,
    exposure_l1,
    rank_biased_precision,
    rank_weighted_exposure_gini,
    serendipity,
)
from recommender.fairness._exposure import (
    ATTENTION_MODELS,
    BAD_ATTENTION,
    BAD_PATIENCE,
    ExposureReport,
    attention_key,
    attention_weights,
    item_exposure,
    provider_exposure,
)
from recommender.fairness._grouping import (
    INTERSECTION_JOIN,
    INTERSECTION_SEPARATOR,
    Binning,
    GroupCensus,
    GroupingSpec,
    bin_values,
    cells_for,
    census,
    groups_for,
    intersect,
    intersection_cells,
    item_groups,
    membership_exposure,
    multi_membership,
)
from recommender.fairness._groups import CONSUMER_METRICS, GroupComparison, GroupGap, compare_groups, mean_of_values
from recommender.fairness._intervals import (
    BAD_CONFIDENCE,
    BAD_N_BOOT,
    Interval,
    Seed,
    bootstrap_means,
    mean_with_interval,
    percentile_interval,
)
from recommender.fairness._parity import UNKNOWN_PRIVILEGED, ParityReport, parity
from recommender.fairness._popularity_parity import PopularityParity, aclt, head_tail_groups, pop_reo, pop_rsp
from recommender.fairness._popularity import (
    BAD_CUTS,
    POPULARITY_STRATA,
    PopularityReport,
    popularity_bias,
    popularity_strata,
)

__all__ = [
    "INTERSECTION_JOIN",
    "INTERSECTION_SEPARATOR",
    "Binning",
    "GroupCensus",
    "GroupingSpec",
    "bin_values",
    "census",
    "cells_for",
    "groups_for",
    "intersect",
    "intersection_cells",
    "item_groups",
    "membership_exposure",
    "multi_membership",
    "AmortisedFigure",
    "EquityOfAttention",
    "ExpectedExposure",
    "equity_of_attention",
    "expected_exposure",
    "BiasDisparity",
    "GroupMAD",
    "bias_disparity",
    "item_mad",
    "user_mad",
    "aggregate_diversity",
    "exposure_distribution",
    "exposure_entropy",
    "exposure_kl",
    "exposure_l1",
    "rank_biased_precision",
    "rank_weighted_exposure_gini",
    "serendipity",
    "PopularityParity",
    "aclt",
    "head_tail_groups",
    "pop_reo",
    "pop_rsp",
    "ATTENTION_MODELS",
    "CALIBRATION_ALPHA",
    "CONSUMER_METRICS",
    "POPULARITY_STRATA",
    "Interval",
    "Seed",
    "GroupGap",
    "GroupComparison",
    "ParityReport",
    "ExposureReport",
    "PopularityReport",
    "attention_weights",
    "attention_key",
    "bootstrap_means",
    "percentile_interval",
    "mean_with_interval",
    "mean_of_values",
    "compare_groups",
    "parity",
    "provider_exposure",
    "popularity_strata",
    "popularity_bias",
    "calibration_kl",
    "group_labels",
    "read_label",
    "read_labels",
    "reserved_label",
    "item_exposure",
    "MISSING_GROUP",
    "RESERVED_LABEL",
    "BAD_ALPHA",
    "BAD_ATTENTION",
    "BAD_CONFIDENCE",
    "BAD_CUTS",
    "BAD_LENGTH",
    "BAD_N_BOOT",
    "BAD_PATIENCE",
    "BAD_ROWS",
    "UNKNOWN_PRIVILEGED",
]
