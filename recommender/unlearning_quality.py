"""How much of an erased subject an unlearned model still holds: the held-out-half protocol.

A model that memorised a person predicts the rest of their history from a part
of it better than a model that never saw them. The protocol measures exactly
that, for each erased subject:

1. split the subject's items at random into two halves (one fixed split per
   subject, drawn with ``random_state``, shared by every model, so that the
   comparison between models is paired);
2. fold the first half into a model: the subject's exact least-squares user
   factor against the model's item factors (``implicit``'s
   ``recalculate_user``, all subjects in one batch);
3. score every item and compute the AUC of the held-out half against the items
   the subject never touched (the folded-in half is left out of the ranking):
   the probability that a held-out item outranks an untouched one, ties
   counting one half (Mann-Whitney, computed from ranks, vectorised over
   subjects).

Three kinds of model are measured, over several seeds (``random_state`` of the
ALS fit): (a) the original model, trained with the subject; (b) the unlearned
model, :func:`recommender.unlearning.forget_users` applied to it with each
:class:`UnlearningMethod` asked for (:data:`ERASE_DEFAULT` is what ``recgov
subject erase`` does to a model artifact); (c) a model retrained from scratch
without the subject, with the same recipe and seed. The retrains over the
seeds give the range a model that never saw the subject falls in. One
original and one retrain per seed and subject serve every method, so methods
are compared on the same models.

:func:`judge_unlearning` (:mod:`recommender.unlearning_verdict`, re-exported
here) then decides, from the figures alone, whether the unlearned AUCs are
distinguishable from the retrained ones: a permutation test (per subject, the
unlearned and retrained AUCs are exchangeable when unlearning is as good as a
retrain; the statistic is the mean excess of unlearned over retrained AUC). The
same test on the original models says whether the protocol can see the subject
at all; when it cannot, the verdict is ``inconclusive``.

Subjects are named by their position in the request, never by id: these
figures end up in reports and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats

from recommender.als import ALSRecommender, blas_single_thread
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.unlearning import forget_users
from recommender.unlearning_verdict import (
    BAD_SIGNIFICANCE,
    NOT_MEASURED,
    QualityVerdict,
    UnlearnedStanding,
    judge_unlearning,
    unlearned_model_standing,
)

__all__ = [
    "BAD_SIGNIFICANCE",
    "ERASE_DEFAULT",
    "NOT_MEASURED",
    "HeldOutHalves",
    "QualityVerdict",
    "SubjectFigures",
    "UnlearnedStanding",
    "UnlearningMethod",
    "UnlearningQuality",
    "held_out_auc",
    "held_out_halves",
    "judge_unlearning",
    "measure_unlearning_quality",
    "unlearned_model_standing",
]

TOO_FEW_SEEDS = (
    "measure_unlearning_quality needs at least 2 distinct seeds to give a retrain range; got {n}. "
    "Pass seeds=(0, 1, 2, 3, 4) or more"
)
NO_SUBJECTS = "measure_unlearning_quality needs at least one subject id; got an empty list"
UNKNOWN_SUBJECTS = (
    "{n} of the {total} subject(s) are not in the training data (positions {positions} of the request): "
    "the protocol measures what a model learned from a subject, so each must have a row; drop them"
)
"""Unknown subjects are named by their position in the request, never by id."""
UNSPLITTABLE = (
    "{n} of the {total} subject(s) cannot be split into two halves with an untouched item left to rank against "
    "(positions {positions} of the request): each needs at least 2 items and fewer than all {n_items} items; "
    "pick subjects with a longer (but not complete) history"
)
ITEMS_DIFFER = (
    "held_out_auc: the {kind} model's items differ from those of the halves ({got} items against {expected}): "
    "fold-in and ranking need the same item universe; unlearn or retrain from the same interaction matrix"
)
RETRAIN_FAILED = (
    "the retrain without the subject at position {position} (seed {seed}) could not run: {cause}. Without it the "
    "unlearned model cannot be judged: treat it as provisional and run the full retrain on the data without the "
    "subject (recgov retrain run DATA --pack PACK), or measure on a smaller sample of the data"
)
NO_METHODS = "measure_unlearning_quality needs at least one unlearning method; got none"
DUPLICATE_SUBJECTS = "measure_unlearning_quality got the same subject twice; pass each subject once"


# -- the split and the AUC --------------------------------------------------------------------
@dataclass(frozen=True)
class HeldOutHalves:
    """Each subject's items split in two: ``fold_in`` (given to the model) and ``held_out`` (to rank).

    All three are ``n_subjects x n_items`` CSR matrices over the same items;
    ``history`` is the whole row (fold-in plus held-out), so that an item the
    subject touched is never counted as a negative.
    """

    fold_in: sp.csr_matrix
    held_out: sp.csr_matrix
    history: sp.csr_matrix
    item_ids: np.ndarray

    @property
    def n_subjects(self) -> int:
        """Number of subjects (rows)."""
        return self.fold_in.shape[0]

    def take(self, positions: Sequence[int] | np.ndarray) -> HeldOutHalves:
        """The halves of the subjects at ``positions`` only."""
        pos = np.asarray(positions, dtype=np.int64)
        return HeldOutHalves(self.fold_in[pos], self.held_out[pos], self.history[pos], self.item_ids)


def held_out_halves(rows: InteractionMatrix, random_state: int = 0) -> HeldOutHalves:
    """Split each row of ``rows`` at random: ``floor(n/2)`` items to fold in, the other ``ceil(n/2)`` held out.

    Vectorised: one random key per stored pair, a sort by (row, key), and the
    first half of each row's run goes to ``fold_in``. Rows need at least 2 items.
    """
    m = rows.matrix.tocsr()
    m.sort_indices()
    counts = np.diff(m.indptr)
    row_of = np.repeat(np.arange(m.shape[0]), counts)
    key = np.random.default_rng(random_state).random(m.nnz)
    order = np.lexsort((key, row_of))
    position = np.empty(m.nnz, dtype=np.int64)
    position[order] = np.arange(m.nnz) - m.indptr[row_of[order]]
    fold = position < (counts // 2)[row_of]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        out = sp.csr_matrix((m.data * mask, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        out.eliminate_zeros()  # in place: hence the copies, which keep ``history`` whole
        return out

    return HeldOutHalves(fold_in=part(fold), held_out=part(~fold), history=m, item_ids=np.asarray(rows.item_ids))


def held_out_auc(model: ALSRecommender, halves: HeldOutHalves, *, kind: str = "given") -> np.ndarray:
    """Per subject, the AUC of the held-out half after folding the other half into ``model``.

    The fold-in is ``implicit``'s ``recalculate_user`` (the exact least-squares
    user factor, with the model's ``alpha`` and regularization), for all
    subjects at once. Candidates are every item outside the folded-in half;
    positives the held-out half, negatives the items the subject never
    touched. ``kind`` only names the model in errors.
    """
    model.check_fitted("held_out_auc")
    if len(model.train_.item_ids) != len(halves.item_ids) or not np.array_equal(
        np.asarray(model.train_.item_ids).astype(str), np.asarray(halves.item_ids).astype(str)
    ):
        raise DataError(ITEMS_DIFFER.format(kind=kind, got=len(model.train_.item_ids), expected=len(halves.item_ids)))
    with blas_single_thread():
        users = model.model_.recalculate_user(np.arange(halves.n_subjects), halves.fold_in)
    users = np.atleast_2d(np.asarray(users, dtype=np.float64))
    items = np.asarray(model.item_factors_, dtype=np.float64)
    block = max(1, _BLOCK_CELLS // max(items.shape[0], 1))
    return np.concatenate(
        [_auc_block(users[start : start + block], items, halves, start) for start in range(0, len(users), block)]
    )


_BLOCK_CELLS = 4_000_000
"""Scores held at once (subjects x items): bounds memory on large catalogues."""


def _auc_block(users: np.ndarray, items: np.ndarray, halves: HeldOutHalves, start: int) -> np.ndarray:
    """The AUCs of subjects ``start .. start + len(users)``: ranks of all items, the fold-in pushed below all."""
    stop = start + len(users)
    fold, held = halves.fold_in[start:stop], halves.held_out[start:stop]
    scores = users @ items.T
    # Below every candidate: a candidate's rank among candidates is its rank minus the fold-in count.
    scores[fold.nonzero()] = -np.inf
    ranks = stats.rankdata(scores, axis=1)
    rows, cols = held.nonzero()
    rank_sum = np.bincount(rows, weights=ranks[rows, cols], minlength=len(users))
    n_pos, n_ex = np.diff(held.indptr), np.diff(fold.indptr)
    n_neg = items.shape[0] - np.diff(halves.history[start:stop].indptr)
    u_stat = rank_sum - n_pos * n_ex - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u_stat / (n_pos * n_neg), np.nan)


# -- the methods and the figures --------------------------------------------------------------
@dataclass(frozen=True)
class UnlearningMethod:
    """The parameters of :func:`~recommender.unlearning.forget_users` being measured."""

    propagate: int = 1
    sweeps: int = 0
    refresh_items: bool = True

    @property
    def name(self) -> str:
        """A stable label, e.g. ``propagate=1,sweeps=0`` (``,refresh_items=False`` when so)."""
        return f"propagate={self.propagate},sweeps={self.sweeps}" + (
            "" if self.refresh_items else ",refresh_items=False"
        )


ERASE_DEFAULT = UnlearningMethod(propagate=1, sweeps=0)
"""What ``recgov subject erase`` applies today (its ``--propagate`` default, no sweeps)."""


@dataclass(frozen=True)
class SubjectFigures:
    """One subject's held-out-half AUCs, one per seed, for each kind of model.

    ``position`` is the subject's place in the request (never its id);
    ``unlearned`` maps each method's name to its AUCs.
    """

    position: int
    n_items: int
    n_fold_in: int
    n_held_out: int
    original: tuple[float, ...]
    retrained: tuple[float, ...]
    unlearned: Mapping[str, tuple[float, ...]]

    @property
    def retrain_range(self) -> tuple[float, float]:
        """Lowest and highest AUC of the retrains without the subject."""
        return float(np.min(self.retrained)), float(np.max(self.retrained))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, rounded to 4 decimals."""

        def rounded(values: Sequence[float]) -> list[float]:
            return [round(float(v), 4) for v in values]

        return {
            "position": self.position,
            "n_items": self.n_items,
            "n_fold_in": self.n_fold_in,
            "n_held_out": self.n_held_out,
            "original": rounded(self.original),
            "retrained": rounded(self.retrained),
            "retrain_range": rounded(self.retrain_range),
            "unlearned": {name: rounded(v) for name, v in self.unlearned.items()},
        }


# -- the protocol -----------------------------------------------------------------------------
@dataclass(frozen=True)
class UnlearningQuality:
    """What :func:`measure_unlearning_quality` measured, and a verdict per method. Holds no subject id."""

    seeds: tuple[int, ...]
    together: bool
    params: dict[str, Any]
    methods: tuple[UnlearningMethod, ...]
    subjects: tuple[SubjectFigures, ...]
    verdicts: Mapping[str, QualityVerdict]
    seconds: float

    def table(self, kind: str, method: UnlearningMethod | None = None) -> np.ndarray:
        """The ``(n_subjects, n_seeds)`` AUCs of ``original``, ``retrained`` or ``unlearned`` (of ``method``)."""
        if kind == "unlearned":
            name = (method or self.methods[0]).name
            return np.array([s.unlearned[name] for s in self.subjects], dtype=np.float64)
        return np.array([getattr(s, kind) for s in self.subjects], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Per model kind: mean AUC over subjects and seeds, its spread over seeds and over subjects."""
        tables = {"original": self.table("original"), "retrained": self.table("retrained")}
        tables.update({f"unlearned[{m.name}]": self.table("unlearned", m) for m in self.methods})
        out: dict[str, Any] = {}
        for kind, auc in tables.items():
            per_seed, per_subject = np.nanmean(auc, axis=0), np.nanmean(auc, axis=1)
            out[kind] = {
                "mean": round(float(np.nanmean(auc)), 4),
                "sd_over_seeds": round(float(np.std(per_seed, ddof=1)), 4),
                "sd_over_subjects": round(float(np.std(per_subject, ddof=1)), 4) if len(auc) > 1 else None,
                "per_seed": [round(float(v), 4) for v in per_seed],
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record of the measurement."""
        return {
            "protocol": "held-out half: fold in half of each subject's items, AUC of the other half",
            "seeds": list(self.seeds),
            "together": self.together,
            "params": dict(self.params),
            "auc": self.summary(),
            "verdicts": {name: v.as_dict() for name, v in self.verdicts.items()},
            "subjects": [s.as_dict() for s in self.subjects],
            "seconds": round(self.seconds, 3),
        }


def _subject_rows(train: InteractionMatrix, subjects: Sequence[str]) -> np.ndarray:
    requested = [subjects] if isinstance(subjects, str) else [str(s) for s in subjects]
    if not requested:
        raise ConfigError(NO_SUBJECTS)
    rows = train.user_index(requested)

    def named(bad: np.ndarray) -> str:
        return ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")

    unknown = np.flatnonzero(rows < 0)
    if unknown.size:
        raise DataError(UNKNOWN_SUBJECTS.format(n=unknown.size, total=len(requested), positions=named(unknown)))
    if np.unique(rows).size != rows.size:
        raise ConfigError(DUPLICATE_SUBJECTS)
    counts = np.diff(train.matrix.indptr)[rows]
    bad = np.flatnonzero((counts < 2) | (counts >= train.n_items))
    if bad.size:
        raise DataError(
            UNSPLITTABLE.format(n=bad.size, total=len(requested), positions=named(bad), n_items=train.n_items)
        )
    return rows


def _retrain(params: Mapping[str, Any], seed: int, train: InteractionMatrix, position: int | str) -> ALSRecommender:
    try:
        return ALSRecommender(**params, random_state=seed).fit(train)
    except (MemoryError, ValueError, RuntimeError) as err:
        cause = f"{type(err).__name__}: {err}".split("\n")[0][:300]
        raise DataError(RETRAIN_FAILED.format(position=position, seed=seed, cause=cause)) from err


def measure_unlearning_quality(
    train: InteractionMatrix,
    subjects: Sequence[str],
    *,
    params: Mapping[str, Any],
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    methods: Sequence[UnlearningMethod] = (ERASE_DEFAULT,),
    together: bool = False,
    random_state: int = 0,
    significance: float = 0.05,
) -> UnlearningQuality:
    """Run the held-out-half protocol for ``subjects`` on ``train`` (see the module docstring).

    For each seed: fit the original model on ``train`` (the ALS ``params``
    with ``random_state=seed``); then for one subject at a time (``together``:
    all at once, one erasure) unlearn them with each of ``methods`` and
    retrain the same recipe on what is left. Every model's held-out-half AUC
    is measured for the subjects erased from it (all subjects in one batch
    for the original). ``random_state`` draws the halves and seeds the tests.

    Raises
    ------
    ConfigError
        Fewer than two seeds, no method, no subject, a subject twice.
    DataError
        A subject unknown to ``train`` or with too short (or complete) a
        history, or a retrain that could not run (the message says what to do).
    """
    started = time.perf_counter()
    seeds = tuple(dict.fromkeys(int(s) for s in seeds))
    if len(seeds) < 2:
        raise ConfigError(TOO_FEW_SEEDS.format(n=len(seeds)))
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ConfigError(NO_METHODS)
    recipe = {k: v for k, v in params.items() if k != "random_state"}
    rows = _subject_rows(train, subjects)
    ids = [str(train.user_ids[r]) for r in rows]
    halves = held_out_halves(
        InteractionMatrix(matrix=train.matrix[rows], user_ids=train.user_ids[rows], item_ids=train.item_ids),
        random_state,
    )
    shape = (len(ids), len(seeds))
    original, retrained = np.full(shape, np.nan), np.full(shape, np.nan)
    unlearned = {m.name: np.full(shape, np.nan) for m in methods}
    groups = [np.arange(len(ids))] if together else [np.array([i]) for i in range(len(ids))]
    for j, seed in enumerate(seeds):
        model = ALSRecommender(**recipe, random_state=seed).fit(train)
        original[:, j] = held_out_auc(model, halves, kind="original")
        for group in groups:
            part, forgotten = halves.take(group), [ids[i] for i in group]
            for m in methods:
                result = forget_users(
                    model, forgotten, refresh_items=m.refresh_items, propagate=m.propagate, sweeps=m.sweeps
                )
                unlearned[m.name][group, j] = held_out_auc(result.model, part, kind="unlearned")
            fresh = _retrain(recipe, seed, result.model.train_, "all" if together else int(group[0]))
            retrained[group, j] = held_out_auc(fresh, part, kind="retrained")
    counts, fold_counts = np.diff(train.matrix.indptr)[rows], np.diff(halves.fold_in.indptr)
    figures = tuple(
        SubjectFigures(
            position=i,
            n_items=int(counts[i]),
            n_fold_in=int(fold_counts[i]),
            n_held_out=int(counts[i] - fold_counts[i]),
            original=tuple(map(float, original[i])),
            retrained=tuple(map(float, retrained[i])),
            unlearned={name: tuple(map(float, table[i])) for name, table in unlearned.items()},
        )
        for i in range(len(ids))
    )
    verdicts = {
        name: judge_unlearning(original, table, retrained, significance=significance, random_state=random_state)
        for name, table in unlearned.items()
    }
    return UnlearningQuality(seeds, together, recipe, methods, figures, verdicts, time.perf_counter() - started)
