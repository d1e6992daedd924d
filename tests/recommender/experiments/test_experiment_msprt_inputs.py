"""The mSPRT boundary refuses inputs for which it has no meaning, with a message naming the input."""

from __future__ import annotations

import pytest

from recommender.errors import ConfigError
from recommender.experiments.msprt import z_boundary


@pytest.mark.parametrize(
    ("variance", "tau2", "alpha"),
    [(0.0, 1.0, 0.05), (1.0, 0.0, 0.05), (-1.0, 1.0, 0.05), (float("nan"), 1.0, 0.05), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0)],
)
def test_z_boundary_refuses_what_has_no_boundary_with_a_clear_error(variance: float, tau2: float, alpha: float) -> None:
    with pytest.raises(ConfigError, match="z_boundary: "):
        z_boundary(variance, tau2, alpha)


def test_z_boundary_is_positive_for_valid_inputs() -> None:
    assert z_boundary(1.0, 1.0, 0.05) > 0 and z_boundary(1.0, 1.0, 0.05, one_sided=True) > 0
