"""The verdict on an unlearned model: may it stand in for a retrain, or only until one? Pure: no model, no I/O.

The held-out-half protocol (:mod:`recommender.unlearning_quality`) measures,
per erased subject and seed, the AUCs of the original, unlearned and
retrained models. :func:`judge_unlearning` decides from those tables alone
whether the unlearned AUCs are distinguishable from the retrained ones: a
permutation test (per subject, the unlearned and retrained AUCs are
exchangeable when unlearning is as good as a retrain; the statistic is the
mean excess of unlearned over retrained AUC). The same test on the original
models says whether the protocol can see the subject at all; when it cannot,
the verdict is ``inconclusive``. :func:`unlearned_model_standing` turns a
verdict (or its absence) into what a serving model may do: stand in for the
retrain, or serve provisionally until the retrain replaces it.

Kept apart from the protocol because it is the decision a governance rule
rests on: it takes figures, not models, so it can be re-run on stored figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recommender.errors import ConfigError

__all__ = [
    "BAD_SIGNIFICANCE",
    "NOT_MEASURED",
    "QualityVerdict",
    "UnlearnedStanding",
    "judge_unlearning",
    "unlearned_model_standing",
]

BAD_SIGNIFICANCE = "The 'significance' parameter of judge_unlearning must be a float in (0, 1). Got {value!r} instead."
BAD_TABLE = (
    "judge_unlearning: the {name} AUCs must be a table of shape (n_subjects >= 1, n_seeds >= 2). "
    "Got shape {shape} instead."
)
SHAPES_DIFFER = (
    "judge_unlearning: the original, unlearned and retrained AUC tables must have the same shape "
    "(one row per subject, one column per seed). Got {a}, {b} and {c}."
)
NO_FINITE = "judge_unlearning: every subject has an undefined AUC (NaN) under some model; nothing to judge"

Verdict = Literal["inside", "outside", "inconclusive"]


@dataclass(frozen=True)
class QualityVerdict:
    """Whether unlearned models are distinguishable from retrains, by held-out-half AUC.

    Attributes
    ----------
    verdict:
        ``inside``: the unlearned AUCs are not significantly above the retrained
        ones (unlearning is as good as a retrain, as far as the protocol sees);
        ``outside``: they are (the unlearned model still holds the subjects);
        ``inconclusive``: the originals themselves are not significantly above
        the retrains, so the protocol cannot see these subjects at all.
    acceptable:
        ``verdict == "inside"``: the unlearned model may stand in for a retrain.
    mean_excess, mean_gap:
        Mean over subjects of (mean unlearned AUC - mean retrained AUC), and of
        (mean original - mean retrained): what unlearning left, and what there
        was to remove.
    gap_closed:
        ``1 - mean_excess / mean_gap`` (1: as if never seen; 0: unchanged).
    p_value, p_value_original:
        One-sided permutation p-values of "unlearned (original) AUCs exceed the
        retrained ones", labels permuted within each subject.
    unlearned_above_share, unlearned_below_share, original_above_share:
        Shares of (subject, seed) AUCs above (below) that subject's retrain
        range. A model that behaves like a retrain lands above the range of
        ``n`` retrains with probability ``expected_above_share = 1 / (n + 1)``.
    """

    verdict: Verdict
    acceptable: bool
    n_subjects: int
    n_seeds: int
    significance: float
    mean_excess: float
    mean_gap: float
    gap_closed: float
    p_value: float
    p_value_original: float
    unlearned_above_share: float
    unlearned_below_share: float
    original_above_share: float
    expected_above_share: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready verdict (floats to 5 decimals)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = round(value, 5) if isinstance(value, float) and np.isfinite(value) else value
        return out


def _excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over subjects of (mean of ``a`` - mean of ``b``), along the last two axes (subjects, seeds)."""
    return (a.mean(axis=-1) - b.mean(axis=-1)).mean(axis=-1)


def _permutation_p(treated: np.ndarray, control: np.ndarray, n_permutations: int, random_state: int) -> float:
    """One-sided p-value of the mean excess of ``treated`` over ``control``, labels permuted within subjects."""
    n_subjects, n_seeds = treated.shape
    pooled = np.concatenate([treated, control], axis=1)
    rng = np.random.default_rng(random_state)
    order = np.argsort(rng.random((n_permutations, n_subjects, 2 * n_seeds)), axis=2)
    shuffled = np.take_along_axis(np.broadcast_to(pooled, order.shape), order, axis=2)
    null = _excess(shuffled[..., :n_seeds], shuffled[..., n_seeds:])
    return float((1 + np.sum(null >= _excess(treated, control) - 1e-12)) / (n_permutations + 1))


def _as_auc_table(name: str, values: Any) -> np.ndarray:
    table = np.asarray(values, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 2:
        raise ConfigError(BAD_TABLE.format(name=name, shape=table.shape))
    return table


def judge_unlearning(
    original: Any,
    unlearned: Any,
    retrained: Any,
    *,
    significance: float = 0.05,
    n_permutations: int = 4999,
    random_state: int = 0,
) -> QualityVerdict:
    """Decide from measured AUCs whether unlearned models may stand in for retrains. Pure: no model, no I/O.

    Each argument is an ``(n_subjects, n_seeds)`` table of held-out-half AUCs.
    Subjects with an undefined AUC (NaN) anywhere are left out. The decision
    is the permutation test at ``significance`` (see :class:`QualityVerdict`),
    after checking that the originals are detectably above the retrains.
    """
    if isinstance(significance, bool) or not isinstance(significance, float) or not 0.0 < significance < 1.0:
        raise ConfigError(BAD_SIGNIFICANCE.format(value=significance))
    orig, unl, ret = (
        _as_auc_table(n, v) for n, v in (("original", original), ("unlearned", unlearned), ("retrained", retrained))
    )
    if not orig.shape == unl.shape == ret.shape:
        raise ConfigError(SHAPES_DIFFER.format(a=orig.shape, b=unl.shape, c=ret.shape))
    finite = np.isfinite(orig).all(axis=1) & np.isfinite(unl).all(axis=1) & np.isfinite(ret).all(axis=1)
    if not finite.any():
        raise ConfigError(NO_FINITE)
    orig, unl, ret = orig[finite], unl[finite], ret[finite]
    low, high = ret.min(axis=1, keepdims=True), ret.max(axis=1, keepdims=True)
    mean_gap, mean_excess = float(_excess(orig, ret)), float(_excess(unl, ret))
    p_unl = _permutation_p(unl, ret, n_permutations, random_state)
    p_orig = _permutation_p(orig, ret, n_permutations, random_state + 1)
    verdict, reason = _decide(p_unl, p_orig, mean_excess, mean_gap, significance)
    return QualityVerdict(
        verdict=verdict,
        acceptable=verdict == "inside",
        n_subjects=int(finite.sum()),
        n_seeds=int(ret.shape[1]),
        significance=significance,
        mean_excess=mean_excess,
        mean_gap=mean_gap,
        gap_closed=float(1.0 - mean_excess / mean_gap) if mean_gap > 0 else float("nan"),
        p_value=p_unl,
        p_value_original=p_orig,
        unlearned_above_share=float((unl > high).mean()),
        unlearned_below_share=float((unl < low).mean()),
        original_above_share=float((orig > high).mean()),
        expected_above_share=1.0 / (ret.shape[1] + 1),
        reason=reason,
    )


def _decide(p_unl: float, p_orig: float, excess: float, gap: float, significance: float) -> tuple[Verdict, str]:
    if p_orig >= significance:
        return "inconclusive", (
            f"the original models are not detectably above the retrains (p = {p_orig:.3g} >= {significance}): "
            "the protocol cannot see these subjects; measure more subjects or seeds"
        )
    if p_unl < significance:
        return "outside", (
            f"the unlearned models' held-out AUC exceeds the retrains' by {excess:.4f} on average "
            f"(p = {p_unl:.3g} < {significance}), {excess / gap:.0%} of the original's excess of {gap:.4f}: "
            "they still hold the subjects; only a retrain (or more unlearning) removes them"
        )
    return "inside", (
        f"the unlearned models' held-out AUC is not distinguishable from the retrains' "
        f"(excess {excess:.4f}, p = {p_unl:.3g} >= {significance}), while the originals' is "
        f"(excess {gap:.4f}, p = {p_orig:.3g})"
    )


# -- what the verdict means for a model that serves -------------------------------------------
NOT_MEASURED = (
    "no held-out-half verdict for this unlearned model; measured on data of realistic shape, models unlearned "
    "this way stay outside the range of retrains (BENCHMARKS.md): provisional until the full retrain replaces it"
)


@dataclass(frozen=True)
class UnlearnedStanding:
    """How an unlearned model may be used: as a stand-in for a retrain, or as a stopgap until one.

    ``provisional`` models may serve in place of the model they were unlearned
    from (they hold less of the subject than it does), but only until the full
    retrain the erasure scheduled replaces them; ``retrain_required`` says
    that retrain must run.
    """

    provisional: bool
    retrain_required: bool
    reason: str


def unlearned_model_standing(verdict: QualityVerdict | None) -> UnlearnedStanding:
    """Decide, from a measured verdict (or none), whether an unlearned model is final or provisional. Pure.

    Final only when the held-out-half protocol found it inside the retrain
    range (``verdict.acceptable``); ``outside``, ``inconclusive`` and not
    measured (``None``) all leave it provisional with a retrain required:
    an erasure must not rest on a model nobody showed to be as good as a
    retrain.
    """
    if verdict is None:
        return UnlearnedStanding(provisional=True, retrain_required=True, reason=NOT_MEASURED)
    if verdict.acceptable:
        return UnlearnedStanding(provisional=False, retrain_required=False, reason=verdict.reason)
    return UnlearnedStanding(provisional=True, retrain_required=True, reason=f"{verdict.verdict}: {verdict.reason}")
