"""Off-policy estimators for one action per context: IPS, self-normalised IPS, the direct method, doubly robust.

The logs give, per context ``i``: the action taken ``a_i`` (a column of the
context's candidate row), its reward ``r_i``, the logging policy's whole
distribution ``mu_i`` over the candidates and the target policy's ``pi_i``
(rows of ``(n, m)`` matrices; pad short candidate rows with probability 0).
With ``w_i = pi_i(a_i) / mu_i(a_i)``:

* IPS (Horvitz and Thompson 1952): ``mean(w r)``; unbiased when the target's
  support is inside the logger's.
* SNIPS (Swaminathan and Joachims 2015): ``sum(w r) / sum(w)``; biased, consistent,
  lower variance.
* DM: ``mean_i sum_a pi_i(a) q(i, a)`` with a reward model ``q``; unbiased only if
  the model is right.
* DR (Dudik et al. 2011): ``DM + mean(w (r - q(i, a_i)))``; unbiased if either the
  propensities or the model are right.

Every estimator refuses (``refused=True`` with the reason) when the target puts
probability on a candidate the logger gave probability 0 (no reweighting can
show what happens there; this is what a deterministic logger does to every other
policy), or when the weights' effective sample size is below ``min_ess``. The
direct method refuses on the same grounds: with no overlap its model would be
extrapolating where the logs hold no data, and nothing in them could show it is wrong.
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
    finish,
    unsupported_reason,
)

__all__ = ["direct_method", "doubly_robust", "ips", "snips"]


def _distribution(values: Any, name: str, n: int, m: int | None = None) -> np.ndarray:
    arr = as_matrix(values, name, n)
    if m is not None and arr.shape[1] != m:
        raise DataError(f"{name} has {arr.shape[1]} candidates per context, expected {m} like the logging distribution")
    if (arr < 0).any():
        row = int(np.argwhere(arr < 0)[0][0])
        raise DataError(f"{name} must hold probabilities >= 0; context {row} holds a negative one")
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if len(bad):
        raise DataError(f"each row of {name} must sum to 1 (a distribution over the context's candidates); context {int(bad[0])} sums to {sums[bad[0]]:.6g}")
    return arr


def _logged(actions: Any, rewards: Any, logging_dist: Any, target_dist: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs and the importance weights of the logged actions."""
    r = as_vector(rewards, "rewards")
    n = len(r)
    a = np.asarray(actions)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"actions must be {n} integer column indices (one per context), got {a.dtype} of shape {a.shape}")
    mu = _distribution(logging_dist, "logging_dist", n)
    pi = _distribution(target_dist, "target_dist", n, mu.shape[1])
    if n and (a.min() < 0 or a.max() >= mu.shape[1]):
        row = int(np.flatnonzero((a < 0) | (a >= mu.shape[1]))[0])
        raise DataError(f"actions: context {row} took column {int(a[row])}, outside its {mu.shape[1]} candidates")
    rows = np.arange(n)
    p0 = mu[rows, a]
    if (p0 <= 0).any():
        row = int(np.flatnonzero(p0 <= 0)[0])
        raise DataError(f"context {row}: the logged action has logging probability 0, so the log is not the logging policy's")
    w = pi[rows, a] / p0
    return a, r, mu, pi, w


def _support(mu: np.ndarray, pi: np.ndarray) -> str | None:
    return unsupported_reason(np.where(mu <= 0, pi, 0.0).sum(axis=1), "candidates")


def ips(
    actions: Any,
    rewards: Any,
    logging_dist: Any,
    target_dist: Any,
    *,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Inverse propensity scoring: ``mean(w_i r_i)`` (see the module docstring)."""
    check_settings(n_bootstrap, confidence, min_ess, seed)
    _, r, mu, pi, w = _logged(actions, rewards, logging_dist, target_dist)
    return finish("ips", w * r, None, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=_support(mu, pi))


def snips(
    actions: Any,
    rewards: Any,
    logging_dist: Any,
    target_dist: Any,
    *,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)`` (see the module docstring)."""
    check_settings(n_bootstrap, confidence, min_ess, seed)
    _, r, mu, pi, w = _logged(actions, rewards, logging_dist, target_dist)
    return finish("snips", w * r, w, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=_support(mu, pi))


def direct_method(
    actions: Any,
    rewards: Any,
    logging_dist: Any,
    target_dist: Any,
    reward_hat: Any,
    *,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """The direct method: ``mean_i sum_a pi_i(a) q(i, a)`` with ``reward_hat`` the ``(n, m)`` model predictions.

    The logged actions and rewards are only read to check overlap (see the module docstring): the
    reward model itself should be fitted on them by the caller (:mod:`recommender.ope.reward_model`).
    """
    check_settings(n_bootstrap, confidence, min_ess, seed)
    _, _, mu, pi, w = _logged(actions, rewards, logging_dist, target_dist)
    q = as_matrix(reward_hat, "reward_hat", len(w))
    if q.shape != pi.shape:
        raise DataError(f"reward_hat must have the shape of the distributions {pi.shape}, got {q.shape}")
    dm = (pi * q).sum(axis=1)
    return finish("dm", dm, None, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=_support(mu, pi))


def doubly_robust(
    actions: Any,
    rewards: Any,
    logging_dist: Any,
    target_dist: Any,
    reward_hat: Any,
    *,
    min_ess: float = DEFAULT_MIN_ESS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Doubly robust: ``mean_i [sum_a pi_i(a) q(i, a) + w_i (r_i - q(i, a_i))]`` (see the module docstring)."""
    check_settings(n_bootstrap, confidence, min_ess, seed)
    a, r, mu, pi, w = _logged(actions, rewards, logging_dist, target_dist)
    q = as_matrix(reward_hat, "reward_hat", len(w))
    if q.shape != pi.shape:
        raise DataError(f"reward_hat must have the shape of the distributions {pi.shape}, got {q.shape}")
    dm = (pi * q).sum(axis=1)
    contrib = dm + w * (r - q[np.arange(len(a)), a])
    return finish("dr", contrib, None, w, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, min_ess=min_ess, refusal=_support(mu, pi))
