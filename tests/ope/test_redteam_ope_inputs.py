"""Off-policy evaluation's inputs, red-teamed: a bootstrap seed numpy cannot take is refused where it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audits import Store
from governance.cli import app
from recommender.errors import ConfigError
from recommender.ope import direct_method, doubly_robust, ips, snips
from tests.ope.test_ope_from_log import LOGGED, TARGETS, _fill, pack_text

N = 50
ONE_ACTION = (np.zeros(N, dtype=int), np.ones(N), np.full((N, 2), 0.5), np.full((N, 2), 0.5))


@pytest.mark.parametrize("seed", [-1, 1.5, True])
@pytest.mark.parametrize("estimator", [ips, snips])
def test_a_bootstrap_seed_that_is_not_a_non_negative_int_is_a_config_error(estimator, seed) -> None:
    with pytest.raises(ConfigError, match="seed"):
        estimator(*ONE_ACTION, seed=seed)


def test_the_model_based_estimators_check_the_seed_too() -> None:
    q = np.zeros((N, 2))
    for estimator in (direct_method, doubly_robust):
        with pytest.raises(ConfigError, match="seed"):
            estimator(*ONE_ACTION, q, seed=-3)


def test_a_negative_seed_on_the_command_line_exits_2_and_names_the_flag(store: Store, db_url: str, tmp_path: Path) -> None:
    logged_text = pack_text(LOGGED)
    _fill(store, 300, logged_text)
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "target.yaml").write_text(pack_text(TARGETS["colder"], "9.1.0"))
    args = ["ope", db_url, "--logged-pack", str(tmp_path / "logged.yaml"), "--target-pack", str(tmp_path / "target.yaml"), "--kind", "click", "--bootstrap", "50"]
    result = CliRunner().invoke(app, [*args, "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output, result.output


def test_a_value_out_of_range_is_named_as_a_plain_number_not_a_numpy_repr() -> None:
    from recommender.errors import DataError
    from recommender.ope import standard_ips

    with pytest.raises(DataError) as refused:
        standard_ips([1.0, 0.0], [1.5, 0.5], [0.5, 0.5], unsupported_mass=[0.0, 0.0])
    assert "holds 1.5" in str(refused.value) and "np." not in str(refused.value)
    with pytest.raises(ConfigError) as bad:
        standard_ips([1.0], [0.5], [0.5], unsupported_mass=[0.0], min_ess=np.float64(-2.5))
    assert str(bad.value).endswith("got -2.5")
