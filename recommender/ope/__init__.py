"""Off-policy evaluation: estimate what another policy would have earned from the logs of the one that served.

Pure numpy, no I/O. Single-action estimators (:mod:`recommender.ope.estimators`):
IPS, self-normalised IPS, the direct method and doubly robust; slate estimators
(:mod:`recommender.ope.slate`): standard, independent and cascade IPS and the
pseudo-inverse estimator; simple reward models (:mod:`recommender.ope.reward_model`);
and stochastic slate policies over a governed candidate pool with their exact
probabilities (:mod:`recommender.ope.policies`). Every estimator returns an
:class:`Estimate` with a seeded bootstrap interval, the effective sample size and
the largest weight, or a refusal that says why (overlap fails, or too few
effective samples).
"""

from recommender.ope._common import DEFAULT_MIN_ESS, Estimate, OverlapError, effective_sample_size
from recommender.ope.estimators import direct_method, doubly_robust, ips, snips
from recommender.ope.policies import (
    ExactBoundError,
    SlatePolicy,
    enumerate_slates,
    pairwise_probabilities,
    position_marginals,
    sample_slate,
    slate_probabilities,
)
from recommender.ope.reward_model import item_mean_rewards, ridge_rewards
from recommender.ope.slate import cascade_ips, independent_ips, pseudo_inverse, standard_ips, uniform_pseudo_inverse_weights

__all__ = [
    "DEFAULT_MIN_ESS",
    "Estimate",
    "ExactBoundError",
    "OverlapError",
    "SlatePolicy",
    "cascade_ips",
    "direct_method",
    "doubly_robust",
    "effective_sample_size",
    "enumerate_slates",
    "independent_ips",
    "ips",
    "item_mean_rewards",
    "pairwise_probabilities",
    "position_marginals",
    "pseudo_inverse",
    "ridge_rewards",
    "sample_slate",
    "slate_probabilities",
    "snips",
    "standard_ips",
    "uniform_pseudo_inverse_weights",
]
