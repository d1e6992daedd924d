"""The accuracy-fairness front of a pack's re-ranking: every setting of its steps' parameters on one grid.

:func:`tradeoff_front` fits ALS once per split seed, generates the model's
candidates once (the pack's ``reranking.candidates`` best unseen items of every
test user), and then only re-runs the re-ranking for each grid point of the
pack's steps' parameters, so a grid of dozens of points costs a few re-rankings,
not dozens of fits. Every point is measured on the same users, on:

* accuracy: NDCG@k of the re-ranked lists against the users' test positives
  (:func:`recommender.metrics.ndcg_at_k`, the code ``recgov evaluate`` uses);
* provider exposure gap: ``max_g |exposure_share(g) / relevance_share(g) - 1|``
  under log attention, the shares averaged over users as
  :func:`recommender.fairness.provider_exposure` averages them (the figure
  :func:`governance.tradeoff.exposure_gap` reads off the audit);
* consumer gap, for each of the pack's ``fairness.audit_attributes`` the data
  has (cut into the pack's ``fairness.bins`` and joined into its
  ``fairness.intersections`` as the audit does): the largest difference of mean
  NDCG@k between two groups of at least ``fairness.min_group_size`` users.

A point is on the front of an objective when no other point has at least its
NDCG and at most its gap with one of the two strictly better.

:func:`paired_bootstrap` compares two configurations on the same users: the
per-user differences of NDCG and the difference of the exposure gap, with
percentile intervals from one multinomial resampling of users shared by both
figures (vectorised: a ``(B, n)`` count matrix times the per-user values).
:func:`detectable_group_size` says how many users a group needs before a gap of
a given size between it and the other users is detectable (two-sided Welch
z-test at level ``alpha`` with power ``power``, the observed variances).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender import metrics as M
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = [
    "DEFAULT_GRIDS",
    "MAX_POINTS",
    "default_grid",
    "detectable_group_size",
    "exposure_gap_of",
    "pareto_front",
    "paired_bootstrap",
    "parse_grid",
    "tradeoff_front",
    "user_exposure_shares",
]

MAX_POINTS = 400
"""At most this many grid points (the product of the varied parameters' values)."""

DEFAULT_GRIDS: dict[str, dict[str, list[float]]] = {
    "fair_star": {"p": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]},
    "exposure_cap": {"max_share": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]},
    "group_proportions": {"targets": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
    "amortised_exposure": {"weight": [0.0, 0.5, 1.0, 2.0, 5.0], "ndcg_budget": [0.01, 0.02, 0.05, 0.1]},
    "exposure_targets": {"tolerance": [0.02, 0.05, 0.1, 0.2, 0.3]},
    "provider_calibration": {"tradeoff": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]},
    "calibration": {"tradeoff": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]},
    "mmr": {"tradeoff": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]},
    "popularity_debias": {"beta": [0.0, 0.1, 0.2, 0.5, 1.0, 2.0]},
}
"""Per step type, the parameters varied by default and their values (the pack's own value is always added).

``group_proportions.targets`` and ``amortised_exposure.targets`` take the share
of the protected provider group (code 1); the other groups share the rest in
the proportions the pack gives them."""

NOT_ENABLED = "tradeoff: the pack does not enable re-ranking (reranking.enabled with at least one step); there is no front to draw."
EMPTY_GRID = "tradeoff: the grid is empty: {why}"
BAD_GRID = "tradeoff: --grid {spec!r}: {why}"
TOO_MANY = "tradeoff: the grid has {n} points, more than {max}; give fewer values with --grid."
BAD_POINT = "tradeoff: grid point {point}: {why}"
NO_OBJECTIVE = (
    "tradeoff: no fairness objective can be measured on this data: its items table gives fewer than two provider groups "
    "(fairness.provider_attribute) and it has none of the pack's fairness.audit_attributes with two groups of "
    "fairness.min_group_size users; give the item table with --items or user attributes."
)
NO_USERS = "tradeoff: the split left no test positives of users known to training: nothing to evaluate."


# -- the grid ------------------------------------------------------------------------------------
def _pack_steps(pack: Any) -> list[dict[str, Any]]:
    pack = getattr(pack, "pack", pack)
    if not (pack.reranking.enabled and pack.reranking.steps):
        raise ConfigError(NOT_ENABLED)
    return [{"name": s.name, "params": s.params.model_dump(mode="json")} for s in pack.reranking.steps]


def _labels(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for step in steps:
        seen[step["name"]] = seen.get(step["name"], 0) + 1
        out.append(step["name"] if seen[step["name"]] == 1 else f"{step['name']}_{seen[step['name']]}")
    return out


def _protected_share(targets: Mapping[Any, float]) -> float:
    total = sum(float(v) for v in targets.values())
    return float(targets.get(1, targets.get("1", 0.0))) / total if total > 0 else 0.0


def _current(params: Mapping[str, Any], param: str) -> Any:
    value = params.get(param)
    return _protected_share(value) if param == "targets" and isinstance(value, Mapping) else value


def default_grid(pack: Any) -> dict[str, list[Any]]:
    """``{"<step label>.<param>": [values]}``: the default values of every step's varied parameters, the pack's own included."""
    steps = _pack_steps(pack)
    grid: dict[str, list[Any]] = {}
    for label, step in zip(_labels(steps), steps):
        for param, values in DEFAULT_GRIDS.get(step["name"], {}).items():
            own = _current(step["params"], param)
            grid[f"{label}.{param}"] = sorted({*values, *([float(own)] if own is not None else [])})
    return grid


def parse_grid(specs: Sequence[str], pack: Any) -> dict[str, list[Any]]:
    """The default grid with ``step.param=v1,v2,...`` overrides; a bad spec is a located :class:`ConfigError`."""
    from governance.rerank.registry import get_reranker

    steps = _pack_steps(pack)
    labels = _labels(steps)
    grid = default_grid(pack)
    for spec in specs:
        name, sep, values = spec.partition("=")
        label, dot, param = name.strip().partition(".")
        if not sep or not dot or not param:
            raise ConfigError(BAD_GRID.format(spec=spec, why="give step.param=v1,v2,... (e.g. fair_star.p=0.3,0.5)"))
        if label not in labels:
            raise ConfigError(BAD_GRID.format(spec=spec, why=f"unknown step {label!r}; the pack's steps are: {', '.join(labels)}"))
        step = steps[labels.index(label)]
        fields = get_reranker(step["name"]).Config.model_fields
        if param not in fields:
            raise ConfigError(
                BAD_GRID.format(spec=spec, why=f"step {label!r} ({step['name']}) has no parameter {param!r}; its parameters are: {', '.join(fields)}")
            )
        parsed: list[Any] = []
        for raw in (v.strip() for v in values.split(",")):
            if not raw:
                continue
            try:
                parsed.append(json.loads(raw))
            except json.JSONDecodeError:
                parsed.append(raw)
        if not parsed:
            raise ConfigError(EMPTY_GRID.format(why=f"--grid {spec!r} gives no value"))
        grid[f"{label}.{param}"] = parsed
    if not grid:
        raise ConfigError(
            EMPTY_GRID.format(why=f"no step of the pack ({', '.join(s['name'] for s in steps)}) has a default grid; give one with --grid step.param=v1,v2,...")
        )
    n = math.prod(len(v) for v in grid.values())
    if n > MAX_POINTS:
        raise ConfigError(TOO_MANY.format(n=n, max=MAX_POINTS))
    grid_points(pack, grid)  # every point a valid pipeline, before any data is read
    return grid


def _with_value(params: dict[str, Any], param: str, value: Any) -> dict[str, Any]:
    out = dict(params)
    if param == "targets" and isinstance(value, (int, float)) and not isinstance(value, bool):
        own = {int(g): float(s) for g, s in (params.get("targets") or {0: 0.5, 1: 0.5}).items()}
        others = {g: s for g, s in own.items() if g != 1} or {0: 1.0}
        rest = sum(others.values())
        share = float(value)
        out["targets"] = {**{g: (1.0 - share) * s / rest if rest > 0 else (1.0 - share) / len(others) for g, s in others.items()}, 1: share}
    else:
        out[param] = value
    return out


def grid_points(pack: Any, grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination: ``{"setting": {"label.param": value}, "steps": [...]}``, each validated as a pipeline."""
    from governance.rerank import build_pipeline

    steps = _pack_steps(pack)
    labels = _labels(steps)
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        setting = dict(zip(keys, values))
        new = [{"name": s["name"], "params": dict(s["params"])} for s in steps]
        for key, value in setting.items():
            label, _, param = key.partition(".")
            i = labels.index(label)
            new[i]["params"] = _with_value(new[i]["params"], param, value)
        try:
            build_pipeline(new)
        except ConfigError as err:
            raise ConfigError(BAD_POINT.format(point=setting, why=err)) from None
        points.append({"setting": setting, "steps": new})
    return points


# -- per-user figures ------------------------------------------------------------------------------
def user_exposure_shares(lists: np.ndarray, item_codes: np.ndarray, relevant: sp.csr_matrix, n_groups: int) -> np.ndarray:
    """``(n, 2 G)``: each user's share of log attention per provider group, then share of test positives; NaN rows
    for users with an empty list or no positive (left out as :func:`recommender.fairness.provider_exposure` leaves them)."""
    from recommender.fairness import attention_weights

    n, k = lists.shape
    weights = np.broadcast_to(attention_weights(k, "log"), lists.shape)
    valid = lists >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], lists.shape)
    seen = np.zeros((n, n_groups))
    np.add.at(seen, (rows[valid], item_codes[lists[valid]]), weights[valid])
    wanted = np.zeros((n, n_groups))
    rel_rows = np.repeat(np.arange(n), np.diff(relevant.indptr))
    np.add.at(wanted, (rel_rows, item_codes[relevant.indices]), 1.0)
    s_tot, w_tot = seen.sum(axis=1, keepdims=True), wanted.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.concatenate([seen / s_tot, wanted / w_tot], axis=1)
    shares[((s_tot == 0) | (w_tot == 0))[:, 0]] = np.nan
    return shares


def exposure_gap_of(mean_shares: np.ndarray) -> np.ndarray:
    """``max_g |exposure_share / relevance_share - 1|`` of (the last axis of) mean shares ``(..., 2 G)``."""
    g = mean_shares.shape[-1] // 2
    e, r = mean_shares[..., :g], mean_shares[..., g:]
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(e / r - 1.0)
    dev = np.where(r > 0, dev, np.nan)
    return np.nanmax(dev, axis=-1) if dev.size else np.full(dev.shape[:-1], np.nan)


def _nan_mean_rows(shares: np.ndarray) -> np.ndarray:
    keep = ~np.isnan(shares[:, 0])
    return shares[keep].mean(axis=0) if keep.any() else np.full(shares.shape[1], np.nan)


def _known(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the users' labels (-1 where the attribute is missing, or outside every band) and the names. Users
    without the attribute are told by their missing label, never by a name: a group whose value is literally
    'unknown' is a group like any other, as the audit judges it."""
    codes, names = pd.factorize(pd.Series(labels, dtype="string"), use_na_sentinel=True)
    return codes, np.asarray(names, dtype=object)


def _consumer_gaps(ndcg: np.ndarray, groups: Mapping[str, np.ndarray], min_size: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for attribute, labels in groups.items():
        codes, names = _known(labels)
        known = codes >= 0
        n = np.bincount(codes[known], minlength=len(names))
        sums = np.bincount(codes[known], weights=ndcg[known], minlength=len(names))
        judged = n >= min_size
        means = sums[judged] / n[judged]
        out[attribute] = float(means.max() - means.min()) if judged.sum() >= 2 else None
    return out


def pareto_front(accuracy: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Whether each point is on the front of (maximise ``accuracy``, minimise ``gap``); NaN figures never are.

    >>> pareto_front(np.array([0.3, 0.2, 0.25, 0.1]), np.array([0.5, 0.1, 0.3, 0.2])).tolist()
    [True, True, True, False]
    """
    a, g = np.asarray(accuracy, float), np.asarray(gap, float)
    ok = np.isfinite(a) & np.isfinite(g)
    ge = (a[None, :] >= a[:, None]) & (g[None, :] <= g[:, None])
    strict = (a[None, :] > a[:, None]) | (g[None, :] < g[:, None])
    dominated = (ge & strict & ok[None, :]).any(axis=1)
    return ok & ~dominated


# -- comparisons ------------------------------------------------------------------------------------
def _percentile(draws: np.ndarray, confidence: float) -> list[float | None]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return [None, None]
    lo, hi = np.percentile(draws, [50 * (1 - confidence), 50 * (1 + confidence)])
    return [float(lo), float(hi)]


_BOOT_CELLS = 2**23
"""A bootstrap block resamples at most this many (draw, user) cells at once (64 MiB of float64 counts)."""


def _gap_draws(counts: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """The exposure gap of each resample (rows of ``counts``), users without shares left out of the means."""
    keep = ~np.isnan(shares[:, 0])
    totals = counts @ keep.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (counts @ np.nan_to_num(shares)) / totals[:, None]
    return exposure_gap_of(means)


def paired_bootstrap(
    ndcg_a: np.ndarray,
    ndcg_b: np.ndarray,
    shares_a: np.ndarray | None = None,
    shares_b: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``b - a`` on the same users: mean NDCG difference and exposure-gap difference with percentile intervals.

    One ``(n_boot, n)`` multinomial count matrix (drawn in blocks of bounded
    memory) resamples users for both figures, so the two intervals come from
    the same resamples and each resample keeps users paired.
    """
    a, b = np.asarray(ndcg_a, float), np.asarray(ndcg_b, float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ConfigError("paired_bootstrap: the two configurations must give one NDCG per user for the same, non-empty, users")
    n = a.size
    diff = b - a
    paired = shares_a is not None and shares_b is not None
    rng = np.random.default_rng(seed)
    block = int(max(1, _BOOT_CELLS // n))  # count matrices of at most _BOOT_CELLS cells at a time
    draws, gd = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start).astype(np.float64)
        draws[start:stop] = counts @ diff / n
        if paired:
            gd[start:stop] = _gap_draws(counts, shares_b) - _gap_draws(counts, shares_a)
    out: dict[str, Any] = {
        "n_users": n,
        "n_boot": n_boot,
        "confidence": confidence,
        "ndcg": {"a": float(a.mean()), "b": float(b.mean()), "difference": float(diff.mean()), "interval": _percentile(draws, confidence)},
    }
    if paired:
        ga, gb = exposure_gap_of(_nan_mean_rows(shares_a)), exposure_gap_of(_nan_mean_rows(shares_b))
        out["exposure_gap"] = {"a": _num(ga), "b": _num(gb), "difference": _num(gb - ga), "interval": _percentile(gd, confidence)}
    return out


def detectable_group_size(
    values_group: np.ndarray, values_rest: np.ndarray, gap: float, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Users the group needs for a true gap of ``gap`` (in the values' units) against the rest to be detected.

    Two-sided Welch z-test at level ``alpha`` with power ``power``, the observed
    standard deviations and the rest's observed size: the smallest ``n_g`` with
    ``sqrt(s_g^2 / n_g + s_r^2 / n_r) <= gap / (z_{1-alpha/2} + z_power)``;
    ``inf`` when even an infinite group would not do (the rest is too small).

    >>> round(detectable_group_size(np.r_[0.0, 1.0] * 1, np.r_[0.0, 1.0] * 1, 0.5), 1)  # s = 0.707 both, n_r = 2
    inf
    """
    from scipy.stats import norm

    g, r = np.asarray(values_group, float), np.asarray(values_rest, float)
    if gap <= 0:
        raise ConfigError(f"detectable_group_size: the gap must be positive. Got {gap!r} instead.")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    s_g = g.std(ddof=1) if g.size > 1 else 0.0
    s_r = r.std(ddof=1) if r.size > 1 else 0.0
    room = (gap / z) ** 2 - (s_r**2 / r.size if r.size else math.inf)
    if room <= 0:
        return math.inf
    return float(math.ceil(s_g**2 / room)) if s_g > 0 else 2.0


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# -- the front -------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """One split seed's fit and candidates: everything the grid points share."""

    seed: int
    rows: np.ndarray
    relevant: sp.csr_matrix
    candidates: Any
    item_codes: np.ndarray
    n_groups: int
    groups: dict[str, np.ndarray]
    train_hash: str
    fit_seconds: float


def _digest(matrix: sp.csr_matrix) -> str:
    h = hashlib.sha256()
    for part in (matrix.indptr, matrix.indices, np.asarray(matrix.shape)):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()[:16]


def _prepare(dataset: Dataset, pack: Any, steps: list[dict[str, Any]], seed: int, k: int, als_params: Mapping[str, Any]) -> _Prepared:
    from governance.rerank import Candidates, build_pipeline, history_category_distribution, history_group_distribution
    from governance.collect_literature import audit_groups, wants_groups
    from governance.tradeoff import rerank_side_arrays
    from recommender.als import ALSRecommender
    from recommender.feedback import FeedbackConfig
    from recommender.pipeline import user_segments
    from recommender.scoring import factor_top_k
    from recommender.split import SplitConfig, split, train_test_matrices

    started = time.perf_counter()
    q = pack.quality
    train_events, test_events = split(dataset.events, SplitConfig(kind=q.split, test_fraction=q.test_fraction, random_state=seed))
    mats = train_test_matrices(train_events, test_events, FeedbackConfig(rating_threshold=q.rating_threshold))
    train, test = mats.train, mats.test
    rows = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    if len(rows) == 0:
        raise ConfigError(NO_USERS)
    model = ALSRecommender(**dict(als_params), random_state=seed).fit(train)
    side = rerank_side_arrays(dataset, pack, train)
    n_candidates = min(max(k, pack.reranking.candidates), train.n_items)
    items, scores = factor_top_k(model.user_factors_, model.item_factors_, rows, n_candidates, seen=train.matrix)
    needs = set().union(*(build_pipeline([s]).needs() for s in steps))
    history = train.matrix[rows]
    dist = history_category_distribution(history, side["item_categories"]) if "user_category_dist" in needs else None
    mix = history_group_distribution(history, side["item_group"]) if "user_group_dist" in needs else None
    cands = Candidates(items=items, scores=scores.astype(np.float64), seeds=rows, user_category_dist=dist, user_group_dist=mix, **side)
    # provider groups as the audit names them (missing -> its own group)
    provider = pack.fairness.provider_attribute or "provider_group"
    ids = pd.Index(np.asarray(train.item_ids).astype(str))
    table = dataset.items if dataset.items is not None else pd.DataFrame()
    meta = table.reindex(ids) if len(table) else pd.DataFrame(index=ids)
    raw = meta[provider].astype("string").fillna("missing") if provider in meta else pd.Series("missing", index=ids, dtype="string")
    codes, names = pd.factorize(raw, sort=True)
    section = pack.fairness
    if wants_groups(section):  # the pack's bins and intersections, labelled as the audit labels them
        groups, _ = audit_groups(dataset.users, section, train.user_ids, rows)
    else:
        segments = user_segments(dataset, train)  # which attributes are groups (few values); their labels as read,
        aligned = dataset.users.reindex(pd.Index(train.user_ids.astype(str))) if segments else None  # missing kept missing
        groups = {a: aligned[a].to_numpy(dtype=object)[rows] for a in section.audit_attributes if a in segments}
    return _Prepared(
        seed=seed, rows=rows, relevant=test.matrix[rows].tocsr(), candidates=cands, item_codes=codes.astype(np.int64),
        n_groups=len(names), groups=groups, train_hash=_digest(train.matrix), fit_seconds=time.perf_counter() - started,
    )


def _measure(prep: _Prepared, steps: list[dict[str, Any]] | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-user NDCG@k and exposure shares (None with fewer than two provider groups) of the lists the steps make
    (``steps`` None: the model's plain top k)."""
    from governance.rerank import build_pipeline

    if steps is None:
        lists = prep.candidates.items[:, :k]
    else:
        lists = build_pipeline(steps)(prep.candidates, k).items
    ndcg = np.nan_to_num(M.ndcg_at_k(lists, prep.relevant, k))
    if prep.n_groups < 2:  # one provider group (or none known): exposure has nothing to be fair between
        return ndcg, None
    return ndcg, user_exposure_shares(lists, prep.item_codes, prep.relevant, prep.n_groups)


def tradeoff_front(
    dataset: Dataset,
    pack: Any,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = (0,),
    als_params: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    detect_gap: float = 0.02,
    compare: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The front over the grid (JSON-ready): every point with its figures per seed and their spread, the front
    per objective, the pack's chosen point, the paired comparisons and the group sizes a gap needs.

    Raises :class:`ConfigError` for a pack without re-ranking, an empty or bad grid,
    or a split with no test users.
    """
    from governance.ablation import DEFAULT_ALS

    from governance.family_inputs import refuse_banned_columns
    from recommender.family import get_family

    # the front fits ALS and re-ranks with the item table: held to the pack's minimisation as a governed fit is
    refuse_banned_columns(get_family("als"), pack, dataset=dataset)
    started = time.perf_counter()
    pack = getattr(pack, "pack", pack)
    steps = _pack_steps(pack)
    grid = dict(default_grid(pack) if grid is None else grid)
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ConfigError(EMPTY_GRID.format(why="no parameter to vary, or a parameter without values"))
    points = grid_points(pack, grid)
    own = {key: _current(steps[_labels(steps).index(key.partition(".")[0])]["params"], key.partition(".")[2]) for key in grid}
    chosen = next((i for i, p in enumerate(points) if all(_same(p["setting"][k], own[k]) for k in grid)), None)
    if chosen is None:
        points.append({"setting": own, "steps": steps})
        chosen = len(points) - 1
    if compare is not None and not all(0 <= c < len(points) for c in compare):
        raise ConfigError(f"tradeoff: --compare {compare[0]},{compare[1]}: the points are numbered 0 to {len(points) - 1}")
    k = pack.quality.k
    params = {**DEFAULT_ALS, **dict(als_params or {})}
    seeds = list(dict.fromkeys(int(s) for s in seeds)) or [0]
    n_pts = len(points)
    ndcg = np.full((len(seeds), n_pts + 1), np.nan)  # last column: the plain lists
    gap = np.full_like(ndcg, np.nan)
    consumer: dict[str, np.ndarray] = {}
    comparisons, power, lineage = [], [], []
    rerank_seconds = 0.0
    for si, seed in enumerate(seeds):
        prep = _prepare(dataset, pack, steps, seed, k, params)
        per_user: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        t0 = time.perf_counter()
        for j, point in enumerate([*points, {"steps": None}]):
            u_ndcg, shares = _measure(prep, point["steps"], k)
            ndcg[si, j] = u_ndcg.mean()
            gap[si, j] = np.nan if shares is None else exposure_gap_of(_nan_mean_rows(shares))
            for attribute, value in _consumer_gaps(u_ndcg, prep.groups, pack.fairness.min_group_size).items():
                consumer.setdefault(attribute, np.full_like(ndcg, np.nan))[si, j] = np.nan if value is None else value
            if j in (chosen, n_pts) or (compare and j in compare):
                per_user[j] = (u_ndcg, shares)
        rerank_seconds += time.perf_counter() - t0
        pairs = [("no re-ranking vs the pack's setting", n_pts, chosen)] + ([("grid points", compare[0], compare[1])] if compare else [])
        for what, a, b in pairs:
            result = paired_bootstrap(per_user[a][0], per_user[b][0], per_user[a][1], per_user[b][1], n_boot=n_boot, confidence=confidence, seed=seed)
            comparisons.append({"seed": seed, "what": what, "a": "plain" if a == n_pts else a, "b": b, **result})
        base_ndcg = per_user[chosen][0]
        for attribute, labels in prep.groups.items():
            codes, names = _known(labels)
            for c in np.argsort(names.astype(str), kind="stable"):
                g, inside = names[c], codes == c
                need = detectable_group_size(base_ndcg[inside], base_ndcg[~inside], detect_gap)
                power.append({
                    "seed": seed, "attribute": attribute, "group": str(g), "n_users": int(inside.sum()),
                    "users_needed": None if math.isinf(need) else int(need), "too_small": bool(inside.sum() < need),
                })  # fmt: skip
        lineage.append({"seed": seed, "train_hash": prep.train_hash, "n_test_users": int(len(prep.rows)), "fit_and_candidates_seconds": round(prep.fit_seconds, 3)})

    def summary(values: np.ndarray, j: int) -> dict[str, Any]:
        col = values[:, j]
        return {
            "mean": _num(np.nanmean(col)) if np.isfinite(col).any() else None,
            "sd": _num(np.nanstd(col, ddof=1)) if np.isfinite(col).sum() > 1 else None,
            "by_seed": [_num(v) if np.isfinite(v) else None for v in col],
        }

    mean_ndcg = np.nanmean(ndcg, axis=0)
    objectives = {**({"provider_exposure_gap": gap} if np.isfinite(gap).any() else {}), **{f"consumer_gap:{a}": v for a, v in consumer.items() if np.isfinite(v).any()}}
    if not objectives:
        raise ConfigError(NO_OBJECTIVE)
    fronts = {}
    for name, values in objectives.items():
        with np.errstate(all="ignore"):
            mean_gap = np.nanmean(values, axis=0) if np.isfinite(values).any() else np.full(values.shape[1], np.nan)
        fronts[name] = pareto_front(mean_ndcg[:n_pts], mean_gap[:n_pts])
    out_points = []
    for j, point in enumerate([*points, {"setting": None, "steps": None}]):
        out_points.append({
            "id": j if j < n_pts else "plain",
            "setting": point["setting"],
            "steps": point["steps"],
            "chosen": j == chosen,
            "ndcg": summary(ndcg, j),
            **{name: summary(values, j) for name, values in objectives.items()},
            "on_front": {name: bool(front[j]) for name, front in fronts.items()} if j < n_pts else {},
        })  # fmt: skip
    return {
        "pack": {"name": pack.metadata.name, "version": pack.metadata.version},
        "k": k,
        "grid": {key: list(values) for key, values in grid.items()},
        "objectives": list(objectives),
        "chosen": chosen,
        "points": out_points,
        "comparisons": comparisons,
        "group_power": {"gap": detect_gap, "alpha": 0.05, "power": 0.8, "metric": f"ndcg@{k}", "groups": power},
        "lineage": {
            "dataset": {"name": dataset.name, "n_events": int(len(dataset.events))},
            "als_params": params,
            "split": {"kind": pack.quality.split, "test_fraction": pack.quality.test_fraction},
            "seeds": lineage,
            "pack_steps": steps,
        },
        "timing": {"total_seconds": round(time.perf_counter() - started, 3), "rerank_seconds": round(rerank_seconds, 3), "points": n_pts + 1},
    }


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return a == b


def plot_front(result: Mapping[str, Any], path: Any) -> None:
    """Draw NDCG@k against each objective (one panel each), the front joined, the pack's point starred, plain marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = result["objectives"]
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.2 * len(objectives), 4.2), squeeze=False)
    pts = result["points"]
    for ax, name in zip(axes[0], objectives):
        xs = np.array([p[name]["mean"] if p[name]["mean"] is not None else np.nan for p in pts])
        ys = np.array([p["ndcg"]["mean"] if p["ndcg"]["mean"] is not None else np.nan for p in pts])
        front = np.array([p["on_front"].get(name, False) for p in pts])
        ax.scatter(xs, ys, s=16, color="0.6", label="grid point")
        order = np.argsort(xs[front])
        ax.plot(xs[front][order], ys[front][order], "-o", color="tab:blue", ms=4, label="front")
        for p, x, y in zip(pts, xs, ys):
            if p["chosen"]:
                ax.scatter([x], [y], marker="*", s=180, color="tab:red", zorder=5, label="pack's setting")
            if p["id"] == "plain":
                ax.scatter([x], [y], marker="s", s=50, color="black", zorder=5, label="no re-ranking")
        ax.set_xlabel(name.replace("_", " ") + " (lower is fairer)")
        ax.set_ylabel(f"NDCG@{result['k']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"accuracy-fairness front of {result['pack']['name']} {result['pack']['version']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
