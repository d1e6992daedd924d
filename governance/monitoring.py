"""Monitoring from what recgov already records: the figures of one window of served decisions and their feedback.

A pass (:func:`run_monitor`) reads the decisions served in ``[now - window, now)``
and the feedback events of the same window, and computes, per model version
that served lists (shadow lists, which nobody saw, are left out):

* ``click_rate``, ``conversion_rate`` -- of the items served, the share clicked
  (converted) by the subject they were served to (feedback joined to the decision);
* ``coverage`` -- distinct items served over the catalogue;
* ``exposure_gini`` -- Gini coefficient of exposure over the catalogue (0 even, 1 all on one item);
* ``long_tail_share`` -- share of served slots outside the training data's two most popular deciles;
* ``served_popularity`` -- mean training-popularity decile of the served items, over 9 (drifts up as lists concentrate);
* ``provider_gap`` -- the protected provider group's share of the catalogue minus its share of exposure (positive: under-exposed);
* ``harmful_share`` -- share of served slots flagged ``harmful:<category>`` in the item table;
* ``input_drift_psi`` -- population stability index of the feedback events' spread
  over the training data's item-popularity deciles against the training data's own spread;
* ``prediction_skew_ks``, ``prediction_skew_psi`` -- served scores against the
  scores the model gave in its offline evaluation (:func:`scipy.stats.ks_2samp`,
  :func:`recommender.drift.population_stability_index`);

* ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms`` -- percentiles (:func:`numpy.percentile`,
  linear) of the serving latency the decision records give (``latency_ms``), over the lists that give one
  (``latency_lists``; None when none does);

and, over every list: ``non_profiling_share``, ``failure_rate`` (requests that
could not be served), ``unreadable`` (lists of erased subjects, which stay
sealed and are not read). A model's reference (its profile: training deciles,
offline scores, offline hit rate) is recorded once, by :func:`build_profile`.

The pure figures (:func:`window_figures`) take frames and return numbers; the
store is read and written by :func:`run_monitor` through :mod:`audits.monitoring`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from governance.harm_vocabulary import is_harm_flagged
from recommender.drift import population_stability_index
from recommender.fairness import read_label, read_labels

__all__ = [
    "N_DECILES",
    "TAIL_BELOW",
    "WindowInputs",
    "build_profile",
    "profile_under_pack",
    "categorical_psi",
    "gini",
    "LATENCY_PERCENTILES",
    "latency_figures",
    "popularity_deciles",
    "window_figures",
]

N_DECILES = 10
TAIL_BELOW = 8
"""Deciles 0..7 are the long tail; 8 and 9 the head (the 20 % of events on the most popular items)."""
_PSI_EPS = 1e-4
_SCORE_SAMPLE = 1000
_ENGAGED = ("click", "conversion", "rating", "dwell")


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0: all equal; near 1: all on one); NaN for an empty or all-zero input.

    ``G = sum_i (2 i - n - 1) x_(i) / (n sum x)`` with ``x`` sorted ascending and ``i`` from 1.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum()) if len(x) else 0.0
    if n == 0 or total <= 0:
        return float("nan")
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * ranks - n - 1) * x) / (n * total))


def categorical_psi(reference: np.ndarray, current: np.ndarray, eps: float = _PSI_EPS) -> float:
    """PSI of ``current`` shares against ``reference`` shares over the same categories (both floored at ``eps``)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return float("nan")
    ref = np.maximum(ref / ref.sum(), eps)
    cur = np.maximum(cur / cur.sum(), eps)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def popularity_deciles(events: pd.DataFrame) -> tuple[dict[str, int], list[float]]:
    """Each item's popularity decile in ``events`` (9: the items holding the top tenth of events) and each decile's share of events.

    Deciles cut the *events*, not the items: items sorted by popularity, an item's
    decile is where the cumulative share of events reaches it, so that each decile
    holds about a tenth of the events and a shift of taste between items moves events
    between deciles.
    """
    counts = events["item_id"].astype("string").value_counts(sort=True, ascending=True)
    if counts.empty:
        return {}, [0.0] * N_DECILES
    cumulative = counts.cumsum().to_numpy(dtype=np.float64) / float(counts.sum())
    decile = np.minimum((cumulative * N_DECILES - 1e-9).astype(np.int64), N_DECILES - 1)
    decile = np.maximum(decile, 0)
    shares = np.bincount(decile, weights=counts.to_numpy(dtype=np.float64), minlength=N_DECILES) / float(counts.sum())
    return dict(zip(counts.index.tolist(), decile.tolist(), strict=True)), shares.round(6).tolist()


def build_profile(
    model: Any,
    events: pd.DataFrame,
    *,
    k: int,
    feedback: Any,
    random_state: int = 0,
    horizon_hours: float = 24.0,
    filter_seen: bool = True,
    left_out: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """What monitoring compares ``model`` against, from the events it was trained on.

    * ``deciles``/``decile_share``: :func:`popularity_deciles` of the training events;
    * ``offline_scores``: the scores of its top-``k`` lists for (up to 1,000) training users, as served;
    * ``offline_hit_rate``: precision at ``k`` of the same recipe fitted on the events before
      the last ``horizon_hours`` and scored on what each user did in those hours: the share of
      listed items the user engaged with within the horizon, the offline counterpart of the click
      rate of lists whose feedback is joined within the same window (the attribution window,
      :data:`audits.outcomes.DEFAULT_WINDOW`, is 24 hours). ``filter_seen`` as lists are served.

    ``events`` are refitted on: give only the events a training run may learn from
    (:func:`profile_under_pack` does); ``left_out`` (events left out per reason) is recorded
    in the profile as ``left_out``.
    """
    from recommender.als import ALSRecommender
    from recommender.feedback import to_implicit

    deciles, shares = popularity_deciles(events)
    rng = np.random.default_rng(random_state)
    users = np.asarray(model.train_.user_ids)
    sample = users if len(users) <= _SCORE_SAMPLE else rng.choice(users, _SCORE_SAMPLE, replace=False)
    batch = model.recommend(sample, k=k, filter_seen=filter_seen)
    scores = np.asarray(batch.scores, dtype=np.float64).ravel()
    scores = scores[np.isfinite(scores)]
    times = pd.to_datetime(events["timestamp"], utc=True)
    cut = times.max() - pd.Timedelta(hours=horizon_hours) if len(events) else None
    early, late = (events[times < cut], events[times >= cut]) if cut is not None else (events, events.iloc[:0])
    hit_rate, n_users = float("nan"), 0
    if len(early) and len(late):
        # The staleness probe refits the plain recipe: the feedback events carry no user attributes to reweight by.
        recipe = {key: v for key, v in model.get_params().items() if key != "fairness_reweighting"}
        early_model = ALSRecommender(**recipe).fit(to_implicit(early, feedback))
        truth = late.groupby(late["user_id"].astype("string"), observed=True)["item_id"].agg(lambda s: set(s.astype(str)))
        known = [u for u in truth.index if u in set(early_model.train_.user_ids)]
        if known:
            listed = early_model.recommend(np.asarray(known, dtype=object), k=k, filter_seen=filter_seen)
            hits = [len(set(x for x in row if x is not None) & truth[u]) for u, row in zip(known, listed.item_ids, strict=True)]
            hit_rate, n_users = float(np.sum(hits) / (k * len(known))), len(known)
    return {
        "k": int(k),
        "n_events": int(len(events)),
        "deciles": deciles,
        "decile_share": shares,
        "offline_scores": np.round(scores, 6).tolist(),
        "offline_hit_rate": None if math.isnan(hit_rate) else round(hit_rate, 6),
        "offline_users": n_users,
        "horizon_hours": horizon_hours,
        "filter_seen": filter_seen,
        "left_out": {str(reason): int(n) for reason, n in (left_out or {}).items()},
    }


def profile_under_pack(
    model: Any, dataset: Any, loaded: Any, store: Any, *, feedback: Any, random_state: int = 0, filter_seen: bool = True
) -> dict[str, Any]:
    """:func:`build_profile` of ``model`` on the events of ``dataset`` that ``loaded`` (a pack) lets a model be refitted on.

    The profile's offline hit rate refits the model's recipe, and refitting is training: it
    sees only what :func:`governance.audit_inputs.evaluation_events` keeps (under a pack with
    consent rules, consent for personalization as it stands, objections, erasures; else every
    event but erased subjects'), so that a subject who refused personalization is not profiled
    by monitoring either. The profile records how many events were left out per reason.
    Raises :class:`governance.audit_inputs.NothingToEvaluate` when nothing is left.
    """
    from governance.audit_inputs import evaluation_events

    kept, left_out = evaluation_events(loaded, dataset, store)
    return build_profile(
        model, kept.events, k=loaded.pack.quality.k, feedback=feedback, random_state=random_state, filter_seen=filter_seen, left_out=left_out
    )


@dataclass(frozen=True)
class WindowInputs:
    """What a window's figures are computed from (the store's reads, and the catalogue)."""

    decisions: pd.DataFrame
    """:data:`audits.monitoring.DECISION_COLUMNS`."""
    outcomes: pd.DataFrame
    """:data:`audits.monitoring.OUTCOME_COLUMNS`."""
    failed: int
    unreadable: int
    items: pd.DataFrame | None
    """The item table (``provider_group``, ``flags``), or None: provider and harm figures are then not computed."""
    profiles: Mapping[str, Mapping[str, Any]]
    provider_attribute: str = "provider_group"
    protected_provider_group: str = "independent"


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _served(decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per served slot: decision, model, position, item, score."""
    if decisions.empty:
        return pd.DataFrame(columns=["decision_id", "model_version", "position", "item_id", "score"])
    lengths = decisions["items"].map(len).to_numpy()
    items = [i for row in decisions["items"] for i in row]
    scores = [s for row in decisions["scores"] for s in row]
    return pd.DataFrame(
        {
            "decision_id": np.repeat(decisions["decision_id"].to_numpy(), lengths),
            "model_version": np.repeat(decisions["model_version"].fillna("").to_numpy(), lengths),
            "position": np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64),
            "item_id": np.asarray(items, dtype=object),
            "score": pd.to_numeric(pd.Series(scores, dtype=object), errors="coerce").to_numpy(dtype=np.float64),
        }
    )


def _rate(slots: pd.DataFrame, outcomes: pd.DataFrame, kind: str) -> tuple[float, int]:
    """Share of ``slots`` with an attributed ``kind`` event at that decision and position; and the count."""
    if slots.empty:
        return float("nan"), 0
    if outcomes.empty:
        return 0.0, 0
    hit = outcomes.loc[(outcomes["kind"] == kind) & outcomes["decision_id"].notna(), ["decision_id", "position"]]
    keys = pd.MultiIndex.from_arrays([hit["decision_id"].astype(str), hit["position"].astype(np.int64)])
    wanted = pd.MultiIndex.from_arrays([slots["decision_id"].astype(str), slots["position"].astype(np.int64)])
    n = int(wanted.isin(keys).sum())
    return n / len(slots), n


LATENCY_PERCENTILES = {"latency_p50_ms": 50.0, "latency_p95_ms": 95.0, "latency_p99_ms": 99.0}
"""The latency figures and the percentile each is."""


def latency_figures(latency_ms: Any) -> dict[str, Any]:
    """Percentiles of the lists' serving latencies (ms; NaN or missing: the list gave none and is not counted).

    ``latency_lists`` is how many lists were counted; each percentile is None when none was.
    """
    values = pd.to_numeric(pd.Series(latency_ms, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    values = values[np.isfinite(values) & (values >= 0)]
    out: dict[str, Any] = {"latency_lists": int(len(values))}
    if not len(values):
        return out | dict.fromkeys(LATENCY_PERCENTILES)
    points = np.percentile(values, list(LATENCY_PERCENTILES.values()))
    return out | {name: _round(float(p)) for name, p in zip(LATENCY_PERCENTILES, points, strict=True)}


def _model_figures(
    slots: pd.DataFrame, n_lists: int, inputs: WindowInputs, profile: Mapping[str, Any] | None, latency_ms: Any = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {"lists": n_lists, "served": int(len(slots))}
    out.update(latency_figures(latency_ms))
    click_rate, clicks = _rate(slots, inputs.outcomes, "click")
    conversion_rate, conversions = _rate(slots, inputs.outcomes, "conversion")
    out.update(click_rate=_round(click_rate), clicks=clicks, conversion_rate=_round(conversion_rate), conversions=conversions)
    exposure = slots["item_id"].value_counts()
    catalogue = inputs.items.index.astype(str) if inputs.items is not None else None
    if catalogue is not None and len(catalogue):
        counts = exposure.reindex(catalogue, fill_value=0).to_numpy(dtype=np.float64)
        out["coverage"] = _round(float((counts > 0).mean()))
        out["exposure_gini"] = _round(gini(counts))
    else:
        out["coverage"], out["exposure_gini"] = None, _round(gini(exposure.to_numpy()))
    if profile is not None and len(slots):
        decile = slots["item_id"].map(profile.get("deciles", {})).fillna(0).to_numpy(dtype=np.float64)
        out["long_tail_share"] = _round(float((decile < TAIL_BELOW).mean()))
        out["served_popularity"] = _round(float(decile.mean() / (N_DECILES - 1)))
        reference = np.asarray(profile.get("offline_scores") or [], dtype=np.float64)
        served = slots["score"].to_numpy(dtype=np.float64)
        served = served[np.isfinite(served)]
        out["scores"] = int(len(served))
        if len(reference) and len(served):
            out["prediction_skew_ks"] = _round(float(ks_2samp(reference, served).statistic))
            out["prediction_skew_psi"] = _round(population_stability_index(reference, served))
        engaged = inputs.outcomes[inputs.outcomes["kind"].isin(_ENGAGED)] if len(inputs.outcomes) else inputs.outcomes
        out["feedback_events"] = int(len(engaged))
        if len(engaged):
            current = np.bincount(engaged["item_id"].map(profile.get("deciles", {})).fillna(0).astype(np.int64), minlength=N_DECILES)
            out["input_drift_psi"] = _round(categorical_psi(np.asarray(profile["decile_share"]), current))
        out["offline_hit_rate"] = profile.get("offline_hit_rate")
    if inputs.items is not None and len(slots):
        table = inputs.items
        on_list = table.reindex(slots["item_id"].astype(str))
        if inputs.provider_attribute in table.columns:
            out["provider_gap"] = _provider_gap(table[inputs.provider_attribute], on_list[inputs.provider_attribute], inputs.protected_provider_group)
        if "flags" in table.columns:
            flags = on_list["flags"].astype("string").fillna("")
            flagged = {value: is_harm_flagged(value) for value in flags.unique()}  # few distinct values, many slots
            out["harmful_share"] = _round(float(flags.map(flagged).astype(bool).mean()))
    return out


def _provider_gap(catalogue: pd.Series, served: pd.Series, protected: str) -> float | None:
    """The protected group's share of the catalogue minus its share of the served slots, both among items whose
    provider group is known (labels read as the fairness audit reads them: ``"indie "`` is ``indie``); None when
    no item, or no served slot, has a known group. The same base on both sides: an unlabelled item counted in one
    share and not in the other would make a gap of its own."""
    name = read_label(protected)
    catalogue, served = read_labels(catalogue.to_numpy(dtype=object)).dropna(), read_labels(served.to_numpy(dtype=object)).dropna()
    if catalogue.empty or served.empty:
        return None
    return _round(float((catalogue == name).mean()) - float((served == name).mean()))


def window_figures(inputs: WindowInputs) -> dict[str, Any]:
    """The figures of one window: ``{"overall": {...}, "models": {version: {...}}}`` (see the module's docstring)."""
    decisions = inputs.decisions
    served = decisions[~decisions["shadow"].astype(bool)] if len(decisions) else decisions
    n_lists = int(len(served))
    overall: dict[str, Any] = {
        "lists": n_lists,
        "shadow_lists": int(len(decisions) - n_lists),
        "unreadable": inputs.unreadable,
        "failed": inputs.failed,
        "non_profiling_share": _round(float((served["mode"] == "non_profiling").mean())) if n_lists else None,
        "failure_rate": _round(inputs.failed / (n_lists + inputs.unreadable + inputs.failed)) if (n_lists + inputs.unreadable + inputs.failed) else None,
        "feedback_events": int(len(inputs.outcomes)),
    }
    models: dict[str, Any] = {}
    slots = _served(served)
    for version, group in served.groupby(served["model_version"].fillna(""), sort=True) if n_lists else ():
        if not version:
            continue
        mine = slots[slots["model_version"] == version]
        latency = group["latency_ms"] if "latency_ms" in group.columns else ()
        models[str(version)] = _model_figures(mine, int(len(group)), inputs, inputs.profiles.get(str(version)), latency)
    return {"overall": overall, "models": models}
