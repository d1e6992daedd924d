"""In-training fairness against post-processing, side by side on the same split.

:func:`training_tradeoff` takes an :class:`~recommender.pipeline.EvaluationRun`
(plain ALS already fitted and evaluated on its training part), fits the same
ALS recipe with ``fairness_reweighting`` (:mod:`recommender.fair_training`) on
the same training matrix, and measures four lists on the same test users:

* ``als``: plain ALS;
* ``als+rerank``: plain ALS re-ranked by the pack's post-processing steps
  (:func:`governance.tradeoff.rerank_evaluation`, exactly as the audit does);
* ``als+fair``: the fairness-reweighted ALS;
* ``als+fair+rerank``: the reweighted ALS, re-ranked.

For each: NDCG@k, the consumer gap (``max - min`` of per-group mean NDCG over
the pack's first audit attribute, or the one given), the provider exposure gap
(``max_g |exposure_ratio(g) - 1|``, :func:`governance.tradeoff.exposure_gap`),
and the seconds spent fitting (and re-ranking). Every figure comes from the
same code the audit uses (``evaluate_model``, ``fairness_facts``).
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from recommender.als import ALSRecommender
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.evaluate import evaluate_model
from recommender.fair_training import FairReweighting, check_attribute_allowed, fairness_groups_for, parse_fair_reweighting

__all__ = ["FAIR_SUFFIX", "training_tradeoff"]

FAIR_SUFFIX = "+fair"
"""The label of the reweighted model is the plain model's label plus this (``als+fair``)."""


def _fit_timed(params: dict[str, Any], train: Any, groups: np.ndarray | None) -> tuple[ALSRecommender, float]:
    started = time.perf_counter()
    model = ALSRecommender(**params).fit(train, fairness_groups=groups)
    return model, time.perf_counter() - started


def _figures(dataset: Dataset, evaluation: Any, pack: Any, train: Any, test: Any, attribute: str, metric: str,
             attention: str, n_boot: int, seconds: float, random_state: int) -> dict[str, Any]:  # fmt: skip
    from governance.collect_fairness import fairness_facts
    from governance.tradeoff import exposure_gap

    facts = fairness_facts(dataset, evaluation, pack, train=train, test=test, n_boot=n_boot, random_state=random_state)
    consumer = facts.consumer.get(attribute, {}).get(metric)
    groups = {g: f.value for g, f in consumer.groups.items()} if consumer is not None else {}
    return {
        metric: evaluation.metrics.get(metric),
        "consumer_gap": None if consumer is None else consumer.difference,
        "consumer_groups": groups,
        "exposure_gap": exposure_gap(facts, attention),
        "seconds": seconds,
    }


def training_tradeoff(
    run: Any,
    dataset: Dataset,
    pack: Any,
    reweighting: FairReweighting | dict[str, Any] | str | None = None,
    *,
    attribute: str | None = None,
    metric: str = "ndcg",
    attention: str = "log",
    n_boot: int = 200,
    random_state: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Plain ALS, ALS + the pack's re-ranking, reweighted ALS and reweighted + re-ranking, side by side (JSON-ready).

    ``run`` must hold an ``als`` model and the split's matrices (as
    :func:`recommender.pipeline.run_evaluation` returns). Its recipe is fitted
    on the same training matrix twice, plain and reweighted (``reweighting``,
    or the run's own when its ``als`` is a reweighted recipe, as in the audit
    of a reweighted model, or the pack's ``training.fairness``), so both training times are measured alike; the
    refit matching the run's model must reproduce it bit for bit. With a pack that
    does not re-rank, the two ``+rerank`` rows are left out.

    Returns ``{"k", "n_users", "attribute", "metric", "reweighting",
    "fairness_weights", "rows": {label: figures}, "vs_plain": {label:
    {"metric_lost", "consumer_gap_closed", "exposure_gap_closed"}}}``
    where a ``*_closed`` figure is ``1 - gap / plain gap`` and ``metric_lost``
    is ``1 - metric / plain metric``.
    """
    from governance.tradeoff import rerank_evaluation, reranking_enabled
    from recommender.pipeline import item_categories_for, user_segments

    base = run.models.get("als") if getattr(run, "models", None) else None
    # An audited recipe that is itself reweighted is compared with its plain counterpart.
    inner = getattr(pack, "pack", pack)
    # ... else the pack's own in-training fairness (training.fairness), as every governed run under it trains.
    config = (
        parse_fair_reweighting(reweighting)
        or parse_fair_reweighting(getattr(base, "fairness_reweighting", None))
        or (inner.training_reweighting() if hasattr(inner, "training_reweighting") else None)
    )
    if config is None:
        raise ConfigError(
            "training_tradeoff: give a fairness_reweighting (attribute, side, strength), or a pack with training.fairness"
        )
    from governance.training import with_pack_minimum

    if config != parse_fair_reweighting(getattr(base, "fairness_reweighting", None)):
        # the groups a governed run leaves at 1 are left at 1 here too (an audited reweighted model is refitted as it was)
        config = with_pack_minimum(config, inner)
    check_attribute_allowed(config, inner)
    attribute = attribute or (inner.fairness.audit_attributes[0] if inner.fairness.audit_attributes else None)
    if attribute is None:
        raise ConfigError("training_tradeoff: the pack declares no fairness.audit_attributes; name the attribute")
    mats = run.matrices
    if mats is None or "als" not in run.models:
        raise ConfigError("training_tradeoff: the run must hold the plain 'als' model and its train/test matrices")
    train, test = mats.train, mats.test
    k = run.comparison.k
    params = {key: v for key, v in base.get_params().items() if key != "fairness_reweighting"}
    plain, plain_seconds = _fit_timed(params, train, None)
    groups = fairness_groups_for(dataset, train, config)
    fair, fair_seconds = _fit_timed({**params, "fairness_reweighting": config.model_dump()}, train, groups)
    same = fair if getattr(base, "fairness_reweighting", None) is not None else plain
    if not np.array_equal(same.user_factors_, base.user_factors_):
        raise ConfigError("training_tradeoff: refitting the run's model did not reproduce it; the comparison would not be fair")
    segments, categories = user_segments(dataset, train), item_categories_for(dataset, train)
    label = f"als{FAIR_SUFFIX}"
    evaluations = {
        name: evaluate_model(model, train, test, k, segments=segments, item_categories=categories, label=name)
        for name, model in (("als", plain), (label, fair))
    }
    fair_eval = evaluations[label]
    shim = SimpleNamespace(
        models={"als": plain, label: fair},
        comparison=SimpleNamespace(evaluations=evaluations, k=k),
        matrices=mats,
    )
    seconds = {"als": plain_seconds, label: fair_seconds}
    if reranking_enabled(inner):
        for model in ("als", label):
            started = time.perf_counter()
            reranked = rerank_evaluation(shim, dataset, inner, k, model=model, show_progress=show_progress)
            evaluations[reranked.model] = reranked
            seconds[reranked.model] = seconds[model] + (time.perf_counter() - started)
    rows = {
        name: _figures(dataset, ev, inner, train, test, attribute, metric, attention, n_boot, seconds[name], random_state)
        for name, ev in evaluations.items()
    }

    def closed(name: str, key: str) -> float | None:
        before, after = rows["als"][key], rows[name][key]
        return None if before in (None, 0) or after is None else 1.0 - after / before

    return {
        "k": int(k),
        "n_users": int(len(fair_eval.user_index)),
        "attribute": attribute,
        "metric": metric,
        "attention": attention,
        "reweighting": config.model_dump(),
        "fairness_weights": fair.fairness_weights_,
        "rows": rows,
        "vs_plain": {
            name: {
                f"{metric}_lost": closed(name, metric),
                "consumer_gap_closed": closed(name, "consumer_gap"),
                "exposure_gap_closed": closed(name, "exposure_gap"),
            }
            for name in rows
            if name != "als"
        },
    }
