"""The synthetic generator: schema, determinism, planted structure and planted dirt."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from implicit.als import AlternatingLeastSquares
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from recommender import _synthetic_world as world
from recommender.data import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, Dataset
from recommender.errors import ConfigError
from recommender.feedback import to_implicit
from recommender.synthetic import FUTURE_OFFSET, SyntheticSpec, bot_user_ids, generate
from recommender.validate import validate_events

SMALL = SyntheticSpec(n_users=300, n_items=200, n_interactions=6_000, seed=11)


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate(SMALL)


@pytest.fixture(scope="module")
def default() -> Dataset:
    return generate(SyntheticSpec())


# -- schema ---------------------------------------------------------------------


def test_events_follow_the_schema(small: Dataset) -> None:
    ev = small.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert len(ev) == SMALL.n_interactions
    assert isinstance(ev["user_id"].dtype, pd.CategoricalDtype)
    assert isinstance(ev["item_id"].dtype, pd.CategoricalDtype)
    assert str(ev["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert ev["value"].dtype == np.float64
    assert ev["session_id"].dtype == pd.StringDtype()
    assert ev["user_id"].astype(str).str.fullmatch(r"u\d{6}").all()
    assert ev["item_id"].astype(str).str.fullmatch(r"i\d{5}").all()
    assert set(ev["event_type"].astype(str)) <= set(EVENT_TYPES)
    assert ev["timestamp"].is_monotonic_increasing
    assert ev["timestamp"].min() >= SMALL.start and ev["timestamp"].max() <= SMALL.end
    assert ev[["user_id", "item_id", "session_id"]].notna().all().all()


def test_values_are_ratings_dwell_times_or_missing(small: Dataset) -> None:
    ev = small.events
    kind = ev["event_type"].astype(str)
    ratings = ev.loc[kind == "rating", "value"]
    assert len(ratings) > 0 and ratings.isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert 3.2 < ratings.mean() < 4.0  # MovieLens-like: about 3.5
    dwell = ev.loc[kind == "view", "value"]
    assert (dwell >= 1.0).all() and (dwell <= 3600.0).all()
    assert ev.loc[~kind.isin(["rating", "view"]), "value"].isna().all()


def test_users_and_items_tables(small: Dataset) -> None:
    users, items = small.users, small.items
    assert users.index.name == "user_id" and len(users) == SMALL.n_users
    assert list(users.columns) == ["age_band", "gender", "country", "signup"]
    assert set(users["gender"].astype(str)) <= {"F", "M", "X"}
    assert str(users["signup"].dtype) == "datetime64[ns, UTC]"
    first_event = small.events.groupby("user_id", observed=True)["timestamp"].min()
    assert (users["signup"].reindex(first_event.index.astype(str)).to_numpy() <= first_event.to_numpy()).all()
    assert items.index.name == "item_id" and len(items) == SMALL.n_items
    assert set(ITEM_COLUMNS) <= set(items.columns)
    assert set(items["provider_group"]) == {"major", "independent"}
    genres = items["categories"].str.split("|")
    assert genres.map(lambda g: 1 <= len(g) <= 3 and set(g) <= set(world.GENRES)).all()
    assert items["provider"].str.fullmatch(r"(major|independent)-\d{3}").all()
    # Major providers are few and big, independents many and small.
    per_group = items.groupby("provider_group")["provider"].nunique()
    assert per_group["major"] < per_group["independent"]


def test_item_text_carries_its_genres(small: Dataset) -> None:
    items = small.items
    for categories, text in zip(items["categories"], items["text"]):
        vocabulary = {w for g in categories.split("|") for w in world.GENRE_WORDS[g]}
        found = {w.strip(",.;") for w in text.split()} & vocabulary
        assert len(found) >= 3, (categories, text)
        assert text.isascii()


def test_harmful_items_are_flagged_with_a_category() -> None:
    spec = SyntheticSpec(n_users=50, n_items=400, n_interactions=500, harmful_share=0.05)
    flags = generate(spec).items["flags"]
    flagged = flags[flags != ""]
    assert len(flagged) == 20
    assert flagged.str.fullmatch(r"harmful:(" + "|".join(map(re.escape, world.HARM_CATEGORIES)) + ")").all()


def test_sessions_group_several_increasing_events_of_one_user(small: Dataset) -> None:
    ev = small.events
    sessions = ev.groupby("session_id", observed=True)
    assert (sessions["user_id"].nunique() == 1).all()
    assert 3.0 < len(ev) / ev["session_id"].nunique() < 8.0
    gaps = sessions["timestamp"].diff().dropna()
    assert (gaps >= pd.Timedelta(seconds=2)).all()  # human pace, strictly increasing
    # A user's sessions never overlap.
    bounds = sessions.agg(user=("user_id", "first"), start=("timestamp", "min"), end=("timestamp", "max"))
    bounds = bounds.sort_values(["user", "start"])
    previous_end = bounds.groupby("user", observed=True)["end"].shift()
    assert ((bounds["start"] > previous_end) | previous_end.isna()).all()


def test_event_mix_matches_the_spec(default: Dataset) -> None:
    shares = default.events["event_type"].astype(str).value_counts(normalize=True)
    for event_type, share in SyntheticSpec().event_mix.items():
        assert shares[event_type] == pytest.approx(share, abs=0.01)


def test_ratings_only_mix() -> None:
    spec = SyntheticSpec(n_users=100, n_items=80, n_interactions=2_000, event_mix={"rating": 1.0})
    ev = generate(spec).events
    assert (ev["event_type"] == "rating").all() and ev["value"].between(1, 5).all()


def test_zero_interactions_give_an_empty_table_with_the_schema() -> None:
    data = generate(SyntheticSpec(n_users=10, n_items=5, n_interactions=0))
    assert data.n_events == 0
    assert list(data.events.columns) == list(EVENT_COLUMNS)
    assert len(data.users) == 10 and len(data.items) == 5


# -- determinism ----------------------------------------------------------------


def test_same_spec_gives_identical_data(small: Dataset) -> None:
    again = generate(SyntheticSpec(**SMALL.model_dump()))
    pd.testing.assert_frame_equal(small.events, again.events)
    pd.testing.assert_frame_equal(small.users, again.users)
    pd.testing.assert_frame_equal(small.items, again.items)
    assert small.source == again.source and small.source.startswith("synthetic:")


def test_a_recorded_source_loads_the_same_data_again(small: Dataset) -> None:
    """A dataset version records its source; the service reads a model's item table back from it."""
    from recommender.errors import DataError
    from recommender.loaders import load_data

    again = load_data(small.source)
    pd.testing.assert_frame_equal(small.events, again.events)
    pd.testing.assert_frame_equal(small.items, again.items)
    assert again.source == small.source
    with pytest.raises(DataError, match="invalid synthetic spec: n_users"):
        load_data(small.source.replace('"n_users":', '"n_users":-', 1))


def test_another_seed_gives_other_data(small: Dataset) -> None:
    other = generate(SMALL.model_copy(update={"seed": 12}))
    assert not small.events["item_id"].astype(str).equals(other.events["item_id"].astype(str))


def test_dirty_data_is_deterministic_too() -> None:
    spec = SyntheticSpec(
        n_users=200,
        n_items=100,
        n_interactions=3_000,
        bot_users=1,
        bot_events_per_user=100,
        duplicate_rate=0.02,
        missing_id_rate=0.02,
    )
    pd.testing.assert_frame_equal(generate(spec).events, generate(spec).events)


# -- planted structure ----------------------------------------------------------


def _major_shares(data: Dataset) -> tuple[float, float]:
    groups = data.items["provider_group"]
    per_event = groups.reindex(data.events["item_id"].astype(str)).to_numpy()
    return float((groups == "major").mean()), float((per_event == "major").mean())


def test_exposure_bias_is_planted_and_measurable(default: Dataset) -> None:
    item_share, event_share = _major_shares(default)
    assert item_share == pytest.approx(0.3, abs=0.01)
    assert event_share > item_share + 0.05
    # Without the bias, events follow the catalog: the excess is the bias alone.
    unbiased = generate(SyntheticSpec(exposure_bias=1.0))
    item_share, event_share = _major_shares(unbiased)
    assert event_share == pytest.approx(item_share, abs=0.03)


def test_popularity_has_a_long_tail(default: Dataset) -> None:
    counts = default.events["item_id"].value_counts().to_numpy()
    head = counts[: len(counts) // 10].sum() / counts.sum()
    tail = counts[len(counts) // 2 :].sum() / counts.sum()
    assert head > 0.3 and tail < 0.2


def test_user_activity_is_heavy_tailed(default: Dataset) -> None:
    per_user = default.events["user_id"].value_counts()
    assert per_user.max() > 10 * per_user.median()


def test_protected_groups_differ_mildly_in_activity() -> None:
    data = generate(SyntheticSpec(n_users=6_000, n_interactions=200_000, seed=3))
    per_user = data.events["user_id"].value_counts().rename("n")
    per_user.index = per_user.index.astype(str)
    joined = data.users.join(per_user).fillna({"n": 0})
    mean = joined.groupby("gender", observed=True)["n"].mean()
    ratio = mean["M"] / mean["F"]
    assert ratio > 1.05 and ratio < 1.5
    shares = data.users["gender"].value_counts(normalize=True)
    assert shares["F"] == pytest.approx(0.49, abs=0.03) and shares["X"] == pytest.approx(0.03, abs=0.015)


def test_protected_attribute_name_and_values_are_configurable() -> None:
    spec = SyntheticSpec(
        n_users=100, n_items=30, n_interactions=300,
        protected_attribute="ethnicity", protected_groups={"a": 0.5, "b": 0.5}, group_activity={"a": 1.5},
    )  # fmt: skip
    users = generate(spec).users
    assert "ethnicity" in users.columns and "gender" not in users.columns
    assert set(users["ethnicity"].astype(str)) == {"a", "b"}


def test_ratings_grow_with_latent_affinity() -> None:

    spec = SyntheticSpec(n_users=500, n_items=300, n_interactions=40_000, seed=4)
    data = generate(spec)
    ratings = data.events[data.events["event_type"] == "rating"]
    users = world.make_population(spec, 6).factors[ratings["user_id"].cat.codes.to_numpy()]
    items = world.make_catalog(spec, 5).factors[ratings["item_id"].cat.codes.to_numpy()]
    affinity = np.einsum("ij,ij->i", users, items)
    assert np.corrcoef(affinity, ratings["value"].to_numpy())[0, 1] > 0.3


def _recall_at_10(model_ids: np.ndarray, truth: dict[int, set[int]], users: np.ndarray) -> float:
    return float(
        np.mean([len(truth[u] & set(model_ids[row].tolist())) / min(10, len(truth[u])) for row, u in enumerate(users)])
    )


def test_matrix_factorization_beats_popularity_clearly(default: Dataset) -> None:
    events = default.events
    pairs = events[["user_id", "item_id"]].drop_duplicates()
    held_out = pairs[np.random.default_rng(0).random(len(pairs)) < 0.2]
    key = pd.MultiIndex.from_frame(events[["user_id", "item_id"]].astype(str))
    test_key = pd.MultiIndex.from_frame(held_out.astype(str))
    train = to_implicit(events[~key.isin(test_key)])
    u = train.user_index(held_out["user_id"].astype(str).to_numpy())
    i = train.item_index(held_out["item_id"].astype(str).to_numpy())
    truth: dict[int, set[int]] = {}
    for row, col in zip(u[(u >= 0) & (i >= 0)], i[(u >= 0) & (i >= 0)]):
        truth.setdefault(int(row), set()).add(int(col))
    users = np.array(sorted(truth))
    with threadpool_limits(limits=1, user_api="blas"):
        als = AlternatingLeastSquares(factors=32, regularization=0.05, alpha=2.0, iterations=15, random_state=0)
        als.fit(train.matrix, show_progress=False)
        als_ids, _ = als.recommend(users, train.matrix[users], N=10, filter_already_liked_items=True)
    popularity = np.asarray((train.matrix > 0).sum(axis=0)).ravel()
    scores = np.tile(popularity.astype(np.float64), (len(users), 1))
    seen = train.matrix[users].tocoo()
    scores[seen.row, seen.col] = -np.inf
    pop_ids = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    als_recall, pop_recall = _recall_at_10(als_ids, truth, users), _recall_at_10(pop_ids, truth, users)
    assert als_recall > 1.5 * pop_recall, (als_recall, pop_recall)


# -- dirt, found by validation ---------------------------------------------------


def test_every_kind_of_dirt_is_found_by_validation_with_its_planted_count() -> None:
    spec = SyntheticSpec(
        n_users=500, n_items=300, n_interactions=20_000, seed=2,
        bot_users=3, bot_events_per_user=400, duplicate_rate=0.01, missing_id_rate=0.0105,
        future_rate=0.005, unknown_item_rate=0.004, bad_value_rate=0.003,
    )  # fmt: skip
    data = generate(spec)
    assert data.n_events == 20_000 + 3 * 400 + 200
    report = validate_events(data, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert report.codes == [
        "missing_user_id", "missing_item_id", "unknown_item", "duplicate_events",
        "value_out_of_range", "future_timestamp", "bot_users",
    ]  # fmt: skip
    assert report.count("missing_user_id") == 105  # ceil(210 / 2)
    assert report.count("missing_item_id") == 105
    assert report.count("unknown_item") == 80
    assert report.count("duplicate_events") == 200
    assert report.count("value_out_of_range") == 60
    assert report.count("future_timestamp") == 100
    assert report.count("bot_users") == 1_200
    assert report.finding("bot_users").details["n_users"] == 3
    flagged_users = set(data.events.loc[report.row_flags["bot_users"], "user_id"].astype(str))
    assert flagged_users == set(bot_user_ids(spec))
    future = data.events.loc[report.row_flags["future_timestamp"], "timestamp"]
    assert (future >= spec.end + FUTURE_OFFSET).all()
    # Dropping every flagged row leaves the genuine, untouched rows.
    cleaned = report.clean(data.events)
    assert len(cleaned) == 20_000 - 210 - 100 - 80 - 60
    assert validate_events(data.with_events(cleaned), now=datetime(2025, 1, 1, tzinfo=UTC)).ok


def test_bots_and_duplicates_come_on_top_of_the_clean_data(small: Dataset) -> None:
    dirty = generate(SMALL.model_copy(update={"bot_users": 2, "bot_events_per_user": 300, "duplicate_rate": 0.03}))
    report = validate_events(dirty, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert report.codes == ["duplicate_events", "bot_users"]
    cleaned = report.clean(dirty.events).reset_index(drop=True)
    pd.testing.assert_frame_equal(cleaned, small.events, check_categorical=False)
    pd.testing.assert_frame_equal(dirty.users.iloc[: SMALL.n_users], small.users)


def test_clean_synthetic_data_has_no_findings(default: Dataset) -> None:
    report = validate_events(default)
    assert report.ok, report.to_dict()["findings"]
    assert report.skipped == {}


def test_bot_ids_come_after_the_genuine_users() -> None:
    spec = SyntheticSpec(n_users=10, n_items=5, n_interactions=50, bot_users=2, bot_events_per_user=30)
    assert bot_user_ids(spec) == ["u000010", "u000011"]
    data = generate(spec)
    assert list(data.users.index[-2:]) == bot_user_ids(spec)
    assert data.events["user_id"].astype(str).isin(bot_user_ids(spec)).sum() == 60


# -- the spec -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"provider_groups": {"major": 0.5, "independent": 0.6}}, "shares must sum to 1; got 1.1"),
        ({"favoured_group": "indie"}, "favoured_group 'indie' is not one of provider_groups (major, independent)"),
        ({"event_mix": {"view": 0.2, "click": 0.5, "rating": 0.3}}, "must follow the funnel"),
        ({"event_mix": {"view": 0.5, "like": 0.5}}, "unknown event type(s) ['like']"),
        ({"group_activity": {"Z": 2.0}}, "group_activity names group(s) ['Z'] not in protected_groups"),
        ({"end": datetime(2024, 1, 3, tzinfo=UTC)}, "end must be at least 7 days after start"),
        ({"protected_attribute": "country"}, "collides with a users-table column"),
        ({"end": datetime(2200, 1, 1)}, "start and end must lie between 1980-01-01 and 2150-01-01"),
        ({"n_users": 0}, "greater than or equal to 1"),
        ({"duplicate_rate": 0.5}, "less than or equal to 0.2"),
        ({"n_user": 10}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SyntheticSpec(**fields)


def test_spec_reads_text_values_and_naive_times_as_utc() -> None:
    spec = SyntheticSpec(n_users="100", seed="3", start="2023-01-01", end="2023-03-01T00:00:00")
    assert spec.n_users == 100 and spec.seed == 3
    assert spec.start == datetime(2023, 1, 1, tzinfo=UTC) and spec.end.tzinfo == UTC


def test_generate_refuses_something_else_than_a_spec() -> None:
    with pytest.raises(ConfigError, match="generate expects a SyntheticSpec; got dict"):
        generate({"n_users": 10})  # type: ignore[arg-type]


def test_one_hundred_thousand_events_take_well_under_two_seconds() -> None:
    started = time.perf_counter()
    generate(SyntheticSpec(seed=9))
    assert time.perf_counter() - started < 2.0
