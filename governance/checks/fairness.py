"""Fairness checks for the people served: gaps between user groups, disparate impact, calibration.

The exposure checks (providers, concentration, popularity) are :mod:`governance.checks.exposure`.

Each check reads :class:`~governance.facts.FairnessFacts` (computed by
:mod:`governance.collect_fairness`) and judges one figure against its bound.
Every figure comes with a bootstrap confidence interval; a rule chooses how a
gap is judged:

``judge: point``
    the point estimate must be within the bound (strict: noise can fail it);
``judge: ci``
    the rule fails only when the whole confidence interval lies beyond the
    bound, i.e. the data show the violation beyond sampling noise (lenient: a
    small group cannot fail it on noise alone, nor be shown to pass).

Either way the evidence holds the point value, its interval and the group sizes.

``consumer_gap`` compares every pair of groups at once, so under ``judge: ci`` it
tests each bound of each pair (Welch; :mod:`governance.checks._significance`) and
adjusts the p-values together (Holm, or Benjamini-Hochberg) before failing a
pair: a rule with nothing to find fails at most at 1 - confidence, however many
groups it compares.

No evidence is no pass: a group too small to say anything is reported and not
judged.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.checks._judging import (
    ATTRIBUTE,
    NO_FAIRNESS,
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
from governance.checks._significance import CORRECTIONS, Correction, tested_pairs
from governance.facts import AuditFacts, GroupGap, GroupMetricFacts
from governance.registry import Check, CheckResult, register

__all__ = ["Calibration", "ConsumerGap", "DisparateImpact"]

NOT_AUDITED = (
    "attribute {attribute!r} is not in the fairness facts (audited: {known}); list it in fairness.audit_attributes"
)
TOO_FEW_GROUPS = "{what} by {attribute!r} has fewer than two groups with {size}+ users ({groups})"
MISSING_USERS = "missing"
"""The group of users whose attribute is missing (``recommender.fairness.MISSING_GROUP``): reported, never judged,
nor the reference of a ratio (its users are no group of the attribute)."""
NOT_A_GROUP = "the attribute is missing: reported, never judged"

CALIBRATION_ALPHA = 0.01
"""The smoothing of the calibration facts (``recommender.fairness.CALIBRATION_ALPHA``, kept here so that
loading a pack does not import the numeric stack); the mean KL is at most ``log(1 / alpha)``."""


def _pairs(figures: GroupMetricFacts, eligible: set[str]) -> list[GroupGap]:
    """The gaps between every two eligible groups: the stored ones (with their intervals), and for a
    pair the facts do not hold (facts written by hand) the gap of the point values, without an interval."""
    stored = {frozenset((p.higher, p.lower)): p for p in figures.pairs if p.difference is not None}
    out = []
    for a, b in itertools.combinations(sorted(eligible), 2):
        found = stored.get(frozenset((a, b)))
        if found is None:
            va, vb = figures.groups[a].value or 0.0, figures.groups[b].value or 0.0
            (hi, vh), (lo, vl) = sorted(((a, va), (b, vb)), key=lambda t: -t[1])
            found = GroupGap(higher=hi, lower=lo, difference=vh - vl, ratio=vl / vh if vh > 0 else None)
        out.append(found)
    return out


def _gap_tests(figures: GroupMetricFacts, pairs: list[GroupGap], config: Any, confidence: float) -> list[dict[str, Any]]:
    bounds = [("max_difference", "difference", config.max_difference), ("min_ratio", "ratio", config.min_ratio)]
    return tested_pairs(
        figures.groups,
        pairs,
        [(field, kind, float(value)) for field, kind, value in bounds if value is not None],
        correction=config.correction,
        confidence=confidence,
    )


def _pair_fails(pair: GroupGap, tests: list[dict[str, Any]], config: Any, alpha: float) -> bool:
    """Point: a bound the point value breaks. CI: a bound rejected after the correction (a bound without
    a test, for groups written by hand with a bare value, falls back to the point value)."""
    point = {
        "max_difference": above(pair.difference, None, config.max_difference, "point"),
        "min_ratio": below(pair.ratio, None, config.min_ratio, "point"),
    }
    if config.judge == "point":
        return any(point.values())
    mine = [t for t in tests if (t["higher"], t["lower"]) == (pair.higher, pair.lower)]
    return any(
        point[t["bound"]] if t["p_adjusted"] is None else t["p_adjusted"] <= alpha for t in mine
    )


def _tests_text(tests: list[dict[str, Any]], config: Any) -> str:
    adjusted = [t["p_adjusted"] for t in tests if t["p_adjusted"] is not None]
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[config.correction]
    if not adjusted:
        return "the point estimate (no group has a spread, nor any pair an interval, to test with)"
    return (
        f"Welch tests, {name}-adjusted over {len(adjusted)} hypothes{'is' if len(adjusted) == 1 else 'es'} "
        f"(smallest adjusted p {min(adjusted):.4g})"
    )


class _GroupConfig(CheckConfig):
    attribute: str = Field(pattern=ATTRIBUTE)
    """The user attribute that groups users (one of fairness.audit_attributes)."""
    judge: Judge = "point"
    """``point``: the point estimate must respect the bound; ``ci``: fail only when the whole
    confidence interval lies beyond it."""
    min_group_size: int = Field(30, ge=2)
    """Groups with fewer evaluated users are left out of the judgement (still reported)."""


# -- consumer side ---------------------------------------------------------------------------
@register
class ConsumerGap(Check):
    """Users of every group get lists of similar quality."""

    name: ClassVar[str] = "consumer_gap"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "Per-user NDCG, recall or hit rate at k, or the miscalibration of each list against the user's history "
        "(genres, or provider groups), by group of an audit attribute: the largest gap between two groups is "
        "at most `max_difference` and the smallest ratio at least `min_ratio`."
    )

    class Config(_GroupConfig):
        metric: Literal["ndcg", "recall", "hit_rate", "miscalibration", "provider_miscalibration"] = "ndcg"
        """The per-user metric at the pack's k compared across groups. ``miscalibration`` is Steck's
        KL of the list's genre mix against the user's history's, ``provider_miscalibration`` the
        same over provider groups (both lower-is-better: a gap means one group's lists stray further
        from its users' own tastes)."""
        max_difference: float | None = Field(None, ge=0, le=1)
        """Largest acceptable ``value(higher group) - value(lower group)`` over every pair of groups (for
        NDCG, recall and hit rate the lower group is the worse served; for the miscalibrations, the higher)."""
        min_ratio: float | None = Field(None, ge=0, le=1)
        """Smallest acceptable ``value(lower group) / value(higher group)`` over every pair of groups."""
        judge: Judge = "point"
        """``point``: every pair's point estimate must respect the bounds (strict: noise can fail it);
        ``ci``: a pair fails only when a Welch test shows its gap beyond a bound at level 1 - confidence,
        after the p-values of every pair and bound are adjusted together (``correction``), so that a
        rule with nothing to find fails at most at that rate however many groups it compares."""
        correction: Correction = "holm"
        """How the p-values of the pairs are adjusted for testing them all at once: ``holm`` (Holm's
        step-down; the chance that any pair fails on noise alone is at most 1 - confidence) or ``bh``
        (Benjamini-Hochberg; the expected share of failing pairs that fail on noise is at most that).
        The evidence states the raw and the adjusted p-value of every pair, and the method."""

        @model_validator(mode="after")
        def _one_bound(self) -> "ConsumerGap.Config":
            if self.max_difference is None and self.min_ratio is None:
                raise ValueError("give at least one of max_difference and min_ratio")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        by_metric = fair.consumer.get(config.attribute)
        if by_metric is None:
            return skipped(NOT_AUDITED.format(attribute=config.attribute, known=", ".join(fair.consumer) or "none"))
        figures = by_metric.get(config.metric)
        if figures is None:
            why = {"miscalibration": "calibration", "provider_miscalibration": "provider"}.get(config.metric, "")
            reason = fair.unavailable.get(why)
            return skipped(
                f"metric {config.metric!r} is not in the fairness facts for {config.attribute!r}"
                + (f" ({reason})" if reason else "")
            )
        eligible = {
            g for g, v in figures.groups.items() if v.n >= config.min_group_size and v.value is not None and g != MISSING_USERS
        }
        if len(eligible) < 2:
            sizes = ", ".join(f"{g}: {v.n}" for g, v in figures.groups.items()) or "none"
            return skipped(
                TOO_FEW_GROUPS.format(
                    what=config.metric, attribute=config.attribute, size=config.min_group_size, groups=sizes
                )
            )
        pairs = _pairs(figures, eligible)
        widest = max(pairs, key=lambda p: p.difference or 0.0)
        ratios = [p for p in pairs if p.ratio is not None]
        narrowest = min(ratios, key=lambda p: p.ratio or 0.0) if ratios else None
        tests = _gap_tests(figures, pairs, config, fair.confidence)
        failing = [p for p in pairs if _pair_fails(p, tests, config, 1.0 - fair.confidence)]
        label = f"{config.metric}@{fair.k}"
        high, low = figures.groups[widest.higher].value, figures.groups[widest.lower].value
        parts = [
            (
                f"largest gap {widest.difference:.4f} ({widest.higher} {high:.4f} vs {widest.lower} {low:.4f}, "
                f"{fair.confidence:.0%} CI {_ci_text(widest.difference_ci)})"
            ),
        ]
        if narrowest is not None and config.min_ratio is not None:
            parts.append(
                f"smallest ratio {narrowest.ratio:.3f} ({narrowest.lower}/{narrowest.higher}, CI {_ci_text(narrowest.ratio_ci, 3)})"
            )
        required = _required(("difference <=", config.max_difference), ("ratio >=", config.min_ratio))
        excluded = sorted(set(figures.groups) - eligible)
        small = [g for g in excluded if g != MISSING_USERS]
        judged_on = _judged_on(config.judge, fair.confidence) if config.judge == "point" else _tests_text(tests, config)
        return verdict(
            not failing,
            f"{label} by {config.attribute}: {'; '.join(parts)}; required {required}, judged on {judged_on}"
            + (f" (left out, under {config.min_group_size} users: {', '.join(small)})" if small else "")
            + (f" (left out, {MISSING_USERS}: {NOT_A_GROUP})" if MISSING_USERS in excluded else ""),
            value=widest.difference if config.max_difference is not None else (narrowest.ratio if narrowest else None),
            threshold=_threshold(required, config.max_difference, config.min_ratio),
            evidence={
                "attribute": config.attribute,
                "metric": config.metric,
                "k": fair.k,
                "judge": config.judge,
                "confidence": fair.confidence,
                "groups": {g: v.model_dump() for g, v in figures.groups.items()},
                "excluded_groups": excluded,
                "largest_gap": widest.model_dump(),
                "smallest_ratio": narrowest.model_dump() if narrowest else None,
                "failing_pairs": [p.model_dump() for p in failing],
                "tests": {
                    "test": (
                        "Welch two-sample t test of each pair's gap against each bound, from the groups' sizes, means "
                        "and standard deviations (two-sided p-values); for groups written without a spread, a normal "
                        "test from the pair's own interval"
                    ),
                    "correction": config.correction,
                    "correction_method": CORRECTIONS[config.correction],
                    "alpha": round(1.0 - fair.confidence, 12),
                    "decides": config.judge == "ci",
                    "hypotheses": tests,
                },
            },
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        out = []
        if config.max_difference is not None:
            out.append(("max_difference", float(config.max_difference), 0.0, 1.0))
        if config.min_ratio is not None:
            out.append(("min_ratio", float(config.min_ratio), 0.0, 1.0))
        return out

    @classmethod
    def attributes(cls, config: Config) -> list[str]:
        return [config.attribute]


@register
class DisparateImpact(Check):
    """The chance of a relevant item in the top k is not much lower for any group than for the privileged one."""

    name: ClassVar[str] = "disparate_impact"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "Disparate impact P(hit@k | group) / P(hit@k | privileged) of every other group (or of all of them pooled) "
        "is at least `min_ratio` (the four-fifths rule: 0.8)."
    )

    class Config(_GroupConfig):
        privileged: str = Field(min_length=1)
        """The privileged group, the reference of the ratio (a value of the attribute)."""
        min_ratio: float = Field(0.8, gt=0, le=1)
        """Smallest acceptable disparate impact (the four-fifths rule: 0.8)."""
        max_ratio: float | None = Field(None, ge=1)
        """Largest acceptable disparate impact (e.g. 1.25 to bound favouring the other groups too)."""
        max_parity_difference: float | None = Field(None, ge=0, le=1)
        """Largest acceptable |statistical parity difference| (``P(hit | group) - P(hit | privileged)``)."""
        per_group: bool = True
        """Judge each other group against the privileged one; false: all other groups pooled."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        outcome = fair.outcomes.get(config.attribute)
        if outcome is None:
            return skipped(NOT_AUDITED.format(attribute=config.attribute, known=", ".join(fair.outcomes) or "none"))
        rates = outcome.positive_rate
        parity = outcome.parity.get(config.privileged)
        if config.privileged == MISSING_USERS:
            return skipped(f"privileged group {MISSING_USERS!r} of {config.attribute!r}: {NOT_A_GROUP}, nor a reference")
        if parity is None or config.privileged not in rates:
            return skipped(
                f"privileged group {config.privileged!r} is not a group of {config.attribute!r} ({', '.join(rates) or 'none'})"
            )
        if rates[config.privileged].n < config.min_group_size:
            return skipped(
                f"privileged group {config.privileged!r} has {rates[config.privileged].n} users, under min_group_size {config.min_group_size}"
            )
        if config.per_group:
            judged = {
                g: p for g, p in parity.groups.items()
                if g in rates and rates[g].n >= config.min_group_size and g != MISSING_USERS
            }  # fmt: skip
        else:
            judged = {"all others": parity}
        judged = {g: p for g, p in judged.items() if p.disparate_impact is not None}
        if not judged:
            return skipped(TOO_FEW_GROUPS.format(what="hit@k", attribute=config.attribute, size=config.min_group_size,
                                                 groups=", ".join(f"{g}: {v.n}" for g, v in rates.items())))  # fmt: skip
        failing = []
        for g, p in judged.items():
            di, spd = p.disparate_impact, p.statistical_parity_difference
            bad = below(di, p.disparate_impact_ci, config.min_ratio, config.judge)
            bad |= above(di, p.disparate_impact_ci, config.max_ratio, config.judge)
            if config.max_parity_difference is not None and spd is not None:
                b = config.max_parity_difference
                bad |= above(spd, p.statistical_parity_difference_ci, b, config.judge) or below(
                    spd, p.statistical_parity_difference_ci, -b, config.judge
                )
            if bad:
                failing.append(g)
        worst = min(judged, key=lambda g: judged[g].disparate_impact or 0.0)
        w = judged[worst]
        required = _required(
            ("DI >=", config.min_ratio), ("DI <=", config.max_ratio), ("|SPD| <=", config.max_parity_difference)
        )
        excluded = sorted(g for g in rates if g != config.privileged and g not in judged) if config.per_group else []
        return verdict(
            not failing,
            f"hit@{fair.k} by {config.attribute} against {config.privileged} ({rates[config.privileged].value:.4f}): lowest disparate "
            f"impact {w.disparate_impact:.3f} for {worst} ({fair.confidence:.0%} CI {_ci_text(w.disparate_impact_ci, 3)}), "
            f"parity difference {_f(w.statistical_parity_difference)}; required {required}, judged on {_judged_on(config.judge, fair.confidence)}"
            + (f" (left out: {', '.join(excluded)})" if excluded else ""),
            value=w.disparate_impact,
            threshold=_threshold(required, config.min_ratio, config.max_ratio, config.max_parity_difference),
            evidence={
                "attribute": config.attribute,
                "privileged": config.privileged,
                "k": fair.k,
                "judge": config.judge,
                "confidence": fair.confidence,
                "positive_rate": {g: v.model_dump() for g, v in rates.items()},
                "judged": {g: p.model_dump(exclude={"groups"}) for g, p in judged.items()},
                "failing": failing,
                "excluded_groups": excluded,
            },
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        out = [("min_ratio", float(config.min_ratio), 0.0, math.inf)]
        if config.max_ratio is not None:
            out.append(("max_ratio", float(config.max_ratio), 0.0, math.inf))
        if config.max_parity_difference is not None:
            out.append(("max_parity_difference", float(config.max_parity_difference), 0.0, 1.0))
        return out

    @classmethod
    def attributes(cls, config: Config) -> list[str]:
        return [config.attribute]


# -- provider side ---------------------------------------------------------------------------


@register
class Calibration(Check):
    """Lists reflect the mix of categories each user chose (Steck 2018)."""

    name: ClassVar[str] = "calibration"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("fairness",)
    summary: ClassVar[str] = (
        "The mean over users of KL(p || (1-a) q + a p), p the category mix of the user's history and q that of the "
        "list (a = 0.01), is at most `max_kl`."
    )

    class Config(CheckConfig):
        max_kl: float = Field(gt=0)
        """Largest acceptable mean KL divergence (0: perfectly calibrated; at most log(1/0.01) = 4.6)."""
        judge: Judge = "point"
        """``point``: the mean must be at most ``max_kl``; ``ci``: fail only when the whole confidence
        interval is above it."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        fair = _fairness(facts)
        if fair is None:
            return skipped(NO_FAIRNESS)
        cal = fair.calibration
        if cal is None or cal.mean_kl is None:
            return skipped(
                f"the fairness facts have no calibration ({fair.unavailable.get('calibration', 'not computed')})"
            )
        return verdict(
            not above(cal.mean_kl, cal.mean_kl_ci, config.max_kl, config.judge),
            f"mean miscalibration KL of the top-{fair.k} lists over {cal.n_users} users is {cal.mean_kl:.4f} "
            f"({fair.confidence:.0%} CI {_ci_text(cal.mean_kl_ci)}); required <= {config.max_kl:g}, judged on "
            f"{_judged_on(config.judge, fair.confidence)}",
            value=cal.mean_kl,
            threshold=float(config.max_kl),
            evidence={"judge": config.judge, "confidence": fair.confidence, **cal.model_dump()},
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("max_kl", float(config.max_kl), 0.0, math.log(1.0 / CALIBRATION_ALPHA))]
