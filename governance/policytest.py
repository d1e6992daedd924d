"""Fixture cases for policy packs, run by ``recgov policy test`` (like ``opa test``).

A cases file (``<pack>.test.yaml`` beside the pack) states facts and the
outcome each rule must have on them::

    cases:
      - name: a model that barely beats popularity fails the lift rule
        facts:
          evaluation:
            models:
              als: {metrics: {ndcg: 0.11}}
              popularity: {metrics: {ndcg: 0.10}}
        expect:
          eu-quality-lift: fail

Rules a case does not mention are not asserted. Facts are validated like a
pack (unknown keys rejected, errors located).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.located import PackIssue, PolicyError, load_yaml, validate_located
from governance.policy import LoadedPack

__all__ = ["CaseOutcome", "cases_path_for", "run_cases"]

Outcome = Literal["pass", "warn", "fail", "error", "skipped"]


class Case(BaseModel):
    """One fixture case."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    facts: AuditFacts
    expect: dict[str, Outcome] = Field(min_length=1)


class CasesFile(BaseModel):
    """A file of fixture cases."""

    model_config = ConfigDict(extra="forbid")

    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class CaseOutcome:
    """What one case expected of one rule, and what happened."""

    case: str
    rule_id: str
    expected: str
    actual: str
    message: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "rule_id": self.rule_id, "expected": self.expected, "actual": self.actual, "ok": self.ok, "message": self.message}


def cases_path_for(pack_path: str | Path) -> Path:
    """``policies/eu.yaml`` -> ``policies/eu.test.yaml``."""
    p = Path(pack_path)
    return p.with_name(p.stem + ".test.yaml")


def load_cases(path: str | Path) -> CasesFile:
    """Read and validate a cases file; errors are located like pack errors."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError([PackIssue(source, None, None, "", "no such file; expected fixture cases (<pack>.test.yaml)")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError([PackIssue(source, None, None, "", f"cannot be read as UTF-8 text ({err})")]) from err
    data, positions = load_yaml(text, source, "fixture cases: a mapping with a 'cases' list")
    return validate_located(CasesFile, data, positions, source)


def run_cases(loaded: LoadedPack, cases_file: str | Path) -> list[CaseOutcome]:
    """Evaluate every case against ``loaded``; a rule id the pack lacks is an error."""
    cases = load_cases(cases_file)
    known = {rule.id for _, rule in loaded.pack.rules()}
    unknown = [
        PackIssue(str(cases_file), None, None, f"cases.{i}.expect.{rule_id}", f"rule {rule_id!r} is not in pack {loaded.name!r}")
        for i, case in enumerate(cases.cases)
        for rule_id in case.expect
        if rule_id not in known
    ]
    if unknown:
        raise PolicyError(unknown)
    outcomes = []
    for case in cases.cases:
        report = evaluate(loaded, case.facts)
        for rule_id, expected in case.expect.items():
            result = report.result(rule_id)
            outcomes.append(CaseOutcome(case.name, rule_id, expected, result.status.value, result.message))
    return outcomes
