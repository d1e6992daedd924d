"""Group-sequential boundaries: Lan-DeMets alpha spending, computed exactly for correlated looks.

An experiment looked at ``K`` times tests ``Z_1, ..., Z_K``, the z statistics of
the cumulated data. They are correlated: with ``t_k`` the information fraction
at look ``k`` (the share of the planned information seen so far), the B-values
``B_k = Z_k * sqrt(t_k)`` are a Brownian motion observed at the times ``t_k``
(with drift ``delta``, the z statistic the effect would have at ``t = 1``), so
``B_k - B_{k-1}`` is normal with mean ``delta * (t_k - t_{k-1})`` and variance
``t_k - t_{k-1}``, independent of the past.

The chance of crossing a boundary at look ``k`` without having crossed before is
a ``k``-dimensional normal integral. It is computed the way Armitage, McPherson
and Rowe (1969) and Jennison & Turnbull (2000, ch. 19; the method of the R
package gsDesign) do: by recursive numerical integration. The sub-density of
``B_k`` on the continuation region (the paths that have not stopped) is carried
on a grid, Simpson-weighted, and convolved with the normal increment to the next
look; the exit probability at each look is the grid sum of the normal tails.
This is deterministic (unlike the quasi-Monte-Carlo ``scipy.stats.multivariate_normal.cdf``)
and costs one ``GRID_POINTS``-square kernel per look.

Lan & DeMets (1983) turn a spending function ``alpha(t)`` (increasing, 0 at 0,
the test's level at 1) into boundaries for any information fractions chosen
independently of the outcome: the boundary at look ``k`` is the ``c_k`` for which
the chance of first crossing at look ``k`` under the null equals
``alpha(t_k) - alpha(t_{k-1})``. Two families are offered:

* ``obrien_fleming``: ``alpha(t) = 2 - 2 Phi(z_{1 - a/2} / sqrt(t))`` per side (``a``
  the one-sided level): very high early boundaries, close to the fixed test at the
  end, the Lan-DeMets version of O'Brien & Fleming (1979);
* ``pocock``: ``alpha(t) = a * ln(1 + (e - 1) t)``: nearly constant boundaries,
  the Lan-DeMets version of Pocock (1977).

A two-sided test of level ``alpha`` uses symmetric boundaries ``+-c_k`` and spends
``alpha(t)`` of level ``alpha / 2`` on each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, special, stats

from recommender.errors import ConfigError

__all__ = [
    "GRID_POINTS",
    "Spending",
    "constant_shape_boundaries",
    "crossing_probabilities",
    "repeated_p_value",
    "spending_boundaries",
    "spent_alpha",
]

Spending = Literal["obrien_fleming", "pocock"]
SPENDINGS: tuple[str, ...] = ("obrien_fleming", "pocock")

GRID_POINTS = 301
"""Grid points per look (odd, for Simpson's rule); the published Pocock and O'Brien-Fleming constants are met to 1e-7."""

_ROOT_2PI = math.sqrt(2.0 * math.pi)

_TAIL_SD = 9.0
"""How far (in standard deviations) the grid reaches where a region has no boundary."""


def spent_alpha(t: float | np.ndarray, alpha: float, spending: Spending, *, two_sided: bool) -> np.ndarray:
    """The type I error spent by information fraction ``t`` (Lan & DeMets 1983), both sides together.

    >>> round(float(spent_alpha(1.0, 0.05, "obrien_fleming", two_sided=True)), 10)
    0.05
    >>> round(float(spent_alpha(0.5, 0.05, "pocock", two_sided=False)), 4)
    0.031
    """
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    per_side = alpha / 2.0 if two_sided else alpha
    if spending == "obrien_fleming":
        with np.errstate(divide="ignore"):
            z = stats.norm.isf(per_side / 2.0) / np.sqrt(t)
        spent = 2.0 * stats.norm.sf(z)
    elif spending == "pocock":
        spent = per_side * np.log1p((math.e - 1.0) * t)
    else:
        raise ConfigError(f"spending must be one of {', '.join(SPENDINGS)}; got {spending!r}.")
    return spent * (2.0 if two_sided else 1.0)


@dataclass(frozen=True)
class _Continuation:
    """The sub-density of ``B_k`` on the paths still running after look ``k``, Simpson-weighted on a grid."""

    t: float
    grid: np.ndarray
    weights: np.ndarray  # density(grid) * Simpson weight: sum(weights * f(grid)) integrates f


def _simpson_weights(n: int, h: float) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w * h / 3.0


def _exit(prev: _Continuation | None, t: float, lower: float, upper: float, drift: float) -> tuple[float, float]:
    """The chances ``(above, below)`` of first leaving ``(lower, upper)`` (z scale) at fraction ``t``."""
    root_t = math.sqrt(t)
    if prev is None:
        mean, sd = np.array([drift * t]), math.sqrt(t)
        weights = np.ones(1)
    else:
        dt = t - prev.t
        mean, sd, weights = prev.grid + drift * dt, math.sqrt(dt), prev.weights
    above = float(weights @ special.ndtr((mean - upper * root_t) / sd))  # ndtr: the normal cdf, without
    below = float(weights @ special.ndtr((lower * root_t - mean) / sd))  # scipy.stats' per-call overhead
    return above, below


def _advance(prev: _Continuation | None, t: float, lower: float, upper: float, drift: float) -> _Continuation:
    """The continuation sub-density after a look at ``t`` with boundaries ``(lower, upper)`` on the z scale."""
    root_t = math.sqrt(t)
    centre = drift * t
    lo = max(lower * root_t, min(centre, upper * root_t) - _TAIL_SD * root_t)
    hi = min(upper * root_t, max(centre, lower * root_t) + _TAIL_SD * root_t)
    grid = np.linspace(lo, hi, GRID_POINTS)
    if prev is None:
        density = stats.norm.pdf(grid, loc=centre, scale=root_t)
    else:
        dt = t - prev.t
        sd = math.sqrt(dt)
        u = (grid[:, None] - prev.grid[None, :] - drift * dt) / sd
        density = np.exp(-0.5 * u * u) @ prev.weights / (sd * _ROOT_2PI)
    return _Continuation(t=t, grid=grid, weights=density * _simpson_weights(GRID_POINTS, (hi - lo) / (GRID_POINTS - 1)))


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """The fractions rounded to 1e-9 (so that cached paths are found again), refused unless increasing in (0, 1]."""
    fr = tuple(round(float(f), 9) for f in fractions)
    if not fr:
        raise ConfigError("information fractions must name at least one look; got none.")
    if any(not (0.0 < f <= 1.0) for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])):
        raise ConfigError(
            f"information fractions must increase strictly within (0, 1]; got {', '.join(f'{f:g}' for f in fr)}."
        )
    return fr


def crossing_probabilities(
    fractions: Sequence[float], boundaries: Sequence[float], drift: float = 0.0, *, two_sided: bool
) -> np.ndarray:
    """Per look, the chance that the z statistic first crosses its boundary there.

    ``boundaries`` are on the z scale (``inf`` where a look cannot reject); a
    two-sided design rejects when ``|Z_k| >= c_k``, a one-sided one when
    ``Z_k >= c_k``. ``drift`` is the expected z statistic at ``t = 1``: 0 gives the
    type I error spent at each look, the planned effect's drift gives the power.
    Their sum is the probability of rejecting at some look.
    """
    fr = _check_fractions(fractions)
    if len(boundaries) != len(fr):
        raise ConfigError(f"one boundary per look is needed: {len(fr)} looks, {len(boundaries)} boundaries.")
    prev: _Continuation | None = None
    out = np.empty(len(fr))
    for k, (t, c) in enumerate(zip(fr, boundaries)):
        lower = -c if two_sided else -math.inf
        above, below = _exit(prev, t, lower, c, drift)
        out[k] = above + (below if two_sided else 0.0)
        if k < len(fr) - 1:
            prev = _advance(prev, t, lower, c, drift)
    return out


@lru_cache(maxsize=4096)
def _spending_path(
    fractions: tuple[float, ...], alpha: float, spending: Spending, two_sided: bool
) -> tuple[tuple[float, ...], _Continuation]:
    """Boundaries for ``fractions`` and the null continuation density after the last one (cached by prefix)."""
    if len(fractions) == 1:
        bounds: tuple[float, ...] = ()
        prev: _Continuation | None = None
        previous_spent = 0.0
    else:
        bounds, prev = _spending_path(fractions[:-1], alpha, spending, two_sided)
        previous_spent = float(spent_alpha(fractions[-2], alpha, spending, two_sided=two_sided))
    t = fractions[-1]
    target = float(spent_alpha(t, alpha, spending, two_sided=two_sided)) - previous_spent

    def excess(c: float) -> float:
        above, below = _exit(prev, t, -c if two_sided else -math.inf, c, 0.0)
        return above + (below if two_sided else 0.0) - target

    if target <= 1e-15:
        c = math.inf
    elif excess(0.0) <= 0.0:
        c = 0.0
    else:
        c = float(optimize.brentq(excess, 0.0, 40.0, xtol=1e-10)) if excess(40.0) < 0 else 40.0
    lower = -c if two_sided else -math.inf
    return bounds + (c,), _advance(prev, t, lower, c, 0.0)


def spending_boundaries(
    fractions: Sequence[float], alpha: float, *, spending: Spending = "obrien_fleming", two_sided: bool = True
) -> tuple[float, ...]:
    """The Lan-DeMets z boundaries at the given information fractions (the last one usually 1).

    A look whose spending adds nothing gets the boundary ``inf``. Results are
    cached by the fractions seen so far, so analysing look ``k`` after looks
    ``1..k-1`` costs one integration step.

    >>> tuple(round(c, 2) for c in spending_boundaries([1/3, 2/3, 1], 0.025, two_sided=False))
    (3.71, 2.51, 1.99)
    """
    if not (0.0 < alpha < 1.0):
        raise ConfigError(f"alpha must be in (0, 1); got {alpha!r}.")
    if spending not in SPENDINGS:
        raise ConfigError(f"spending must be one of {', '.join(SPENDINGS)}; got {spending!r}.")
    fr = _check_fractions(fractions)
    return _spending_path(fr, float(alpha), spending, bool(two_sided))[0]


def constant_shape_boundaries(
    fractions: Sequence[float], alpha: float, *, shape: Literal["pocock", "obrien_fleming"], two_sided: bool = True
) -> tuple[float, ...]:
    """The classic boundaries of Pocock (1977, constant ``c``) or O'Brien & Fleming (1979, ``C / sqrt(t_k)``).

    The constant is found so that the total type I error over all looks is
    ``alpha``; used to cross-check the integration against the published tables.
    """
    fr = _check_fractions(fractions)

    def shape_of(c: float) -> list[float]:
        return [c] * len(fr) if shape == "pocock" else [c / math.sqrt(t) for t in fr]

    def excess(c: float) -> float:
        return float(crossing_probabilities(fr, shape_of(c), two_sided=two_sided).sum()) - alpha

    return tuple(shape_of(float(optimize.brentq(excess, 0.5, 10.0, xtol=1e-8))))


def repeated_p_value(
    fractions: Sequence[float], z: float, *, spending: Spending = "obrien_fleming", two_sided: bool = True
) -> float:
    """The smallest level at which the Lan-DeMets design over ``fractions`` rejects at its last look with ``z``.

    Jennison & Turnbull (2000, section 9.1): with ``c_k(a)`` the last boundary of
    the design of level ``a``, the repeated p-value is the ``a`` for which
    ``c_k(a) = z``. Because a crossing at look ``k`` is one way of crossing by look
    ``k``, ``P(p_k <= a) <= a`` at any look, however the looks were chosen to
    stop: it is a valid p-value for multiplicity corrections, it rejects at
    ``alpha`` exactly when the design does, and it is never below the look's
    nominal p-value. Found to a relative 1e-3 by root finding over the log of the level.
    """
    fr = _check_fractions(fractions)
    if not math.isfinite(z):
        raise ConfigError(f"z must be finite; got {z!r}.")
    nominal = float(2.0 * stats.norm.sf(abs(z)) if two_sided else stats.norm.sf(z))
    low = max(nominal, 1e-15)
    if low >= 0.999999:
        return 1.0

    def gap(log_level: float) -> float:
        return _spending_path(fr, math.exp(log_level), spending, two_sided)[0][-1] - z

    top = math.log(0.999999)
    if gap(top) > 0:  # even a design of level ~1 would not reject at this look
        return 1.0
    if gap(math.log(low)) <= 0:
        return low
    return math.exp(float(optimize.brentq(gap, math.log(low), top, xtol=1e-3)))
