"""The world behind :mod:`recommender.synthetic`: catalog, population, and how events are sampled.

Private to the generator. Everything here is vectorized over a chunk of users:

* :func:`make_catalog` draws items (genres, taste vectors, Zipf-like popularity,
  provider groups with the planted exposure bias, harmful flags, texts, and
  the content features of :func:`make_item_features`: keywords from topic
  vocabularies tied to the latent factors, a category, a price, a release time);
* :func:`make_population` draws users (protected attribute, tastes, heavy-tailed
  activity, signup) and allocates the genuine events among them;
* :func:`generate_chunk` samples the events of a range of users: engagements
  (funnels or ratings), their items (sampling-importance-resampling from a
  genre-cluster proposal), sessions and timestamps;
* the bot accounts are sampled by :mod:`recommender._synthetic_bots`.

It also holds the words items are described with. The genres are
MovieLens-100K's (without ``unknown``), so that a synthetic catalog round-trips
through the ``u.item`` layout; each genre has its own vocabulary, so that an
item's description carries its genres and a TF-IDF model of the text has signal
to find. Everything is ASCII, so that ``u.item`` (latin-1) can hold it.

:func:`generate_chunk` is one long function on purpose: its five numbered steps
draw from one random stream in a fixed order (the same seed must give the same
events, and data set versions are content-addressed), and split into functions
they would hand a dozen arrays from step to step without making any step
clearer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recommender.data import EVENT_TYPES

if TYPE_CHECKING:
    from recommender.synthetic import SyntheticSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NS = 1_000_000_000
FUNNEL = ("view", "click", "add_to_cart", "purchase")
RATING_CODE = EVENT_TYPES.index("rating")
_VIEW_CODE = EVENT_TYPES.index("view")
_CLICK_CODE = EVENT_TYPES.index("click")
_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_SHARES = (0.16, 0.27, 0.22, 0.16, 0.12, 0.07)
_COUNTRIES = ("US", "DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "BR")
_COUNTRY_SHARES = (0.30, 0.14, 0.12, 0.11, 0.08, 0.07, 0.05, 0.05, 0.04, 0.04)
DEVICES = ('{"device":"web"}', '{"device":"ios"}', '{"device":"android"}')
_DEVICE_SHARES = (0.45, 0.30, 0.25)
_ITEMS_PER_PROVIDER_FAVOURED = 100  # a few big catalogs
_ITEMS_PER_PROVIDER_OTHER = 10  # many small ones
_POOL_FACTOR = 3  # candidates drawn per engagement, before taste picks among them
_POOL_MIN = 20  # plus this many candidates per user
_GENRE_WEIGHT, _OWN_WEIGHT = 0.8, 0.6  # an item's taste vector: its genres' and its own direction
_RATING_CENTER = 2.6  # calibrated so that ratings average about 3.5, as on MovieLens


def rng_for(spec: SyntheticSpec, *stream: int) -> np.random.Generator:
    """An independent random stream per purpose (and per chunk), all from ``spec.seed``."""
    return np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=stream))


# -- words --------------------------------------------------------------------

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)  # fmt: skip
"""The genres items are drawn from (MovieLens-100K's, in ``u.genre`` order)."""

GENRE_WEIGHTS: tuple[float, ...] = (
    14, 7, 2, 4, 28, 6, 3, 38, 1, 1, 5, 3, 3, 14, 6, 15, 4, 1,
)  # fmt: skip
"""Relative prevalence of each genre (close to MovieLens-100K's genre counts)."""

GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": ("explosion", "chase", "fight", "mercenary", "rescue", "heist", "showdown", "agent"),
    "Adventure": ("quest", "journey", "treasure", "expedition", "jungle", "voyage", "explorer", "map"),
    "Animation": ("animated", "cartoon", "colorful", "hand-drawn", "puppet", "sketch", "toon", "pixel"),
    "Children's": ("family", "friendship", "puppy", "school", "playground", "toys", "kids", "birthday"),
    "Comedy": ("hilarious", "laughs", "prank", "awkward", "wedding", "roommates", "satire", "slapstick"),
    "Crime": ("gangster", "detective", "robbery", "mafia", "smuggler", "heist", "corruption", "informant"),
    "Documentary": ("true", "interviews", "archive", "history", "nature", "investigation", "footage", "portrait"),
    "Drama": ("family", "loss", "struggle", "redemption", "memory", "grief", "ambition", "secrets"),
    "Fantasy": ("dragon", "wizard", "kingdom", "spell", "enchanted", "sword", "prophecy", "elves"),
    "Film-Noir": ("shadows", "femme", "fatale", "cigarette", "rain", "private", "eye", "double-cross"),
    "Horror": ("haunted", "ghost", "blood", "curse", "monster", "scream", "zombie", "nightmare"),
    "Musical": ("song", "dance", "stage", "melody", "chorus", "broadway", "rhythm", "band"),
    "Mystery": ("clue", "riddle", "disappearance", "suspect", "puzzle", "secret", "alibi", "manor"),
    "Romance": ("love", "kiss", "heart", "wedding", "affair", "passion", "lovers", "romance"),
    "Sci-Fi": ("spaceship", "alien", "robot", "future", "galaxy", "time-travel", "android", "planet"),
    "Thriller": ("conspiracy", "hostage", "chase", "paranoia", "assassin", "countdown", "betrayal", "suspense"),
    "War": ("soldier", "battle", "front", "platoon", "invasion", "resistance", "general", "trenches"),
    "Western": ("cowboy", "sheriff", "frontier", "saloon", "outlaw", "ranch", "desert", "gunslinger"),
}
"""A small vocabulary per genre, used in item descriptions."""

HARM_CATEGORIES: tuple[str, ...] = ("violence", "self-harm", "hate", "misinformation", "adult")
"""The categories of harm a flagged item can carry (``harmful:<category>``)."""

_TITLE_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Red", "Lost", "Midnight", "Wild", "Eternal",
    "Crimson", "Forgotten", "Little", "Dark", "Bright", "Final", "Secret", "Iron", "Paper", "Winter",
)  # fmt: skip
_TITLE_NOUNS = (
    "River", "Promise", "Empire", "Garden", "Station", "Letter", "Horizon", "Mirror", "Harbor", "Road",
    "Summer", "Crown", "Island", "Signal", "Stranger", "Orchard", "Tower", "Echo", "Voyage", "City",
)  # fmt: skip
_OPENINGS = ("A", "An unforgettable", "A quiet", "A bold", "A sprawling", "A tense", "A tender", "A sharp")
_GENRE_NOUN = "story"


def genre_words_matrix() -> np.ndarray:
    """The vocabularies as a ``(n_genres, n_words)`` object array, rows in :data:`GENRES` order."""
    return np.array([GENRE_WORDS[g] for g in GENRES], dtype=object)


def make_titles(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` short ASCII titles such as ``"The Hidden Harbor"`` (not unique)."""
    adjectives = rng.integers(0, len(_TITLE_ADJECTIVES), n)
    nouns = rng.integers(0, len(_TITLE_NOUNS), n)
    sequels = rng.random(n) < 0.05
    return [
        f"The {_TITLE_ADJECTIVES[a]} {_TITLE_NOUNS[b]}{' II' if s else ''}"
        for a, b, s in zip(adjectives.tolist(), nouns.tolist(), sequels.tolist())
    ]


def make_descriptions(rng: np.random.Generator, genre_sets: list[list[int]]) -> list[str]:
    """One description per item, built from the vocabularies of its genres.

    Parameters
    ----------
    rng:
        The random generator (the only source of randomness).
    genre_sets:
        For each item, the indices into :data:`GENRES` of its genres (non-empty).
    """
    n, n_words = len(genre_sets), 6
    words = genre_words_matrix()
    n_vocab = words.shape[1]
    # For every word slot pick one of the item's genres, then a word of that genre.
    n_genres = np.array([len(g) for g in genre_sets], dtype=np.int64)
    padded = np.zeros((n, max(1, int(n_genres.max(initial=1)))), dtype=np.int64)
    for row, genres in enumerate(genre_sets):
        padded[row, : len(genres)] = genres
    slot_genre = padded[np.arange(n)[:, None], (rng.random((n, n_words)) * n_genres[:, None]).astype(np.int64)]
    slot_word = rng.integers(0, n_vocab, (n, n_words))
    chosen = words[slot_genre, slot_word]
    openings = rng.integers(0, len(_OPENINGS), n)
    out = []
    for row in range(n):
        genre_names = " and ".join(GENRES[g].lower() for g in genre_sets[row])
        w = chosen[row]
        out.append(
            f"{_OPENINGS[openings[row]]} {genre_names} {_GENRE_NOUN} of {w[0]}, {w[1]} and {w[2]}; "
            f"{w[3]} meets {w[4]} in a tale of {w[5]}."
        )
    return out


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "bu", "da", "fe", "go", "hi", "ja", "pe")
_TOPIC_WORDS_PER_SIDE = 6  # words per (latent dimension, sign)
_KEYWORDS_PER_ITEM = 6  # topic words drawn per item
NOISE_WORDS: tuple[str, ...] = (
    "classic", "edition", "special", "collection", "original", "premium", "deluxe", "remastered",
    "limited", "anniversary", "bonus", "extended",
)  # fmt: skip
"""Words every item's keywords may carry whatever its tastes (noise for a content model)."""
FEATURES_STREAM = 10
"""The random stream of the item features added after the first releases (keywords, category, price,
release time): its own stream, so that adding them left every earlier output of a seed unchanged."""
NEW_ITEMS_STREAM = 11
"""The random stream that picks the new items (``SyntheticSpec.n_new_items``)."""
APPEAL_STREAM = 12
"""The random stream of :func:`recommender.synthetic.appeal_sample` (draws from the users' true
preferences, outside the log): its own stream, so that the log of a seed is the same with or without it."""


def topic_word(dimension: int, positive: bool, j: int) -> str:
    """The ``j``-th word of the topic vocabulary of latent ``dimension`` on its positive or negative side.

    Pronounceable pseudo-words made from :data:`_SYLLABLES` (three syllables, a
    base-16 spelling of the word's number), so that every (dimension, side, j)
    has its own word and no topic word is an English word of the genre texts.
    """
    number = (2 * dimension + (0 if positive else 1)) * _TOPIC_WORDS_PER_SIDE + j
    digits = [(number // 16**p) % 16 for p in (0, 1, 2)]
    return "".join(_SYLLABLES[d] for d in digits)


def topic_vocabulary(n_factors: int) -> dict[tuple[int, bool], tuple[str, ...]]:
    """Every topic vocabulary of a ``n_factors``-dimensional world, by (dimension, positive side)."""
    return {
        (d, positive): tuple(topic_word(d, positive, j) for j in range(_TOPIC_WORDS_PER_SIDE))
        for d in range(n_factors)
        for positive in (True, False)
    }


def make_item_features(spec: SyntheticSpec, factors: np.ndarray, genre_sets: list[list[int]]) -> dict[str, object]:
    """Keywords, a category, a price and a release time per item, carrying the items' latent tastes.

    * ``keywords``: :data:`_KEYWORDS_PER_ITEM` topic words, each from the
      vocabulary of a latent dimension drawn with probability proportional to the
      square of the item's factor on it, on the side of the factor's sign (an
      item strong on dimension 3, positively, is mostly described by dimension
      3's positive words), then two :data:`NOISE_WORDS`;
    * ``category``: one of the item's genres (which set the genre part of its factors);
    * ``price``: log-normal around 12, higher for items high on latent dimension 0;
    * ``release_time``: before ``spec.start``, older for items high on dimension 1 (when there is one).

    Drawn from stream :data:`FEATURES_STREAM` only.
    """
    rng = rng_for(spec, FEATURES_STREAM)
    n, k = factors.shape
    weight = factors**2
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:] + 1e-300
    cdf[:, -1] = 1.0
    draws = rng.random((n, _KEYWORDS_PER_ITEM))
    flat = np.searchsorted((cdf + np.arange(n)[:, None]).ravel(), (draws + np.arange(n)[:, None]).ravel(), side="right")
    dims = np.minimum(flat.reshape(n, _KEYWORDS_PER_ITEM) - np.arange(n)[:, None] * k, k - 1)
    positive = np.take_along_axis(factors, dims, axis=1) >= 0
    which = rng.integers(0, _TOPIC_WORDS_PER_SIDE, (n, _KEYWORDS_PER_ITEM))
    vocabulary = np.array([topic_word(d, s, j) for d in range(k) for s in (True, False) for j in range(_TOPIC_WORDS_PER_SIDE)], dtype=object)
    words = vocabulary[(2 * dims + (~positive)) * _TOPIC_WORDS_PER_SIDE + which]
    noise = np.asarray(NOISE_WORDS, dtype=object)[rng.integers(0, len(NOISE_WORDS), (n, 2))]
    keywords = [" ".join(row) for row in np.concatenate([words, noise], axis=1).tolist()]
    pick = rng.random(n)
    category = [GENRES[g[min(int(p * len(g)), len(g) - 1)]] for g, p in zip(genre_sets, pick.tolist())]
    price = np.round(np.exp(math.log(12.0) + 0.5 * factors[:, 0] + 0.25 * rng.normal(size=n)), 2)
    age_days = 3 * 365 * rng.exponential(size=n) * np.exp(0.5 * factors[:, 1 % k] if k > 1 else 0.0)
    release_ns = to_ns(spec.start) - (np.minimum(age_days, 60 * 365) * 86400 * NS).astype(np.int64)
    return {
        "keywords": pd.array(keywords, dtype="str"),
        "category": pd.array(category, dtype="str"),
        "price": price,
        "release_time": pd.to_datetime(release_ns // NS * NS, unit="ns", utc=True),
    }


def pick_new_items(spec: SyntheticSpec) -> np.ndarray:
    """The item numbers ``spec.n_new_items`` marks as new (sorted), from stream :data:`NEW_ITEMS_STREAM`."""
    if spec.n_new_items == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng_for(spec, NEW_ITEMS_STREAM).choice(spec.n_items, size=spec.n_new_items, replace=False))


# -- the population: items and users ------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """The items, and a proposal distribution to sample candidates from.

    Items with the same set of genres form a cluster and share its genre vector.
    A user's candidates are drawn cluster first (by the cluster's exposure-weighted
    popularity times the user's taste for its genres), then item within the cluster
    (by exposure-weighted popularity), which is close to the target distribution.
    """

    factors: np.ndarray  # (n_items, k) unit taste vectors
    bias: np.ndarray  # rating bias per item
    cluster: np.ndarray  # (n_items,) cluster of each item
    cluster_factors: np.ndarray  # (n_clusters, k) the genre part of the items' taste vectors
    cluster_log_prior: np.ndarray  # (n_clusters,) log of the clusters' total prior weight
    items_by_cluster: np.ndarray  # item indices sorted by cluster
    within_cdf: np.ndarray  # prior CDF of items_by_cluster inside each cluster, plus the cluster index
    prior_weight: np.ndarray  # (n_items,) popularity x exposure weight of each item
    favoured: np.ndarray  # (n_items,) bool: the item's provider group is the over-exposed one
    table: pd.DataFrame

    def proposal(self, affinity: float) -> tuple[np.ndarray, np.ndarray]:
        """``(cluster_log_prior, within_cdf)`` for users drawn ``affinity`` times more to the items of the
        other provider groups than to the favoured one's (``spec.group_provider_affinity``)."""
        if affinity == 1.0:
            return self.cluster_log_prior, self.within_cdf
        weights = self.prior_weight * np.where(self.favoured, 1.0, affinity)
        return _cluster_proposal(weights, self.cluster, self.items_by_cluster)


def _cluster_proposal(
    weights: np.ndarray, cluster: np.ndarray, items_by_cluster: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The log of each cluster's total weight, and the CDF of ``weights`` inside each cluster laid end to
    end over ``items_by_cluster`` (cluster ``c``'s CDF shifted by ``c``, for one ``searchsorted``)."""
    n = len(weights)
    sizes = np.bincount(cluster)
    n_clusters = len(sizes)
    cluster_weight = np.bincount(cluster, weights=weights, minlength=n_clusters)
    sorted_cluster = cluster[items_by_cluster]
    within = np.cumsum(weights[items_by_cluster])
    cluster_start = _segment_starts(sizes)
    within -= (within - weights[items_by_cluster])[cluster_start][sorted_cluster]
    within /= cluster_weight[sorted_cluster]
    within[np.append(cluster_start[1:], n) - 1] = 1.0  # exact ends, for the offset search
    return np.log(cluster_weight), within + sorted_cluster


@dataclass(frozen=True)
class Population:
    factors: np.ndarray  # (n_users, k)
    bias: np.ndarray  # rating bias per user
    counts: np.ndarray  # genuine events per user
    signup_ns: np.ndarray
    group: np.ndarray  # protected group code per user (index into spec.protected_groups)
    table: pd.DataFrame


def ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Index:
    return pd.Index([f"{prefix}{n:0{width}d}" for n in numbers.tolist()], dtype="str")


def make_catalog(spec: SyntheticSpec, id_width: int) -> Catalog:
    """The items of ``spec``: taste vectors, popularity with the exposure bias, and the items table."""
    rng = rng_for(spec, 0)
    n, k = spec.n_items, spec.n_factors
    n_genres = len(GENRES)
    # Genres: 1 to 3 distinct per item, drawn by prevalence (Gumbel top-3).
    genre_logit = np.log(np.asarray(GENRE_WEIGHTS, dtype=np.float64))
    top3 = np.argsort(-(genre_logit + rng.gumbel(size=(n, n_genres))), axis=1)[:, :3]
    how_many = rng.choice(3, size=n, p=[0.5, 0.35, 0.15]) + 1
    genre_sets = [sorted(row[:m].tolist()) for row, m in zip(top3, how_many.tolist())]
    # Taste vectors: an item shares its genres' vectors, plus its own noise.
    genre_vectors = rng.normal(size=(n_genres, k))
    member = np.zeros((n, n_genres))
    member[np.repeat(np.arange(n), how_many), np.concatenate([np.asarray(g) for g in genre_sets])] = 1.0
    shared = member @ genre_vectors
    shared /= np.linalg.norm(shared, axis=1, keepdims=True) + 1e-12
    own = rng.normal(size=(n, k))
    own /= np.linalg.norm(own, axis=1, keepdims=True) + 1e-12
    factors = _GENRE_WEIGHT * shared + _OWN_WEIGHT * own
    factors /= np.linalg.norm(factors, axis=1, keepdims=True) + 1e-12
    _, first_of_cluster, cluster = np.unique(
        member @ (2.0 ** np.arange(n_genres)), return_index=True, return_inverse=True
    )
    # Popularity rank r (1 = most popular) per item, in random item order.
    rank = rng.permutation(n) + 1
    # Groups spread evenly over popularity ranks (a low-discrepancy sequence), so
    # that relevance does not depend on the group and the bias is the only excess.
    names = list(spec.provider_groups)
    cum = np.cumsum([spec.provider_groups[g] for g in names])
    position = ((rank - 1) * 0.6180339887498949 + 0.5 / max(n, 1)) % 1.0
    group_code = np.minimum(np.searchsorted(cum / cum[-1], position, side="right"), len(names) - 1)
    favoured = names.index(spec.favoured_group)
    prior = -spec.popularity_exponent * np.log(rank) + np.where(
        group_code == favoured, math.log(spec.exposure_bias), 0.0
    )
    weights = np.exp(prior - prior.max())
    items_by_cluster = np.argsort(cluster, kind="stable")
    cluster_log_prior, within_cdf = _cluster_proposal(weights, cluster, items_by_cluster)
    # Providers: a few big ones in the favoured group, many small ones elsewhere.
    provider = np.empty(n, dtype=object)
    for code, name in enumerate(names):
        members = np.flatnonzero(group_code == code)
        per = _ITEMS_PER_PROVIDER_FAVOURED if code == favoured else _ITEMS_PER_PROVIDER_OTHER
        n_prov = max(1, math.ceil(len(members) / per))
        provider[members] = [f"{name}-{p:03d}" for p in rng.integers(0, n_prov, len(members)).tolist()]
    # Harmful items.
    flags = np.full(n, "", dtype=object)
    harmful = rng.choice(n, size=round(spec.harmful_share * n), replace=False)
    flags[harmful] = [f"harmful:{c}" for c in rng.choice(HARM_CATEGORIES, size=len(harmful)).tolist()]
    text_rng = rng_for(spec, 6)
    table = pd.DataFrame(
        {
            "title": make_titles(text_rng, n),
            "provider": pd.array(provider, dtype="str"),
            "provider_group": pd.array(np.asarray(names, dtype=object)[group_code], dtype="str"),
            "categories": ["|".join(GENRES[g] for g in gs) for gs in genre_sets],
            "text": make_descriptions(text_rng, genre_sets),
            "flags": pd.array(flags, dtype="str"),
            **make_item_features(spec, factors, genre_sets),
        },
        index=ids("i", np.arange(n), id_width).rename("item_id"),
    )
    new = np.zeros(n, dtype=bool)
    new[pick_new_items(spec)] = True
    table["new_item"] = new
    return Catalog(
        factors=factors,
        bias=rng.normal(0.0, 0.3, n),
        cluster=cluster,
        cluster_factors=_GENRE_WEIGHT * shared[first_of_cluster],
        cluster_log_prior=cluster_log_prior,
        items_by_cluster=items_by_cluster,
        within_cdf=within_cdf,
        prior_weight=weights,
        favoured=group_code == favoured,
        table=table,
    )


def _draw_users(spec: SyntheticSpec, rng: np.random.Generator, n: int, shift: np.ndarray) -> dict[str, np.ndarray]:
    """Attributes, tastes and activity of ``n`` users."""
    names = list(spec.protected_groups)
    shares = np.asarray([spec.protected_groups[g] for g in names])
    group = rng.choice(len(names), size=n, p=shares / shares.sum())
    activity = rng.lognormal(0.0, spec.activity_sigma, n)
    activity *= np.asarray([spec.group_activity.get(g, 1.0) for g in names])[group]
    earliest = to_ns(spec.start) - 2 * 365 * 86400 * NS
    latest = to_ns(spec.end) - 7 * 86400 * NS
    return {
        "group": group,
        "factors": rng.normal(size=(n, spec.n_factors)) + shift[group],
        "activity": activity,
        "bias": rng.normal(0.0, 0.35, n),
        "signup": (earliest + rng.random(n) * (latest - earliest)).astype(np.int64) // NS * NS,
        "age": rng.choice(len(_AGE_BANDS), size=n, p=_AGE_SHARES),
        "country": rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_SHARES),
    }


def make_population(spec: SyntheticSpec, id_width: int) -> Population:
    """Genuine users, then bot accounts (drawn from their own stream, so that adding
    bots leaves the genuine users and their events unchanged)."""
    rng = rng_for(spec, 1)
    names = list(spec.protected_groups)
    shift = rng.normal(size=(len(names), spec.n_factors))
    shift *= spec.group_taste_shift / (np.linalg.norm(shift, axis=1, keepdims=True) + 1e-12)
    genuine = _draw_users(spec, rng, spec.n_users, shift)
    bots = _draw_users(spec, rng_for(spec, 7), spec.bot_users, shift)
    users = {name: np.concatenate([genuine[name], bots[name]]) for name in genuine}
    activity = genuine["activity"]
    counts = rng_for(spec, 2).multinomial(spec.n_interactions, activity / activity.sum())
    counts = np.concatenate([counts, np.zeros(spec.bot_users, dtype=counts.dtype)])  # bots get their own events
    table = pd.DataFrame(
        {
            "age_band": pd.Categorical.from_codes(users["age"], categories=_AGE_BANDS),
            spec.protected_attribute: pd.Categorical.from_codes(users["group"], categories=names),
            "country": pd.Categorical.from_codes(users["country"], categories=_COUNTRIES),
            "signup": pd.to_datetime(users["signup"], unit="ns", utc=True),
        },
        index=ids("u", np.arange(spec.n_users + spec.bot_users), id_width).rename("user_id"),
    )
    return Population(
        factors=users["factors"],
        bias=users["bias"],
        counts=counts.astype(np.int64),
        signup_ns=users["signup"],
        group=users["group"],
        table=table,
    )


def to_ns(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


# -- events ---------------------------------------------------------------------


def _segment_starts(sizes: np.ndarray) -> np.ndarray:
    """Start offset of each segment in a flat array of segments of ``sizes``."""
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def _funnel_probabilities(spec: SyntheticSpec) -> tuple[float, np.ndarray, float]:
    """``(p_rating, P(depth >= 2, 3, 4), mean events per engagement)`` from the event mix."""
    mix = spec.event_mix
    s_view = mix.get("view", 0.0)
    s_rating = mix.get("rating", 0.0)
    if s_view <= 0.0:  # nothing but ratings
        return 1.0, np.zeros(3), 1.0
    deeper = np.asarray([mix.get(t, 0.0) / s_view for t in FUNNEL[1:]])
    funnel_depth = 1.0 + deeper.sum()
    # R ratings and F funnels: R / (R + F * depth) = s_rating.
    ratio = s_rating * funnel_depth / max(1.0 - s_rating, 1e-12)  # R / F
    p_rating = ratio / (1.0 + ratio)
    return p_rating, deeper, p_rating + (1.0 - p_rating) * funnel_depth


def _layout_sessions(
    rng: np.random.Generator,
    session_user: np.ndarray,
    duration_ns: np.ndarray,
    lower_ns: np.ndarray,
    end_ns: int | np.ndarray,
) -> np.ndarray:
    """Start times of sessions so that each user's sessions fit in ``[lower, end]`` without overlap.

    ``session_user`` is sorted (sessions grouped by user) and indexes ``lower_ns``
    (and ``end_ns`` when it is an array).
    Each user's idle time is cut at sorted uniform points and the sessions are laid
    out in between, one second apart at least.
    """
    n_sessions = len(session_user)
    if n_sessions == 0:
        return np.zeros(0, dtype=np.int64)
    span = duration_ns + NS
    users, first, per_user = np.unique(session_user, return_index=True, return_counts=True)
    local = np.repeat(np.arange(len(users)), per_user)
    busy = np.add.reduceat(span, first)
    end = end_ns[users] if isinstance(end_ns, np.ndarray) else end_ns
    lower = np.minimum(lower_ns[users], end - busy)  # a user busier than the window starts earlier
    free = np.maximum(end - lower - busy, 0)
    points = np.sort(rng.random(n_sessions) + local) - local  # sorted uniforms within each user
    before = np.cumsum(span) - span
    before -= before[first][local]
    return lower[local] + (points * free[local]).astype(np.int64) + before


def _propose(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    user_factors: np.ndarray,
    catalog: Catalog,
    pool_user: np.ndarray,
    user_affinity: np.ndarray,
) -> np.ndarray:
    """Draw one candidate item per entry of ``pool_user`` (row indices into ``user_factors``).

    Cluster first, with probability proportional to the cluster's prior weight times
    ``exp(taste_strength * user . cluster_factor)``, then item within the cluster by
    prior weight. Both draws are one ``searchsorted`` over CDFs laid end to end
    (row ``r``'s CDF shifted by ``r``). A user whose group has a provider affinity
    (``user_affinity`` != 1) draws from priors with the non-favoured providers' items
    weighted by it, so that the planted link is part of the proposal and the target
    alike; the uniform draws are shared, so users without one draw as if there were none.
    """
    taste = spec.taste_strength * (user_factors @ catalog.cluster_factors.T)
    u_cluster = rng.random(len(pool_user))
    u_item = rng.random(len(pool_user))
    n_clusters = taste.shape[1]
    out = np.empty(len(pool_user), dtype=np.int64)
    # One pass per affinity level (one per protected group at most; a single pass without the link).
    levels, level_of_user = np.unique(user_affinity, return_inverse=True)
    for level, affinity in enumerate(levels.tolist()):
        cluster_log_prior, within_cdf = catalog.proposal(affinity)
        users = np.flatnonzero(level_of_user == level)
        rows = np.flatnonzero(level_of_user[pool_user] == level)
        local = np.searchsorted(users, pool_user[rows])
        logits = taste[users] + cluster_log_prior[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        cdf = np.cumsum(np.exp(logits), axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        cdf += np.arange(len(users))[:, None]
        flat = np.searchsorted(cdf.ravel(), local + u_cluster[rows], side="right")
        cluster = np.minimum(flat - local * n_clusters, n_clusters - 1)
        position = np.searchsorted(within_cdf, cluster + u_item[rows], side="right")
        out[rows] = catalog.items_by_cluster[np.minimum(position, len(catalog.items_by_cluster) - 1)]
    return out


def preference_logits(
    spec: SyntheticSpec, population: Population, catalog: Catalog, users: np.ndarray, *, exposure_bias: bool
) -> np.ndarray:
    """``(len(users), n_items)`` log-weights of the engagement law of the log, up to a constant per row.

    The law is the target the log's engagements are drawn from (``_engaged_items``
    samples it through a proposal): popularity x exposure x provider affinity x
    ``exp(taste_strength * user . item)``. With ``exposure_bias=False`` the planted
    exposure factor of the favoured group is taken out, which leaves the users' true
    appeal; every other part (popularity, tastes, affinity) is the same.
    """
    log_prior = np.log(catalog.prior_weight)
    if not exposure_bias:
        log_prior = log_prior - np.where(catalog.favoured, math.log(spec.exposure_bias), 0.0)
    affinity = np.asarray([spec.group_provider_affinity.get(g, 1.0) for g in spec.protected_groups])
    log_affinity = np.log(affinity[population.group[users]])
    logits = spec.taste_strength * (population.factors[users] @ catalog.factors.T) + log_prior[None, :]
    return logits + np.where(catalog.favoured[None, :], 0.0, log_affinity[:, None])


def _engagements(
    rng: np.random.Generator, counts: np.ndarray, p_rating: float, deeper: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: each user's engagements (a rating, or a funnel of some depth on one item).

    One depth is drawn per event slot and the prefix that covers each user's count
    is kept. Returns the user, whether it is a rating, and the depth of every
    engagement, and the number of engagements per user.
    """
    n_users, n_events = len(counts), int(counts.sum())
    slot_user = np.repeat(np.arange(n_users), counts)
    draw = rng.random(n_events)
    is_rating = rng.random(n_events) < p_rating
    depth = np.where(is_rating, 1, 1 + (draw[:, None] < deeper[None, :]).sum(axis=1)).astype(np.int64)
    ends = np.cumsum(depth)
    first_slot = _segment_starts(counts)
    offset = np.zeros(n_users, dtype=np.int64)
    has = counts > 0
    offset[has] = ends[first_slot[has]] - depth[first_slot[has]]
    begin = ends - depth - offset[slot_user]
    keep = begin < counts[slot_user]
    eng_user, eng_rating = slot_user[keep], is_rating[keep]
    eng_depth = np.minimum(depth[keep], counts[eng_user] - begin[keep])
    return eng_user, eng_rating, eng_depth, np.bincount(eng_user, minlength=n_users)


def _engaged_items(
    rng: np.random.Generator, spec: SyntheticSpec, user_lo: int, user_hi: int, population: Population,
    catalog: Catalog, eng_user: np.ndarray, per_user: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Step 2: the item of every engagement, its taste score, and the order that shuffles them in time.

    A candidate pool per user is drawn from a proposal close to the target
    popularity x exposure x exp(taste), then the engaged items are picked without
    replacement (Gumbel top-k, weighted target / proposal: sampling-importance-resampling).
    Items and tastes come back already shuffled in time within each user; the
    caller applies the returned order to its own per-engagement arrays.
    """
    n_users = len(per_user)
    pool_size = np.where(per_user > 0, _POOL_FACTOR * per_user + _POOL_MIN, 0)
    pool_user = np.repeat(np.arange(n_users), pool_size)
    affinity = np.asarray([spec.group_provider_affinity.get(g, 1.0) for g in spec.protected_groups])
    user_affinity = affinity[population.group[user_lo:user_hi]]
    pool_item = _propose(rng, spec, population.factors[user_lo:user_hi], catalog, pool_user, user_affinity)
    key, multiplicity = np.unique(pool_user * np.int64(spec.n_items) + pool_item, return_counts=True)
    cand_user, cand_item = key // spec.n_items, key % spec.n_items
    user_factors = population.factors[user_lo + cand_user]
    taste = np.einsum("ij,ij->i", user_factors, catalog.factors[cand_item])
    proposed = np.einsum("ij,ij->i", user_factors, catalog.cluster_factors[catalog.cluster[cand_item]])
    score = spec.taste_strength * (taste - proposed) + np.log(multiplicity) + rng.gumbel(size=len(key))
    order = np.lexsort((-score, cand_user))
    cand_user, cand_item, taste = cand_user[order], cand_item[order], taste[order]
    n_cand = np.bincount(cand_user, minlength=n_users)
    cand_start = _segment_starts(n_cand)
    # Engagement j of a user takes the user's j-th best candidate; a user with more
    # engagements than distinct candidates comes back to the best ones (repeat visits).
    eng_rank = np.arange(len(eng_user)) - _segment_starts(per_user)[eng_user]
    pick = cand_start[eng_user] + eng_rank % np.maximum(n_cand[eng_user], 1)
    shuffle = np.argsort(eng_user + rng.random(len(eng_user)) * 0.5, kind="stable")
    return cand_item[pick][shuffle], taste[pick][shuffle], shuffle


def generate_chunk(
    spec: SyntheticSpec,
    chunk: int,
    user_lo: int,
    user_hi: int,
    population: Population,
    catalog: Catalog,
) -> dict[str, np.ndarray]:
    """The genuine events of users ``user_lo .. user_hi - 1``, grouped by user."""
    rng = rng_for(spec, 3, chunk)
    counts = population.counts[user_lo:user_hi]
    n_events = int(counts.sum())
    p_rating, deeper, mean_depth = _funnel_probabilities(spec)

    eng_user, eng_rating, eng_depth, per_user = _engagements(rng, counts, p_rating, deeper)
    eng_item, eng_taste, shuffle = _engaged_items(rng, spec, user_lo, user_hi, population, catalog, eng_user, per_user)
    eng_rating, eng_depth = eng_rating[shuffle], eng_depth[shuffle]

    # 3. Sessions: a new one starts at an engagement with probability 1 / engagements per session.
    p_new = min(1.0, mean_depth / spec.mean_session_length)
    new_session = rng.random(len(eng_user)) < p_new
    new_session[_segment_starts(per_user)[per_user > 0]] = True
    eng_session = np.cumsum(new_session) - 1
    n_sessions = int(new_session.sum())
    session_user = eng_user[new_session]

    # 4. Events: expand engagements into their funnel steps.
    ev_eng = np.repeat(np.arange(len(eng_user)), eng_depth)
    step = np.arange(n_events) - np.repeat(_segment_starts(eng_depth), eng_depth)
    etype = np.where(eng_rating[ev_eng], RATING_CODE, step).astype(np.int8)
    ev_taste = eng_taste[ev_eng]
    noise = rng.normal(size=n_events)
    rating = np.clip(
        np.rint(
            _RATING_CENTER + 0.8 * ev_taste + population.bias[user_lo + eng_user[ev_eng]]
            + catalog.bias[eng_item[ev_eng]] + 0.8 * noise
        ),
        1,
        5,
    )  # fmt: skip
    dwell = np.round(np.clip(np.exp(math.log(25.0) + 0.3 * ev_taste + 0.8 * noise), 1.0, 3600.0), 1)
    value = np.where(etype == RATING_CODE, rating, np.where(etype == _VIEW_CODE, dwell, np.nan))

    # 5. Time: gaps inside a session (a view lasts its dwell time), sessions laid out per user.
    other_gap = 2.0 + np.minimum(rng.lognormal(math.log(6.0), 0.8, n_events), 600.0)
    gap_s = np.where(etype == _VIEW_CODE, dwell + 1.0, other_gap)
    ev_session = eng_session[ev_eng]
    gap_ms = np.rint(gap_s * 1000).astype(np.int64)
    elapsed = np.cumsum(gap_ms) - gap_ms
    session_first = np.searchsorted(ev_session, np.arange(n_sessions))
    elapsed -= elapsed[session_first][ev_session]
    session_last = np.append(session_first[1:], n_events) - 1
    duration_ns = elapsed[session_last] * 1_000_000 if n_sessions else np.zeros(0, np.int64)
    lower = np.maximum(population.signup_ns[user_lo:user_hi], to_ns(spec.start))
    session_t0 = _layout_sessions(rng, session_user, duration_ns, lower, to_ns(spec.end))
    session_t0 = session_t0 // 1_000_000 * 1_000_000  # whole milliseconds
    timestamp = session_t0[ev_session] + elapsed * 1_000_000
    device = rng.choice(len(DEVICES), size=n_sessions, p=_DEVICE_SHARES).astype(np.int8)
    return {
        "user": (user_lo + eng_user[ev_eng]).astype(np.int32),
        "item": eng_item[ev_eng].astype(np.int32),
        "etype": etype,
        "value": value,
        "timestamp": timestamp,
        "session": ev_session.astype(np.int64),
        "device": device[ev_session],
    }


# -- a shift of tastes ------------------------------------------------------------


def shift_tastes(spec: SyntheticSpec, catalog: Catalog, item: np.ndarray, timestamp: np.ndarray, genuine: np.ndarray) -> np.ndarray:
    """``item`` with every genuine engagement from ``spec.taste_shift_at`` on moved to another item.

    The move is one fixed permutation of the items within each provider group
    (drawn from the seed, no item left in place where the group has two or more):
    what users liked before the shift they like no more, the favoured group keeps
    its share of events, and the popularity law is unchanged. Bots do not change.
    """
    if spec.taste_shift_at is None:
        return item
    rng = rng_for(spec, 9)
    target = np.arange(len(catalog.favoured))
    for group in (True, False):
        members = np.flatnonzero(catalog.favoured == group)
        if len(members) > 1:
            cycle = members[rng.permutation(len(members))]
            target[cycle] = np.roll(cycle, -1)  # one cycle through the group: no item keeps its place
    after = genuine & (timestamp >= to_ns(spec.taste_shift_at))
    out = item.copy()
    known = after & (item < len(target))
    out[known] = target[item[known]].astype(item.dtype)
    return out
