"""An experiment plan: YAML -> a validated, hashed :class:`ExperimentSpec`.

An experiment is its own YAML document (``kind: Experiment``) that names the
model versions and packs its variants serve; the packs stay what they are (a
pack is the installation's law, an experiment a time-boxed question asked under
it). Loading reports every problem at once, each with file, line, column and the
path inside the document (:mod:`governance.located`), and returns nothing for a
document with any error.

The plan's identity is its content hash: SHA-256 over the canonical JSON of the
normalized plan, domain separated. ``recgov experiment plan`` freezes that hash
(with the sample size the design asks for) before any subject is exposed; a plan
whose hash differs is another plan.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from governance.located import TOO_LARGE, YAML_LIMITS, PackIssue, PolicyError, load_yaml, validate_located
from governance.policy import _Strict

__all__ = [
    "ARM_LEVEL_METRICS",
    "CONSUMER_ATTRIBUTES",
    "GUARDRAIL_METRICS",
    "INDISTINCT_ARMS",
    "PRIMARY_METRICS",
    "QUALITY_METRICS",
    "METRICS",
    "ExperimentSpec",
    "LoadedExperiment",
    "experiment_hash",
    "load_experiment",
    "parse_experiment",
]

NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$"

PRIMARY_METRICS: dict[str, str] = {
    "click_through": "share of randomised subjects with at least one click after their first exposure (a proportion)",
    "conversion": "share of randomised subjects with at least one conversion after their first exposure (a proportion)",
    "clicks_per_subject": "clicks per randomised subject after their first exposure (a mean)",
}
"""Outcome metrics per subject, from the feedback joined to the experiment's lists (higher is better)."""

GUARDRAIL_METRICS: dict[str, str] = {
    "non_profiling_share": "per subject, the share of their lists that were not personalized (consent withdrawn, erased, ...)",
    "fallback_share": "per subject, the share of their lists that fell back to popularity (the model does not know them)",
    "empty_list_share": "per subject, the share of their lists that came out empty",
    "click_through": PRIMARY_METRICS["click_through"],
    "conversion": PRIMARY_METRICS["conversion"],
    "latency_ms": "per subject, the mean serving latency of their lists in milliseconds (the decision record's latency_ms)",
    "error_rate": "per request, the share of the arm's requests that failed (failed requests carry their assignment and mode; on a segment, the segment's requests)",
    "harmful_exposure": "the arm's share of served items with an active harmful-content flag, or one switched off since the start (subjects as clusters, delta method)",
    "provider_exposure_gap": "the arm's total-variation gap between provider groups' exposure shares and their catalogue shares (subject bootstrap)",
    "consumer_quality_gap": "the arm's largest difference of a per-subject quality metric ('quality') between consumer groups ('attribute') "
    "of at least min_group_size subjects in each arm (subject bootstrap)",
}
"""Metrics a guardrail may hold: per subject or per request from the decision records, the failed requests and the
feedback, or (``ARM_LEVEL_METRICS``) one figure of the arm's whole traffic with its uncertainty over subjects."""

GUARDRAIL_DIRECTION: dict[str, Literal["higher_is_better", "lower_is_better"]] = {
    "non_profiling_share": "lower_is_better",
    "fallback_share": "lower_is_better",
    "empty_list_share": "lower_is_better",
    "click_through": "higher_is_better",
    "conversion": "higher_is_better",
    "latency_ms": "lower_is_better",
    "error_rate": "lower_is_better",
    "harmful_exposure": "lower_is_better",
    "provider_exposure_gap": "lower_is_better",
    "consumer_quality_gap": "lower_is_better",
}
"""The way each guardrail metric gets better. A guardrail written the other way round would judge an improvement as
the harm and let the real harm through (more harmful exposure, slower lists), so a plan must state this direction."""

BOUNDED_METRICS: frozenset[str] = frozenset(GUARDRAIL_METRICS) - {"latency_ms", "clicks_per_subject"}
"""Guardrail metrics that are shares or rates in [0, 1]: a margin of 1 or more can never be exceeded
(``consumer_quality_gap`` only when its quality metric is a proportion)."""

ARM_LEVEL_METRICS: tuple[str, ...] = ("harmful_exposure", "provider_exposure_gap", "consumer_quality_gap")
"""Guardrails that are a property of an arm's served lists, not a number per subject (:mod:`recommender.experiments.arm_level`)."""

QUALITY_METRICS: tuple[str, ...] = tuple(PRIMARY_METRICS)
"""The per-subject quality metrics a ``consumer_quality_gap`` compares between consumer groups (the outcome metrics)."""

CONSUMER_ATTRIBUTES: dict[str, str] = {
    "region": "the region the request named, recorded with each list (a subject's group is their first list's: set before any treatment)",
}
"""What may group consumers in a ``consumer_quality_gap``: attributes every list's decision record carries, so the
analysis reads no other data about a subject and never groups by an identifier."""
DEFAULT_MIN_GROUP_SIZE = 30

METRICS: dict[str, str] = {**PRIMARY_METRICS, **GUARDRAIL_METRICS}

INDISTINCT_ARMS = (
    "variant {variant!r} serves what variant {other!r} serves ({model} under {pack}): the two arms cannot be told "
    "apart, so any difference a look finds between them is noise; give each arm its own model_version or pack"
)

METRIC_KIND: dict[str, Literal["proportion", "mean"]] = {
    "click_through": "proportion",
    "conversion": "proportion",
    "clicks_per_subject": "mean",
    "non_profiling_share": "mean",
    "fallback_share": "mean",
    "empty_list_share": "mean",
    "latency_ms": "mean",
    "error_rate": "proportion",
}
"""How each metric is analysed: a per-subject 0/1 outcome, or a per-subject number."""


class Metadata(_Strict):
    """Who owns the experiment."""

    name: str = Field(pattern=NAME)
    """Stable name (lower case, digits, ``_ -``): unique in the store."""
    owner: str = Field(min_length=1, max_length=200)
    description: str = ""


class Variant(_Strict):
    """One arm: the model version and/or pack it serves."""

    name: str = Field(pattern=NAME)
    control: bool = False
    """Exactly one variant is the control."""
    model_version: str | None = Field(None, pattern=IDENT)
    """A recorded model version; absent: the version in production serves this arm."""
    pack: str | None = Field(None, pattern=IDENT)
    """A shipped pack name or a stored ``NAME@VERSION``; absent: the pack the request names."""
    weaker_pack_acknowledged: str | None = Field(None, min_length=10, max_length=2000)
    """Why this variant may serve under a pack that protects subjects less than the production pack (or the
    control's): without it such a plan is refused (:mod:`governance.experiments.packs`); with it the plan is frozen
    with this text, and the ``experiment.planned`` trail event names what the pack drops."""


class Guardrail(_Strict):
    """A metric the treatment must not make worse than the control by more than ``margin`` (non-inferiority)."""

    metric: str
    """One of the guardrail metrics (see :data:`GUARDRAIL_METRICS`)."""
    margin: float = Field(gt=0, allow_inf_nan=False)
    """The largest harm tolerated, in the metric's own unit (absolute difference)."""
    direction: Literal["higher_is_better", "lower_is_better"]
    """Which way the metric gets better (the harm is a move the other way)."""
    items: str | None = Field(None, min_length=1, max_length=1000)
    """``provider_exposure_gap`` only: the item table (CSV or Parquet, an ``item_id`` column) naming each item's
    provider group; its item shares are the target the arm's exposure shares are held to."""
    attribute: str = Field("provider_group", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    """``provider_exposure_gap``: the item table's provider column. ``consumer_quality_gap``: what groups the
    consumers, one of :data:`CONSUMER_ATTRIBUTES` (``region``)."""
    quality: Literal["click_through", "conversion", "clicks_per_subject"] | None = None
    """``consumer_quality_gap`` only (and required there): the per-subject quality metric whose gap between the
    consumer groups is held (its mean per group; the gap is the largest difference between two groups' means)."""
    min_group_size: int = Field(DEFAULT_MIN_GROUP_SIZE, ge=2, le=10_000_000)
    """``consumer_quality_gap`` only: a group with fewer analysed subjects in either arm is left out of both arms'
    gaps (reported with its size, never judged): a small group's mean is mostly noise."""


class Design(_Strict):
    """The statistical design: what the sample size is computed from and how the data are looked at."""

    baseline: float = Field(gt=0, allow_inf_nan=False)
    """The primary metric's expected value under the control (a rate in (0, 1) for a proportion)."""
    mde: float = Field(gt=0, allow_inf_nan=False)
    """The minimum detectable effect, absolute (treatment minus control)."""
    sd: float | None = Field(None, gt=0, allow_inf_nan=False)
    """The per-subject standard deviation of a mean metric (required for ``clicks_per_subject``)."""
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, ge=0.5, lt=1)
    alternative: Literal["larger", "two-sided"] = "larger"
    """``larger``: the treatment is expected to raise the primary metric (one-sided)."""
    method: Literal["fixed", "group_sequential", "msprt"] = "fixed"
    looks: int = Field(1, ge=1, le=20)
    """How many planned looks at the primary metric (``fixed``: 1)."""
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"
    """The alpha-spending function of a group-sequential design."""
    correction: Literal["holm", "bonferroni", "fdr_bh", "none"] = "holm"
    """How the family of comparisons (each treatment against the control) is corrected."""
    futility_power: float | None = Field(None, gt=0, lt=1)
    """Group sequential only: a planned interim look whose conditional power under the ``mde`` falls below this
    says "stop for futility" (non-binding: the type I error is unchanged). None: no futility boundary."""


class ExperimentSpec(_Strict):
    """A recgov experiment (``apiVersion: recgov/v1``, ``kind: Experiment``)."""

    apiVersion: Literal["recgov/v1"]  # noqa: N815  (the YAML key)
    kind: Literal["Experiment"]
    metadata: Metadata
    hypothesis: str = Field(min_length=10, max_length=2000)
    """What the treatment is expected to do, written before the data are seen."""
    unit: Literal["subject"] = "subject"
    """The randomisation unit: the pseudonymous subject (the only unit: lists of one person stay in one arm)."""
    variants: list[Variant] = Field(min_length=2, max_length=6)
    allocation: dict[str, float]
    """Variant name -> share of the randomised subjects; the shares add up to 1."""
    holdback: float = Field(0.0, ge=0, le=0.5)
    """A long-term holdback: this share of subjects stays on the control and out of the analysis."""
    holdback_days: int = Field(0, ge=0, le=730)
    """How long after the stop the holdback stays held back (the same subjects, on the control); 0: it ends with the stop."""
    primary_metric: str
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=10)
    design: Design


class LoadedExperiment:
    """A validated experiment with its provenance and content hash."""

    def __init__(self, spec: ExperimentSpec, source: str, positions: dict[str, tuple[int, int]]) -> None:
        self.spec = spec
        self.source = source
        self.positions = positions
        self.content_hash = experiment_hash(spec)

    @property
    def name(self) -> str:
        return self.spec.metadata.name

    def control(self) -> Variant:
        return next(v for v in self.spec.variants if v.control)


_OPTIONAL_DEFAULTS: dict[str, Any] = {"holdback_days": 0}
_OPTIONAL_DESIGN: dict[str, Any] = {"futility_power": None}
_OPTIONAL_VARIANT: dict[str, Any] = {"weaker_pack_acknowledged": None}
_OPTIONAL_GUARDRAIL: dict[str, Any] = {"items": None, "attribute": "provider_group", "quality": None, "min_group_size": DEFAULT_MIN_GROUP_SIZE}


def canonical_plan(spec: ExperimentSpec) -> dict[str, Any]:
    """The normalized plan as hashed: optional fields left at their default are left out, so a plan that does not
    use them hashes as it did before they existed (a frozen plan stays the same plan)."""
    document = spec.model_dump(mode="json")
    for key, default in _OPTIONAL_DEFAULTS.items():
        if document.get(key) == default:
            document.pop(key, None)
    for key, default in _OPTIONAL_DESIGN.items():
        if document["design"].get(key) == default:
            document["design"].pop(key, None)
    for variant in document["variants"]:
        for key, default in _OPTIONAL_VARIANT.items():
            if variant.get(key) == default:
                variant.pop(key, None)
    for guardrail in document["guardrails"]:
        for key, default in _OPTIONAL_GUARDRAIL.items():
            if guardrail.get(key) == default:
                guardrail.pop(key, None)
    return document


def experiment_hash(spec: ExperimentSpec) -> str:
    """SHA-256 over the canonical JSON of the normalized plan (:func:`canonical_plan`, domain separated)."""
    document = json.dumps(canonical_plan(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"recgov.experiment.v1\x00" + document.encode("utf-8")).hexdigest()


def _issue(source: str, positions: dict[str, tuple[int, int]], path: str, message: str) -> PackIssue:
    line, column = positions.get(path, (None, None))
    return PackIssue(source, line, column, path, message)


def _cross_checks(spec: ExperimentSpec, positions: dict[str, tuple[int, int]], source: str) -> list[PackIssue]:
    """What one field cannot say alone: one control, allocation naming the variants, known metrics, a sound design."""
    issues: list[PackIssue] = []
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        issues.append(_issue(source, positions, "variants", f"variant names must be unique; repeated: {', '.join(dup)}"))
    controls = [i for i, v in enumerate(spec.variants) if v.control]
    if len(controls) != 1:
        where = f"variants.{controls[1]}" if len(controls) > 1 else "variants"
        issues.append(_issue(source, positions, where, f"exactly one variant must say 'control: true'; {len(controls)} do"))
    for i, v in enumerate(spec.variants):
        if v.weaker_pack_acknowledged is not None and v.pack is None:
            issues.append(_issue(source, positions, f"variants.{i}.weaker_pack_acknowledged",
                                 f"variant {v.name!r} names no pack of its own: there is no weaker pack to acknowledge"))  # fmt: skip
        if v.model_version is None and v.pack is None and not v.control:
            issues.append(_issue(source, positions, f"variants.{i}", f"variant {v.name!r} names neither a model_version nor a pack: it would serve what the control serves"))
    issues += _indistinct_arms(spec, positions, source)
    if set(spec.allocation) != set(names):
        missing, extra = sorted(set(names) - set(spec.allocation)), sorted(set(spec.allocation) - set(names))
        what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "", f"no such variant: {', '.join(extra)}" if extra else "") if x)
        issues.append(_issue(source, positions, "allocation", f"allocation must give a share to every variant and only to them ({what})"))
    for name, share in spec.allocation.items():
        if not 0 < share < 1:
            issues.append(_issue(source, positions, f"allocation.{name}", f"a share is in (0, 1), got {share}"))
    if abs(sum(spec.allocation.values()) - 1.0) > 1e-9:
        issues.append(_issue(source, positions, "allocation", f"the shares add up to {sum(spec.allocation.values()):.6g}, not 1"))
    if spec.primary_metric not in PRIMARY_METRICS:
        issues.append(_issue(source, positions, "primary_metric", f"unknown primary metric {spec.primary_metric!r}; one of {', '.join(PRIMARY_METRICS)}"))
    for i, g in enumerate(spec.guardrails):
        if g.metric not in GUARDRAIL_METRICS:
            issues.append(_issue(source, positions, f"guardrails.{i}.metric", f"unknown guardrail metric {g.metric!r}; one of {', '.join(GUARDRAIL_METRICS)}"))
        if g.metric in GUARDRAIL_DIRECTION and g.direction != GUARDRAIL_DIRECTION[g.metric]:
            better = GUARDRAIL_DIRECTION[g.metric]
            issues.append(_issue(source, positions, f"guardrails.{i}.direction", (
                f"{g.metric} is better {better.split('_')[0]} (direction: {better}); {g.direction} would take an improvement "
                f"for the harm and let the treatment make {g.metric} worse without failing")))  # fmt: skip
        if g.metric == "provider_exposure_gap" and g.items is None:
            issues.append(_issue(source, positions, f"guardrails.{i}", "provider_exposure_gap needs 'items': the item table naming each item's provider group"))
        bounded = g.metric in BOUNDED_METRICS and not (g.metric == "consumer_quality_gap" and g.quality == "clicks_per_subject")
        if bounded and g.margin >= 1:
            issues.append(_issue(source, positions, f"guardrails.{i}.margin",
                                 f"{g.metric} lies in [0, 1]: a margin of {g.margin:g} tolerates any harm, so the guardrail could never fail"))  # fmt: skip
        if g.metric != "provider_exposure_gap" and g.items is not None:
            issues.append(_issue(source, positions, f"guardrails.{i}.items", f"'items' applies to provider_exposure_gap only, not {g.metric!r}"))
        if g.metric not in ("provider_exposure_gap", "consumer_quality_gap") and g.attribute != "provider_group":
            issues.append(_issue(source, positions, f"guardrails.{i}.attribute",
                                 f"'attribute' applies to provider_exposure_gap and consumer_quality_gap only, not {g.metric!r}"))  # fmt: skip
        if g.metric != "consumer_quality_gap" and (g.quality is not None or g.min_group_size != DEFAULT_MIN_GROUP_SIZE):
            field = "quality" if g.quality is not None else "min_group_size"
            issues.append(_issue(source, positions, f"guardrails.{i}.{field}", f"'{field}' applies to consumer_quality_gap only, not {g.metric!r}"))
        if g.metric == "consumer_quality_gap":
            issues += _consumer_gap_issues(i, g, positions, source)
    if spec.holdback_days and not spec.holdback:
        issues.append(_issue(source, positions, "holdback_days", f"holdback_days: {spec.holdback_days} keeps a holdback after the stop, but the plan holds none back (holdback: 0)"))
    d = spec.design
    kind = METRIC_KIND.get(spec.primary_metric)
    if kind == "proportion" and not (d.baseline < 1 and d.baseline + d.mde < 1):
        issues.append(_issue(source, positions, "design.baseline", f"a proportion's baseline and baseline + mde lie in (0, 1); got {d.baseline} and {d.baseline + d.mde}"))
    if kind == "mean" and d.sd is None:
        issues.append(_issue(source, positions, "design", f"{spec.primary_metric} is a mean: design.sd (its per-subject standard deviation) is needed for the sample size"))
    if d.method == "fixed" and d.looks != 1:
        issues.append(_issue(source, positions, "design.looks", f"a fixed design looks once; got looks: {d.looks} (use method group_sequential or msprt to look more often)"))
    if d.futility_power is not None and d.method != "group_sequential":
        issues.append(_issue(source, positions, "design.futility_power", f"a futility boundary joins the interim looks of a group_sequential design; method {d.method} has none"))
    if d.method == "group_sequential" and d.looks < 2:
        issues.append(_issue(source, positions, "design.looks", "a group-sequential design has at least 2 looks"))
    return issues


def _indistinct_arms(spec: ExperimentSpec, positions: dict[str, tuple[int, int]], source: str) -> list[PackIssue]:
    """An arm that serves exactly what an earlier arm serves (the same model version and the same pack, both as
    written): the two cannot be told apart, so any difference the looks find is noise taken for an effect."""
    issues, seen = [], {}
    for i, v in enumerate(spec.variants):
        served = (v.model_version, v.pack)
        if served == (None, None) and not v.control:
            continue  # refused already: it names neither a model_version nor a pack
        earlier = seen.setdefault(served, i)
        if earlier != i:
            where = f"variants.{i}.model_version" if v.model_version is not None else f"variants.{i}.pack" if v.pack is not None else f"variants.{i}"
            issues.append(_issue(source, positions, where if where in positions else f"variants.{i}", INDISTINCT_ARMS.format(
                variant=v.name, other=spec.variants[earlier].name, model=v.model_version or "the production model", pack=v.pack or "the request's pack")))  # fmt: skip
    return issues


def _consumer_gap_issues(i: int, g: Guardrail, positions: dict[str, tuple[int, int]], source: str) -> list[PackIssue]:
    """A consumer_quality_gap names its quality metric and groups consumers by an attribute every list records."""
    issues = []
    if g.quality is None:
        issues.append(_issue(source, positions, f"guardrails.{i}",
                             f"consumer_quality_gap needs 'quality': the per-subject metric whose gap between consumer groups is held ({', '.join(QUALITY_METRICS)})"))  # fmt: skip
    if g.attribute not in CONSUMER_ATTRIBUTES:
        where = f"guardrails.{i}.attribute" if f"guardrails.{i}.attribute" in positions else f"guardrails.{i}"
        issues.append(_issue(source, positions, where,
                             f"consumer_quality_gap groups subjects by an attribute every list's record carries ({', '.join(CONSUMER_ATTRIBUTES)}); "
                             f"got attribute {g.attribute!r}"))  # fmt: skip
    return issues


def parse_experiment(text: str, source: str = "<string>") -> LoadedExperiment:
    """Validate experiment ``text``; raise :class:`~governance.located.PolicyError` listing every problem."""
    data, positions = load_yaml(text, source, "a YAML experiment starting with 'apiVersion: recgov/v1' and 'kind: Experiment'")
    spec = validate_located(ExperimentSpec, data, positions, source)
    issues = _cross_checks(spec, positions, source)
    if issues:
        raise PolicyError(issues)
    return LoadedExperiment(spec, source, positions)


def load_experiment(path: str | Path) -> LoadedExperiment:
    """Read and validate the experiment at ``path`` (see :func:`parse_experiment`)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(YAML_LIMITS.max_bytes + 1)
    except FileNotFoundError:
        raise PolicyError([PackIssue(str(path), None, None, "", "no such file; expected a YAML experiment")]) from None
    except OSError as err:
        raise PolicyError([PackIssue(str(path), None, None, "", f"cannot be read ({err.strerror})")]) from err
    if len(raw) > YAML_LIMITS.max_bytes:
        raise PolicyError([PackIssue(str(path), None, None, "", TOO_LARGE.format(size=f"more than {YAML_LIMITS.max_bytes}", limit=YAML_LIMITS.max_bytes))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PolicyError([PackIssue(str(path), raw.count(b"\n", 0, err.start) + 1, None, "", "not UTF-8 text; an experiment is UTF-8 YAML")]) from err
    return parse_experiment(text, str(path))
