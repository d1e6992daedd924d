"""``appeal_sample``: test positives drawn from the world's true appeal, without the planted exposure bias."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from recommender.errors import ConfigError
from recommender.synthetic import SyntheticSpec, appeal_sample, bot_user_ids, generate

GROUPS = {"major": 0.25, "indie_a": 0.25, "indie_b": 0.25, "indie_c": 0.25}
SPEC = SyntheticSpec(
    n_users=600, n_items=400, n_interactions=24_000, seed=5,
    provider_groups=GROUPS, favoured_group="major", exposure_bias=3.0,
)  # fmt: skip


def _major_share(items: pd.Series, catalog: pd.DataFrame) -> float:
    return float((catalog["provider_group"].reindex(pd.Index(items.astype(str))).to_numpy() == "major").mean())


@pytest.fixture(scope="module")
def logs() -> dict[float, pd.DataFrame]:
    """The log of SPEC, and of the same world logged without the bias (same seed: same items, users, tastes)."""
    return {bias: generate(SPEC.model_copy(update={"exposure_bias": bias})) for bias in (3.0, 1.0)}


def test_the_law_by_hand_without_tastes_or_popularity() -> None:
    """Tastes and popularity off: every item weighs 1, the favoured ones ``exposure_bias`` in the log.
    The appeal share of major is then its share of items; the logged one ``b m / (b m + n - m)``."""
    spec = SyntheticSpec(
        n_users=5000, n_items=40, n_interactions=5000, seed=3, provider_groups=GROUPS, favoured_group="major",
        exposure_bias=3.0, taste_strength=0.0, popularity_exponent=0.0,
    )  # fmt: skip
    items = generate(SyntheticSpec(**{**spec.model_dump(), "n_users": 1, "n_interactions": 0})).items
    m, n = int((items["provider_group"] == "major").sum()), len(items)
    counts = pd.Series(1, index=pd.Index([f"u{i:06d}" for i in range(5000)]))
    appeal = _major_share(appeal_sample(spec, counts)["item_id"], items)
    logged = _major_share(appeal_sample(spec, counts, exposure_bias=True)["item_id"], items)
    assert appeal == pytest.approx(m / n, abs=0.025)
    assert logged == pytest.approx(3 * m / (3 * m + n - m), abs=0.025)
    per_item = appeal_sample(spec, counts)["item_id"].value_counts().reindex(items.index, fill_value=0)
    assert per_item.min() > 0.5 * 5000 / n and per_item.max() < 1.5 * 5000 / n  # near uniform


def test_major_share_is_the_appeal_share_not_the_logged_share(logs: dict[float, pd.DataFrame]) -> None:
    biased, unbiased = logs[3.0], logs[1.0]
    counts = pd.Series(20, index=biased.users.index[: SPEC.n_users])
    drawn = appeal_sample(SPEC, counts)
    share = _major_share(drawn["item_id"], biased.items)
    logged_share = _major_share(biased.events["item_id"], biased.items)
    # The generator's parameters: major holds 25% of the items, spread evenly over popularity ranks, and
    # tastes do not depend on the group, so its appeal share is about 25%; the log over-exposes it.
    assert share == pytest.approx(GROUPS["major"], abs=0.03)
    assert logged_share > GROUPS["major"] + 0.1
    # Independently: the generator's own engagement path on the same world logged without the bias.
    assert share == pytest.approx(_major_share(unbiased.events["item_id"], unbiased.items), abs=0.02)
    # The control: keeping the exposure factor reproduces the biased log's share.
    control = appeal_sample(SPEC, counts, exposure_bias=True)
    assert _major_share(control["item_id"], biased.items) == pytest.approx(logged_share, abs=0.02)


def test_counts_exclude_and_items_are_respected(logs: dict[float, pd.DataFrame]) -> None:
    data = logs[3.0]
    users = data.users.index[:50]
    counts = pd.Series(np.arange(50, dtype=np.int64) % 7, index=users)
    exclude = data.events.loc[data.events["user_id"].isin(users), ["user_id", "item_id"]].astype(str)
    allowed = data.items.index[::2]
    drawn = appeal_sample(SPEC, counts, exclude=exclude, items=allowed)
    assert drawn.groupby("user_id").size().reindex(users, fill_value=0).tolist() == counts.tolist()
    assert not drawn.duplicated().any()
    assert drawn["item_id"].isin(allowed).all()
    assert not pd.MultiIndex.from_frame(drawn).isin(pd.MultiIndex.from_frame(exclude)).any()
    pd.testing.assert_frame_equal(drawn, appeal_sample(SPEC, counts, exclude=exclude, items=allowed))


def test_bad_input_is_refused_with_a_located_error() -> None:
    ok = pd.Series([2], index=["u000000"])
    cases = [
        ((SPEC.model_copy(update={"taste_shift_at": datetime(2024, 3, 1, tzinfo=UTC)}), ok), {}, "taste_shift_at"),
        (("not a spec", ok), {}, "SyntheticSpec"),
        ((SPEC, [2]), {}, "pandas Series"),
        ((SPEC, pd.Series([-1], index=["u000000"])), {}, "integers >= 0"),
        ((SPEC, pd.Series([1.5], index=["u000000"])), {}, "integers >= 0"),
        ((SPEC, pd.Series([1, 1], index=["u000000", "u000000"])), {}, "duplicated"),
        ((SPEC, pd.Series([1], index=["nobody"])), {}, "'nobody'"),
        ((SPEC, pd.Series([401], index=["u000000"])), {}, "asks for 401"),
        ((SPEC, ok), {"items": ["i00000", "zzz"]}, "'zzz'"),
        ((SPEC, ok), {"items": ["i00000"]}, "only 1 are left"),
        ((SPEC, ok), {"exclude": pd.DataFrame({"user_id": ["u000000"]})}, "item_id"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            appeal_sample(*args, **kwargs)
    with_bots = SPEC.model_copy(update={"bot_users": 2})
    with pytest.raises(ConfigError, match="not genuine users"):
        appeal_sample(with_bots, pd.Series([1], index=[bot_user_ids(with_bots)[0]]))
