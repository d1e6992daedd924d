"""Data checks: raw-log validation findings within limits, and drift against a baseline.

The validation findings are computed by the audit before any check runs
(:func:`recommender.validate.validate_events`); the ``validation_findings``
rule's ``bots`` thresholds are what it validates with, so a pack tunes bot
detection to its traffic in the same place it sets the share it accepts.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register
from recommender.bots import BotRules
from recommender.validation_report import CODES, UNKNOWN_CODES

__all__ = ["ValidationFindings", "DataDrift"]


@register
class ValidationFindings(Check):
    """The share of rows behind each validation finding stays under its limit."""

    name: ClassVar[str] = "validation_findings"
    section: ClassVar[str] = "data"
    needs: ClassVar[tuple[str, ...]] = ("validation",)
    summary: ClassVar[str] = "Each finding of `recgov data validate` affects at most its `max_share` of the rows."

    class Config(CheckConfig):
        max_share: dict[str, float] = Field(default_factory=dict)
        """Finding code -> largest acceptable share of rows (0..1); e.g. duplicate_events: 0.01."""
        default_max_share: float = Field(0.0, ge=0, le=1)
        """Limit of every finding not listed in ``max_share``."""
        bots: BotRules = Field(default_factory=BotRules)
        """Thresholds of the ``bot_users`` finding (:class:`recommender.bots.BotRules`; each one left out keeps its
        default), e.g. ``{min_events: 50, catalog_share: 0.8}`` for a shop whose best customers see most of a
        small catalog. The audit validates the data with them, so the share judged is the share these rules call bots."""

        @field_validator("max_share")
        @classmethod
        def _known_codes(cls, value: dict[str, float]) -> dict[str, float]:
            # a misspelt code (``duplicate_evnts``) is a limit no finding reads: its finding is judged by the default
            unknown = [code for code in value if code not in CODES]
            if unknown:
                raise ValueError(UNKNOWN_CODES.format(codes=", ".join(map(repr, unknown)), known=", ".join(CODES)))
            return value

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.validation is None:
            return skipped("no validation report in the audit facts")
        over = {}
        for code, figures in facts.validation.findings.items():
            limit = config.max_share.get(code, config.default_max_share)
            share = float(figures.get("share", 0.0))
            if share > limit:
                over[code] = {"share": share, "limit": limit, "count": figures.get("count")}
        worst = max((v["share"] - v["limit"] for v in over.values()), default=0.0)
        if over:
            detail = ", ".join(f"{c} {v['share']:.4%} > {v['limit']:.4%}" for c, v in over.items())
            message = f"{len(over)} finding(s) over their limit: {detail}"
        else:
            message = f"all {len(facts.validation.findings)} finding(s) within their limits over {facts.validation.n_rows:,} rows"
        return verdict(not over, message, value=worst, threshold=0.0, evidence={"over_limit": over, "findings": facts.validation.findings})

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [(f"max_share.{code}", v, 0.0, 1.0) for code, v in config.max_share.items()]


@register
class DataDrift(Check):
    """The data has not drifted from the baseline dataset version beyond a limit."""

    name: ClassVar[str] = "data_drift"
    section: ClassVar[str] = "data"
    needs: ClassVar[tuple[str, ...]] = ("drift",)
    summary: ClassVar[str] = "Population stability index (or KS statistic) of user activity and item popularity against the baseline."

    class Config(CheckConfig):
        statistic: Literal["psi", "ks"] = "psi"
        """PSI (0.1 moderate, 0.25 large shift by the usual rule of thumb) or the two-sample KS statistic."""
        max: float = Field(0.25, gt=0)
        """Largest acceptable value of the statistic for any feature."""
        features: list[Literal["user_activity", "item_popularity"]] = Field(default_factory=lambda: ["user_activity", "item_popularity"])
        """The distributions compared."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.drift is None:
            return skipped("no baseline dataset to compare with (pass --baseline to the audit)")
        values = {}
        for feature in config.features:
            stats = facts.drift.features.get(feature)
            if stats is None or config.statistic not in stats:
                return skipped(f"drift statistic {config.statistic!r} of {feature!r} is not in the facts")
            values[feature] = float(stats[config.statistic])
            if not math.isfinite(values[feature]):  # max() would skip a NaN placed second, and pass on the rest
                return skipped(f"drift statistic {config.statistic!r} of {feature!r} is undefined (the baseline or the data holds no event)")
        worst = max(values, key=values.__getitem__)
        detail = ", ".join(f"{f} {v:.4f}" for f, v in values.items())
        return verdict(
            values[worst] <= config.max,
            f"{config.statistic} against {facts.drift.baseline or 'the baseline'}: {detail}; required <= {config.max}",
            value=values[worst],
            threshold=config.max,
            evidence={"baseline": facts.drift.baseline, config.statistic: values},
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("max", config.max, 0.0, 1.0)] if config.statistic == "ks" else []
