"""FeedbackConfig refuses a weight or threshold that no fit could use, naming the field, when it is built."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from recommender.feedback import FeedbackConfig


@pytest.mark.parametrize("weight", [math.inf, -math.inf, math.nan])
def test_an_event_weight_that_is_not_finite_is_refused_with_its_event_type(weight: float) -> None:
    with pytest.raises(ValidationError) as info:
        FeedbackConfig(event_weights={"view": 1.0, "purchase": weight})
    [error] = info.value.errors()
    assert error["loc"] == ("event_weights", "purchase") and error["type"] == "finite_number"


@pytest.mark.parametrize("threshold", [math.inf])
def test_a_rating_threshold_that_is_not_finite_is_refused(threshold: float) -> None:
    with pytest.raises(ValidationError) as info:
        FeedbackConfig(rating_threshold=threshold)
    assert info.value.errors()[0]["loc"] == ("rating_threshold",)


def test_finite_weights_and_no_threshold_are_kept() -> None:
    config = FeedbackConfig(rating_threshold=None, event_weights={"view": 0.5, "purchase": 0.0})
    assert config.weight_of("view") == 0.5 and config.weight_of("click") == 0.0
