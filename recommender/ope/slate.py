"""Slate off-policy estimators: standard, independent and cascade IPS, and the pseudo-inverse estimator.

A slate is ``K`` items in positions ``1..K``, drawn from a context's candidates.
The logs give, per context, the reward (the slate's, or one per position) and
the logging policy's probabilities of what was shown; the target policy's
probabilities of the same things come from replaying it on the logged candidates.
Each estimator trades assumptions on the reward for variance:

* **standard IPS**: ``w = pi(s) / mu(s)``, whole-slate probabilities. No
  assumption on the reward; the weights explode with ``K``.
* **independent IPS** (Li et al. 2018, "item-position model"): the slate reward is
  the sum of position rewards and the reward at position ``k`` depends only on the
  item there; ``sum_k [pi(a_k at k) / mu(a_k at k)] r_k`` with per item-and-position
  marginals. Lowest variance, strongest assumption.
* **cascade IPS** (McInerney et al. 2020; Kiyohara et al. 2022, "RIPS"): the reward
  at position ``k`` depends only on the items at positions ``1..k`` (a user reads top
  down); ``sum_k [pi(a_1..a_k) / mu(a_1..a_k)] r_k`` with top-k prefix probabilities.
* **pseudo-inverse** (Swaminathan et al. 2017): the slate reward is linear in the
  slate's (item, position) indicator vector ``1_s`` (additive, position-dependent,
  unobserved per position); ``w = q_pi' Gamma_mu^+ 1_s`` with ``q_pi`` the target's
  item-and-position marginals and ``Gamma_mu = E_mu[1_s 1_s']`` the logger's pairwise
  (item, position) probabilities. Unbiased under linearity when ``q_pi`` is in the
  range of ``Gamma_mu`` (the overlap condition it checks).

Overlap: every estimator takes the probability mass the target puts on what the
logger could not produce (``unsupported_mass``, one value per context, computed
by the caller who knows both policies; the pseudo-inverse checks its own range
condition) and refuses when it is positive, and refuses when the effective sample
size is below ``min_ess``. For the per-position estimators the effective sample
size is the smallest over positions: the worst-covered position decides.

Slates shorter than ``K`` are padded: reward 0 and probability 1 under both
policies in the padded positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.errors import DataError
from recommender.ope._common import (
    DEFAULT_MIN_ESS,
    Estimate,
    as_matrix,
    as_vector,
    check_settings,
    effective_sample_size,
    finish,
    plain,
    probabilities,
    unsupported_reason,
)

__all__ = ["cascade_ips", "independent_ips", "pseudo_inverse", "standard_ips", "uniform_pseudo_inverse_weights"]


def _position_probs(values: Any, name: str, n: int, k: int | None = None, *, positive: bool = False) -> np.ndarray:
    arr = as_matrix(values, name, n)
    if k is not None and arr.shape[1] != k:
        raise DataError(f"{name} has {arr.shape[1]} positions, expected {k} like position_rewards")
    low = (arr <= 0) if positive else (arr < 0)
    if (low | (arr > 1 + 1e-9)).any():
        row, col = map(int, np.argwhere(low | (arr > 1 + 1e-9))[0])
        need = "in (0, 1]" if positive else "in [0, 1]"
        raise DataError(f"{name} must be probabilities {need}; context {row}, position {col + 1} holds {plain(arr[row, col])!r}")
    return arr


def _unsupported(values: Any, n: int) -> np.ndarray:
    if np.isscalar(values):
        return np.full(n, float(values))
    return as_vector(values, "unsupported_mass", n)


def _per_position(
    name: str,
    position_rewards: Any,
    logging_probs: Any,
    target_probs: Any,
    unsupported_mass: Any,
    position_weights: Any,
    settings: dict[str, Any],
    what: str,
) -> Estimate:
    check_settings(settings["n_bootstrap"], settings["confidence"], settings["min_ess"], settings["seed"])
    r = as_matrix(position_rewards, "position_rewards", np.shape(position_rewards)[0] if np.ndim(position_rewards) else 0)
    n, k = r.shape
    mu = _position_probs(logging_probs, f"logging {what}", n, k, positive=True)
    pi = _position_probs(target_probs, f"target {what}", n, k)
    weights_k = np.ones(k) if position_weights is None else as_vector(position_weights, "position_weights", k)
    w = pi / mu
    contrib = (w * r) @ weights_k
    ess = min((effective_sample_size(w[:, j]) for j in range(k)), default=0.0)
    refusal = unsupported_reason(_unsupported(unsupported_mass, n), "slates or item positions")
    return finish(name, contrib, None, w.ravel(), ess=ess, refusal=refusal, **settings)


def standard_ips(
    rewards: Any,
    logging_slate_prob: Any,
    target_slate_prob: Any,
    *,
    unsupported_mass: Any,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Standard (whole-slate) IPS: ``mean(pi(s_i) / mu(s_i) * R_i)`` (see the module docstring)."""
    check_settings(n_bootstrap, confidence, min_ess, seed)
    r = as_vector(rewards, "rewards")
    n = len(r)
    mu = probabilities(logging_slate_prob, "logging_slate_prob", n, positive=True)
    pi = probabilities(target_slate_prob, "target_slate_prob", n)
    w = pi / mu
    refusal = unsupported_reason(_unsupported(unsupported_mass, n), "slates")
    return finish("slate_standard_ips", w * r, None, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=refusal)


def independent_ips(
    position_rewards: Any,
    logging_marginals: Any,
    target_marginals: Any,
    *,
    unsupported_mass: Any,
    position_weights: Any = None,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Independent (item-position) IPS over ``(n, K)`` position rewards and the logged items' marginals.

    ``logging_marginals[i, k]``: the logger's probability of the item shown at position ``k``
    being there; ``target_marginals[i, k]``: the target's probability of the same. ``position_weights``
    (``K``) weighs the positions (e.g. ``1/log2(k+1)`` for a DCG-like slate reward; default all 1).
    """
    settings = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence, "min_ess": min_ess}
    return _per_position("slate_independent_ips", position_rewards, logging_marginals, target_marginals, unsupported_mass, position_weights, settings, "marginals")


def cascade_ips(
    position_rewards: Any,
    logging_prefix: Any,
    target_prefix: Any,
    *,
    unsupported_mass: Any,
    position_weights: Any = None,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Cascade IPS over ``(n, K)`` position rewards and top-k prefix probabilities.

    ``logging_prefix[i, k]``: the logger's probability of the shown items ``a_1..a_k`` in
    positions ``1..k`` (non-increasing in ``k``); ``target_prefix``: the target's.
    """
    settings = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence, "min_ess": min_ess}
    return _per_position("slate_cascade_ips", position_rewards, logging_prefix, target_prefix, unsupported_mass, position_weights, settings, "prefix probabilities")


def pseudo_inverse(
    rewards: Any,
    slate_indicators: Any,
    logging_gamma: Any,
    target_marginals: Any,
    *,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    rcond: float = 1e-10,
) -> Estimate:
    """The pseudo-inverse estimator (Swaminathan et al. 2017): ``mean(R_i * q_i' Gamma_i^+ 1_{s_i})``.

    Over ``D`` (item, position) cells per context (``D = m * K``, cell ``(item, position)``
    in any fixed order): ``slate_indicators`` ``(n, D)`` is 1 on the logged slate's cells;
    ``logging_gamma`` ``(n, D, D)`` is ``E_mu[1_s 1_s']`` (its diagonal is the logger's
    marginals); ``target_marginals`` ``(n, D)`` the target's marginals. Refused when some
    context's target marginals are not in the range of its ``Gamma`` (the target reaches
    cells, or combinations, the logger never shows), or on a small effective sample size.
    The weights may be negative (the estimator is unbiased, not a reweighting).
    """
    check_settings(n_bootstrap, confidence, min_ess, seed)
    r = as_vector(rewards, "rewards")
    n = len(r)
    s = as_matrix(slate_indicators, "slate_indicators", n)
    d = s.shape[1]
    q = as_matrix(target_marginals, "target_marginals", n)
    gamma = as_matrix(logging_gamma, "logging_gamma", n, ndim=3)
    if q.shape[1] != d or gamma.shape[1:] != (d, d):
        raise DataError(f"slate_indicators {s.shape}, target_marginals {q.shape} and logging_gamma {gamma.shape} must agree on D cells")
    if n == 0:
        return finish("slate_pseudo_inverse", r, None, r, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess)
    g_plus = np.linalg.pinv(gamma, rcond=rcond, hermitian=True)
    projected = np.einsum("nde,nef,nf->nd", gamma, g_plus, q)
    residual = np.abs(projected - q).max(axis=1)
    refusal = unsupported_reason(np.where(residual > 1e-8, residual, 0.0), "(item, position) combinations outside the range of the logger's pairwise probabilities;")
    if refusal is None and (s @ np.ones(d) == 0).any():
        raise DataError(f"slate_indicators: context {int(np.flatnonzero(s.sum(axis=1) == 0)[0])} shows no cell")
    w = np.einsum("nd,nde,ne->n", q, g_plus, s)
    return finish("slate_pseudo_inverse", w * r, None, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=refusal)


def uniform_pseudo_inverse_weights(target_marginals_of_shown: Any, n_candidates: int, *, repeats: bool) -> np.ndarray:
    """The pseudo-inverse weights in closed form for two uniform loggers: a check of :func:`pseudo_inverse`.

    ``target_marginals_of_shown`` ``(n, K)``: the target's marginal ``q(a_k, k)`` of each shown item at its
    position; ``m = n_candidates``. On the logger's support the weight ``q' Gamma^+ 1_s`` is unique (two
    solutions of ``Gamma c = q`` differ by a ``v`` with ``E[(v' 1_s)^2] = 0``), so any linear weight with
    ``E_mu[w(s) 1_s] = q`` is it. Solving that equation by hand:

    * ``repeats=True``, each position drawn uniformly and independently from the ``m`` candidates (the
      setting of Swaminathan et al. 2017's uniform example): ``w = m sum_k q(a_k, k) - K + 1``;
    * ``repeats=False`` with ``K = m`` (uniform random full rankings): ``w = (m - 1) sum_k q(a_k, k) - m + 2``.

    Uniform slates of ``K < m`` without repeats have no weight of this form (``sum_k q`` is not enough);
    :func:`pseudo_inverse` handles them.
    """
    q = np.asarray(target_marginals_of_shown, dtype=np.float64)
    if q.ndim != 2:
        raise DataError(f"target_marginals_of_shown must be (n, K), got shape {q.shape}")
    k, m = q.shape[1], n_candidates
    if repeats:
        return m * q.sum(axis=1) - k + 1
    if k != m:
        raise DataError(f"without repeats the closed form needs full rankings (K = m), got K={k}, m={m}; use pseudo_inverse")
    return (m - 1) * q.sum(axis=1) - m + 2
