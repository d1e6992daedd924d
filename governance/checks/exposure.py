"""Exposure checks over ranked lists: providers' share of attention, its concentration, popularity bias.

Each check reads :class:`~governance.facts.FairnessFacts` (computed by
:mod:`governance.collect_fairness`) and judges one figure against its bound,
by its point value or its interval (:mod:`governance.checks._judging`).

No evidence is no pass: a provider rule on items without providers is skipped,
and a provider group with fewer items than ``min_group_size`` is reported and
not judged.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.checks._judging import (
    NO_FAIRNESS,
    Attention,
    Judge,
    _ci_text,
    _f,
    _fairness,
    _judged_on,
    _required,
    _threshold,
    above,
    below,
)
from governance.facts import AuditFacts, ExposureFacts, FairnessFacts
from governance.registry import Check, CheckResult, register

__all__ = ["ExposureGini", "PopularityBias", "ProviderExposure"]

NO_ATTENTION = "the fairness facts hold exposure under {known} only, not {key!r}"
NO_PROVIDERS = "the fairness facts have no provider groups ({why})"
MISSING_PROVIDER = "missing"
"""The exposure group of items without a provider (``recommender.fairness.MISSING_GROUP``): reported, never
judged as a provider group."""
NOT_A_PROVIDER = (
    "group 'missing' holds the {n} items without a value of the provider attribute; it is not a provider group"
)
SMALL_PROVIDER = "provider group {group!r} has {n} items, under min_group_size {size}: reported, not judged"
NO_RATIO = "provider group {group!r} was neither shown nor has test positives: its exposure ratio is undefined"
UNBOUNDED = "shown without any test positive (ratio unbounded)"
NO_LARGE_PROVIDER = "no provider group has {size}+ items to judge ({groups})"


class _AttentionConfig(CheckConfig):
    attention: Attention = "log"
    """How attention falls with rank: ``log`` (1/log2(rank+1)), ``geometric`` (patience^(rank-1)) or ``uniform``."""
    patience: float = Field(0.8, gt=0, lt=1)
    """Probability of looking at the next item, for ``geometric`` attention."""
    min_group_size: int = Field(10, ge=1)
    """Provider groups with fewer items in the catalog are reported but not judged: the exposure of a
    handful of items is noise, not a provider's treatment."""

    def key(self) -> str:
        return f"geometric({self.patience:g})" if self.attention == "geometric" else self.attention


def _unjudged(figures: ExposureFacts, min_group_size: int) -> dict[str, str]:
    """Exposure groups reported but not judged, with why: the items without a provider, and groups too small."""
    out = {}
    for g, f in figures.groups.items():
        if g == MISSING_PROVIDER:
            out[g] = NOT_A_PROVIDER.format(n=f.n_items)
        elif f.n_items < min_group_size:
            out[g] = SMALL_PROVIDER.format(group=g, n=f.n_items, size=min_group_size)
    return out


def _none_judged(figures: ExposureFacts, min_group_size: int) -> str:
    groups = ", ".join(f"{g}: {f.n_items}" for g, f in figures.groups.items() if g != MISSING_PROVIDER)
    if not groups:
        missing = figures.groups[MISSING_PROVIDER].n_items if MISSING_PROVIDER in figures.groups else 0
        return NO_PROVIDERS.format(why=f"none of the {missing} items has a value of the provider attribute")
    return NO_LARGE_PROVIDER.format(size=min_group_size, groups=groups)


def _ratio(f: Any) -> float | None:
    """A group's exposure share / relevance share; ``inf`` for a group shown with no test positive at all (the
    facts store no infinity, so its ratio is null there), None when it was neither shown nor relevant."""
    if f.exposure_ratio is not None:
        return f.exposure_ratio
    if f.relevance_share == 0 and (f.exposure_share or 0) > 0:
        return math.inf
    return None


def _ratio_text(ratio: float | None) -> str:
    return "undefined" if ratio is None else (UNBOUNDED if ratio == math.inf else f"{ratio:.3f}")


def _exposure(fair: FairnessFacts, config: _AttentionConfig) -> tuple[ExposureFacts | None, str]:
    """The exposure figures under the rule's attention model, or None and why not."""
    figures = fair.exposure.get(config.key())
    if figures is None:
        return None, NO_ATTENTION.format(known=", ".join(fair.exposure) or "no model", key=config.key())
    return figures, ""


@register
class ProviderExposure(Check):
    """Provider groups are exposed in proportion to their relevance."""

    name: ClassVar[str] = "provider_exposure"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "Exposure share / relevance share of a provider group (or of every group) is at least `min_ratio` and at most "
        "`max_ratio` (disparate exposure, Singh & Joachims 2018), and its exposure share at most `max_share`."
    )

    class Config(_AttentionConfig):
        group: str | None = None
        """The provider group judged (a value of fairness.provider_attribute); default: every group."""
        min_ratio: float | None = Field(None, gt=0)
        """Smallest acceptable exposure share / relevance share (under-exposure)."""
        max_ratio: float | None = Field(None, gt=0)
        """Largest acceptable exposure share / relevance share (over-exposure)."""
        max_share: float | None = Field(None, ge=0, le=1)
        """Largest acceptable share of all attention."""
        judge: Judge = "point"
        """``point``: the point estimate must respect the bounds; ``ci``: fail only when the whole
        confidence interval lies beyond one."""

        @model_validator(mode="after")
        def _bounds(self) -> "ProviderExposure.Config":
            if self.min_ratio is None and self.max_ratio is None and self.max_share is None:
                raise ValueError("give at least one of min_ratio, max_ratio and max_share")
            if self.min_ratio is not None and self.max_ratio is not None and self.min_ratio > self.max_ratio:
                raise ValueError(f"min_ratio ({self.min_ratio}) is greater than max_ratio ({self.max_ratio})")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        figures, why = _exposure(fair, config)
        if figures is None:
            return skipped(why)
        if not figures.groups:
            return skipped(NO_PROVIDERS.format(why=fair.unavailable.get("provider", "no provider attribute")))
        if config.group is not None and config.group not in figures.groups:
            return skipped(
                f"provider group {config.group!r} is not in the fairness facts ({', '.join(figures.groups)})"
            )
        unjudged = _unjudged(figures, config.min_group_size)
        if config.group is not None and config.group in unjudged:
            return skipped(unjudged[config.group])
        ratios = {g: _ratio(f) for g, f in figures.groups.items()}
        for g, f in figures.groups.items():
            if g not in unjudged and ratios[g] is None and (config.max_share is None or f.exposure_share is None):
                unjudged[g] = NO_RATIO.format(group=g)
        judged = {
            g: f
            for g, f in figures.groups.items()
            if (config.group is None or g == config.group) and g not in unjudged
        }
        if config.group is not None and config.group in unjudged:
            return skipped(unjudged[config.group])
        if not judged and set(figures.groups) <= set(unjudged) and any(r is not None for r in ratios.values()):
            return skipped(_none_judged(figures, config.min_group_size))
        if not judged:
            return skipped("no provider group has test positives to measure its relevance share")
        failing = []
        for g, f in judged.items():
            ratio = ratios[g]
            # A group shown with no test positive at all is over-exposed without bound (its ratio is infinite):
            # no interval can bring it under a max_ratio, and it is never under a min_ratio.
            bad = ratio == math.inf and config.max_ratio is not None
            bad |= ratio is not None and ratio != math.inf and above(ratio, f.exposure_ratio_ci, config.max_ratio, config.judge)
            bad |= ratio is not None and ratio != math.inf and below(ratio, f.exposure_ratio_ci, config.min_ratio, config.judge)
            bad |= above(f.exposure_share, f.exposure_share_ci, config.max_share, config.judge)
            if bad:
                failing.append(g)
        by_ratio = config.min_ratio is not None or config.max_ratio is not None
        with_ratio = [g for g in judged if ratios[g] is not None]
        if config.max_ratio is not None and with_ratio:
            nearest = max(with_ratio, key=lambda g: ratios[g] or 0.0)
        elif config.min_ratio is not None and with_ratio:
            nearest = min(with_ratio, key=lambda g: ratios[g] or 0.0)
        else:
            nearest = max(judged, key=lambda g: judged[g].exposure_share or 0.0)
        shown = failing[0] if failing else nearest  # the first failing group, else the one nearest its bound
        f = judged[shown]
        required = _required(
            ("ratio >=", config.min_ratio), ("ratio <=", config.max_ratio), ("share <=", config.max_share)
        )
        unbounded = sorted(g for g in judged if ratios[g] == math.inf)
        return verdict(
            not failing,
            f"exposure share / relevance share under {config.key()} attention at k={fair.k}: {shown} {_ratio_text(ratios[shown])} "
            f"(exposure {_f(f.exposure_share)} vs relevance {_f(f.relevance_share)}, {fair.confidence:.0%} CI "
            f"{_ci_text(f.exposure_ratio_ci, 3)}); required {required}, judged on {_judged_on(config.judge, fair.confidence)}",
            value=(None if ratios[shown] == math.inf else ratios[shown]) if by_ratio else f.exposure_share,
            threshold=_threshold(required, config.min_ratio, config.max_ratio, config.max_share),
            evidence={
                "provider_attribute": fair.provider_attribute,
                "attention": config.key(),
                "relevance": fair.relevance,
                "k": fair.k,
                "judge": config.judge,
                "confidence": fair.confidence,
                "groups": {g: v.model_dump() for g, v in figures.groups.items()},
                "failing": failing,
                "shown_without_relevance": unbounded,
                "min_group_size": config.min_group_size,
                "not_judged": unjudged,
            },
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        out = []
        for name in ("min_ratio", "max_ratio"):
            if getattr(config, name) is not None:
                out.append((name, float(getattr(config, name)), 0.0, math.inf))
        if config.max_share is not None:
            out.append(("max_share", float(config.max_share), 0.0, 1.0))
        return out


@register
class ExposureGini(Check):
    """Exposure is not concentrated on few items."""

    name: ClassVar[str] = "exposure_gini"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "The Gini coefficient of position-weighted item exposure (over the catalog, or within a provider group) is at most `max`."
    )

    class Config(_AttentionConfig):
        max: float = Field(ge=0, le=1)
        """Largest acceptable Gini coefficient (0: every item equally exposed; near 1: a few items get it all)."""
        group: str | None = None
        """Measure within this provider group's items only; default: the whole catalog."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        figures, why = _exposure(fair, config)
        if figures is None:
            return skipped(why)
        unjudged = _unjudged(figures, config.min_group_size)
        if config.group is None:
            value, scope = figures.gini, "the catalog"
        elif config.group in unjudged:
            return skipped(unjudged[config.group])
        elif config.group in figures.groups:
            value, scope = figures.groups[config.group].gini, f"provider group {config.group}"
        else:
            return skipped(
                f"provider group {config.group!r} is not in the fairness facts ({', '.join(figures.groups) or 'none'})"
            )
        if value is None:
            return skipped(f"no item of {scope} was shown, so its exposure Gini is undefined")
        return verdict(
            value <= config.max,
            f"exposure Gini over {scope} under {config.key()} attention at k={fair.k} is {value:.4f}; required <= {config.max}",
            value=value,
            threshold=float(config.max),
            evidence={"attention": config.key(), "group": config.group, "k": fair.k, "coverage": figures.coverage,
                      "gini_by_group": {g: v.gini for g, v in figures.groups.items()}},
        )  # fmt: skip

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("max", float(config.max), 0.0, 1.0)]


@register
class PopularityBias(Check):
    """The lists do not lean to popular items much more than the users themselves do."""

    name: ClassVar[str] = "popularity_bias"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "Average recommendation popularity over the users' own (or the catalog's) mean popularity is at most "
        "`max_arp_ratio`; the long-tail share of the lists at least `min_long_tail_share`; the recall gap between "
        "popularity strata (head, mid, tail) at most `max_recall_gap`."
    )

    class Config(CheckConfig):
        max_arp_ratio: float | None = Field(None, gt=0)
        """Largest acceptable ARP / reference popularity (1: as popular as the reference)."""
        reference: Literal["profile", "catalog"] = "profile"
        """``profile``: the mean popularity of what the users chose in training (popularity lift + 1);
        ``catalog``: the mean popularity of a catalog item."""
        min_long_tail_share: float | None = Field(None, ge=0, le=1)
        """Smallest acceptable mean share of long-tail items in the lists."""
        max_recall_gap: float | None = Field(None, ge=0, le=1)
        """Largest acceptable gap between the best and worst recall over popularity strata."""
        judge: Judge = "point"
        """``point``: the point estimate must respect the bounds; ``ci``: fail only when the whole
        confidence interval lies beyond one (ARP ratio against the catalog has no interval: its point is used)."""

        @model_validator(mode="after")
        def _one_bound(self) -> "PopularityBias.Config":
            if self.max_arp_ratio is None and self.min_long_tail_share is None and self.max_recall_gap is None:
                raise ValueError("give at least one of max_arp_ratio, min_long_tail_share and max_recall_gap")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        pop = fair.popularity
        if pop is None:
            return skipped("the fairness facts have no popularity figures")
        ratio, ratio_ci = (
            (pop.arp_ratio, pop.arp_ratio_ci) if config.reference == "profile" else (pop.arp_catalog_ratio, None)
        )
        wanted = [
            ("ARP ratio", ratio, ratio_ci, config.max_arp_ratio, "max"),
            ("long-tail share", pop.long_tail_share, pop.long_tail_share_ci, config.min_long_tail_share, "min"),
            ("recall gap", pop.recall_gap, pop.recall_gap_ci, config.max_recall_gap, "max"),
        ]
        parts, failing, first = [], [], None
        for label, value, ci, bound, kind in wanted:
            if bound is None:
                continue
            if value is None:
                return skipped(f"the {label} is undefined in the fairness facts")
            bad = above(value, ci, bound, config.judge) if kind == "max" else below(value, ci, bound, config.judge)
            parts.append(
                f"{label} {value:.3f} (CI {_ci_text(ci, 3)}; required {'<=' if kind == 'max' else '>='} {bound:g})"
            )
            failing += [label] if bad else []
            first = value if first is None else first
        required = _required(
            ("ARP ratio <=", config.max_arp_ratio),
            ("long-tail share >=", config.min_long_tail_share),
            ("recall gap <=", config.max_recall_gap),
        )
        return verdict(
            not failing,
            f"popularity bias at k={fair.k} ({config.reference} reference): {'; '.join(parts)}, judged on {_judged_on(config.judge, fair.confidence)}",
            value=first,
            threshold=_threshold(required, config.max_arp_ratio, config.min_long_tail_share, config.max_recall_gap),
            evidence={"reference": config.reference, "judge": config.judge, "failing": failing, **pop.model_dump()},
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        # min_long_tail_share is not listed: static analysis reads only `min` and `min_ratio` as lower bounds.
        out = []
        if config.max_arp_ratio is not None:
            out.append(("max_arp_ratio", float(config.max_arp_ratio), 0.0, math.inf))
        if config.max_recall_gap is not None:
            out.append(("max_recall_gap", float(config.max_recall_gap), 0.0, 1.0))
        return out
