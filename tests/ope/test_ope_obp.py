"""Cross-check against Open Bandit Pipeline (obp), an independent implementation of the same estimators.

obp 0.4.1 (the newest on PyPI) pulls in torch with its CUDA wheels (gigabytes) for
its neural policies, so it is not a dependency of recgov. This test runs when obp
is importable, or when ``RECGOV_OBP_DIR`` names a directory holding the unpacked
obp wheel: its estimator modules need neither torch nor seaborn at run time, so
those two imports are stubbed while obp loads, and removed again afterwards.
Without either, the test is skipped (and says so).
"""

from __future__ import annotations

import os
import sys
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest

from recommender.ope import cascade_ips, direct_method, doubly_robust, independent_ips, ips, snips, standard_ips


def _obp() -> Any:
    try:
        import obp.ope  # type: ignore[import-not-found]

        return obp.ope
    except ImportError:
        pass
    where = os.environ.get("RECGOV_OBP_DIR")
    if not where:
        pytest.skip("obp is not installed (it needs torch); set RECGOV_OBP_DIR to an unpacked obp wheel to run the cross-check")
    stubbed = ["torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.utils", "torch.utils.data", "seaborn", "mypy_extensions"]
    saved = {name: sys.modules.get(name) for name in stubbed}
    torch = MagicMock()
    torch.Tensor = type("Tensor", (), {})
    torch.nn.Module = type("Module", (), {})
    torch.utils.data.Dataset = type("Dataset", (), {})
    for name in stubbed:
        sys.modules[name] = torch if name.startswith("torch") else MagicMock()
    sys.path.insert(0, where)
    try:
        import obp.ope  # type: ignore[import-not-found]

        return obp.ope
    finally:
        sys.path.remove(where)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _bandit(seed: int = 0, n: int = 5000, m: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(m) * 2, size=n)
    pi = rng.dirichlet(np.ones(m), size=n)
    actions = (rng.random((n, 1)) > np.cumsum(mu, axis=1)).sum(axis=1)
    actions = np.minimum(actions, m - 1)
    rewards = rng.binomial(1, 0.2 + 0.1 * actions).astype(float)
    q = rng.uniform(0, 1, size=(n, m))
    return {"a": actions, "r": rewards, "mu": mu, "pi": pi, "q": q}


def test_single_action_estimators_agree_with_obp() -> None:
    ope = _obp()
    b = _bandit()
    n = len(b["a"])
    pscore = b["mu"][np.arange(n), b["a"]]
    dist = b["pi"][:, :, None]
    common = {"reward": b["r"], "action": b["a"], "pscore": pscore, "action_dist": dist, "position": np.zeros(n, dtype=int)}
    ours = {"min_ess": 0.0, "n_bootstrap": 0}
    assert ips(b["a"], b["r"], b["mu"], b["pi"], **ours).value == pytest.approx(ope.InverseProbabilityWeighting().estimate_policy_value(**common), rel=1e-12)
    assert snips(b["a"], b["r"], b["mu"], b["pi"], **ours).value == pytest.approx(ope.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**common), rel=1e-12)
    reg = b["q"][:, :, None]
    assert direct_method(b["a"], b["r"], b["mu"], b["pi"], b["q"], **ours).value == pytest.approx(
        ope.DirectMethod().estimate_policy_value(action_dist=dist, estimated_rewards_by_reg_model=reg, position=np.zeros(n, dtype=int)), rel=1e-12
    )
    assert doubly_robust(b["a"], b["r"], b["mu"], b["pi"], b["q"], **ours).value == pytest.approx(
        ope.DoublyRobust().estimate_policy_value(**common, estimated_rewards_by_reg_model=reg), rel=1e-12
    )


def test_slate_estimators_agree_with_obp() -> None:
    from ope_world import simulate

    ope = _obp()
    logs = simulate(0, 4000, with_gamma=False)
    n, k = logs.position_rewards.shape
    flat = {"slate_id": np.repeat(np.arange(n), k), "reward": logs.position_rewards.ravel(), "position": np.tile(np.arange(k), n)}
    ours = {"min_ess": 0.0, "n_bootstrap": 0, "unsupported_mass": 0.0}
    sips = ope.SlateStandardIPS(len_list=k).estimate_policy_value(
        **flat, pscore=np.repeat(logs.log["slate_prob"], k), evaluation_policy_pscore=np.repeat(logs.tgt["slate_prob"], k)
    )
    assert standard_ips(logs.rewards, logs.log["slate_prob"], logs.tgt["slate_prob"], **ours).value == pytest.approx(sips, rel=1e-12)
    iips = ope.SlateIndependentIPS(len_list=k).estimate_policy_value(
        **flat, pscore_item_position=logs.log["marginals"].ravel(), evaluation_policy_pscore_item_position=logs.tgt["marginals"].ravel()
    )
    assert independent_ips(logs.position_rewards, logs.log["marginals"], logs.tgt["marginals"], **ours).value == pytest.approx(iips, rel=1e-12)
    rips = ope.SlateRewardInteractionIPS(len_list=k).estimate_policy_value(
        **flat, pscore_cascade=logs.log["prefix"].ravel(), evaluation_policy_pscore_cascade=logs.tgt["prefix"].ravel()
    )
    assert cascade_ips(logs.position_rewards, logs.log["prefix"], logs.tgt["prefix"], **ours).value == pytest.approx(rips, rel=1e-12)
