"""Carbon accounting: training energy and emissions within the pack's budget."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts, CarbonFacts
from governance.registry import Check, CheckResult, register

__all__ = ["CarbonBudget"]


def _label(c: CarbonFacts) -> str:
    """`` (estimated, USA grid)``: how the figures were obtained and which grid's intensity they carry, as far as
    the facts say (a recorded run's method names its grid; the facts of a run measured now, its country)."""
    basis = next((b for b in ("measured", "estimated") if f"offline, {b};" in c.method), None)
    grid = c.country_iso_code or next((part.removeprefix("grid ") for part in c.method.split("; ") if part.startswith("grid ")), None)
    parts = [p for p in (basis, f"{grid} grid" if grid else None) if p]
    return f" ({', '.join(parts)})" if parts else ""


@register
class CarbonBudget(Check):
    """The measured run stays within an energy and emissions budget."""

    name: ClassVar[str] = "carbon_budget"
    section: ClassVar[str] = "carbon"
    needs: ClassVar[tuple[str, ...]] = ("carbon",)
    summary: ClassVar[str] = "Energy (kWh) and emissions (kg CO2e) measured by codecarbon stay within budget."

    class Config(CheckConfig):
        max_energy_kwh: float | None = Field(None, gt=0)
        """Largest acceptable energy of the training run, in kWh."""
        max_emissions_kg: float | None = Field(None, gt=0)
        """Largest acceptable emissions of the training run, in kg CO2-equivalent."""

        @model_validator(mode="after")
        def _one_budget(self) -> "CarbonBudget.Config":
            if self.max_energy_kwh is None and self.max_emissions_kg is None:
                raise ValueError("give at least one of max_energy_kwh and max_emissions_kg")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        c = facts.carbon
        if c is None:
            return skipped("no carbon measurement in the audit facts (carbon.measure is off, nothing was trained, or codecarbon measured nothing)")
        ok = (config.max_energy_kwh is None or c.energy_kwh <= config.max_energy_kwh) and (
            config.max_emissions_kg is None or c.emissions_kg <= config.max_emissions_kg
        )
        budget = ", ".join(
            p for p in (
                f"energy <= {config.max_energy_kwh} kWh" if config.max_energy_kwh is not None else "",
                f"emissions <= {config.max_emissions_kg} kg" if config.max_emissions_kg is not None else "",
            ) if p
        )  # fmt: skip
        return verdict(
            ok,
            f"training used {c.energy_kwh:.6f} kWh and emitted {c.emissions_kg:.6f} kg CO2e in {c.duration_s:.1f} s"
            f"{_label(c)}; budget {budget}",
            value=c.emissions_kg if config.max_emissions_kg is not None else c.energy_kwh,
            threshold=budget,
            evidence=c.model_dump(),
        )
