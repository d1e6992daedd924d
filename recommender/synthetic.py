"""A seeded generator of realistic recommender data, with planted biases and optional dirt.

:func:`generate` turns a :class:`SyntheticSpec` into a :class:`~recommender.data.Dataset`
whose structure is known, so that every model, metric and check of recgov has
something real to find:

* **latent tastes**: users and items have factor vectors; items group into
  genres whose vectors they share, so tastes, genres and item texts agree, and a
  matrix-factorization model beats a popularity baseline clearly;
* **power-law popularity**: item popularity follows a Zipf-like law;
* **planted exposure bias**: the logging policy showed items of the favoured
  provider group (``"major"``) ``exposure_bias`` times more often than their
  relevance justifies, so that group's share of events exceeds its share of
  items. Popularity ranks are spread evenly over the groups, so the bias is the
  only reason for the excess; :func:`appeal_sample` draws held-out positives from
  the users' true appeal without it, for evaluating what corrects the bias;
* **a protected attribute** (``gender`` by default) with a mild planted
  difference in activity and taste between groups and, optionally
  (``group_provider_affinity``), a planted link between a group and the
  providers its users like: combined with the exposure bias, the users of a
  group drawn to the under-exposed providers are the ones a model that follows
  the logged exposure serves worst;
* **harmful items**, flagged ``harmful:<category>`` in the items table;
* **item content that carries the tastes**: besides the genre text, every item
  has ``keywords`` drawn from topic vocabularies tied to its latent factors
  (plus noise words), a ``category``, a ``price`` and a ``release_time``, so a
  content-based model has real signal to find; ``n_new_items`` marks items as
  new (``new_item``) for cold-start evaluation;
* **sessions**: every event belongs to a session of a few events on one device;
  a session is a sequence of engagements (``view`` -> ``click`` ->
  ``add_to_cart`` -> ``purchase`` on one item, or a ``rating``), with
  timestamps strictly increasing inside it; a user's sessions never overlap;
* **optional dirt**, off by default: bot accounts in four styles, with their
  labels (:func:`bot_labels`), duplicated rows, missing
  ids, timestamps in the future, unknown items and out-of-range ratings, each
  planted in a known number of rows so that :mod:`recommender.validate` can be
  tested against it.

Generation is vectorized and runs in chunks of users (never a Python loop per
event), so memory is bounded by the chunk, not by the data set; how long large
sets take is measured in BENCHMARKS.md. The same spec always gives the same data
(on the same library versions).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from recommender import _synthetic_world as world
from recommender._synthetic_bots import bot_styles_of, generate_bots
from recommender.data import EVENT_COLUMNS, EVENT_TYPES, Dataset
from recommender.errors import ConfigError

__all__ = ["FUTURE_OFFSET", "SyntheticSpec", "appeal_sample", "bot_labels", "bot_user_ids", "generate"]

FUTURE_OFFSET = timedelta(days=80 * 365)
"""How far after ``end`` the planted future timestamps lie (at least): a device
clock set decades ahead, so that they are in the future for any plausible ``now``."""

_EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
_LATEST = datetime(2150, 1, 1, tzinfo=UTC)
_CHUNK_EVENTS = 1_000_000  # events generated per chunk of users (bounds memory)
_CHUNK_USERS = 8192  # users per chunk at most (bounds the users x clusters proposal matrix)
_SHARE_TOLERANCE = 1e-6
_APPEAL_CELLS = 4_000_000  # users x items scored at once by appeal_sample (bounds memory)


def _shares_field(default: dict[str, float]) -> Any:
    return Field(default_factory=lambda: dict(default))


class SyntheticSpec(BaseModel):
    """What to generate. Every field has a default; all sizes and rates are bounded.

    Examples
    --------
    >>> spec = SyntheticSpec(n_users=100, n_items=50, n_interactions=1_000, seed=3)
    >>> generate(spec).n_events
    1000
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n_users: int = Field(2000, ge=1, le=50_000_000)
    """Number of genuine users (bot accounts come on top)."""

    n_items: int = Field(1000, ge=1, le=10_000_000)
    """Number of items in the catalog."""

    n_interactions: int = Field(100_000, ge=0, le=2_000_000_000)
    """Number of genuine events. Bots and duplicated rows add rows on top; the other
    kinds of dirt alter existing rows."""

    seed: int = Field(0, ge=0)
    """Seed of every random draw: the same spec always gives the same data."""

    n_factors: int = Field(8, ge=1, le=256)
    """Dimensions of the latent taste vectors of users and items."""

    taste_strength: float = Field(3.5, ge=0, le=20)
    """How strongly latent tastes (against popularity) decide what a user engages
    with; 0 makes choices depend on popularity and exposure only."""

    popularity_exponent: float = Field(0.9, ge=0, le=4)
    """Exponent of the Zipf-like item popularity: the item of popularity rank ``r``
    weighs ``r ** -popularity_exponent``. 0 makes every item equally popular."""

    activity_sigma: float = Field(1.0, ge=0, le=3)
    """Spread (log-normal sigma) of user activity: the heavy tail of events per user."""

    provider_groups: dict[str, float] = _shares_field({"major": 0.3, "independent": 0.7})
    """Provider groups and the share of items each holds (shares sum to 1)."""

    favoured_group: str = "major"
    """The provider group the logging policy over-exposed (see ``exposure_bias``)."""

    exposure_bias: float = Field(2.0, gt=0, le=100)
    """How many times more the logging policy exposed items of ``favoured_group``
    than their relevance justifies. 1 means no bias."""

    harmful_share: float = Field(0.01, ge=0, le=1)
    """Share of items flagged ``harmful:<category>``."""

    protected_attribute: str = Field("gender", pattern=r"^[a-z][a-z0-9_]*$")
    """Name of the users-table column holding the protected attribute."""

    protected_groups: dict[str, float] = _shares_field({"F": 0.49, "M": 0.48, "X": 0.03})
    """Values of the protected attribute and the share of users holding each (sum to 1)."""

    group_activity: dict[str, float] = _shares_field({"F": 1.0, "M": 1.2, "X": 0.9})
    """Relative activity of each protected group (a planted, mild difference in
    events per user); groups not listed have 1."""

    group_taste_shift: float = Field(0.4, ge=0, le=5)
    """Length of the shift of each protected group's mean taste vector (a planted,
    mild difference in taste); 0 gives all groups the same taste distribution."""

    group_provider_affinity: dict[str, float] = Field(default_factory=dict)
    """A planted link between who users are and which providers they like: for each
    protected group listed, how many times more its users are drawn to the items of
    the provider groups other than ``favoured_group`` than other users with the same
    taste vector are; groups not listed have 1. Combined with ``exposure_bias``, a
    group with an affinity above 1 is the one a popularity- and exposure-following
    model serves worst, as on real platforms whose niche audiences are underserved."""

    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    """Start of the log (UTC; a naive time is read as UTC)."""

    end: datetime = datetime(2024, 7, 1, tzinfo=UTC)
    """End of the log (UTC); at least a week after ``start``. Genuine events lie in
    ``[start, end]``; both lie between 1980 and 2150."""

    taste_shift_at: datetime | None = None
    """A shift of tastes at this time (UTC): from then on, every genuine engagement
    goes to another item of the same provider group (one fixed permutation drawn
    from the seed), so what users liked before they like no more, while the
    popularity law and the provider groups' shares stay; a model trained before
    the shift serves stale lists after it. None: tastes never change."""

    mean_session_length: float = Field(6.0, ge=1, le=200)
    """Mean number of events per session, roughly: a session holds whole engagements
    (a funnel on one item, or a rating), and light users' sessions are shorter."""

    event_mix: dict[str, float] = _shares_field(
        {"view": 0.55, "click": 0.22, "add_to_cart": 0.08, "purchase": 0.04, "rating": 0.11}
    )
    """Target share of each event type (keys from ``EVENT_TYPES``, sum to 1). The
    funnel needs ``view >= click >= add_to_cart >= purchase``."""

    bot_users: int = Field(0, ge=0, le=100_000)
    """Dirt: number of bot accounts. They get the last user ids (see
    :func:`bot_user_ids`, and :func:`bot_labels` for each one's style) and are in
    the users table."""

    bot_events_per_user: int = Field(2000, ge=20, le=10_000_000)
    """Dirt: events of each bot account."""

    bot_styles: list[Literal["scraper", "crawler", "click_farm", "stealthy"]] = Field(
        default_factory=lambda: ["scraper"], min_length=1
    )
    """Dirt: the styles of the bot accounts, given to them in turn: ``scraper`` (a
    burst less than a second apart), ``crawler`` (walks the catalog), ``click_farm``
    (hammers three items at a human pace), ``stealthy`` (a person's pace and
    choices, round the clock)."""

    duplicate_rate: float = Field(0.0, ge=0, le=0.2)
    """Dirt: duplicated rows, as a share of ``n_interactions`` (each an exact copy of a
    distinct genuine row, placed right after it)."""

    missing_id_rate: float = Field(0.0, ge=0, le=0.2)
    """Dirt: share of genuine rows with a missing id (the first half of them the user
    id, the rest the item id)."""

    future_rate: float = Field(0.0, ge=0, le=0.2)
    """Dirt: share of genuine rows whose timestamp is at least ``FUTURE_OFFSET`` after ``end``."""

    unknown_item_rate: float = Field(0.0, ge=0, le=0.2)
    """Dirt: share of genuine rows whose item id is not in the items table."""

    bad_value_rate: float = Field(0.0, ge=0, le=0.2)
    """Dirt: share of genuine rows (taken among rating events, at most all of them)
    whose rating is outside 1..5."""

    n_new_items: int = Field(0, ge=0, le=10_000_000)
    """Items marked new (``new_item`` in the items table): they have content (text,
    keywords, category, price) like every item, and :func:`recommender.cold_start.cold_start_split`
    keeps every event on them out of training, for cold-start evaluation. Picked from a
    random stream of their own, so the events and every other column are those of the
    same spec with 0."""

    @field_validator("start", "end", "taste_shift_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_validator("provider_groups", "protected_groups", "event_mix")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("must name at least one group with its share; got an empty mapping")
        negative = {k: v for k, v in value.items() if not (v >= 0 and math.isfinite(v))}
        if negative:
            raise ValueError(f"shares must be finite and >= 0; got {negative}")
        total = sum(value.values())
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise ValueError(f"shares must sum to 1; got {total:.6g} from {value}")
        return value

    @field_validator("group_activity")
    @classmethod
    def _activity(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not (v > 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"relative activities must be finite and > 0; got {bad}")
        return value

    @field_validator("group_provider_affinity")
    @classmethod
    def _affinity(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not (0 < v <= 100 and math.isfinite(v))}
        if bad:
            raise ValueError(f"provider affinities must be finite, > 0 and at most 100; got {bad}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticSpec:
        if self.favoured_group not in self.provider_groups:
            raise ValueError(
                f"favoured_group {self.favoured_group!r} is not one of provider_groups "
                f"({', '.join(self.provider_groups)})"
            )
        for name in ("group_activity", "group_provider_affinity"):
            unknown = sorted(set(getattr(self, name)) - set(self.protected_groups))
            if unknown:
                raise ValueError(
                    f"{name} names group(s) {unknown} not in protected_groups ({', '.join(self.protected_groups)})"
                )
        if self.protected_attribute in ("age_band", "country", "signup"):
            raise ValueError(
                f"protected_attribute {self.protected_attribute!r} collides with a users-table column; "
                "choose another name"
            )
        types = sorted(set(self.event_mix) - set(EVENT_TYPES))
        if types:
            raise ValueError(f"event_mix has unknown event type(s) {types}; known: {', '.join(EVENT_TYPES)}")
        funnel = [self.event_mix.get(t, 0.0) for t in world.FUNNEL]
        if any(a < b for a, b in pairwise(funnel)):
            raise ValueError(
                "event_mix must follow the funnel view >= click >= add_to_cart >= purchase; "
                f"got {dict(zip(world.FUNNEL, funnel))}"
            )
        if not (_EARLIEST <= self.start and self.end <= _LATEST):
            raise ValueError(
                f"start and end must lie between {_EARLIEST.date()} and {_LATEST.date()} (room for signups "
                f"before the log and future-dated dirt after it); got start={self.start} end={self.end}"
            )
        if self.n_new_items >= self.n_items:
            raise ValueError(
                f"n_new_items must be below n_items (some items need interactions in training); "
                f"got n_new_items={self.n_new_items} with n_items={self.n_items}"
            )
        if self.end - self.start < timedelta(days=7):
            raise ValueError(f"end must be at least 7 days after start; got start={self.start} end={self.end}")
        return self


def bot_labels(spec: SyntheticSpec) -> dict[str, str]:
    """The ground truth of the planted bots: each bot account's user id and its style."""
    return dict(zip(bot_user_ids(spec), bot_styles_of(spec)))


def bot_user_ids(spec: SyntheticSpec) -> list[str]:
    """The user ids of the bot accounts :func:`generate` plants for ``spec``."""
    width = _user_width(spec)
    return [f"u{n:0{width}d}" for n in range(spec.n_users, spec.n_users + spec.bot_users)]


def _user_width(spec: SyntheticSpec) -> int:
    return max(6, len(str(spec.n_users + spec.bot_users - 1)))


def _item_width(spec: SyntheticSpec) -> int:
    n_unknown = _dirt_counts(spec)["unknown_item"]
    return max(5, len(str(spec.n_items + n_unknown - 1)))


def _dirt_counts(spec: SyntheticSpec) -> dict[str, int]:
    n = spec.n_interactions
    return {
        "duplicate": round(spec.duplicate_rate * n),
        "missing_id": round(spec.missing_id_rate * n),
        "future": round(spec.future_rate * n),
        "unknown_item": round(spec.unknown_item_rate * n),
        "bad_value": round(spec.bad_value_rate * n),
    }


def _string_column(prefix: str, numbers: np.ndarray) -> pd.Series:
    """Strings ``prefix`` + zero-padded ``numbers`` as a ``string`` column, built without a Python loop."""
    n = len(numbers)
    width = len(str(int(numbers.max()))) if n else 1
    size = len(prefix) + width
    buffer = np.empty((n, size), dtype=np.uint8)
    buffer[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    # One digit column at a time: an (n, width) int64 temporary would cost 8 bytes per
    # digit of every row (over a gigabyte for 20 million session ids).
    rest = np.asarray(numbers, dtype=np.int64).copy()
    for position in range(size - 1, len(prefix) - 1, -1):
        buffer[:, position] = rest % 10 + ord("0")
        rest //= 10
    offsets = np.arange(n + 1, dtype=np.int64) * size
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buffer))
    return pd.Series(pd.arrays.ArrowStringArray(array))


# -- dirt -----------------------------------------------------------------------


def _plant_dirt(
    spec: SyntheticSpec, columns: dict[str, np.ndarray], genuine: np.ndarray
) -> tuple[dict[str, np.ndarray], int]:
    """Alter rows in place and append duplicates; returns the columns and the unknown-item count.

    Every kind of dirt gets its own rows among the genuine ones (disjoint blocks of
    one random permutation), so the count of each is exact.
    """
    counts = _dirt_counts(spec)
    if not any(counts.values()):
        return columns, 0
    rng = world.rng_for(spec, 5)
    rows = rng.permutation(genuine)
    used = 0

    def block(size: int) -> np.ndarray:
        nonlocal used
        taken = rows[used : used + size]
        used += size
        return taken

    missing = block(counts["missing_id"])
    half = (len(missing) + 1) // 2
    columns["user"][missing[:half]] = -1
    columns["item"][missing[half:]] = -1
    future = block(counts["future"])
    end_ns = world.to_ns(spec.end + FUTURE_OFFSET)
    columns["timestamp"][future] = end_ns + rng.integers(0, 365 * 86400 * 1000, len(future)) * 1_000_000
    unknown = block(counts["unknown_item"])
    columns["item"][unknown] = spec.n_items + np.arange(len(unknown))  # ids past the catalog
    rest = rows[used:]
    is_rating = columns["etype"][rest] == world.RATING_CODE
    bad = rest[is_rating][: counts["bad_value"]]
    columns["value"][bad] = rng.choice(np.array([-1.0, 0.0, 6.0, 10.0, 55.0]), size=len(bad))
    untouched = rest[~np.isin(rest, bad)]
    sources = np.sort(untouched[: counts["duplicate"]])
    if len(sources):
        # Each copy right after its source: sort keys 2 * row for rows, 2 * source + 1 for copies.
        order = np.argsort(np.concatenate([2 * np.arange(len(columns["user"])), 2 * sources + 1]), kind="stable")
        columns = {name: np.concatenate([values, values[sources]])[order] for name, values in columns.items()}
    return columns, len(unknown)


# -- assembly -------------------------------------------------------------------


def _chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """User ranges of at most ``_CHUNK_EVENTS`` events (about) and ``_CHUNK_USERS`` users."""
    if len(counts) == 0:
        return []
    cum = np.cumsum(counts)
    by_events = np.searchsorted(cum, np.arange(_CHUNK_EVENTS, int(cum[-1]), _CHUNK_EVENTS), side="left") + 1
    edges = np.unique(
        np.concatenate([[0], by_events, np.arange(_CHUNK_USERS, len(counts), _CHUNK_USERS), [len(counts)]])
    )
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def generate(spec: SyntheticSpec | None = None, *, show_progress: bool = False) -> Dataset:
    """Generate the dataset that ``spec`` describes.

    Parameters
    ----------
    spec:
        What to generate; the defaults of :class:`SyntheticSpec` when ``None``.
    show_progress:
        Show a progress bar over the chunks of users.

    Returns
    -------
    Dataset
        ``events`` in time order with the columns of
        :data:`~recommender.data.EVENT_COLUMNS` (``user_id``, ``item_id`` and
        ``event_type`` categorical, ``session_id`` string, ``context`` a categorical
        JSON device tag); ``users`` indexed by ``user_id`` with ``age_band``, the
        protected attribute, ``country`` and ``signup``; ``items`` indexed by
        ``item_id`` with :data:`~recommender.data.ITEM_COLUMNS`. ``source`` holds the
        spec as JSON, for lineage.

    Raises
    ------
    ConfigError
        When ``spec`` is not a :class:`SyntheticSpec`.
    """
    spec = SyntheticSpec() if spec is None else spec
    if not isinstance(spec, SyntheticSpec):
        raise ConfigError(
            f"generate expects a SyntheticSpec; got {type(spec).__name__}. Build one with SyntheticSpec(...)."
        )
    catalog = world.make_catalog(spec, _item_width(spec))
    population = world.make_population(spec, _user_width(spec))
    ranges = _chunks(population.counts[: spec.n_users])
    parts: list[dict[str, np.ndarray]] = []
    session_offset = 0
    with tqdm(total=spec.n_interactions, unit="event", desc="synthetic", disable=not show_progress) as bar:
        for number, (lo, hi) in enumerate(ranges):
            part = world.generate_chunk(spec, number, lo, hi, population, catalog)
            part["session"] += session_offset
            session_offset = int(part["session"].max()) + 1 if len(part["session"]) else session_offset
            parts.append(part)
            bar.update(len(part["user"]))
    if spec.bot_users:
        bots = generate_bots(spec, population)
        bots["session"] += session_offset
        parts.append(bots)
    names = ("user", "item", "etype", "value", "timestamp", "session", "device")
    columns: dict[str, np.ndarray] = {}
    if parts:
        # Column by column, each chunk's array released once copied: the chunks and the
        # whole never coexist in full (on 20 million events that is gigabytes).
        for name in names:
            columns[name] = np.concatenate([p.pop(name) for p in parts])
        parts.clear()
    else:
        dtypes = (np.int32, np.int32, np.int8, np.float64, np.int64, np.int64, np.int8)
        columns = {name: np.zeros(0, dtype=d) for name, d in zip(names, dtypes)}
    order = np.argsort(columns["timestamp"], kind="stable")
    for name in names:
        columns[name] = columns[name][order]  # in time order; the unordered copy goes at once
    is_genuine = columns["user"] < spec.n_users
    genuine = np.flatnonzero(is_genuine)
    # Session ids numbered in order of first appearance (not by user); bots' sessions
    # after the genuine ones, so that adding bots leaves the genuine sessions' ids alone.
    session_number = np.zeros(len(order), dtype=np.int64)
    session_number[is_genuine] = pd.factorize(columns["session"][is_genuine])[0]
    n_genuine_sessions = int(session_number.max(initial=-1)) + 1
    session_number[~is_genuine] = n_genuine_sessions + pd.factorize(columns["session"][~is_genuine])[0]
    columns["session"] = session_number
    columns["item"] = world.shift_tastes(spec, catalog, columns["item"], columns["timestamp"], is_genuine)
    columns, n_unknown = _plant_dirt(spec, columns, genuine)
    events = _assemble(spec, columns, population, catalog, n_unknown)
    return Dataset(
        events=events,
        users=population.table,
        items=catalog.table,
        name="synthetic",
        # n_new_items joined the spec later: left out at its default so that a spec's lineage reads as before.
        source="synthetic:" + spec.model_dump_json(exclude={"n_new_items"} if spec.n_new_items == 0 else None),
    )


def appeal_sample(
    spec: SyntheticSpec,
    counts: pd.Series,
    *,
    exclude: pd.DataFrame | None = None,
    items: pd.Index | None = None,
    exposure_bias: bool = False,
) -> pd.DataFrame:
    """Items drawn from the users' true appeal, outside the log: held-out positives free of the exposure bias.

    The log of :func:`generate` over-represents ``favoured_group`` by
    ``exposure_bias`` (the logging policy showed it more), so test positives held
    out of that log count the planted bias as preference: a re-ranker that
    corrects the bias is scored down for it. This draws, for each user, items
    without replacement from the same engagement law the log is drawn from
    (popularity x provider affinity x ``exp(taste_strength * taste)``) with the
    exposure factor taken out, which is what the user would engage with under a
    logging policy without the bias. Exactly (Gumbel top-k over the whole catalog),
    not through the log's proposal; from a random stream of its own, so the log of
    the spec is untouched and the same arguments always give the same sample.

    Parameters
    ----------
    spec:
        The spec the data set was generated from (it rebuilds the same world).
    counts:
        How many items to draw per user: integers >= 0 indexed by genuine user ids
        (typically each test user's number of logged test positives).
    exclude:
        ``user_id``/``item_id`` pairs never drawn (typically the training positives,
        which a model filters out). Pairs of other users or of unknown items are ignored.
    items:
        The item ids to draw from (typically those a model trained on knows);
        every item of the catalog when ``None``.
    exposure_bias:
        Keep the planted exposure factor (draws from the logged law instead): a
        control that should reproduce the log's group shares.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` and ``item_id`` (strings), each user's draws together, in the order drawn.

    Raises
    ------
    ConfigError
        On a spec that is not a :class:`SyntheticSpec` or has ``taste_shift_at``
        (tastes then change over time: there is no one appeal), unknown, duplicated
        or bot user ids, counts that are not integers >= 0 or exceed the items
        left to a user, an ``exclude`` without the two columns, or unknown ``items``.
    """
    if not isinstance(spec, SyntheticSpec):
        raise ConfigError(f"appeal_sample expects a SyntheticSpec; got {type(spec).__name__}")
    if spec.taste_shift_at is not None:
        raise ConfigError(
            "appeal_sample: the spec has taste_shift_at, so tastes change over time and no one appeal exists"
        )
    if not isinstance(counts, pd.Series):
        raise ConfigError(
            f"appeal_sample: counts must be a pandas Series indexed by user id; got {type(counts).__name__}"
        )
    values = counts.to_numpy()
    if values.dtype.kind not in "iu":
        raise ConfigError(f"appeal_sample: counts must be integers >= 0; got dtype {values.dtype}")
    if (values < 0).any():
        first = int(np.flatnonzero(values < 0)[0])
        raise ConfigError(
            f"appeal_sample: counts must be integers >= 0; got {int(values[first])} for user {counts.index[first]!r}"
        )
    if counts.index.has_duplicates:
        duplicated = counts.index[counts.index.duplicated()][0]
        raise ConfigError(f"appeal_sample: counts has duplicated user ids, e.g. {duplicated!r}")
    catalog = world.make_catalog(spec, _item_width(spec))
    population = world.make_population(spec, _user_width(spec))
    users = population.table.index.get_indexer(pd.Index(counts.index.astype(str)))
    bad = (users < 0) | (users >= spec.n_users)
    if bad.any():
        raise ConfigError(
            f"appeal_sample: {int(bad.sum())} user id(s) are not genuine users of the spec, "
            f"e.g. {counts.index[bad][0]!r}"
        )
    allowed = np.ones(spec.n_items, dtype=bool)
    if items is not None:
        codes = catalog.table.index.get_indexer(pd.Index(items).astype(str))
        if (codes < 0).any():
            unknown = pd.Index(items)[codes < 0][0]
            raise ConfigError(f"appeal_sample: item id {unknown!r} is not in the catalog of the spec")
        allowed[:] = False
        allowed[codes] = True
    blocked = sp.csr_matrix((len(users), spec.n_items), dtype=bool)
    if exclude is not None:
        missing = {"user_id", "item_id"} - set(getattr(exclude, "columns", ()))
        if missing:
            raise ConfigError(
                f"appeal_sample: exclude must be a DataFrame with user_id and item_id; missing {sorted(missing)}"
            )
        row = pd.Index(counts.index.astype(str)).get_indexer(exclude["user_id"].astype(str))
        col = catalog.table.index.get_indexer(exclude["item_id"].astype(str))
        keep = (row >= 0) & (col >= 0)
        blocked = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=bool), (row[keep], col[keep])), shape=(len(users), spec.n_items)
        )
        blocked.sum_duplicates()
    left = int(allowed.sum()) - np.asarray(blocked[:, allowed].sum(axis=1)).ravel()
    over = values > left
    if over.any():
        first = int(np.flatnonzero(over)[0])
        raise ConfigError(
            f"appeal_sample: user {counts.index[first]!r} asks for {int(values[first])} items but only "
            f"{int(left[first])} are left after exclude and items"
        )
    rng = world.rng_for(spec, world.APPEAL_STREAM)
    step = max(1, _APPEAL_CELLS // max(spec.n_items, 1))
    out_user: list[np.ndarray] = []
    out_item: list[np.ndarray] = []
    for lo in range(0, len(users), step):
        hi = min(lo + step, len(users))
        need = values[lo:hi]
        width = int(need.max(initial=0))
        gumbel = rng.gumbel(size=(hi - lo, spec.n_items))
        if width == 0:
            continue
        score = world.preference_logits(spec, population, catalog, users[lo:hi], exposure_bias=exposure_bias) + gumbel
        score[:, ~allowed] = -np.inf
        chunk = blocked[lo:hi].tocoo()
        score[chunk.row, chunk.col] = -np.inf
        if width < spec.n_items:
            top = np.argpartition(-score, width - 1, axis=1)[:, :width]
        else:
            top = np.argsort(-score, axis=1)
        best_first = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, best_first, axis=1)
        take = np.arange(width)[None, :] < need[:, None]
        out_user.append(np.broadcast_to(np.arange(lo, hi)[:, None], top.shape)[take])
        out_item.append(top[take])
    user_rows = np.concatenate(out_user) if out_user else np.zeros(0, dtype=np.int64)
    item_codes = np.concatenate(out_item) if out_item else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {
            "user_id": pd.array(counts.index.astype(str).to_numpy()[user_rows], dtype="str"),
            "item_id": pd.array(catalog.table.index.to_numpy()[item_codes], dtype="str"),
        }
    )


def _assemble(
    spec: SyntheticSpec,
    columns: dict[str, np.ndarray],
    population: world.Population,
    catalog: world.Catalog,
    n_unknown: int,
) -> pd.DataFrame:
    item_categories = catalog.table.index
    if n_unknown:
        item_categories = item_categories.append(
            world.ids("i", np.arange(spec.n_items, spec.n_items + n_unknown), _item_width(spec))
        )
    frame = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(columns["user"], categories=population.table.index.rename(None)),
            "item_id": pd.Categorical.from_codes(columns["item"], categories=item_categories.rename(None)),
            "event_type": pd.Categorical.from_codes(columns["etype"], categories=list(EVENT_TYPES)),
            "value": columns["value"].astype(np.float64),
            "timestamp": pd.to_datetime(columns["timestamp"], unit="ns", utc=True),
            "session_id": _string_column("s", columns["session"]),
            "context": pd.Categorical.from_codes(columns["device"], categories=list(world.DEVICES)),
        }
    )
    return frame[list(EVENT_COLUMNS)]
