"""A simulated slate world with a known click model, for the slate estimators' tests (and bench/bench_ope_coverage.py).

Contexts come in a few types; each type has logging scores, target scores and item
attractiveness. The logger is Plackett-Luce over its scores; the click model is
position-based (click at ``j`` with probability ``exam[j] * attr[item]``) or a
cascade (the user reads down and stops at the first click). The truth is the
target's exact expected clicks per slate on these contexts (every target slate
enumerated), so an estimator's interval can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.ope import (
    Estimate,
    SlatePolicy,
    cascade_ips,
    enumerate_slates,
    independent_ips,
    pairwise_probabilities,
    position_marginals,
    pseudo_inverse,
    slate_probabilities,
    standard_ips,
)

EXAM = np.array([1.0, 0.6, 0.35])


@dataclass
class SlateLogs:
    rewards: np.ndarray  # (n,) clicks per slate
    position_rewards: np.ndarray  # (n, k)
    log: dict[str, np.ndarray]  # slate_prob (n,), prefix (n, k), marginals (n, k)
    tgt: dict[str, np.ndarray]
    unsupported: dict[str, np.ndarray]  # slate, item_position: the target's mass the logger cannot show
    indicators: np.ndarray  # (n, k*m)
    gamma: np.ndarray  # (n, D, D)
    target_cells: np.ndarray  # (n, D)
    truth: float


def _slate_value(attr: np.ndarray, slate: np.ndarray, model: str) -> float:
    a = attr[slate]
    if model == "pbm":
        return float((EXAM[: len(slate)] * a).sum())
    return float((a * np.concatenate(([1.0], np.cumprod(1 - a)[:-1]))).sum())


def simulate(
    seed: int,
    n: int,
    *,
    target: SlatePolicy | str = "deterministic",
    model: str = "pbm",
    logger: SlatePolicy | None = None,
    m: int = 5,
    k: int = 3,
    n_types: int = 3,
    with_gamma: bool = True,
) -> SlateLogs:
    rng = np.random.default_rng(seed)
    logger = logger or SlatePolicy("plackett_luce", temperature=2.0)
    world = np.random.default_rng(12345)  # the world is the same for every seed; only the logs change
    log_scores = world.normal(size=(n_types, m))
    attr = world.uniform(0.05, 0.7, size=(n_types, m))
    tgt_scores = 3 * np.log(attr) + world.normal(scale=0.3, size=(n_types, m))  # the target knows what attracts
    types = rng.integers(0, n_types, n)
    # log: the logger draws each context's slate; pools are in governed order = the logger's score order
    order = np.argsort(-log_scores, axis=1)
    log_scores = np.take_along_axis(log_scores, order, 1)
    tgt_scores = np.take_along_axis(tgt_scores, order, 1)
    attr = np.take_along_axis(attr, order, 1)
    slates = np.stack([_draw(logger, log_scores[t], k, rng) for t in types])
    a = attr[types[:, None], slates]
    if model == "pbm":
        clicks = (rng.random((n, k)) < EXAM[:k] * a).astype(float)
    else:
        clicks = np.zeros((n, k))
        reading = np.ones(n, dtype=bool)
        for j in range(k):
            clicks[:, j] = reading & (rng.random(n) < a[:, j])
            reading &= clicks[:, j] == 0
    # the target: deterministic top-k of its scores (as a policy on the pool), or a stochastic policy over them
    if isinstance(target, str):
        tgt_order = np.argsort(-tgt_scores, axis=1)
        tgt_policy = None
    else:
        tgt_order, tgt_policy = None, target
    per_type: dict[int, dict[str, Any]] = {}
    truth_by_type = np.zeros(n_types)
    for t in range(n_types):
        if tgt_policy is None:
            tslates, tprobs = tgt_order[t][None, :k], np.ones(1)
            tmarg = np.zeros((k, m))
            tmarg[np.arange(k), tgt_order[t][:k]] = 1.0
        else:
            tslates, tprobs = enumerate_slates(tgt_policy, tgt_scores[t], k)
            tmarg = position_marginals(tgt_policy, tgt_scores[t], k)
        truth_by_type[t] = sum(p * _slate_value(attr[t], s, model) for s, p in zip(tslates, tprobs))
        lmarg = position_marginals(logger, log_scores[t], k)
        unsupported_slate = sum(p for s, p in zip(tslates, tprobs) if slate_probabilities(logger, log_scores[t], s)[0] == 0)
        per_type[t] = {
            "tslates": {tuple(s): p for s, p in zip(tslates.tolist(), tprobs)},
            "tmarg": tmarg,
            "lmarg": lmarg,
            "unsupported_slate": unsupported_slate,
            "unsupported_cells": float(tmarg[lmarg == 0].sum()),
            "gamma": pairwise_probabilities(logger, log_scores[t], k) if with_gamma else None,
        }
    log = {"slate_prob": np.zeros(n), "prefix": np.zeros((n, k)), "marginals": np.zeros((n, k))}
    tgt = {"slate_prob": np.zeros(n), "prefix": np.zeros((n, k)), "marginals": np.zeros((n, k))}
    cache: dict[tuple[int, tuple[int, ...]], tuple[Any, ...]] = {}
    for i, (t, s) in enumerate(zip(types.tolist(), slates.tolist())):
        key = (t, tuple(s))
        if key not in cache:
            info = per_type[t]
            lp, lpre = slate_probabilities(logger, log_scores[t], np.array(s))
            prefixes = np.array([sum(p for ts, p in info["tslates"].items() if ts[: j + 1] == tuple(s[: j + 1])) for j in range(k)])
            cache[key] = (lp, lpre, info["lmarg"][np.arange(k), s], info["tslates"].get(tuple(s), 0.0), prefixes, info["tmarg"][np.arange(k), s])
        lp, lpre, lm, tp, tpre, tm = cache[key]
        log["slate_prob"][i], log["prefix"][i], log["marginals"][i] = lp, lpre, lm
        tgt["slate_prob"][i], tgt["prefix"][i], tgt["marginals"][i] = tp, tpre, tm
    d = k * m
    indicators = np.zeros((n, d))
    indicators[np.arange(n)[:, None], slates + (np.arange(k) * m)[None, :]] = 1.0
    gamma = np.stack([per_type[t]["gamma"] for t in range(n_types)])[types] if with_gamma else np.zeros((n, 1, 1))
    cells = np.stack([per_type[t]["tmarg"].ravel() for t in range(n_types)])[types]
    return SlateLogs(
        rewards=clicks.sum(axis=1),
        position_rewards=clicks,
        log=log,
        tgt=tgt,
        unsupported={
            "slate": np.array([per_type[t]["unsupported_slate"] for t in range(n_types)])[types],
            "item_position": np.array([per_type[t]["unsupported_cells"] for t in range(n_types)])[types],
        },
        indicators=indicators,
        gamma=gamma,
        target_cells=cells,
        truth=float(truth_by_type[types].mean()),
    )


def _draw(policy: SlatePolicy, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    from recommender.ope import sample_slate

    return sample_slate(policy, scores, k, rng)


ESTIMATORS = ("standard", "independent", "cascade", "pi")
"""The slate estimators, by the names :func:`slate_estimates` gives them."""
SETTINGS = {"n_bootstrap": 300, "seed": 0}
"""The bootstrap of every slate estimate the tests and the coverage sweep make."""


def slate_estimates(logs: SlateLogs, which: tuple[str, ...] = ESTIMATORS) -> dict[str, Estimate]:
    """Each slate estimator of ``which`` on ``logs``, with its 95% percentile-bootstrap interval."""
    out = {}
    if "standard" in which:
        out["standard"] = standard_ips(logs.rewards, logs.log["slate_prob"], logs.tgt["slate_prob"], unsupported_mass=logs.unsupported["slate"], **SETTINGS)
    if "independent" in which:
        out["independent"] = independent_ips(logs.position_rewards, logs.log["marginals"], logs.tgt["marginals"], unsupported_mass=logs.unsupported["item_position"], **SETTINGS)
    if "cascade" in which:
        out["cascade"] = cascade_ips(logs.position_rewards, logs.log["prefix"], logs.tgt["prefix"], unsupported_mass=logs.unsupported["slate"], **SETTINGS)
    if "pi" in which:
        out["pi"] = pseudo_inverse(logs.rewards, logs.indicators, logs.gamma, logs.target_cells, **SETTINGS)
    return out


def coverage_over_seeds(target: SlatePolicy | str, seeds: range, n: int = 5000) -> dict[str, list[bool]]:
    """For each estimator, whether its interval covered the truth, one log of ``n`` slates per seed (seed 100 + s).

    A refused estimate is an error here (every target of the sweep is supported by the logger).
    """
    covered: dict[str, list[bool]] = {name: [] for name in ESTIMATORS}
    for seed in seeds:
        logs = simulate(100 + seed, n, target=target)
        for name, est in slate_estimates(logs).items():
            assert not est.refused, (name, seed, est.reason)
            covered[name].append(bool(est.ci_low <= logs.truth <= est.ci_high))
    return covered
