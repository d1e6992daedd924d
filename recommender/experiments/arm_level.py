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
  share meets its target, which a delta method would get wrong and a bootstrap does not;
* :func:`group_gap` -- the consumer side: the largest difference of a per-subject quality
  metric's mean between two groups of subjects (the gap the accuracy-fairness front
  reports), and :func:`quality_gap_noninferiority`, the difference of two arms' gaps
  tested the same way (``scipy.stats.bootstrap``, percentile, each arm on its own);
  a maximum over groups is not smooth either.

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

__all__ = ["ArmLevelResult", "exposure_gap", "gap_noninferiority", "group_gap", "quality_gap_noninferiority", "ratio_noninferiority"]

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


def group_gap(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The largest difference between groups' means, ``max_g m_g - min_g m_g`` with ``m_g = sums_g / counts_g``.

    ``sums`` and ``counts`` are ``(..., groups)`` (leading axes are replicates); a group with no subject in a
    replicate is left out of that replicate's gap.

    >>> round(float(group_gap(np.array([20.0, 16.0]), np.array([40.0, 40.0]))), 12)
    0.1
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.asarray(sums, dtype=np.float64) / np.asarray(counts, dtype=np.float64)
    return np.nanmax(means, axis=-1) - np.nanmin(means, axis=-1)


def _group_cells(
    values: np.ndarray, codes: np.ndarray, groups: int, label: str, clusters: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(rows, groups)`` sums of the values and counts of the subjects, a row per subject, or per random cluster of
    subjects when there are more than ``clusters`` (equal sizes, as :func:`gap_noninferiority` clusters)."""
    values = np.asarray(values, dtype=np.float64)
    codes = np.asarray(codes)
    if values.ndim != 1 or codes.shape != values.shape:
        raise DataError(f"the {label} arm needs one value and one group code per subject (1-d, the same length); got {values.shape} and {codes.shape}.")
    if not np.all(np.isfinite(values)):
        raise DataError(f"the {label} arm's values must be finite.")
    if codes.size and (not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= groups):
        raise DataError(f"the {label} arm's group codes must be integers in [0, {groups}).")
    n = values.size
    rows, size = (np.arange(n), n) if clusters is None or n <= clusters else (rng.permutation(n) % clusters, clusters)
    cells = rows * groups + codes.astype(np.int64)
    sums = np.bincount(cells, weights=values, minlength=size * groups).reshape(size, groups)
    counts = np.bincount(cells, minlength=size * groups).reshape(size, groups).astype(np.float64)
    small = np.flatnonzero(counts.sum(axis=0) < 2)
    if small.size:
        raise DataError(f"every group needs at least 2 subjects in each arm; the {label} arm has fewer in group(s) {small.tolist()}.")
    return sums, counts


def quality_gap_noninferiority(
    control_values: np.ndarray, control_groups: np.ndarray, treatment_values: np.ndarray, treatment_groups: np.ndarray,
    *, groups: int, margin: float, alpha: float, direction: Direction = "lower_is_better", n_boot: int = 2000,
    random_state: int = 0, clusters: int | None = 5000,
) -> ArmLevelResult:  # fmt: skip
    """Non-inferiority of the treatment's consumer gap (:func:`group_gap`) against the control's.

    ``*_values`` hold a quality metric per subject (clicked or not, clicks, ...), ``*_groups`` each subject's
    group code in ``[0, groups)``; every group needs 2 or more subjects in each arm (the caller leaves smaller
    groups out of both). The bound is ``scipy.stats.bootstrap``'s one-sided percentile interval of the difference
    of the gaps at ``1 - alpha``, each arm's subjects resampled on their own; the p-value is the share of
    replicates on the wrong side of the margin (``(1 + count) / (1 + B)``). ``clusters``: an arm with more
    subjects is first summed into this many random clusters of equal size (see :func:`gap_noninferiority`).

    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat([0, 1], 500)
    >>> c = quality_gap_noninferiority(rng.binomial(1, 0.3, 1000), g, rng.binomial(1, 0.3, 1000), g,
    ...                                groups=2, margin=0.1, alpha=0.05, n_boot=500)
    >>> c.method, c.non_inferior
    ('bootstrap', True)
    """
    _check_test(margin, direction, alpha)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ConfigError(f"n_boot must be an integer >= 100 (replicates of the bootstrap); got {n_boot!r}.")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 2:
        raise DataError(f"a gap between groups needs 2 or more groups; got {groups!r}.")
    if clusters is not None and (isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 100):
        raise ConfigError(f"clusters must be an integer >= 100 or None; got {clusters!r}.")
    rng = np.random.default_rng(random_state)
    s_c, n_c_groups = _group_cells(control_values, control_groups, groups, "control", clusters, rng)
    s_t, n_t_groups = _group_cells(treatment_values, treatment_groups, groups, "treatment", clusters, rng)
    gap_c = float(group_gap(s_c.sum(axis=0), n_c_groups.sum(axis=0)))
    gap_t = float(group_gap(s_t.sum(axis=0), n_t_groups.sum(axis=0)))
    n_c, n_t = int(np.asarray(control_values).size), int(np.asarray(treatment_values).size)

    def arm_gap(index: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        rows = np.asarray(index, dtype=np.int64)
        flat = rows.reshape(-1, rows.shape[-1])
        size = sums.shape[0]
        weights = np.bincount((flat + size * np.arange(flat.shape[0])[:, None]).ravel(), minlength=flat.shape[0] * size).reshape(flat.shape[0], size)
        return group_gap(weights @ sums, weights @ counts).reshape(rows.shape[:-1])

    def difference(control_index: np.ndarray, treatment_index: np.ndarray, axis: int = -1) -> np.ndarray:
        return arm_gap(treatment_index, s_t, n_t_groups) - arm_gap(control_index, s_c, n_c_groups)

    lower = direction == "lower_is_better"
    result = stats.bootstrap(
        (np.arange(s_c.shape[0]), np.arange(s_t.shape[0])), difference, n_resamples=int(n_boot), vectorized=True, paired=False,
        batch=max(1, BOOTSTRAP_CELLS // max(s_c.shape[0], s_t.shape[0])), confidence_level=1.0 - alpha,
        alternative="less" if lower else "greater", method="percentile", rng=rng,
    )  # fmt: skip
    differences = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    low_q, high_q = (float(q) for q in np.quantile(differences, [alpha, 1.0 - alpha]))
    if lower:
        high_q = float(result.confidence_interval.high)
    else:
        low_q = float(result.confidence_interval.low)
    wrong = differences >= margin if lower else differences <= -margin
    p = (1.0 + float(wrong.sum())) / (1.0 + n_boot)
    return _outcome(gap_c, gap_t, float(differences.std(ddof=1)), low_q, high_q, p, margin, direction, alpha, "bootstrap", n_c, n_t, int(n_boot))
