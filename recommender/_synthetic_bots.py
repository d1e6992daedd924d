"""Bot accounts of the synthetic generator, in the styles validation must catch.

Each bot account gets one style, round-robin over ``spec.bot_styles``, and
``spec.bot_events_per_user`` events, so that the planted rows are counted
exactly and every bot carries a ground-truth label (:func:`bot_styles_of`):

``scraper``
    a burst at a scraper's pace (0.05 to 0.9 s between events), items at random.
``crawler``
    walks the catalog in a shuffled order, one item every 2 to 6 s: it touches
    as many distinct items as it has events, up to the whole catalog.
``click_farm``
    clicks the same three items again and again with human-looking, irregular
    gaps (exponential, mean 30 s): only its narrowness gives it away.
``stealthy``
    views and clicks items drawn by popularity, like a person, 20 s to 10 min
    apart, but round the clock without ever pausing for half an hour.

Every style draws from its own random stream, so that adding a style leaves the
others' events unchanged, and the scraper's stream is the one bots always used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recommender import _synthetic_world as world
from recommender.data import EVENT_TYPES

if TYPE_CHECKING:  # pragma: no cover
    from recommender.synthetic import SyntheticSpec

__all__ = ["BOT_STYLES", "bot_styles_of", "generate_bots"]

BOT_STYLES: tuple[str, ...] = ("scraper", "crawler", "click_farm", "stealthy")
"""The planted bot styles."""

_SESSION_EVENTS = 250
_SCRAPER_SLACK_NS = 5 * 60 * world.NS  # idle time of a scraper between its sessions, in all
_VIEW, _CLICK = EVENT_TYPES.index("view"), EVENT_TYPES.index("click")
_FARM_ITEMS = 3


def bot_styles_of(spec: SyntheticSpec) -> list[str]:
    """The style of each bot account, in bot order (round-robin over ``spec.bot_styles``)."""
    styles = list(spec.bot_styles)
    return [styles[k % len(styles)] for k in range(spec.bot_users)]


def generate_bots(spec: SyntheticSpec, population: world.Population) -> dict[str, np.ndarray]:
    """The events of every bot account, each in its style."""
    styles = np.array(bot_styles_of(spec), dtype=object)
    parts = []
    for number, style in enumerate(BOT_STYLES):
        codes = spec.n_users + np.flatnonzero(styles == style)
        if len(codes) == 0:
            continue
        if style == "scraper":
            parts.append(_scrapers(spec, population, codes))
        else:
            parts.append(_steady(spec, population, codes, style, world.rng_for(spec, 4, number)))
    names = ("user", "item", "etype", "value", "timestamp", "session", "device")
    return {name: np.concatenate([p[name] for p in parts]) for name in names}


def _sessions_of(n_bots: int, per_bot: int) -> np.ndarray:
    """Session number of each event: every bot's events cut into sessions of 250."""
    position = np.tile(np.arange(per_bot), n_bots)
    return np.repeat(np.arange(n_bots), per_bot) * (-(-per_bot // _SESSION_EVENTS)) + position // _SESSION_EVENTS


def _scrapers(spec: SyntheticSpec, population: world.Population, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Scrapers: one burst per bot, its sessions back to back, with a few minutes of slack in all."""
    rng = world.rng_for(spec, 4)
    per_bot = spec.bot_events_per_user
    n = len(codes) * per_bot
    user = np.repeat(codes, per_bot)
    session = _sessions_of(len(codes), per_bot)
    gap_ms = rng.integers(50, 900, n)
    elapsed = np.cumsum(gap_ms) - gap_ms
    first = np.searchsorted(session, session)  # index of each session's first event
    elapsed -= elapsed[first]
    session_ids, session_first = np.unique(session, return_index=True)
    session_last = np.append(session_first[1:], n) - 1 if n else np.zeros(0, np.int64)
    duration_ns = elapsed[session_last] * 1_000_000
    busy = np.zeros(len(population.signup_ns), dtype=np.int64)
    np.add.at(busy, user[session_first], duration_ns + world.NS)
    lower = np.maximum(population.signup_ns, world.to_ns(spec.start))
    room = np.maximum(world.to_ns(spec.end) - busy - _SCRAPER_SLACK_NS - lower, 0)
    lower = lower + (rng.random(len(lower)) * room).astype(np.int64)
    t0 = world._layout_sessions(rng, user[session_first], duration_ns, lower, lower + busy + _SCRAPER_SLACK_NS)
    t0 = t0 // 1_000_000 * 1_000_000
    local = np.searchsorted(session_ids, session)
    etype = np.where(rng.random(n) < 0.8, _VIEW, _CLICK).astype(np.int8)
    return {
        "user": user.astype(np.int32),
        "item": rng.integers(0, spec.n_items, n).astype(np.int32),
        "etype": etype,
        "value": np.where(etype == _VIEW, gap_ms / 1000.0, np.nan),
        "timestamp": t0[local] + elapsed * 1_000_000,
        "session": local.astype(np.int64),
        "device": np.zeros(n, dtype=np.int8),
    }


def _steady(
    spec: SyntheticSpec, population: world.Population, codes: np.ndarray, style: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Crawlers, click farms and stealthy bots: one uninterrupted run per bot, at the style's pace."""
    per_bot, n_bots = spec.bot_events_per_user, len(codes)
    n = n_bots * per_bot
    user = np.repeat(codes, per_bot)
    position = np.tile(np.arange(per_bot), n_bots)
    if style == "crawler":
        gap_ms = rng.integers(2_000, 6_000, n)
        walks = np.argsort(rng.random((n_bots, spec.n_items)), axis=1)  # a shuffled catalog per bot
        item = walks[np.repeat(np.arange(n_bots), per_bot), position % spec.n_items]
        etype = np.full(n, _VIEW, dtype=np.int8)
    elif style == "click_farm":
        gap_ms = np.maximum(rng.exponential(30_000, n), 200).astype(np.int64)
        targets = rng.integers(0, spec.n_items, (n_bots, _FARM_ITEMS))
        item = targets[np.repeat(np.arange(n_bots), per_bot), rng.integers(0, _FARM_ITEMS, n)]
        etype = np.full(n, _CLICK, dtype=np.int8)
    else:  # stealthy
        gap_ms = rng.integers(20_000, 600_000, n)
        weights = 1.0 / np.arange(1, spec.n_items + 1) ** spec.popularity_exponent
        ranked = rng.permutation(spec.n_items)
        item = ranked[rng.choice(spec.n_items, size=n, p=weights / weights.sum())]
        etype = np.where(rng.random(n) < 0.7, _VIEW, _CLICK).astype(np.int8)
    gap_ms[position == 0] = 0
    elapsed_ns = np.cumsum(gap_ms) * 1_000_000
    first = np.arange(n_bots) * per_bot
    elapsed_ns -= np.repeat(elapsed_ns[first], per_bot)
    duration = elapsed_ns[first + per_bot - 1]
    lower = np.maximum(population.signup_ns[codes], world.to_ns(spec.start))
    room = np.maximum(world.to_ns(spec.end) - duration - lower, 0)
    t0 = (lower + (rng.random(n_bots) * room).astype(np.int64)) // 1_000_000 * 1_000_000
    return {
        "user": user.astype(np.int32),
        "item": item.astype(np.int32),
        "etype": etype,
        "value": np.where(etype == _VIEW, gap_ms / 1000.0, np.nan),
        "timestamp": np.repeat(t0, per_bot) + elapsed_ns,
        "session": _sessions_of(n_bots, per_bot).astype(np.int64) + 10**9 * (1 + BOT_STYLES.index(style)),
        "device": np.zeros(n, dtype=np.int8),
    }
