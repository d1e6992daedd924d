"""Guardrails on an arm's whole traffic: a ratio of sums and an exposure gap, tested for non-inferiority.

Some guardrails are not a number per subject but a property of everything an
arm served: the share of served items flagged harmful is a ratio of two sums
over subjects, and a provider exposure gap compares the arm's exposure
distribution over provider groups with the catalogue's. Their units are still
the subjects (the randomisation unit): one subject's lists are correlated, so
the uncertainty is computed over subjects (clusters), never over items.

* :func:`ratio_noninferiority` -- ``R = sum y / sum d`` per arm (harmful items over
  served items), the difference's variance by the delta method with each subject as
  a cluster: ``Var(R) ~ sum_i (y_i - R d_i)^2 / (sum_i d_i)^2 * n / (n - 1)``
  (the linearised ratio estimator, Cochran, *Sampling Techniques*, 1977, 6.3);
* :func:`exposure_gap` -- the total-variation distance ``0.5 * sum_g |E_g / E - c_g|``
  between the arm's exposure shares over groups and target shares (the catalogue's
  item shares): 0 when every group gets exposure in proportion to its items, 1 at most;
* :func:`gap_noninferiority` -- the difference of two arms' gaps, its one-sided bound
  from a bootstrap over subjects, each arm resampled on its own (the percentile
  method, Efron & Tibshirani 1993, ch. 13); the gap is not smooth where a group's
  share meets its target, which a delta method would get wrong and a bootstrap does not.

Both tests put the burden as :func:`~recommender.experiments.guardrail_check` does:
the guardrail holds only when the one-sided ``1 - alpha`` bound of the harm clears
the margin. Each result also says whether the data show harm at all
(``harm_significant``: the bound on the other side excludes 0), the figure a
monitor raises an alarm on; on A/A data it fires at most ``alpha`` of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from recommender.errors import ConfigError, DataError

__all__ = ["ArmLevelResult", "exposure_gap", "gap_noninferiority", "ratio_noninferiority"]

Direction = Literal["higher_is_better", "lower_is_better"]
DIRECTIONS: tuple[str, ...] = ("higher_is_better", "lower_is_better")
BOOTSTRAP_CELLS = 4_000_000
"""Resampling weights are drawn in blocks of at most this many cells (replicates x subjects): bounded memory."""


@dataclass(frozen=True)
class ArmLevelResult:
    """An arm-level guardrail's non-inferiority test.

    Attributes
    ----------
    control, treatment:
        The statistic in each arm (the ratio, or the gap).
    estimate:
        ``treatment - control``.
    ci_low, ci_high:
        The one-sided ``1 - alpha`` bound on the harmful side; the other side is infinite.
    se:
        The standard error of the difference (delta method, or the bootstrap replicates' sd).
    p_value:
        The one-sided p-value of ``H0``: the treatment is worse than the margin allows.
    non_inferior:
        The bound clears the margin: the treatment is shown no worse than ``margin``.
    harm_significant:
        The bound on the other side excludes 0: the data show the treatment is worse at all.
    method:
        ``"delta"`` or ``"bootstrap"``.
    n_control, n_treatment:
        Subjects (clusters) per arm.
    n_boot:
        Bootstrap replicates (0 for the delta method).
    """

    control: float
    treatment: float
    estimate: float
    ci_low: float
    ci_high: float
    se: float
    margin: float
    direction: Direction
    alpha: float
    p_value: float
    non_inferior: bool
    harm_significant: bool
    method: str
    n_control: int
    n_treatment: int
    n_boot: int = 0


def _check_test(margin: float, direction: str, alpha: float) -> None:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(repr(d) for d in DIRECTIONS)}; got {direction!r}.")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin > 0):
        raise ConfigError(f"margin must be a positive, finite difference (the largest acceptable harm); got {margin!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 < alpha < 0.5):
        raise ConfigError(f"alpha must be in (0, 0.5) for a one-sided test; got {alpha!r}.")


def _vector(values: np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"{label} must be one number per subject (a 1-d array); got shape {array.shape}.")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise DataError(f"{label} must hold finite, non-negative numbers (counts or exposures per subject).")
    return array


def _ratio(num: np.ndarray, den: np.ndarray, label: str) -> tuple[float, float]:
    """The arm's ratio of sums and its delta-method variance (subjects as clusters)."""
    n = num.size
    if n < 2:
        raise DataError(f"the {label} arm needs at least 2 subjects for a variance; got {n}.")
    total = float(den.sum())
    if total <= 0:
        raise DataError(f"the {label} arm served nothing to measure (the denominator sums to 0).")
    ratio = float(num.sum()) / total
    residual = num - ratio * den
    return ratio, float(np.square(residual).sum()) / total**2 * n / (n - 1)


def _outcome(
    control: float, treatment: float, se: float, low_q: float, high_q: float, p: float,
    margin: float, direction: Direction, alpha: float, method: str, n_c: int, n_t: int, n_boot: int,
) -> ArmLevelResult:  # fmt: skip
    """Assemble the result from the difference's quantiles at ``alpha`` and ``1 - alpha``."""
    estimate = treatment - control
    if direction == "lower_is_better":  # harm is a rise: the upper bound must stay under +margin
        ci_low, ci_high = -math.inf, high_q
        non_inferior, harm = high_q < margin, low_q > 0
    else:  # harm is a fall: the lower bound must stay above -margin
        ci_low, ci_high = low_q, math.inf
        non_inferior, harm = low_q > -margin, high_q < 0
    return ArmLevelResult(
        control=control, treatment=treatment, estimate=estimate, ci_low=ci_low, ci_high=ci_high, se=se,
        margin=float(margin), direction=direction, alpha=float(alpha), p_value=float(p), non_inferior=bool(non_inferior),
        harm_significant=bool(harm), method=method, n_control=n_c, n_treatment=n_t, n_boot=n_boot,
    )  # fmt: skip


def ratio_noninferiority(
    control_num: np.ndarray, control_den: np.ndarray, treatment_num: np.ndarray, treatment_den: np.ndarray,
    *, margin: float, direction: Direction, alpha: float,
) -> ArmLevelResult:  # fmt: skip
    """Non-inferiority of a ratio of sums over subjects (e.g. harmful items served / items served).

    ``*_num`` and ``*_den`` hold one number per subject of the arm. The difference of the
    arms' ratios is normal with the sum of their delta-method variances.

    >>> c = ratio_noninferiority([0, 1, 0, 1], [10, 10, 10, 10], [0, 1, 1, 0], [10, 10, 10, 10],
    ...                          margin=0.05, direction="lower_is_better", alpha=0.05)
    >>> round(c.estimate, 3), c.method
    (0.0, 'delta')
    """
    _check_test(margin, direction, alpha)
    arms = []
    for label, num, den in (("control", control_num, control_den), ("treatment", treatment_num, treatment_den)):
        num, den = _vector(num, f"the {label} numerators"), _vector(den, f"the {label} denominators")
        if num.shape != den.shape:
            raise DataError(f"the {label} numerators and denominators differ in length ({num.size} and {den.size}).")
        arms.append((*_ratio(num, den, label), num.size))
    (r_c, v_c, n_c), (r_t, v_t, n_t) = arms
    se = math.sqrt(v_c + v_t)
    estimate = r_t - r_c
    if se == 0:
        raise DataError("the ratio does not vary within either arm: its difference has no standard error.")
    z = float(stats.norm.isf(alpha))
    harm_side = margin - estimate if direction == "lower_is_better" else estimate + margin
    p = float(stats.norm.sf(harm_side / se))
    return _outcome(r_c, r_t, se, estimate - z * se, estimate + z * se, p, margin, direction, alpha, "delta", n_c, n_t, 0)


def exposure_gap(group_exposure: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The total-variation gap ``0.5 * sum_g |E_g / E - c_g|`` of exposure totals against target shares.

    ``group_exposure`` is ``(..., groups)``: the exposure each group received (summed over
    subjects; leading axes are replicates); ``target`` the groups' shares, summing to 1.

    >>> float(exposure_gap(np.array([3.0, 1.0]), np.array([0.5, 0.5])))
    0.25
    """
    exposure = np.asarray(group_exposure, dtype=np.float64)
    total = exposure.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = exposure / total
    return 0.5 * np.abs(shares - np.asarray(target, dtype=np.float64)).sum(axis=-1)


def _check_matrix(values: np.ndarray, label: str, groups: int) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != groups:
        raise DataError(f"the {label} arm's exposure must be (subjects, {groups} groups); got shape {matrix.shape}.")
    if matrix.shape[0] < 2:
        raise DataError(f"the {label} arm needs at least 2 subjects for a bootstrap; got {matrix.shape[0]}.")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise DataError(f"the {label} arm's exposure must be finite and non-negative.")
    if matrix.sum() <= 0:
        raise DataError(f"the {label} arm served no exposure to measure.")
    return matrix


def _replicates(matrix: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, groups)`` column totals of the subjects resampled with replacement, in bounded blocks."""
    n = matrix.shape[0]
    block = max(1, BOOTSTRAP_CELLS // n)
    out = np.empty((n_boot, matrix.shape[1]))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start)
        out[start:stop] = counts @ matrix
    return out


def _clustered(matrix: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """The rows summed into ``clusters`` random groups of (nearly) equal size; the matrix itself when it has fewer rows."""
    n = matrix.shape[0]
    if n <= clusters:
        return matrix
    labels = rng.permutation(n) % clusters
    out = np.zeros((clusters, matrix.shape[1]))
    np.add.at(out, labels, matrix)
    return out


def gap_noninferiority(
    control: np.ndarray, treatment: np.ndarray, target: np.ndarray,
    *, margin: float, alpha: float, direction: Direction = "lower_is_better", n_boot: int = 2000, random_state: int = 0,
    clusters: int | None = 5000,
) -> ArmLevelResult:  # fmt: skip
    """Non-inferiority of the treatment's exposure gap against the control's, by a bootstrap over subjects.

    ``control`` and ``treatment`` are ``(subjects, groups)`` exposure per subject and group;
    ``target`` the groups' target shares (the catalogue's). A gap is lower-is-better by default.
    The bound is the ``1 - alpha`` (or ``alpha``) quantile of the replicated differences;
    the p-value the share of replicates on the wrong side of the margin (``(1 + count) / (1 + B)``).

    ``clusters``: an arm with more subjects is first summed into this many clusters of subjects drawn at
    random (equal sizes, so the clusters' totals are exchangeable) and the clusters are resampled: the
    variance of the totals is the same, and the bootstrap costs ``n_boot x clusters``, not ``n_boot x subjects``.
    None: resample the subjects themselves.
    """
    _check_test(margin, direction, alpha)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ConfigError(f"n_boot must be an integer >= 100 (replicates of the bootstrap); got {n_boot!r}.")
    target = np.asarray(target, dtype=np.float64)
    if target.ndim != 1 or target.size < 2 or np.any(target < 0) or abs(target.sum() - 1.0) > 1e-9:
        raise DataError(f"target must be the shares of 2+ groups, non-negative and summing to 1; got {target.tolist()}.")
    c = _check_matrix(control, "control", target.size)
    t = _check_matrix(treatment, "treatment", target.size)
    if clusters is not None and (isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 100):
        raise ConfigError(f"clusters must be an integer >= 100 or None; got {clusters!r}.")
    rng = np.random.default_rng(random_state)
    gap_c, gap_t = float(exposure_gap(c.sum(axis=0), target)), float(exposure_gap(t.sum(axis=0), target))
    n_c, n_t = c.shape[0], t.shape[0]
    if clusters is not None:
        c, t = _clustered(c, clusters, rng), _clustered(t, clusters, rng)
    differences = exposure_gap(_replicates(t, n_boot, rng), target) - exposure_gap(_replicates(c, n_boot, rng), target)
    low_q, high_q = (float(q) for q in np.quantile(differences, [alpha, 1.0 - alpha]))
    wrong = differences >= margin if direction == "lower_is_better" else differences <= -margin
    p = (1.0 + float(wrong.sum())) / (1.0 + n_boot)
    se = float(differences.std(ddof=1))
    return _outcome(gap_c, gap_t, se, low_q, high_q, p, margin, direction, alpha, "bootstrap", n_c, n_t, int(n_boot))
