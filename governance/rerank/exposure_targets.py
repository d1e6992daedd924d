"""Target exposure shares of many provider groups, each held within a tolerance in every list.

Geyik et al.'s algorithms (:mod:`governance.rerank.proportions`) count places;
a group can then hold its quarter of the places and still a small share of the
attention, because the model's favourite group keeps the top. This step puts the
constraint on *exposure*: with the attention of place ``i`` ``w_i = 1/log2(i +
1)`` (the NDCG discount) and ``W`` the total attention of a list's filled places,
every group's share ``A_g / W`` must lie within ``tolerance`` of its target
``p_g``. Groups without a target (and the unknown group ``-1``) form one group
with target ``1 - sum(p)``, as in ``group_proportions``.

How. A list is fixed by its *pattern*, the provider group of each place, and by
which items fill it; given the pattern, the group's best items (in the order the
step receives) go to its places from the top. The patterns whose group shares
all lie in the window do not depend on the user: they are enumerated once per
list length (a forward search over places that drops a prefix once some group
holds more than its window allows or the places left cannot lift every group to
its floor; :func:`exposure_patterns`) and cached. Per user:

``optimal`` (default)
    the feasible pattern that maximises ``sum_i w_i * w(r_i)``, ``r_i`` being the
    input rank of the item at place ``i``: the list's discounted agreement with
    the order received (its DCG if that order were the truth). With the pattern
    fixed, filling each group's places with its best items in order is optimal
    (rearrangement inequality), so the maximum over patterns is exact. Scored for
    all users and patterns at once, one matrix product.
``greedy``
    place by place, the best remaining item whose group keeps a feasible pattern
    the user's candidates can fill within reach: the first list within the window
    in the order received (lexicographically).

The window is what the pack states (``tolerance``), not the exact target: a
list that already lies in it is not touched, and no list is pushed to the
middle of the window at extra cost.

Lists whose candidates cannot fill any feasible pattern (too few items of a
group, or a list shorter than the targets need) fall back to Geyik et al.'s
greedy on attention (``group_proportions`` with ``weighting: attention``), the
best effort, and are reported as not meeting the constraint. ``constraints_met``
is the window on the final list: every group's share within ``tolerance`` of its
target (lists with no filled place meet it).

The number of patterns grows quickly with the list length and the number of
groups (4 groups within 5 points: 15,144 patterns at 10 places, 186,288 at 12).
Past :data:`MAX_PATTERNS` prefixes the search stops and both algorithms become
the greedy with a *completion test*: a group may take a place when one of two
simple completions (each later place to the group furthest below its floor, or
below the middle of its window) lands every group in its window. The test is
sufficient, not necessary: its lists always meet the window, and it can miss a
tight window that exists (then the best effort above); on long lists, where one
place weighs little against the window, it rarely does. ``policy validate``
warns when no list of the pack's ``quality.k`` places can meet the window, and,
given the catalog, when a group has fewer items than its floor needs
(:func:`minimum_items`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, complete_order, identity_order
from governance.rerank.proportions import GroupProportionsReranker
from governance.rerank.registry import register_reranker
from recommender.errors import ConfigError

__all__ = [
    "ExposureTargetsConfig",
    "ExposureTargetsReranker",
    "exposure_patterns",
    "exposure_shares",
    "exposure_shares_within",
    "window_reachable",
    "minimum_items",
    "MAX_PATTERNS",
]

_TOL = 1e-9
MAX_PATTERNS = 400_000
"""At most this many feasible prefixes at any place of the pattern search (about 30 MB per step)."""
TOO_MANY_PATTERNS = (
    "exposure_targets: lists of {k} places with {groups} groups (targets {targets}, tolerance {tol:g}) have more than "
    "{max:,} group patterns within the window"
)
_FEW_ROWS = 16
"""Up to this many users, ``optimal`` scores with einsum rather than BLAS."""
_SCORE_CELLS = 4_000_000
"""Users x patterns scored per matrix product (bounds the memory of ``optimal``)."""


class ExposureTargetsConfig(RerankConfig):
    """Parameters of :class:`ExposureTargetsReranker`."""

    targets: dict[int, float] = Field(default_factory=lambda: {0: 0.5, 1: 0.5})
    """Target share of every list's attention (``1/log2(rank + 1)``) per ``item_group`` code (each in [0, 1],
    summing to at most 1); groups not named share the rest. Empty: no targets (the model order)."""
    tolerance: float = Field(0.05, ge=0.0, le=1.0)
    """How far (in share points, 0.05 = 5 points) each group's exposure share may lie from its target."""
    algorithm: Literal["optimal", "greedy"] = "optimal"
    """``optimal``: the list within the window closest to the order received (maximum discounted agreement);
    ``greedy``: place by place the best item that keeps the window reachable."""

    @field_validator("targets")
    @classmethod
    def _shares(cls, value: dict[int, float]) -> dict[int, float]:
        for code, share in value.items():
            if code < 0:
                raise ValueError(f"group code {code} must be >= 0 (-1, the unknown group, takes no target)")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"the share of group {code} must be in [0, 1]; got {share}")
        if sum(value.values()) > 1.0 + _TOL:
            raise ValueError(f"the shares must sum to at most 1; they sum to {sum(value.values()):g}")
        return value


def _attention(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


@lru_cache(maxsize=64)
def _patterns_cached(k: int, shares: tuple[float, ...], tolerance: float) -> np.ndarray:
    n_groups = len(shares)
    w = _attention(k)
    total = w.sum()
    p = np.asarray(shares, dtype=np.float64)
    lo, hi = (p - tolerance) * total, (p + tolerance) * total
    remaining = total - np.cumsum(w)
    prefixes = np.zeros((1, 0), dtype=np.int8)
    held = np.zeros((1, n_groups))
    eye = np.eye(n_groups)
    for i in range(k):
        held = (held[:, None, :] + w[i] * eye[None, :, :]).reshape(-1, n_groups)
        prefixes = np.concatenate(
            [
                np.repeat(prefixes, n_groups, axis=0),
                np.tile(np.arange(n_groups, dtype=np.int8), len(prefixes))[:, None],
            ],
            axis=1,
        )
        keep = (held <= hi + _TOL).all(axis=1)
        keep &= np.clip(lo - held, 0.0, None).sum(axis=1) <= remaining[i] + _TOL  # the floors are still reachable
        keep &= np.clip(hi - held, 0.0, None).sum(axis=1) >= remaining[i] - _TOL  # the places left fit somewhere
        held, prefixes = held[keep], prefixes[keep]
        if len(prefixes) > MAX_PATTERNS:
            raise ConfigError(
                TOO_MANY_PATTERNS.format(
                    k=k, groups=n_groups, targets=[round(s, 6) for s in shares], tol=tolerance, max=MAX_PATTERNS
                )
            )
    done = ((held >= lo - _TOL) & (held <= hi + _TOL)).all(axis=1)
    out = prefixes[done]
    out.flags.writeable = False
    return out


def exposure_patterns(k: int, shares: np.ndarray | list[float], tolerance: float) -> np.ndarray:
    """``(P, k)`` int8: every sequence of group indices (a group per place) whose attention shares lie within
    ``tolerance`` of ``shares`` (one per group, summing to 1), in lexicographic order.

    Raises :class:`~recommender.errors.ConfigError` when the search would hold more than
    :data:`MAX_PATTERNS` prefixes.

    >>> exposure_patterns(2, [0.5, 0.5], 0.2).tolist()  # shares 0.61/0.39 either way
    [[0, 1], [1, 0]]
    >>> exposure_patterns(2, [0.5, 0.5], 0.1).shape  # 0.61 is 11 points off: none
    (0, 2)
    """
    if k <= 0:
        return np.zeros((1, 0), dtype=np.int8)
    return _patterns_cached(int(k), tuple(float(s) for s in shares), float(tolerance))


@register_reranker
class ExposureTargetsReranker(Reranker):
    """Every provider group's share of each list's attention within a tolerance of its target (exact per list)."""

    name: ClassVar[str] = "exposure_targets"
    Config: ClassVar[type[RerankConfig]] = ExposureTargetsConfig
    reason: ClassVar[Reason] = Reason.provider_fairness
    needs: ClassVar[tuple[str, ...]] = ("item_group",)
    config: ExposureTargetsConfig

    def _groups(self, cands: Candidates) -> tuple[np.ndarray, np.ndarray, int]:
        """Dense group per catalog item (targeted ``0..G-1`` in code order, the rest ``G``), the ``(G+1,)``
        shares, and ``G``."""
        codes = sorted(self.config.targets)
        rest = max(0.0, 1.0 - sum(self.config.targets.values()))
        shares = np.array([self.config.targets[c] for c in codes] + [rest])
        lookup = np.full(int(max(codes, default=-1)) + 2, len(codes), dtype=np.int64)
        lookup[codes] = np.arange(len(codes))
        raw = cands.item_group
        dense = np.where((raw >= 0) & (raw < len(lookup) - 1), lookup[np.clip(raw, 0, len(lookup) - 1)], len(codes))
        return dense, shares, len(codes)

    def patterns(self, k: int) -> np.ndarray:
        """The feasible group patterns of lists of ``k`` places (group ``G`` = every group without a target)."""
        shares = [self.config.targets[c] for c in sorted(self.config.targets)]
        shares.append(max(0.0, 1.0 - sum(shares)))
        return exposure_patterns(k, shares, self.config.tolerance)

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        if not self.config.targets:
            return identity_order(cands), None
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        dense, shares, n_targeted = self._groups(cands)
        cand_group = np.where(valid, dense[np.maximum(cands.items, 0)], n_targeted)
        lengths = np.minimum(valid.sum(axis=1), width)
        chosen = np.full((n, width), -1, dtype=np.int64)
        failed = np.zeros(n, dtype=bool)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            if length == 0:
                continue
            try:
                pats = self.patterns(int(length))
                if self.config.algorithm == "greedy" and int(length) * np.log2(n_targeted + 1) > 62:
                    raise ConfigError("too long to code")  # the greedy's prefix codes would overflow int64
            except ConfigError:  # too long for the exact search: greedy with a completion test
                tol = self.config.tolerance
                picked, ok = _greedy_completion(cand_group[rows], valid[rows], shares, tol, int(length))
            else:
                if self.config.algorithm == "optimal":
                    picked, ok = _optimal(cand_group[rows], valid[rows], pats, n_targeted + 1)
                else:
                    picked, ok = _greedy(cand_group[rows], valid[rows], pats, n_targeted + 1)
            chosen[rows, :length] = picked
            failed[rows] = ~ok
        if failed.any():  # best effort where the window cannot be reached: Geyik et al.'s greedy on attention
            fallback = GroupProportionsReranker(targets=dict(self.config.targets), weighting="attention")
            sub = _rows(cands, np.flatnonzero(failed))
            chosen[failed] = fallback.order(sub, k)[0][:, :width]
        available = valid.copy()
        picked = chosen >= 0
        available[np.repeat(np.arange(n), width)[picked.ravel()], chosen[picked]] = False
        return complete_order(chosen, available), None

    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        if not self.config.targets or not items.shape[1]:
            return np.ones(items.shape[0], dtype=bool)
        dense, shares, n_targeted = self._groups(cands)
        return exposure_shares_within(items, dense, shares, self.config.tolerance)


def exposure_shares(items: np.ndarray, dense_group: np.ndarray, n_groups: int) -> np.ndarray:
    """``(n, n_groups)`` each group's share of each list's attention (``1/log2(rank + 1)`` over the filled places).

    ``dense_group`` maps a catalog item to ``0..n_groups-1``; a list without a filled place has all shares 0.
    """
    filled = items >= 0
    w = np.where(filled, _attention(items.shape[1])[None, :], 0.0)
    group = np.where(filled, dense_group[np.maximum(items, 0)], 0)
    held = (w[:, :, None] * (group[:, :, None] == np.arange(n_groups)[None, None, :])).sum(axis=1)
    return held / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)


def exposure_shares_within(
    items: np.ndarray, dense_group: np.ndarray, shares: np.ndarray, tolerance: float
) -> np.ndarray:
    """Per list, whether every group's attention share lies within ``tolerance`` of ``shares`` (empty lists: True)."""
    got = exposure_shares(items, dense_group, len(shares))
    ok = (np.abs(got - np.asarray(shares)[None, :]) <= tolerance + _TOL).all(axis=1)
    return ok | ~(items >= 0).any(axis=1)


def _rows(cands: Candidates, rows: np.ndarray) -> Candidates:
    """The candidates of ``rows`` only (the catalog-side arrays shared)."""
    return Candidates(items=cands.items[rows], scores=cands.scores[rows], item_group=cands.item_group)


def _heads(cand_group: np.ndarray, valid: np.ndarray, n_groups: int, depth: int) -> np.ndarray:
    """``(n, n_groups, depth)`` each group's first ``depth`` candidate positions in input order (``c`` after)."""
    n, c = cand_group.shape
    out = np.full((n, n_groups, depth), c, dtype=np.int64)
    take = min(depth, c)
    for g in range(n_groups):
        member = valid & (cand_group == g)
        pos = np.argsort(~member, axis=1, kind="stable")[:, :take]
        out[:, g, :take] = np.where(np.take_along_axis(member, pos, axis=1), pos, c)
    return out


def _fill(pattern: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Input positions of the list each row's ``pattern`` gives: a group's places get its items in input order."""
    n, length = pattern.shape
    rows = np.arange(n)
    used = np.zeros((n, heads.shape[1]), dtype=np.int64)
    out = np.empty((n, length), dtype=np.int64)
    for i in range(length):
        g = pattern[:, i]
        out[:, i] = heads[rows, g, used[rows, g]]
        used[rows, g] += 1
    return out


_TABLES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]] = {}


def _tables(pats: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per pattern table (cached while the table is): ``need`` ``(P, G)`` items per group, ``coef``
    ``(G * length, P)`` the attention of each group's j-th place, ``codes`` ``(P,)`` the patterns in base ``G``,
    and per place ``i`` the sorted codes of the patterns' prefixes of length ``i + 1``."""
    memo = _TABLES.get(id(pats))
    if memo is not None and memo[0] is pats:
        return memo[1], memo[2], memo[3], memo[4]
    length = pats.shape[1]
    w = _attention(length)
    place_of = np.zeros((len(pats), n_groups, length))
    seen = np.zeros((len(pats), n_groups), dtype=np.int64)
    p_rows = np.arange(len(pats))
    for i in range(length):
        g = pats[:, i].astype(np.int64)
        place_of[p_rows, g, seen[p_rows, g]] = w[i]
        seen[p_rows, g] += 1
    coef = np.ascontiguousarray(place_of.reshape(len(pats), -1).T)
    codes = pats.astype(np.int64) @ (n_groups ** np.arange(length - 1, -1, -1, dtype=np.int64))
    levels = [np.unique(codes // n_groups ** (length - 1 - i)) for i in range(length)]
    if len(_TABLES) > 64:
        _TABLES.clear()
    _TABLES[id(pats)] = (pats, seen, coef, codes, levels)
    return seen, coef, codes, levels


def _fitting(
    cand_group: np.ndarray, valid: np.ndarray, pats: np.ndarray, n_groups: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by how many items of each group they can give (capped at the list length), each with the
    patterns they can fill: ``[(rows, pattern indices)]``. Most catalogs give one or a few such profiles."""
    length = pats.shape[1]
    need = _tables(pats, n_groups)[0]  # (P, G)
    have = np.stack([(valid & (cand_group == g)).sum(axis=1) for g in range(n_groups)], axis=1)
    profiles, inverse = np.unique(np.minimum(have, length), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    out = []
    for u, profile in enumerate(profiles):
        fits = np.flatnonzero((need <= profile[None, :]).all(axis=1))
        out.append((np.flatnonzero(inverse == u), fits))
    return out


def _optimal(
    cand_group: np.ndarray, valid: np.ndarray, pats: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the feasible pattern of maximum ``sum_i w_i * w(input rank)`` and its list; rows without one: False."""
    n, c = cand_group.shape
    length = pats.shape[1]
    out = np.full((n, length), -1, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if not len(pats):
        return out, ok
    heads = _heads(cand_group, valid, n_groups, length)
    rank_gain = np.append(_attention(c), 0.0)  # input position -> gain (the sentinel ``c``: none)
    gains = rank_gain[heads].reshape(n, -1)  # (n, G * length)
    coef = _tables(pats, n_groups)[1]  # (G * length, P)
    for rows, fits in _fitting(cand_group, valid, pats, n_groups):
        if not len(fits):
            continue
        sub = coef if len(fits) == len(pats) else coef[:, fits]
        best = np.empty(len(rows), dtype=np.int64)
        step = max(1, _SCORE_CELLS // len(fits))
        for start in range(0, len(rows), step):
            chunk = gains[rows[start : start + step]]
            # a few rows (one served list): einsum, as a threaded BLAS call costs more than it saves
            value = np.einsum("ij,jk->ik", chunk, sub) if len(chunk) <= _FEW_ROWS else chunk @ sub
            best[start : start + step] = value.argmax(axis=1)
        out[rows] = _fill(pats[fits[best]].astype(np.int64), heads[rows])
        ok[rows] = True
    return out, ok


def _greedy(
    cand_group: np.ndarray, valid: np.ndarray, pats: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Place by place, the best remaining candidate whose group keeps a feasible pattern the row can fill within
    reach: the lexicographically first list within the window. Rows that can fill no pattern: False."""
    n, c = cand_group.shape
    length = pats.shape[1]
    out = np.full((n, length), -1, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if not len(pats):
        return out, ok
    _, _, codes, levels = _tables(pats, n_groups)
    for rows, fits in _fitting(cand_group, valid, pats, n_groups):
        if not len(fits):
            continue
        group = cand_group[rows]
        taken = ~valid[rows]
        prefix = np.zeros(len(rows), dtype=np.int64)
        at = np.arange(len(rows))
        fine = np.ones(len(rows), dtype=bool)
        for i in range(length):
            # the feasible prefixes of length i + 1 the rows can fill
            reachable = levels[i] if len(fits) == len(pats) else np.unique(codes[fits] // n_groups ** (length - 1 - i))
            query = prefix[:, None] * n_groups + group
            at_or_after = np.minimum(np.searchsorted(reachable, query), len(reachable) - 1)
            allowed = (reachable[at_or_after] == query) & ~taken  # membership in the sorted prefixes
            j = np.argmax(allowed, axis=1)
            fine &= allowed[at, j]  # always True: the row can fill a pattern with this prefix
            out[rows, i] = j
            taken[at, j] = True
            prefix = prefix * n_groups + group[at, j]
        ok[rows] = fine
    return out, ok


def _completes(held: np.ndarray, left: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether the places of attention ``w`` (decreasing) can lift every row of ``held`` into ``[lo, hi]``.

    A sufficient test: two simple completions are tried, and either succeeding proves the window reachable. Each
    place in turn goes, among the groups it fits (under the ceiling, with an item ``left``), to the group
    furthest below its floor, or in the second to the group furthest below the middle of its window.
    """
    ok = np.zeros(len(held), dtype=bool)
    for aim in (lo, (lo + hi) / 2):
        got = held.copy()
        have = left.copy()
        rows = np.arange(len(held))
        fine = np.ones(len(held), dtype=bool)
        for wt in w:
            fits = (got + wt <= hi + _TOL) & (have > 0)
            g = np.where(fits, aim - got, -np.inf).argmax(axis=1)
            fine &= fits[rows, g]
            got[rows, g] += np.where(fine, wt, 0.0)
            have[rows, g] -= 1
        ok |= fine & ((got >= lo - _TOL) & (got <= hi + _TOL)).all(axis=1)
    return ok


def _greedy_completion(
    cand_group: np.ndarray, valid: np.ndarray, shares: np.ndarray, tolerance: float, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy for lists too long for the exact search: place by place, the best remaining candidate whose group
    passes :func:`_completes` for the places after it. Rows where no group passes at some place: False."""
    n, c = cand_group.shape
    n_groups = len(shares)
    w = _attention(length)
    lo, hi = (shares - tolerance) * w.sum(), (shares + tolerance) * w.sum()
    left = np.stack([(valid & (cand_group == g)).sum(axis=1) for g in range(n_groups)], axis=1)
    held = np.zeros((n, n_groups))
    taken = ~valid
    rows = np.arange(n)
    out = np.full((n, length), -1, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    eye = np.eye(n_groups)
    for i in range(length):
        trial = (held[:, None, :] + w[i] * eye[None, :, :]).reshape(-1, n_groups)  # (n * G, G): g takes place i
        trial_left = (left[:, None, :] - eye[None, :, :].astype(np.int64)).reshape(-1, n_groups)
        passes = _completes(trial, trial_left, w[i + 1 :], lo, hi).reshape(n, n_groups)
        passes &= (held + w[i] <= hi + _TOL) & (left > 0)
        allowed = np.take_along_axis(passes, cand_group, axis=1) & ~taken
        j = np.argmax(allowed, axis=1)
        ok &= allowed[rows, j]
        out[:, i] = np.where(ok, j, -1)
        g = cand_group[rows, j]
        taken[rows[ok], j[ok]] = True
        held[rows[ok], g[ok]] += w[i]
        left[rows[ok], g[ok]] -= 1
    return out, ok


def window_reachable(k: int, shares: np.ndarray | list[float], tolerance: float) -> bool:
    """Whether some list of ``k`` places (items of every group at hand) puts every group's attention share within
    ``tolerance`` of ``shares``: exact while the pattern search fits, else the sufficient test of the greedy."""
    p = np.asarray(shares, dtype=np.float64)
    try:
        return len(exposure_patterns(k, p, tolerance)) > 0
    except ConfigError:
        w = _attention(k)
        lo, hi = (p - tolerance) * w.sum(), (p + tolerance) * w.sum()
        return bool(_completes(np.zeros((1, len(p))), np.full((1, len(p)), k), w, lo, hi)[0])


def minimum_items(k: int, shares: np.ndarray | list[float], tolerance: float) -> list[int]:
    """Per group, the fewest items any list of ``k`` places meeting the window gives it: the fewest best places
    whose attention reaches the group's floor ``(p - tolerance) * W`` (a necessary count).

    >>> minimum_items(10, [0.25, 0.25, 0.25, 0.25], 0.05)  # floor 0.2 * 4.54 = 0.91: the top place holds 1
    [1, 1, 1, 1]
    >>> minimum_items(10, [0.7, 0.1, 0.1, 0.1], 0.05)  # 0.65 * 4.54 = 2.953 > 2.949, places 1-5
    [6, 1, 1, 1]
    """
    w = _attention(k)
    best = np.concatenate([[0.0], np.cumsum(w)])
    floors = (np.asarray(shares, dtype=np.float64) - tolerance) * w.sum()
    return [int(np.searchsorted(best, f - _TOL)) if f > _TOL else 0 for f in floors]
