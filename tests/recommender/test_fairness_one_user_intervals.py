"""A bootstrap interval of one user is no interval.

Bug pinned: the group comparison already gave a group of one user no interval, but provider exposure,
popularity bias and the calibration mean did not: with one evaluated user (or one user with a defined
value) every resample drew that user, and the percentile interval had zero width at the point value, a
certainty no single user gives, which a ``judge: ci`` rule then judged as decisive.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender import fairness as F


def _nan(interval) -> bool:  # noqa: ANN001
    return all(np.isnan(v) for v in interval)


def test_provider_exposure_of_one_user_has_no_interval() -> None:
    rel = sp.csr_matrix(np.array([[1, 0, 1, 0]]))
    report = F.provider_exposure(np.array([[0, 2]]), ["a", "a", "b", "b"], rel, n_boot=50)
    weights = F.attention_weights(2, "log", 0.8)
    assert report.exposure_share["a"] == pytest.approx(weights[0] / weights.sum())  # the point value stays
    assert all(_nan(report.exposure_ratio_ci[g]) and _nan(report.exposure_share_ci[g]) for g in ("a", "b"))


def test_popularity_bias_of_one_user_has_no_interval() -> None:
    rel = sp.csr_matrix(np.array([[1, 0, 1, 0]]))
    history = sp.csr_matrix(np.array([[0, 1, 0, 0]]))
    report = F.popularity_bias(np.array([[0, 2]]), history, rel, np.array([5.0, 3.0, 1.0, 0.0]), n_boot=50)
    assert _nan(report.arp_ratio_ci) and _nan(report.long_tail_share_ci)


def test_the_mean_of_one_defined_value_has_no_interval_and_of_two_has_one() -> None:
    mean, interval = F.mean_with_interval(np.array([0.3, np.nan]), n_boot=50)
    assert mean == 0.3 and _nan(interval)
    mean, (low, high) = F.mean_with_interval(np.array([0.3, 0.5]), n_boot=200)
    assert mean == pytest.approx(0.4) and low < mean < high
