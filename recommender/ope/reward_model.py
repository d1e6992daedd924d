"""Simple reward models for the direct method and doubly robust: per-item means, or ridge on given features.

Both are fitted on the logged (context, action, reward) triples and predict every
candidate of every context, as the ``(n, m)`` ``reward_hat`` the estimators take.
They are deliberately plain: doubly robust only needs a model that is roughly
right, and a plain model is one a reviewer can check by hand. They are fitted and
evaluated on the same logs (no cross-fitting), which is the textbook DM/DR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.errors import ConfigError, DataError
from recommender.ope._common import as_vector, plain

__all__ = ["item_mean_rewards", "ridge_rewards"]


def item_mean_rewards(candidates: Any, actions: Any, rewards: Any, *, prior_strength: float = 1.0, mask: Any = None) -> np.ndarray:
    """Each candidate's predicted reward: its item's mean logged reward, shrunk to the overall mean.

    ``candidates``: ``(n, m)`` integer item codes (any codes; equal codes are the same item);
    ``actions``: the column taken per context; ``rewards``: its reward.
    ``q(item) = (sum of its rewards + prior_strength * overall mean) / (times taken + prior_strength)``,
    so an item never taken is predicted the overall mean. ``mask`` (``(n, m)`` bool) marks real
    candidates; padded cells are predicted 0.
    """
    if prior_strength < 0:
        raise ConfigError(f"prior_strength must be >= 0, got {plain(prior_strength)!r}")
    cand = np.asarray(candidates)
    if cand.ndim != 2 or not np.issubdtype(cand.dtype, np.integer):
        raise DataError(f"candidates must be an (n, m) array of integer item codes, got {cand.dtype} of shape {cand.shape}")
    n = cand.shape[0]
    r = as_vector(rewards, "rewards", n)
    a = np.asarray(actions, dtype=np.int64)
    if a.shape != (n,) or (n and (a.min() < 0 or a.max() >= cand.shape[1])):
        raise DataError(f"actions must be {n} column indices in [0, {cand.shape[1]})")
    codes, inverse = np.unique(cand, return_inverse=True)
    inverse = inverse.reshape(cand.shape)
    taken = inverse[np.arange(n), a]
    total = np.bincount(taken, weights=r, minlength=len(codes))
    count = np.bincount(taken, minlength=len(codes)).astype(np.float64)
    overall = float(r.mean()) if n else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (total + prior_strength * overall) / (count + prior_strength)
    means = np.where(count + prior_strength > 0, means, overall)
    q = means[inverse]
    if mask is not None:
        q = np.where(np.asarray(mask, dtype=bool), q, 0.0)
    return q


def ridge_rewards(features: Any, actions: Any, rewards: Any, *, alpha: float = 1.0) -> np.ndarray:
    """Ridge regression of the reward on given ``(n, m, d)`` candidate features, predicted for every candidate.

    Fitted on the logged candidates' features only (``X_i = features[i, a_i]``), with an
    unpenalised intercept: ``beta = (X'X + alpha I)^-1 X'(r - mean r)``.
    """
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {plain(alpha)!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 3 or not np.isfinite(x).all():
        raise DataError(f"features must be a finite (n, m, d) array, got shape {x.shape}")
    n, m, d = x.shape
    r = as_vector(rewards, "rewards", n)
    a = np.asarray(actions, dtype=np.int64)
    if a.shape != (n,) or (n and (a.min() < 0 or a.max() >= m)):
        raise DataError(f"actions must be {n} column indices in [0, {m})")
    logged = x[np.arange(n), a]
    x_mean = logged.mean(axis=0)
    r_mean = float(r.mean())
    centred = logged - x_mean
    beta = np.linalg.solve(centred.T @ centred + alpha * np.eye(d), centred.T @ (r - r_mean))
    return (x - x_mean) @ beta + r_mean
