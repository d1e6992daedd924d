"""How many units an experiment needs: the fixed-horizon size and the inflation of a sequential design.

The fixed-horizon size follows from the normal approximation of the
difference's z statistic: with ``w_c`` and ``w_t`` the shares of the units
sent to control and to a treatment, ``N`` units in all and the per-unit
variances ``s_c^2`` and ``s_t^2``,

    N = (z_{1-a} + z_{1-beta})^2 * (s_c^2 / w_c + s_t^2 / w_t) / mde^2,

where ``a`` is the level per comparison (halved for a two-sided test) and
``1 - beta`` the power. A proportion metric has ``s^2 = p (1 - p)`` at the
baseline ``p`` for control and at ``p +- mde`` for the treatment; a mean needs
its standard deviation ``sd`` (the same in both arms). With several treatments
the smallest treatment share decides. With ``comparisons > 1`` the level is
corrected: Bonferroni divides it by the number of comparisons, and so does Holm
for sizing (Holm's first and strictest step is Bonferroni's).

A sequential design needs more units for the same power, in exchange for
stopping early when the effect is large or absent. The inflation factor is the
ratio ``N_sequential / N_fixed``, computed exactly for ``looks`` equally spaced
looks with the recursive integration of :mod:`recommender.experiments.boundaries`:

* group sequential: the drift ``delta`` (the expected z statistic at the end)
  for which the Lan-DeMets boundaries reject with the planned power; the
  inflation is ``(delta / (z_{1-a} + z_{1-beta}))^2`` (Jennison & Turnbull 2000,
  ch. 2-7; gsDesign's ``inflation factor``);
* mSPRT: the size at which the mixture test (``tau`` = ``mde``) rejects at one of
  the ``looks`` with the planned power. At a look with information fraction
  ``t`` its rejection region is the z boundary of
  :func:`recommender.experiments.msprt.z_boundary` with ``tau^2 / V = t * N /
  N_fixed * (z_{1-a} + z_{1-beta})^2``, so the same integration gives its power.
  Looks taken more often than planned only add power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, stats

from recommender.errors import ConfigError
from recommender.experiments.boundaries import SPENDINGS, Spending, crossing_probabilities, spending_boundaries
from recommender.experiments.msprt import z_boundary

__all__ = ["SampleSizePlan", "plan_sample_size"]

Method = Literal["fixed", "group_sequential", "msprt"]
METHODS: tuple[str, ...] = ("fixed", "group_sequential", "msprt")
Alternative = Literal["two-sided", "larger", "smaller"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "larger", "smaller")
Correction = Literal["none", "bonferroni", "holm"]
CORRECTIONS: tuple[str, ...] = ("none", "bonferroni", "holm")
MAX_LOOKS = 100


@dataclass(frozen=True)
class SampleSizePlan:
    """The units an experiment needs.

    Attributes
    ----------
    n_per_arm:
        Units per arm, in the order of ``allocation`` (control first).
    n_total:
        Units in all arms together.
    n_fixed_per_arm:
        What a fixed-horizon test with one look would need.
    inflation:
        ``N_sequential / N_fixed`` before rounding (1 for a fixed design).
    alpha_per_comparison:
        The level each comparison is tested at after the correction.
    method, looks, power:
        The design sized.
    sizing:
        One sentence on how the size was found.
    """

    n_per_arm: tuple[int, ...]
    n_total: int
    n_fixed_per_arm: tuple[int, ...]
    inflation: float
    alpha_per_comparison: float
    method: Method
    looks: int
    power: float
    sizing: str


def _check_unit_interval(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
        raise ConfigError(f"{name} must be a number in (0, 1); got {value!r}.")
    return float(value)


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Refuse an option outside ``choices``, naming them."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")


def check_looks(looks: int) -> int:
    """Refuse a number of looks that is not an integer in ``1..MAX_LOOKS``."""
    if isinstance(looks, bool) or not isinstance(looks, int) or not (1 <= looks <= MAX_LOOKS):
        raise ConfigError(f"looks must be an integer from 1 to {MAX_LOOKS}; got {looks!r}.")
    return looks


def _allocation_shares(allocation: Sequence[float]) -> np.ndarray:
    shares = np.asarray(list(allocation), dtype=float)
    if shares.ndim != 1 or shares.size < 2 or not np.all(np.isfinite(shares)) or np.any(shares <= 0):
        raise ConfigError(
            f"allocation must list at least two positive shares, control first; got {list(allocation)!r}."
        )
    if abs(shares.sum() - 1.0) > 1e-6:
        raise ConfigError(f"allocation shares must sum to 1; got {list(allocation)!r} (sum {shares.sum():g}).")
    return shares / shares.sum()


def group_sequential_drift(
    looks: int, alpha: float, power: float, *, spending: Spending, two_sided: bool
) -> tuple[float, tuple[float, ...]]:
    """The drift with which Lan-DeMets boundaries at ``looks`` equal looks reject with ``power``, and the boundaries."""
    fractions = [k / looks for k in range(1, looks + 1)]
    bounds = spending_boundaries(fractions, alpha, spending=spending, two_sided=two_sided)

    def shortfall(drift: float) -> float:
        return float(crossing_probabilities(fractions, bounds, drift, two_sided=two_sided).sum()) - power

    return float(optimize.brentq(shortfall, 0.0, 20.0, xtol=1e-9)), bounds


def msprt_inflation(looks: int, alpha: float, power: float, z_sum: float, *, two_sided: bool) -> float:
    """``N / N_fixed`` at which the mSPRT with ``tau = mde`` rejects at one of ``looks`` equal looks with ``power``."""
    fractions = [k / looks for k in range(1, looks + 1)]

    def shortfall(inflation: float) -> float:
        bounds = [
            z_boundary(1.0, t * inflation * z_sum**2, alpha, one_sided=not two_sided) for t in fractions
        ]
        drift = math.sqrt(inflation) * z_sum
        return float(crossing_probabilities(fractions, bounds, drift, two_sided=two_sided).sum()) - power

    return float(optimize.brentq(shortfall, 0.2, 50.0, xtol=1e-7))


def plan_sample_size(
    kind: Literal["proportion", "mean"],
    baseline: float,
    mde: float,
    *,
    alpha: float,
    power: float,
    allocation: Sequence[float],
    sd: float | None = None,
    method: Method = "fixed",
    looks: int = 1,
    alternative: Alternative = "two-sided",
    comparisons: int = 1,
    correction: Correction = "none",
    spending: Spending = "obrien_fleming",
) -> SampleSizePlan:
    """The units needed to detect an absolute difference ``mde`` from ``baseline`` with ``power``.

    Parameters
    ----------
    kind:
        ``"proportion"`` (a 0/1 metric; ``baseline`` its control rate) or ``"mean"`` (needs ``sd``).
    baseline:
        The control arm's expected rate or mean.
    mde:
        The minimum detectable effect: the absolute difference ``treatment - control``
        to detect, positive (its direction follows ``alternative``: ``"smaller"`` looks for a drop).
    alpha, power:
        The familywise type I error and the power wanted.
    allocation:
        The arms' shares of the units, control first, summing to 1.
    method, looks, spending:
        The design: ``"fixed"`` (one test at the end, whatever the looks), ``"group_sequential"`` (Lan-DeMets
        spending over ``looks`` equal looks) or ``"msprt"`` (the always-valid
        mixture test, looked at ``looks`` times).
    comparisons, correction:
        The number of treatment-versus-control comparisons sharing ``alpha`` and how it is split.

    Examples
    --------
    >>> plan = plan_sample_size("proportion", 0.10, 0.01, alpha=0.05, power=0.8, allocation=[0.5, 0.5])
    >>> plan.n_per_arm  # (1.95996 + 0.84162)^2 * (0.09 + 0.0979) / 0.01^2
    (14749, 14749)
    """
    check_choice("kind", kind, ("proportion", "mean"))
    check_choice("method", method, METHODS)
    check_choice("alternative", alternative, ALTERNATIVES)
    check_choice("correction", correction, CORRECTIONS)
    check_choice("spending", spending, SPENDINGS)
    alpha = _check_unit_interval("alpha", alpha)
    power = _check_unit_interval("power", power)
    looks = check_looks(looks)
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ConfigError(f"comparisons must be a positive integer; got {comparisons!r}.")
    if isinstance(mde, bool) or not isinstance(mde, (int, float)) or not (math.isfinite(mde) and mde > 0):
        raise ConfigError(f"mde must be a positive, finite absolute difference; got {mde!r}.")
    if not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
        raise ConfigError(f"baseline must be a finite number; got {baseline!r}.")
    shares = _allocation_shares(allocation)

    if kind == "proportion":
        target = baseline - mde if alternative == "smaller" else baseline + mde
        if not (0.0 < baseline < 1.0 and 0.0 < target < 1.0):
            raise ConfigError(
                f"a proportion's baseline and baseline {'-' if alternative == 'smaller' else '+'} mde must lie in "
                f"(0, 1); got baseline={baseline!r}, mde={mde!r}."
            )
        var_c, var_t = baseline * (1 - baseline), target * (1 - target)
    else:
        if sd is None or isinstance(sd, bool) or not isinstance(sd, (int, float)) or not (math.isfinite(sd) and sd > 0):
            raise ConfigError(f"a mean metric needs its standard deviation sd > 0; got sd={sd!r}.")
        var_c = var_t = float(sd) ** 2

    a = alpha / comparisons if correction != "none" else alpha
    two_sided = alternative == "two-sided"
    z_sum = float(stats.norm.isf(a / 2.0 if two_sided else a) + stats.norm.ppf(power))
    n_fixed = z_sum**2 * (var_c / shares[0] + var_t / shares[1:].min()) / mde**2

    if method == "fixed":
        inflation, sizing = 1.0, "fixed horizon: normal approximation of the difference's z test"
    elif method == "group_sequential":
        drift, _ = group_sequential_drift(looks, a, power, spending=spending, two_sided=two_sided)
        inflation = (drift / z_sum) ** 2
        sizing = (
            f"group sequential, Lan-DeMets {spending.replace('_', '-')} spending over {looks} equal looks: "
            "power computed exactly by recursive integration"
        )
    else:
        inflation = msprt_inflation(looks, a, power, z_sum, two_sided=two_sided)
        sizing = (
            f"mSPRT with mixing sd tau = mde, rejecting at one of {looks} equal looks: "
            "power computed exactly by recursive integration of its z boundaries"
        )
    n_per_arm = tuple(int(math.ceil(s * n_fixed * inflation - 1e-9)) for s in shares)
    return SampleSizePlan(
        n_per_arm=n_per_arm,
        n_total=sum(n_per_arm),
        n_fixed_per_arm=tuple(int(math.ceil(s * n_fixed - 1e-9)) for s in shares),
        inflation=float(inflation),
        alpha_per_comparison=a,
        method=method,
        looks=looks,
        power=power,
        sizing=sizing,
    )
