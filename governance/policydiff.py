"""What changed between two policy packs: rules, thresholds and settings.

Rules are matched by id (not by position), so moving a rule is no change and a
changed threshold shows as exactly that. Reviewers use it when data is shared
or companies merge and two rule books must be reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from governance.policy import SECTIONS, LoadedPack

__all__ = ["Change", "diff_packs"]


@dataclass(frozen=True)
class Change:
    """One difference between pack A and pack B."""

    kind: Literal["added", "removed", "changed"]
    path: str
    """``metadata.version``, ``rule:eu-quality-lift.params.min_ratio``, ``minimization.forbidden_attributes``, ..."""
    before: Any = None
    after: Any = None
    threshold: bool = False
    """True when the change is to a rule's parameter (a threshold or a setting of a check)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "before": self.before, "after": self.after, "threshold": self.threshold}

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {self.after!r}"
        if self.kind == "removed":
            return f"- {self.path}: {self.before!r}"
        return f"~ {self.path}: {self.before!r} -> {self.after!r}"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _pack_paths(loaded: LoadedPack) -> dict[str, Any]:
    doc = loaded.pack.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in SECTIONS:
            rules = value.pop("rules", [])
            _flatten(value, key, out)
            for rule in rules:
                rule_id = rule.pop("id")
                rule["section"] = key
                _flatten(rule, f"rule:{rule_id}", out)
        else:
            _flatten(value, key, out)
    return out


def diff_packs(a: LoadedPack, b: LoadedPack) -> list[Change]:
    """Every difference from ``a`` to ``b``, rules by id, in a stable order."""
    pa, pb = _pack_paths(a), _pack_paths(b)
    changes: list[Change] = []
    rules_a = {p.split(".", 1)[0] for p in pa if p.startswith("rule:")}
    rules_b = {p.split(".", 1)[0] for p in pb if p.startswith("rule:")}
    for rule in sorted(rules_a - rules_b):
        changes.append(Change("removed", rule, before={k.split(".", 1)[1]: v for k, v in pa.items() if k.startswith(rule + ".")}))
    for rule in sorted(rules_b - rules_a):
        changes.append(Change("added", rule, after={k.split(".", 1)[1]: v for k, v in pb.items() if k.startswith(rule + ".")}))
    gone = {r for r in rules_a ^ rules_b}
    for path in sorted(set(pa) | set(pb)):
        if path.split(".", 1)[0] in gone:
            continue
        before, after = pa.get(path, None), pb.get(path, None)
        if path not in pa:
            changes.append(Change("added", path, after=after, threshold=".params." in path))
        elif path not in pb:
            changes.append(Change("removed", path, before=before, threshold=".params." in path))
        elif before != after:
            changes.append(Change("changed", path, before=before, after=after, threshold=".params." in path))
    return changes
