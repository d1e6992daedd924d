"""Static analysis of a policy pack, run on load before anything is evaluated.

Like Cedar's validator, it finds what is wrong with a pack without data:

* duplicate rule ids, and gate conditions naming rules that do not exist (errors);
* a gate whose ``block_on`` leaves out ``fail`` while rules of severity ``block`` exist (an error: such a
  rule could fail without blocking, a pack that reads stricter than it is);
* contradictions: an attribute both allowed as a model input and forbidden (or
  audit-only), or required by a rule while forbidden for every use (errors);
* an ``input_allowlist`` rule judging a purpose ``minimization.purposes`` does not list (a misspelling such as
  ``personalisation``): the rule would always be skipped (an error);
* a ``consent.tcf.purpose`` that is not a consent purpose of the pack (an error);
* carbon rules under ``carbon.measure: false`` (a warning: a run trained under the pack is never measured,
  so they are skipped unless the audited model was measured elsewhere);
* thresholds outside the range of their metric: a rule that can never pass is an
  error, one that can never fail a warning;
* re-ranking steps that can never act (warnings): parameters that leave the
  model's order untouched (a zero trade-off, an exposure cap of 1, no targets),
  FA*IR whose minimum-protected table is all zeros at the pack's list length
  (``quality.k``), group targets too small to earn one place in such a list
  (the constraint reported then always holds), exposure windows no list of
  ``quality.k`` places can reach, exposure caps that every provider group of the
  pack shares and that together hold less than a whole list, or (with the catalog)
  a group with fewer items than its exposure floor needs;
* group-targeting steps (``group_proportions``, ``exposure_targets``,
  ``amortised_exposure``) whose targets name a group code no provider group of
  the pack carries (``fairness.provider_group_codes``, else 0 and 1): warnings;
* a ``training.fairness`` re-weighting by a user attribute the pack forbids or
  does not declare (an error);
* with a dataset's columns at hand, attributes the data does not have (errors);
* with its item table's harm categories at hand, categories the pack's vocabulary
  does not know (an error naming them and the known ones,
  :mod:`governance.harm_vocabulary`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from governance.harm_vocabulary import vocabulary_issue_message
from governance.located import PackIssue
from governance.registry import get_check

__all__ = ["analyse"]


ALLOWLIST_PURPOSE_UNLISTED = (
    "rule {rule!r} judges the model inputs of purpose {purpose!r}, which minimization.purposes does not list "
    "(listed: {listed}): the rule would always be skipped; name a listed purpose or give {purpose!r} its allowed_inputs"
)


class _Finding(NamedTuple):
    """One issue at a path of the pack, before it is located in the pack's source."""

    path: str
    message: str
    severity: str = "error"


def analyse(
    pack: Any,
    positions: dict[str, tuple[int, int]],
    source: str,
    *,
    dataset_columns: list[str] | None = None,
    item_harm_categories: dict[str, int] | None = None,
    item_table: Any | None = None,
) -> list[Any]:
    """Every issue found in ``pack`` (a validated :class:`~governance.policy.PolicyPack`).

    ``item_harm_categories``: category -> items a dataset's item table flags with it.
    ``item_table``: a dataset's item table (a DataFrame), for the items each provider group
    (``fairness.provider_attribute``) holds.
    """
    provider_items = _provider_items(pack, item_table)
    rule_findings, referenced = _rule_findings(pack)
    findings = [*_id_findings(pack), *_gate_findings(pack), *_carbon_findings(pack), *_minimization_findings(pack), *_tcf_findings(pack), *rule_findings, *_rerank_findings(pack, provider_items), *_training_findings(pack)]
    if dataset_columns is not None:
        findings += _dataset_findings(pack, referenced, set(dataset_columns))
    if item_harm_categories is not None:
        message = vocabulary_issue_message(pack, item_harm_categories)
        if message is not None:  # a pack with no vocabulary at all takes no position on harm: a warning
            severity = "error" if pack.harmful_content.known_categories() else "warning"
            findings.append(_Finding("harmful_content.categories", message, severity))
    return [_located(finding, positions, source) for finding in findings]


def _located(finding: _Finding, positions: dict[str, tuple[int, int]], source: str) -> PackIssue:
    """The finding at its line and column in the pack (or its parent's, when the path itself has none)."""
    path = finding.path
    line, col = positions.get(path, positions.get(path.rsplit(".", 1)[0], (None, None)))
    return PackIssue(source, line, col, path, finding.message, finding.severity)  # type: ignore[arg-type]


def _id_findings(pack: Any) -> list[_Finding]:
    """Duplicate rule ids, and gate conditions naming rules that do not exist."""
    findings = []
    seen: dict[str, str] = {}
    for section, i, rule in _numbered_rules(pack):
        path = f"{section}.rules.{i}.id"
        if rule.id in seen:
            findings.append(_Finding(path, f"duplicate rule id {rule.id!r} (first used at {seen[rule.id]})"))
        else:
            seen[rule.id] = path
    for i, rule_id in enumerate(pack.gate.required_rules):
        if rule_id not in seen:
            findings.append(_Finding(f"gate.required_rules.{i}", f"gate requires rule {rule_id!r}, which the pack does not define; known: {', '.join(seen) or 'none'}"))
    return findings


def _gate_findings(pack: Any) -> list[_Finding]:
    """A gate that does not block on ``fail`` while rules say a failure blocks (severity ``block``, the default).

    ``block_on: [warn]`` reads as a stricter gate (even warnings block) but lets every failed rule through: the
    rule's severity is where a pack makes a rule advisory (``warn``), never the gate."""
    if "fail" in pack.gate.block_on:
        return []
    blocking = [rule.id for _, rule in pack.rules() if rule.severity == "block"]
    if not blocking:
        return []
    listed = ", ".join(blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
    return [_Finding("gate.block_on", f"gate.block_on {list(pack.gate.block_on)} leaves out fail, so the rules of severity block "
                     f"({listed}) would not block a release when they fail; keep fail in block_on, and give a rule "
                     f"severity warn to make it advisory")]  # fmt: skip


def _carbon_findings(pack: Any) -> list[_Finding]:
    """Carbon rules of a pack that turns measuring off: a budget that reads as enforced and is skipped."""
    if pack.carbon.measure or not pack.carbon.rules:
        return []
    ids = ", ".join(rule.id for rule in pack.carbon.rules)
    return [_Finding("carbon.measure", f"carbon.measure is false, so no run trained under this pack is measured and the carbon "
                     f"rule(s) {ids} are skipped (judged only on a recorded model measured elsewhere); measure the runs "
                     f"or remove the rules", "warning")]  # fmt: skip


def _forbidden_for_every_use(pack: Any, attr: str) -> bool:
    m = pack.minimization
    return attr in m.forbidden_attributes and attr not in m.audit_only_attributes


def _minimization_findings(pack: Any) -> list[_Finding]:
    """Contradictions in minimization: an input also forbidden or audit-only; an audit attribute no use may read."""
    findings = []
    m = pack.minimization
    forbidden = set(m.forbidden_attributes)
    audit_only = set(m.audit_only_attributes)
    for purpose, spec in m.purposes.items():
        for j, attr in enumerate(spec.allowed_inputs):
            path = f"minimization.purposes.{purpose}.allowed_inputs.{j}"
            if attr in forbidden:
                findings.append(_Finding(path, f"attribute {attr!r} is allowed as a model input for {purpose!r} but listed in minimization.forbidden_attributes"))
            elif attr in audit_only:
                findings.append(_Finding(path, f"attribute {attr!r} is allowed as a model input for {purpose!r} but listed in minimization.audit_only_attributes"))
    for i, rule in enumerate(m.rules):
        purpose = getattr(rule.params, "purpose", None) if rule.check == "input_allowlist" else None
        if purpose is None or not m.purposes or purpose in m.purposes:
            continue  # a pack listing no purpose at all lists no allow-list to misspell
        listed = ", ".join(sorted(m.purposes))
        # a misspelt purpose (personalisation) left the rule judging one with no allow-list: always skipped
        findings.append(_Finding(
            f"minimization.rules.{i}.params.purpose" if "purpose" in rule.params.model_fields_set else f"minimization.rules.{i}",
            ALLOWLIST_PURPOSE_UNLISTED.format(rule=rule.id, purpose=purpose, listed=listed),
        ))  # fmt: skip
    for j, attr in enumerate(pack.fairness.audit_attributes):
        if _forbidden_for_every_use(pack, attr):
            findings.append(_Finding(
                f"fairness.audit_attributes.{j}",
                f"attribute {attr!r} is required by the fairness audit but forbidden for every use; list it under minimization.audit_only_attributes to let audits read it",
            ))  # fmt: skip
    return findings


def _tcf_findings(pack: Any) -> list[_Finding]:
    """The purpose a pack maps IAB TCF to must be one of its own, resting on consent."""
    tcf = pack.consent.tcf
    if tcf is None:
        return []
    mapped = pack.consent.purposes.get(tcf.purpose)
    if mapped is None:
        listed = ", ".join(sorted(pack.consent.purposes)) or "none"
        return [_Finding("consent.tcf.purpose", f"consent.tcf.purpose {tcf.purpose!r} is not one of the pack's consent purposes ({listed})")]
    if mapped.lawful_basis != "consent":
        return [_Finding("consent.tcf.purpose", f"consent.tcf.purpose {tcf.purpose!r} rests on {mapped.lawful_basis}, but TCF purposes 1, 5 and 6 need consent; map TCF to a purpose whose lawful_basis is consent")]
    return []


def _rule_findings(pack: Any) -> tuple[list[_Finding], list[tuple[str, str]]]:
    """Per rule, attributes no use may read and thresholds outside their metric's range;
    and every ``(params path, attribute)`` the rules read, for the dataset's check."""
    findings = []
    referenced: list[tuple[str, str]] = []
    for section, i, rule in _numbered_rules(pack):
        check = get_check(rule.check)
        base = f"{section}.rules.{i}.params"
        for attr in check.attributes(rule.params):
            referenced.append((f"{base}", attr))
            joint = dict(zip(pack.fairness.intersection_names(), pack.fairness.intersections))
            for part in joint.get(attr, [attr]):
                if _forbidden_for_every_use(pack, part):
                    findings.append(_Finding(base, f"rule {rule.id!r} groups by {part!r}, which is forbidden for every use; list it under minimization.audit_only_attributes to let audits read it"))
        for field, value, low, high in check.threshold_bounds(rule.params):
            finding = _threshold_finding(rule.id, f"{base}.{field}", field, value, low, high)
            if finding is not None:
                findings.append(finding)
    return findings, referenced


_NEUTRAL_PARAM = {"mmr": "tradeoff", "calibration": "tradeoff", "provider_calibration": "tradeoff", "popularity_debias": "beta"}
"""Steps whose single trade-off parameter at 0 leaves the model's order as it is."""


def _rerank_findings(pack: Any, provider_items: dict[str, int] | None = None) -> list[_Finding]:
    """Re-ranking steps that can never change a list, or whose constraint can never bind, at the pack's list length
    (``quality.k``): warnings at the step's params."""
    findings: list[_Finding] = []
    k = int(pack.quality.k)
    for i, step in enumerate(pack.reranking.steps):
        base = f"reranking.steps.{i}.params"
        params = step.params
        name = step.name
        never = f"re-ranking step {i} ({name}) can never act"
        if name in _NEUTRAL_PARAM and getattr(params, _NEUTRAL_PARAM[name]) == 0:
            findings.append(_Finding(f"{base}.{_NEUTRAL_PARAM[name]}", f"{never}: {_NEUTRAL_PARAM[name]} 0 keeps the model's order", "warning"))
        elif name == "exploration" and params.method == "epsilon" and params.epsilon == 0:
            findings.append(_Finding(f"{base}.epsilon", f"{never}: epsilon 0 explores no place", "warning"))
        elif name == "exposure_cap" and params.max_share >= 1.0:
            findings.append(_Finding(f"{base}.max_share", f"{never}: max_share {params.max_share:g} caps no group (a group holds at most all of a list)", "warning"))
        elif name == "exposure_cap" and _cap_unreachable(params, pack):
            capped = _capped_codes(params, pack)
            findings.append(_Finding(f"{base}.max_share", f"re-ranking step {i} (exposure_cap) can never be met by the pack's provider groups: "
                                     f"{len(capped)} capped group(s) at max_share {params.max_share:g} hold at most "
                                     f"{len(capped) * params.max_share:.0%} of a list, and only items of no provider group may fill "
                                     f"the rest; every other list breaks the cap", "warning"))  # fmt: skip
        elif name == "fair_star":
            from governance.rerank.fair_star import adjusted_mtable, mtable

            table = adjusted_mtable(k, params.p, params.alpha, params.adjustment).table if params.adjust_alpha else mtable(k, params.p, params.alpha)
            if not table.any():
                findings.append(_Finding(f"{base}.p", f"{never} on lists of {k} (quality.k): with p {params.p:g} and alpha {params.alpha:g} "
                                         f"the minimum-protected table is all zeros, so no protected item is ever owed a place", "warning"))  # fmt: skip
        elif name == "group_proportions":
            findings += _unknown_code_findings(i, name, base, params.targets, pack)
            targets = {g: t for g, t in params.targets.items() if t > 0}
            if not targets:
                findings.append(_Finding(f"{base}.targets", f"{never}: no group has a positive target share", "warning"))
            elif params.weighting == "positions":
                small = sorted(g for g, t in targets.items() if int(k * t + 1e-9) == 0)
                if len(small) == len(targets):
                    findings.append(_Finding(f"{base}.targets", f"re-ranking step {i} (group_proportions) guarantees no group a place on "
                                             f"lists of {k} (quality.k): every target share is below 1/{k} (floor({k} p) = 0), so the "
                                             f"constraint it reports always holds and the shares act only as maxima", "warning"))  # fmt: skip
                elif small:
                    findings.append(_Finding(f"{base}.targets", f"group(s) {small} of re-ranking step {i} (group_proportions) are never owed a "
                                             f"place on lists of {k} (quality.k): their target share is below 1/{k}", "warning"))  # fmt: skip
        elif name == "exposure_targets":
            findings += _unknown_code_findings(i, name, base, params.targets, pack)
            findings += _exposure_targets_findings(i, base, params, k, pack, provider_items)
        elif name == "amortised_exposure":
            findings += _unknown_code_findings(i, name, base, params.targets, pack)
            if not any(t > 0 for t in params.targets.values()):
                findings.append(_Finding(f"{base}.targets", f"{never}: no group has a positive target share", "warning"))
            elif params.ndcg_budget == 0:
                findings.append(_Finding(f"{base}.ndcg_budget", f"{never}: ndcg_budget 0 allows no change to the model's order", "warning"))
            elif params.weight == 0 and params.item_weight == 0:
                findings.append(_Finding(f"{base}.weight", f"{never}: weight and item_weight 0 give exposure debt no say", "warning"))
    return findings


def _capped_codes(params: Any, pack: Any) -> set[int]:
    """The group codes an ``exposure_cap`` step caps among those the pack's provider groups carry."""
    known = set(_pack_group_codes(pack))
    return known if params.groups is None else known & set(params.groups)


def _cap_unreachable(params: Any, pack: Any) -> bool:
    """Every provider group of the pack is capped, and their caps together hold less than a whole list."""
    capped = _capped_codes(params, pack)
    return capped == set(_pack_group_codes(pack)) and params.max_share * len(capped) < 1.0 - 1e-9


def _pack_group_codes(pack: Any) -> dict[int, str]:
    """Code -> provider group of every group code the pack's re-rankers can see (``fairness.provider_group_codes``,
    else 1 for the protected group and 0 for all the others)."""
    codes = pack.fairness.provider_group_codes
    if codes is not None:
        return {int(code): str(label) for label, code in codes.items()}
    return {0: "others", 1: str(pack.fairness.protected_provider_group)}


def _unknown_code_findings(i: int, name: str, base: str, targets: dict[Any, float], pack: Any) -> list[_Finding]:
    """A warning at each target code of a group-targeting step that no provider group of the pack carries: no item
    ever has that code, so its target applies to nothing (a typo, or a codes map renamed under the step)."""
    known = _pack_group_codes(pack)
    listed = ", ".join(f"{code} = {label}" for code, label in sorted(known.items()))
    return [
        _Finding(f"{base}.targets.{code}", f"target code {code} of re-ranking step {i} ({name}) names no provider group of "
                 f"this pack (codes: {listed}); no item ever carries it, so its target applies to nothing", "warning")  # fmt: skip
        for code in sorted(targets, key=lambda c: (str(type(c)), c))
        if not isinstance(code, int) or code not in known
    ]


def _exposure_targets_findings(i: int, base: str, params: Any, k: int, pack: Any, provider_items: dict[str, int] | None) -> list[_Finding]:
    """``exposure_targets`` without a positive target, whose window no list of ``k`` places can reach, or (with the
    catalog's items per provider group) whose floor a group cannot reach for want of items."""
    from governance.rerank.exposure_targets import minimum_items, window_reachable

    if not any(t > 0 for t in params.targets.values()):
        return [_Finding(f"{base}.targets", f"re-ranking step {i} (exposure_targets) can never act: no group has a positive target share", "warning")]
    codes = sorted(params.targets)
    shares = [params.targets[c] for c in codes] + [max(0.0, 1.0 - sum(params.targets.values()))]
    if not window_reachable(k, shares, params.tolerance):
        return [_Finding(f"{base}.tolerance", f"re-ranking step {i} (exposure_targets) can never be met on lists of {k} (quality.k): "
                         f"no arrangement of {k} places gives every group an attention share within {params.tolerance:g} of its "
                         f"target (the top place alone holds {1 / _log_attention_total(k):.1%}); widen the tolerance or change the targets", "warning")]  # fmt: skip
    if provider_items is None:
        return []
    need = minimum_items(k, shares, params.tolerance)
    held = _items_per_code(pack, provider_items)
    short = [(code, held.get(code, 0), n) for code, n in zip(codes, need) if held.get(code, 0) < n]
    if not short:
        return []
    named = "; ".join(f"group {code} has {have} item(s), needs at least {n}" for code, have, n in short)
    return [_Finding(f"{base}.targets", f"re-ranking step {i} (exposure_targets) can never be met on lists of {k} (quality.k) with "
                     f"this catalog: a group's attention share reaches its floor only with enough items in the best places ({named})", "warning")]  # fmt: skip


def _provider_items(pack: Any, item_table: Any | None) -> dict[str, int] | None:
    """Items per provider group label of ``item_table`` (None without the table or its provider column)."""
    column = pack.fairness.provider_attribute
    if item_table is None or column is None or column not in item_table.columns:
        return None
    return {str(label): int(n) for label, n in item_table[column].value_counts(dropna=True).items()}


def _items_per_code(pack: Any, provider_items: dict[str, int]) -> dict[int, int]:
    """Items per re-ranker group code, from items per provider group label (``fairness.provider_group_codes``)."""
    from recommender.fairness import read_label

    # labels read as the re-rankers code them (governance.rerank.groups.provider_codes): "indie " is indie, blank unknown
    codes = {read_label(k): v for k, v in pack.fairness.provider_group_codes.items()} if pack.fairness.provider_group_codes is not None else None
    protected = read_label(pack.fairness.protected_provider_group)
    out: dict[int, int] = {}
    for raw, n in provider_items.items():
        label = read_label(raw)
        code = -1 if not label else codes.get(label, -1) if codes is not None else int(label == protected)
        out[code] = out.get(code, 0) + n
    return out


def _training_findings(pack: Any) -> list[_Finding]:
    """A ``training.fairness`` attribute the pack forbids, or a user attribute it does not declare (errors):
    every governed run would refuse it, so the pack is refused on load instead."""
    from recommender.errors import ConfigError
    from recommender.fair_training import check_attribute_allowed

    reweighting = pack.training_reweighting()
    try:
        check_attribute_allowed(reweighting, pack)
    except ConfigError as err:
        return [_Finding("training.fairness.attribute", str(err).removeprefix("fairness_reweighting.attribute: "))]
    return []


def _log_attention_total(k: int) -> float:
    """The attention ``1/log2(rank + 1)`` of ranks ``1..k`` in total."""
    import math

    return sum(1.0 / math.log2(r + 1) for r in range(1, k + 1))


def _threshold_finding(rule_id: str, path: str, field: str, value: Any, low: Any, high: Any) -> _Finding | None:
    """A rule that can never pass (an error) or never fail (a warning) for its threshold's range; else None."""
    lower_bound = field.split(".")[0].startswith("min")
    if lower_bound and value > high:
        return _Finding(path, f"rule {rule_id!r} can never pass: {field} {value} is above the highest possible value {high}")
    if lower_bound and value <= low:
        return _Finding(path, f"rule {rule_id!r} can never fail: {field} {value} is at or below the lowest possible value {low}", "warning")
    if not lower_bound and value < low:
        return _Finding(path, f"rule {rule_id!r} can never pass: {field} {value} is below the lowest possible value {low}")
    if not lower_bound and value >= high:
        return _Finding(path, f"rule {rule_id!r} can never fail: {field} {value} is at or above the highest possible value {high}", "warning")
    return None


def _dataset_findings(pack: Any, referenced: list[tuple[str, str]], columns: set[str]) -> list[_Finding]:
    """Attributes the pack reads that the dataset does not have."""
    findings = []
    listed = ", ".join(sorted(columns))
    joint = dict(zip(pack.fairness.intersection_names(), pack.fairness.intersections))
    for path, attr in referenced:
        for part in joint.get(attr, [attr]):  # a declared intersection reads its parts
            if part not in columns:
                findings.append(_Finding(path, f"attribute {part!r} is not in the dataset (its columns: {listed})"))
    for j, attr in enumerate(pack.fairness.audit_attributes):
        if attr not in columns:
            findings.append(_Finding(f"fairness.audit_attributes.{j}", f"attribute {attr!r} is not in the dataset (its columns: {listed})"))
    for purpose, spec in pack.minimization.purposes.items():
        for j, attr in enumerate(spec.allowed_inputs):
            if attr not in columns:
                findings.append(_Finding(f"minimization.purposes.{purpose}.allowed_inputs.{j}", f"allowed input {attr!r} is not in the dataset", "warning"))
    return findings


def _numbered_rules(pack: Any) -> list[tuple[str, int, Any]]:
    """Every rule as ``(section, index within its section, rule)``, in pack order."""
    counts: dict[str, int] = {}
    out = []
    for section, rule in pack.rules():
        index = counts.get(section, 0)
        counts[section] = index + 1
        out.append((section, index, rule))
    return out
