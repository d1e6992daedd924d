"""One look at a running experiment: the estimate, its interval, and whether to stop.

An experiment is planned (:class:`AnalysisPlan`) before it starts, then looked
at after every batch of units with :func:`analyze_look`, which takes the arms'
cumulated sufficient statistics and the results of the earlier looks, and
answers with a :class:`LookResult`. Three methods:

``fixed``
    One test, at the last planned look, at level ``alpha``. Earlier looks report
    the nominal p-value for monitoring but never decide (their boundary is
    ``inf``): stopping on them is the "peeking" that inflates false positives.
``group_sequential``
    Lan-DeMets alpha spending (:mod:`recommender.experiments.boundaries`). The
    information fraction of a look is the arms' harmonic size relative to the
    plan's, ``(n_c n_t / (n_c + n_t)) / (N_c N_t / (N_c + N_t))``, and 1 at the
    last planned look, which spends what is left. The p-value is the repeated
    p-value (the smallest level whose design would reject here), the interval
    the repeated confidence interval ``estimate +- boundary * se`` (Jennison &
    Turnbull 1989); both are valid simultaneously over all looks.
``msprt``
    The mixture SPRT (:mod:`recommender.experiments.msprt`): the p-value is
    always valid (the running minimum of ``1 / Lambda``), the interval the
    running intersection of ``estimate +- boundary * se``, and a look may come
    at any time. The plan's ``alpha`` is available at every look.

The decision is ``"reject"`` when the boundary is crossed, ``"accept"`` at the
last planned look (or once the planned information is complete) without a
rejection, ``"futility"`` at an interim look of a group-sequential design with
``futility_power`` set when the conditional power falls below it, and
``"continue"`` otherwise. The conditional power is the chance of rejecting at
the end if the rest of the data follow the planned effect (Lan & Wittes 1988):
``Phi((Z_k sqrt(t) + delta (1 - t) - c_K) / sqrt(1 - t))`` with ``delta`` the
planned effect's z at ``t = 1`` and ``c_K`` the final boundary of the planned
equally spaced schedule. The futility stop is non-binding: the boundaries
ignore it, so the type I error stays at most ``alpha`` and only the power
drops, a little. With a non-inferiority margin ``m``,
the null is ``theta <= -m`` (``alternative="larger"``, higher is better) or
``theta >= m`` (``"smaller"``), so "reject" means non-inferiority is shown.

:func:`stopping_looks` and :func:`rejection_looks` apply the same arithmetic to arrays of thousands of
experiments at once, for simulations of a design's operating characteristics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats

from recommender.errors import ConfigError, DataError
from recommender.experiments.arms import KINDS, ArmData, Kind, check_proportion, difference_moments
from recommender.experiments.boundaries import SPENDINGS, Spending, repeated_p_value, spending_boundaries, spent_alpha
from recommender.experiments.msprt import log_mixture_ratio, z_boundary
from recommender.experiments.sample_size import ALTERNATIVES, METHODS, Alternative, Method, check_choice, check_looks

__all__ = ["AnalysisPlan", "Decision", "LookResult", "analyze_look", "rejection_looks", "stopping_looks"]

Decision = Literal["continue", "reject", "accept", "futility"]


@dataclass(frozen=True)
class AnalysisPlan:
    """How an experiment will be analysed, fixed before its first unit.

    Attributes
    ----------
    method:
        ``"fixed"``, ``"group_sequential"`` or ``"msprt"``.
    alpha:
        The type I error of the comparison (already corrected for multiplicity if several share a level).
    power:
        The power the experiment was sized for.
    kind:
        ``"proportion"`` (a 0/1 metric) or ``"mean"``.
    mde:
        The minimum detectable effect, an absolute difference > 0; the mSPRT's mixing sd by default.
    planned_n_per_arm:
        The units per arm the design was sized for: one number for equal arms, or the pair
        ``(control, treatment)`` from ``plan_sample_size(...).n_per_arm`` for unequal ones.
    looks:
        The number of planned looks; the last one decides.
    spending:
        The group-sequential spending function: ``"obrien_fleming"`` or ``"pocock"``.
    alternative:
        ``"two-sided"``, ``"larger"`` (treatment better when higher) or ``"smaller"``.
    non_inferiority_margin:
        With a one-sided alternative, test non-inferiority within this margin instead of superiority.
    mixing_sd:
        The mSPRT's ``tau``; the ``mde`` when None.
    futility_power:
        Group sequential only: stop for futility at an interim look when the conditional power
        under the planned effect (the ``mde``; the margin for non-inferiority) is below this. None: never.
    """

    method: Method
    alpha: float
    power: float
    kind: Kind
    mde: float
    planned_n_per_arm: int | tuple[int, int]
    looks: int = 1
    spending: Spending = "obrien_fleming"
    alternative: Alternative = "two-sided"
    non_inferiority_margin: float | None = None
    mixing_sd: float | None = None
    futility_power: float | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("kind", self.kind, KINDS)
        check_choice("spending", self.spending, SPENDINGS)
        check_choice("alternative", self.alternative, ALTERNATIVES)
        for name in ("alpha", "power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
                raise ConfigError(f"AnalysisPlan.{name} must be a number in (0, 1); got {value!r}.")
        for name in ("mde", "non_inferiority_margin", "mixing_sd"):
            value = getattr(self, name)
            if value is None and name != "mde":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"AnalysisPlan.{name} must be a positive, finite number; got {value!r}.")
        sizes = self.planned_n_per_arm if isinstance(self.planned_n_per_arm, (tuple, list)) else (self.planned_n_per_arm,)
        if len(sizes) not in (1, 2) or any(
            isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2 for n in sizes
        ):
            raise ConfigError(
                "AnalysisPlan.planned_n_per_arm must be an integer >= 2 or a (control, treatment) pair of them; "
                f"got {self.planned_n_per_arm!r}."
            )
        object.__setattr__(self, "planned_n_per_arm", int(sizes[0]) if len(sizes) == 1 else (int(sizes[0]), int(sizes[1])))
        check_looks(self.looks)
        if self.futility_power is not None:
            value = self.futility_power
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
                raise ConfigError(f"AnalysisPlan.futility_power must be a number in (0, 1) or None; got {value!r}.")
            if self.method != "group_sequential":
                raise ConfigError(
                    f"futility_power applies to group-sequential designs; the {self.method} design has no "
                    "interim stopping rule for it to join."
                )
        if self.non_inferiority_margin is not None and self.alternative == "two-sided":
            raise ConfigError(
                "a non-inferiority test is one-sided: set alternative to 'larger' (higher is better) "
                "or 'smaller' (lower is better)."
            )

    @property
    def planned_information(self) -> float:
        """The arms' planned harmonic size ``N_c N_t / (N_c + N_t)``: the information, per unit variance, at the end."""
        sizes = self.planned_n_per_arm
        n_c, n_t = sizes if isinstance(sizes, tuple) else (sizes, sizes)
        return n_c * n_t / (n_c + n_t)

    @property
    def two_sided(self) -> bool:
        """Whether the test rejects in both directions."""
        return self.alternative == "two-sided"

    @property
    def null_value(self) -> float:
        """The difference ``theta0`` the test's null hypothesis sits at: 0, or minus/plus the margin."""
        if self.non_inferiority_margin is None:
            return 0.0
        return -self.non_inferiority_margin if self.alternative == "larger" else self.non_inferiority_margin

    @property
    def tau2(self) -> float:
        """The mSPRT's mixing variance."""
        return float(self.mixing_sd if self.mixing_sd is not None else self.mde) ** 2


@dataclass(frozen=True)
class LookResult:
    """What one look at an experiment found.

    Attributes
    ----------
    look:
        The look's number, from 1.
    estimate:
        ``mean_t - mean_c``.
    ci_low, ci_high:
        The interval valid under the design's monitoring (infinite on the open side of a one-sided test).
    p_value:
        Group sequential: the repeated p-value; mSPRT: the always-valid p-value; fixed: the nominal
        p-value (valid at the last look only). For the first two it is valid however the looks stop,
        ``p_value <= alpha`` exactly when the look rejects, and :func:`correct` may adjust it.
    alpha_spent:
        The type I error spent up to this look (group sequential), ``alpha`` (mSPRT, fixed at the
        last look) or 0 (fixed before it).
    boundary:
        The z value the statistic had to reach to reject at this look (``inf``: the look cannot reject).
    decision:
        ``"continue"``, ``"reject"``, ``"accept"`` or ``"futility"``.
    method:
        The plan's method.
    information_fraction:
        The share of the planned information this look saw (1 at the last look).
    statistic:
        The z statistic against the null value, signed so that larger favours the alternative
        (its absolute value for a two-sided test).
    conditional_power:
        Group sequential, interim looks: the chance of rejecting at the end if the rest of the data
        follow the planned effect; NaN otherwise.
    """

    look: int
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha_spent: float
    boundary: float
    decision: Decision
    method: Method
    information_fraction: float = math.nan
    statistic: float = math.nan
    conditional_power: float = math.nan


def _information_fraction(n_c: np.ndarray | float, n_t: np.ndarray | float, plan: AnalysisPlan) -> np.ndarray:
    n_c, n_t = np.asarray(n_c, dtype=float), np.asarray(n_t, dtype=float)
    return np.round(np.minimum(n_c * n_t / ((n_c + n_t) * plan.planned_information), 1.0), 9)


def _conditional_power(plan: AnalysisPlan, z: np.ndarray, t: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The chance of crossing the planned final boundary from ``z`` at fraction ``t`` if the planned effect holds."""
    final = spending_boundaries(
        [k / plan.looks for k in range(1, plan.looks + 1)], plan.alpha, spending=plan.spending, two_sided=plan.two_sided
    )[-1]
    distance = plan.non_inferiority_margin if plan.non_inferiority_margin is not None else plan.mde
    root_t = np.sqrt(t)
    drift = distance / (se * root_t)
    remaining = np.maximum(1.0 - t, 1e-12)
    return stats.norm.cdf((z * root_t + drift * remaining - final) / np.sqrt(remaining))


def _directional(plan: AnalysisPlan, estimate: np.ndarray, se: np.ndarray) -> np.ndarray:
    z = (np.asarray(estimate) - plan.null_value) / se
    if plan.alternative == "smaller":
        return -z
    return np.abs(z) if plan.two_sided else z


def _nominal_p(plan: AnalysisPlan, z: np.ndarray) -> np.ndarray:
    return 2.0 * stats.norm.sf(z) if plan.two_sided else stats.norm.sf(z)


def _interval(plan: AnalysisPlan, estimate: float, se: float, boundary: float) -> tuple[float, float]:
    half = boundary * se if math.isfinite(boundary) else math.inf
    low = estimate - half if plan.alternative != "smaller" else -math.inf
    high = estimate + half if plan.alternative != "larger" else math.inf
    return low, high


def _check_history(plan: AnalysisPlan, look: int, history: Sequence[LookResult]) -> None:
    if isinstance(look, bool) or not isinstance(look, int) or look < 1:
        raise ConfigError(f"look must be a positive integer; got {look!r}.")
    if look > plan.looks:
        raise ConfigError(f"the plan has {plan.looks} looks; look {look} is beyond its last.")
    if len(history) != look - 1:
        raise ConfigError(f"look {look} needs the results of the {look - 1} earlier looks; got {len(history)}.")
    for i, h in enumerate(history, start=1):
        if not isinstance(h, LookResult) or h.look != i or h.method != plan.method:
            raise ConfigError(f"history[{i - 1}] must be the plan's look {i} ({plan.method}); got {h!r}.")
        if h.decision != "continue":
            raise ConfigError(f"the experiment stopped at look {i} ({h.decision}); it has no look {look}.")


def analyze_look(
    plan: AnalysisPlan, control: ArmData, treatment: ArmData, *, look: int, history: Sequence[LookResult] = ()
) -> LookResult:
    """Analyse look ``look`` of an experiment from its arms' cumulated statistics.

    ``history`` holds the results of looks ``1 .. look - 1``, in order, as this
    function returned them; the group-sequential boundaries and the mSPRT's
    running p-value and interval are built from them. A non-finite interval end
    or p-value stored as NaN (JSON has no infinity) counts as no bound.

    >>> plan = AnalysisPlan("group_sequential", 0.05, 0.8, "proportion", 0.01, 15113, looks=5)
    >>> r = analyze_look(plan, ArmData(3023, 302, 302), ArmData(3023, 360, 360), look=1)
    >>> r.decision, round(r.boundary, 3)
    ('continue', 4.877)
    """
    if not isinstance(plan, AnalysisPlan):
        raise ConfigError(f"plan must be an AnalysisPlan; got {type(plan).__name__}.")
    history = tuple(history)
    _check_history(plan, look, history)
    for label, arm in (("control", control), ("treatment", treatment)):
        if not isinstance(arm, ArmData):
            raise DataError(f"the {label} arm must be an ArmData; got {type(arm).__name__}.")
        if arm.n < 2:
            raise DataError(f"the {label} arm needs at least 2 units to be analysed; got n={arm.n}.")
        if plan.kind == "proportion":
            check_proportion(arm, label)
    estimate, variance = (
        float(x)
        for x in difference_moments(
            plan.kind, control.n, control.total, control.total_sq, treatment.n, treatment.total, treatment.total_sq
        )
    )
    if not variance > 0:
        raise DataError(
            f"at look {look} the metric does not vary in either arm (control {control.mean:g}, "
            f"treatment {treatment.mean:g}): the difference has no standard error yet; look again after more units."
        )
    se = math.sqrt(variance)
    z = float(_directional(plan, np.array(estimate), np.array(se)))
    fraction = 1.0 if look == plan.looks else float(_information_fraction(control.n, treatment.n, plan))
    if history and fraction <= history[-1].information_fraction:
        raise DataError(
            f"look {look} has no more information than look {look - 1} (fraction {fraction:.4g} <= "
            f"{history[-1].information_fraction:.4g}): look again after more units."
        )
    final = fraction >= 1.0
    ci_low = ci_high = conditional_power = math.nan
    futile = False
    if plan.method == "group_sequential":
        fractions = [h.information_fraction for h in history] + [fraction]
        boundary = spending_boundaries(fractions, plan.alpha, spending=plan.spending, two_sided=plan.two_sided)[-1]
        p_value = repeated_p_value(fractions, z, spending=plan.spending, two_sided=plan.two_sided)
        alpha_spent = float(spent_alpha(fraction, plan.alpha, plan.spending, two_sided=plan.two_sided))
        reject = z >= boundary
        if not final:
            conditional_power = float(_conditional_power(plan, np.array(z), np.array(fraction), np.array(se)))
            futile = plan.futility_power is not None and not reject and conditional_power < plan.futility_power
    elif plan.method == "msprt":
        sign = -1.0 if plan.alternative == "smaller" else 1.0
        log_ratio = float(
            log_mixture_ratio(sign * (estimate - plan.null_value), variance, plan.tau2, one_sided=not plan.two_sided)
        )
        # A history stored as JSON may hold NaN where the number was infinite: no bound, so skipped.
        p_value = min([math.exp(-max(log_ratio, 0.0))] + [h.p_value for h in history if not math.isnan(h.p_value)])
        boundary = z_boundary(variance, plan.tau2, plan.alpha, one_sided=not plan.two_sided)
        alpha_spent = plan.alpha
        reject = p_value <= plan.alpha
        ci_low, ci_high = _interval(plan, estimate, se, boundary)
        ci_low = max([ci_low] + [h.ci_low for h in history if not math.isnan(h.ci_low)])
        ci_high = min([ci_high] + [h.ci_high for h in history if not math.isnan(h.ci_high)])
    else:
        boundary = float(stats.norm.isf(plan.alpha / 2 if plan.two_sided else plan.alpha)) if final else math.inf
        p_value = float(_nominal_p(plan, np.array(z)))
        alpha_spent = plan.alpha if final else 0.0
        reject = z >= boundary
    if plan.method != "msprt":
        ci_low, ci_high = _interval(plan, estimate, se, boundary)
    decision: Decision = "reject" if reject else "accept" if final else "futility" if futile else "continue"
    return LookResult(
        look=look,
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        alpha_spent=alpha_spent,
        boundary=float(boundary),
        decision=decision,
        method=plan.method,
        information_fraction=fraction,
        statistic=z,
        conditional_power=conditional_power,
    )


def rejection_looks(
    plan: AnalysisPlan,
    n_c: np.ndarray,
    total_c: np.ndarray,
    total_sq_c: np.ndarray,
    n_t: np.ndarray,
    total_t: np.ndarray,
    total_sq_t: np.ndarray,
) -> np.ndarray:
    """For many experiments at once, the look at which each rejects (1-based), 0 if it never does.

    The arguments are those of :func:`stopping_looks`.
    """
    look, rejected = stopping_looks(plan, n_c, total_c, total_sq_c, n_t, total_t, total_sq_t)
    return np.where(rejected, look, 0)


def stopping_looks(
    plan: AnalysisPlan,
    n_c: np.ndarray,
    total_c: np.ndarray,
    total_sq_c: np.ndarray,
    n_t: np.ndarray,
    total_t: np.ndarray,
    total_sq_t: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For many experiments at once, ``(look, rejected)``: where each stops (1-based) and whether it rejects there.

    An experiment that neither rejects nor stops for futility stops at the last look.

    Every argument is an ``(experiments, looks)`` array of cumulated sufficient
    statistics (column ``k`` is what look ``k + 1`` sees), with ``plan.looks``
    columns. The decisions are those :func:`analyze_look` makes one look at a
    time; group-sequential boundaries are computed once per distinct sequence of
    information fractions, so experiments with the same batch sizes share them.
    """
    arrays = [np.asarray(a, dtype=float) for a in (n_c, total_c, total_sq_c, n_t, total_t, total_sq_t)]
    shape = arrays[0].shape
    if len(shape) != 2 or shape[1] != plan.looks or any(a.shape != shape for a in arrays):
        raise ConfigError(f"each array must have shape (experiments, {plan.looks}); got {[a.shape for a in arrays]}.")
    estimate, variance = difference_moments(plan.kind, *arrays)
    if np.any(~(variance > 0)):
        raise DataError("some experiment has a look where the metric does not vary in either arm.")
    se = np.sqrt(variance)
    z = _directional(plan, estimate, se)
    futile = np.zeros(shape, dtype=bool)
    if plan.method == "group_sequential":
        fractions = _information_fraction(arrays[0], arrays[3], plan)
        fractions[:, -1] = 1.0
        if np.any(np.diff(fractions, axis=1) <= 0):
            raise DataError(
                "every experiment's information fraction must grow from look to look and reach 1 only at the "
                "last look (more units than planned before it ends the design early; analyse it with analyze_look)."
            )
        boundaries = np.empty(shape)
        rows, inverse = np.unique(np.round(fractions, 9), axis=0, return_inverse=True)
        for i, row in enumerate(rows):
            boundaries[inverse.ravel() == i] = spending_boundaries(
                row, plan.alpha, spending=plan.spending, two_sided=plan.two_sided
            )
        crossed = z >= boundaries
        if plan.futility_power is not None:
            power = _conditional_power(plan, z[:, :-1], fractions[:, :-1], se[:, :-1])
            futile[:, :-1] = ~crossed[:, :-1] & (power < plan.futility_power)
    elif plan.method == "msprt":
        sign = -1.0 if plan.alternative == "smaller" else 1.0
        log_ratio = log_mixture_ratio(
            sign * (estimate - plan.null_value), variance, plan.tau2, one_sided=not plan.two_sided
        )
        crossed = log_ratio >= math.log(1.0 / plan.alpha)
    else:
        crossed = np.zeros(shape, dtype=bool)
        crossed[:, -1] = z[:, -1] >= stats.norm.isf(plan.alpha / 2 if plan.two_sided else plan.alpha)
    stopped = crossed | futile
    stopped[:, -1] = True
    first = stopped.argmax(axis=1)
    return first + 1, crossed[np.arange(shape[0]), first]
