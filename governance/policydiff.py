"""What changed between two policy packs: rules, thresholds and settings.

Rules are matched by id (not by position), so moving a rule is no change and a
changed threshold shows as exactly that. Reviewers use it when data is shared
or companies merge and two rule books must be reconciled.

Each change says its ``effect`` on what the gate lets through where that follows from
the change alone: ``stricter`` (a rule added, a lower bound raised, an upper bound
lowered, a severity raised to block, judging by the point estimate instead of the
interval, a status or rule the gate blocks on added) or ``looser`` (the reverse:
also a larger ``min_group_size``, which leaves more groups unjudged); None where it
depends on the data. A pack that raises one threshold while it turns a rule into a
warning reads stricter line by line; the effects say which way each line goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Effect = Literal["stricter", "looser"]

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
    effect: Effect | None = None
    """``stricter`` or ``looser`` for what the gate lets through, where the change alone says (see the module)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "before": self.before, "after": self.after, "threshold": self.threshold, "effect": self.effect}

    def __str__(self) -> str:
        said = f"  ({self.effect})" if self.effect else ""
        if self.kind == "added":
            return f"+ {self.path}: {self.after!r}{said}"
        if self.kind == "removed":
            return f"- {self.path}: {self.before!r}{said}"
        return f"~ {self.path}: {self.before!r} -> {self.after!r}{said}"


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


def _bound(path: str) -> str | None:
    """``min`` or ``max`` when ``path`` is a rule parameter bounding a figure from below or above, else None."""
    if not path.startswith("rule:") or ".params." not in path:
        return None
    names = path.split(".params.", 1)[1].split(".")
    for name in names:
        if name == "min_group_size":
            return "max"  # a larger minimum judges fewer groups: it bounds what is judged from above
        tokens = name.split("_")
        if "min" in tokens:
            return "min"
        if "max" in tokens:
            return "max"
    return None


def _grows(before: Any, after: Any) -> bool | None:
    numbers = (int, float)
    if isinstance(before, numbers) and isinstance(after, numbers) and not isinstance(before, bool) and not isinstance(after, bool):
        return None if before == after else after > before
    return None


def _effect(kind: str, path: str, before: Any, after: Any) -> Effect | None:
    """The change's effect on what the gate lets through, where the change alone says it (else None)."""
    if path.startswith("rule:") and "." not in path:  # a whole rule
        return "stricter" if kind == "added" else "looser"
    bound = _bound(path)
    if bound is not None:
        if before is None or after is None:  # a bound given where none was, or taken away
            return None if before is None and after is None else ("stricter" if before is None else "looser")
        grows = _grows(before, after)
        if grows is None:
            return None
        return ("stricter" if grows else "looser") if bound == "min" else ("looser" if grows else "stricter")
    if path.endswith(".severity"):
        return {("block", "warn"): "looser", ("warn", "block"): "stricter"}.get((before, after))
    if path.endswith(".params.judge"):
        return {("point", "ci"): "looser", ("ci", "point"): "stricter"}.get((before, after))
    if path in ("gate.block_on", "gate.required_rules"):
        old, new = set(before or ()), set(after or ())
        if new > old:
            return "stricter"
        if new < old:
            return "looser"
        return None
    if path == "gate.max_warnings":
        if before is None or after is None:
            return "stricter" if before is None and after is not None else ("looser" if after is None and before is not None else None)
        grows = _grows(before, after)
        return None if grows is None else ("looser" if grows else "stricter")
    return None


def diff_packs(a: LoadedPack, b: LoadedPack) -> list[Change]:
    """Every difference from ``a`` to ``b``, rules by id, in a stable order."""
    pa, pb = _pack_paths(a), _pack_paths(b)
    changes: list[Change] = []
    rules_a = {p.split(".", 1)[0] for p in pa if p.startswith("rule:")}
    rules_b = {p.split(".", 1)[0] for p in pb if p.startswith("rule:")}
    for rule in sorted(rules_a - rules_b):
        changes.append(Change("removed", rule, before={k.split(".", 1)[1]: v for k, v in pa.items() if k.startswith(rule + ".")}, effect="looser"))
    for rule in sorted(rules_b - rules_a):
        changes.append(Change("added", rule, after={k.split(".", 1)[1]: v for k, v in pb.items() if k.startswith(rule + ".")}, effect="stricter"))
    gone = {r for r in rules_a ^ rules_b}
    for path in sorted(set(pa) | set(pb)):
        if path.split(".", 1)[0] in gone:
            continue
        before, after = pa.get(path, None), pb.get(path, None)
        if path not in pa:
            changes.append(Change("added", path, after=after, threshold=".params." in path, effect=_effect("added", path, None, after)))
        elif path not in pb:
            changes.append(Change("removed", path, before=before, threshold=".params." in path, effect=_effect("removed", path, before, None)))
        elif before != after:
            changes.append(Change("changed", path, before=before, after=after, threshold=".params." in path, effect=_effect("changed", path, before, after)))
    return changes
