"""The mixture sequential probability ratio test (mSPRT): always-valid p-values.

Johari, Koomen, Pekelis & Walsh, "Always valid inference: continuous monitoring
of A/B tests" (Operations Research 70(3), 2022; arXiv 1512.04922, 2015/2017)
test ``H0: theta = theta0`` for the difference ``theta`` of two means with the
likelihood ratio of the normal model averaged over a normal mixing distribution
``theta ~ N(theta0, tau^2)``. For the estimate ``d = theta_hat - theta0`` with
variance ``V``, the mixture has the closed form

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))).

Under ``H0`` ``Lambda`` is a non-negative martingale with mean 1, so by Ville's
inequality ``P(sup_n Lambda_n >= 1/alpha) <= alpha``: the always-valid p-value
``p_n = min(p_{n-1}, 1 / Lambda_n)`` may be looked at after every unit and the
test rejects when ``p_n <= alpha``, with type I error at most ``alpha`` whatever
the stopping rule. Looking only after batches keeps the guarantee (the
supremum over fewer times is smaller) and makes the test conservative. ``V`` is
the plug-in variance of :func:`~recommender.experiments.arms.difference_moments`,
so the guarantee is asymptotic in the arms' sizes, as in the paper.

A one-sided test (``theta > theta0``) mixes over the half-normal on
``theta > theta0`` instead, which multiplies ``Lambda`` by
``2 Phi(d tau / sqrt(V (V + tau^2)))`` (the posterior chance that ``theta >
theta0``); it is still a mixture of likelihood ratios, so a martingale under
``theta = theta0`` and a super-martingale for every ``theta < theta0``.

The mixing variance: recgov takes ``tau`` = the planned minimum detectable
effect unless told otherwise. At the planned end, with ``z^2 = theta^2 / V``,
``log Lambda`` is largest for ``tau^2 = theta^2 - V``, which for a design with 80
to 90 % power is 0.87 to 0.90 times ``mde^2``: ``tau = mde`` is close to the most
powerful mixture for the effect the experiment is sized for (Johari et al. ask
for ``tau`` matched to the effects one expects).

The rejection region ``Lambda >= 1/alpha`` is ``|d| / sqrt(V) >= b`` with
``b^2 = (1 + r)/r * (2 ln(1/alpha) + ln(1 + r))``, ``r = tau^2 / V``: a z boundary
per look, which is how :func:`~recommender.experiments.plan_sample_size` sizes the
test exactly with the group-sequential integration.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from recommender.errors import ConfigError

__all__ = ["log_mixture_ratio", "z_boundary"]

_LOG_2 = math.log(2.0)


def log_mixture_ratio(
    difference: np.ndarray | float, variance: np.ndarray | float, tau2: float, *, one_sided: bool = False
) -> np.ndarray:
    """``log Lambda`` for the estimate ``difference`` (``theta_hat - theta0``) with variance ``variance``.

    For the one-sided test the alternative is ``theta > theta0``: pass the
    negated difference to test ``theta < theta0``.

    >>> round(float(np.exp(log_mixture_ratio(0.02, 1e-4, 1e-4))), 4)  # sqrt(1/2) * exp(4 * 0.25)
    1.9221
    """
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    log = -0.5 * np.log1p(tau2 / v) + tau2 * d * d / (2.0 * v * (v + tau2))
    if one_sided:
        log = log + _LOG_2 + special.log_ndtr(d * math.sqrt(tau2) / np.sqrt(v * (v + tau2)))
    return log


def z_boundary(variance: float, tau2: float, alpha: float, *, one_sided: bool = False) -> float:
    """The z statistic at which ``Lambda`` reaches ``1/alpha`` for an estimate with variance ``variance``.

    >>> r = 1.0; round(z_boundary(1.0, 1.0, 0.05), 4) == round(math.sqrt((1 + r) / r * (2 * math.log(20) + math.log(2))), 4)
    True
    """
    for name, value in (("variance", variance), ("tau2", tau2)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"z_boundary: {name} must be a positive finite number; got {value!r}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"z_boundary: alpha must lie strictly between 0 and 1; got {alpha!r}")
    r = tau2 / variance
    if not one_sided:
        return math.sqrt((1.0 + r) / r * (2.0 * math.log(1.0 / alpha) + math.log1p(r)))
    sd = math.sqrt(variance)
    target = math.log(1.0 / alpha)
    return float(
        optimize.brentq(
            lambda z: float(log_mixture_ratio(z * sd, variance, tau2, one_sided=True)) - target, 0.0, 60.0, xtol=1e-10
        )
    )
