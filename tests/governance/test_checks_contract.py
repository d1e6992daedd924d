"""The contract every registered check passes (after scikit-learn's ``parametrize_with_checks``).

A new check only adds its smallest valid ``params`` to ``EXAMPLE_PARAMS``; the
tests are shared. ``test_every_check_has_example_params`` fails until it does.
"""

from __future__ import annotations

import inspect
import json

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import SECTIONS, PolicyPack, pack_json_schema, parse_pack
from governance.registry import Check, CheckResult, Status, get_check, register, registered_checks
from recommender.errors import ConfigError

# The smallest valid params of each check (some checks need at least one bound).
EXAMPLE_PARAMS: dict[str, dict] = {
    "metric_bound": {"metric": "ndcg", "min": 0.05},
    "baseline_lift": {},
    "segment_consistency": {"min_ratio": 0.5},
    "proxy_leakage": {},
    "consent_coverage": {},
    "retention_window": {},
    "erasure_deadline": {},
    "validation_findings": {},
    "data_drift": {},
    "input_allowlist": {},
    "carbon_budget": {"max_energy_kwh": 1.0},
    "consumer_gap": {"attribute": "gender", "max_difference": 0.05},
    "disparate_impact": {"attribute": "gender", "privileged": "M"},
    "provider_exposure": {"max_ratio": 1.25},
    "exposure_gini": {"max": 0.9},
    "popularity_bias": {"max_arp_ratio": 2.0},
    "calibration": {"max_kl": 1.0},
    "off_policy_non_inferiority": {},
    "off_policy_exposure": {"group": "small", "max_drop": 0.05},
    "ann_recall": {},
    "temporal_leakage": {},
    "label_construction": {},
}

CHECKS = registered_checks()


def test_the_registry_holds_the_known_checks():
    assert sorted(CHECKS) == sorted(EXAMPLE_PARAMS)


def test_every_check_has_example_params():
    missing = sorted(set(CHECKS) - set(EXAMPLE_PARAMS))
    assert not missing, f"add the smallest valid params of {missing} to EXAMPLE_PARAMS"


@pytest.fixture(params=sorted(CHECKS))
def check(request) -> type[Check]:
    return CHECKS[request.param]


def one_rule_pack(check: type[Check], params: dict):
    """A pack holding one rule of ``check`` in its section, loaded through the public path."""
    rule = {"id": f"only-{check.name.replace('_', '-')}", "check": check.name, "description": "The rule under test.", "params": params}
    text = f"apiVersion: recgov/v1\nmetadata: {{name: contract, version: 0.1.0, owner: tests}}\n{check.section}:\n  rules:\n    - {json.dumps(rule)}\n"
    return parse_pack(text, f"{check.name}.yaml")


def test_name_is_snake_case_and_registered_under_itself(check):
    assert check.name.isidentifier() and check.name == check.name.lower()
    assert "__" not in check.name and not check.name.startswith("_") and not check.name.endswith("_")
    assert get_check(check.name) is check


def test_section_is_a_pack_section(check):
    assert check.section in SECTIONS
    assert check.section in PolicyPack.model_fields


def test_needs_are_fact_groups(check):
    assert check.needs, f"{check.name} reads no facts"
    assert set(check.needs) <= set(AuditFacts.model_fields) - {"dataset"}


def test_summary_and_docstring_are_present(check):
    assert check.summary.strip()
    assert (check.__doc__ or "").strip()


def test_evaluate_takes_config_facts_and_section(check):
    """Regression: the protocol declared ``evaluate(config, facts)`` while the engine passes the section too."""
    assert list(inspect.signature(check.evaluate).parameters) == ["self", "config", "facts", "section"]
    assert list(inspect.signature(Check.evaluate).parameters) == ["self", "config", "facts", "section"]


def test_config_forbids_unknown_keys(check):
    config = check.Config.model_validate(EXAMPLE_PARAMS[check.name])
    assert config.model_config["extra"] == "forbid"
    with pytest.raises(ValidationError) as info:
        check.Config.model_validate({**EXAMPLE_PARAMS[check.name], "no_such_param": 1})
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("extra_forbidden", ("no_such_param",))]


def test_config_round_trips(check):
    """LensKit's config round trip: dump and validate again gives the same config."""
    config = check.Config.model_validate(EXAMPLE_PARAMS[check.name])
    assert check.Config.model_validate(config.model_dump()) == config
    assert check.Config.model_validate_json(config.model_dump_json()) == config


def test_example_rule_loads_in_its_section_only(check):
    loaded = one_rule_pack(check, EXAMPLE_PARAMS[check.name])
    assert [(s, r.check) for s, r in loaded.pack.rules()] == [(check.section, check.name)]
    assert loaded.warnings == []


def test_empty_facts_give_skipped_never_pass(check):
    """Called directly and through the engine: no facts, no verdict."""
    section = PolicyPack.model_fields[check.section].default_factory()
    direct = check().evaluate(check.Config.model_validate(EXAMPLE_PARAMS[check.name]), AuditFacts(), section)
    assert isinstance(direct, CheckResult)
    assert direct.status == Status.skipped
    assert direct.message.strip() and direct.value is None

    report = evaluate(one_rule_pack(check, EXAMPLE_PARAMS[check.name]), AuditFacts())
    (result,) = report.results
    assert result.status == Status.skipped
    assert result.message == direct.message


def test_threshold_bounds_and_attributes_are_well_formed(check):
    config = check.Config.model_validate(EXAMPLE_PARAMS[check.name])
    for field, value, low, high in check.threshold_bounds(config):
        assert field.split(".")[0] in check.Config.model_fields
        assert isinstance(value, float) and low < high
    assert all(isinstance(a, str) for a in check.attributes(config))


def test_every_config_field_is_documented_in_the_pack_schema(check):
    """Field docstrings are the pack reference: each becomes a description in the JSON Schema."""
    schema = pack_json_schema()
    rule_def = schema["$defs"][f"{''.join(p.title() for p in check.name.split('_'))}Rule"]
    assert rule_def["properties"]["check"]["const"] == check.name
    assert rule_def["description"].strip()
    ref = rule_def["properties"]["params"]["$ref"].removeprefix("#/$defs/")
    params = schema["$defs"][ref]
    assert params["additionalProperties"] is False
    assert set(params["properties"]) == set(check.Config.model_fields)
    undocumented = [f for f, spec in params["properties"].items() if not spec.get("description", "").strip()]
    assert not undocumented, f"{check.name}.Config fields without a docstring: {undocumented}"


# -- the registry itself --------------------------------------------------------------
def test_unknown_name_lists_the_registered_checks():
    with pytest.raises(ConfigError) as info:
        get_check("ndcg_floor")
    assert str(info.value) == f"unknown check 'ndcg_floor'; the registered checks are: {', '.join(sorted(CHECKS))}"


def test_registered_checks_is_a_copy():
    copy = registered_checks()
    copy.clear()
    assert registered_checks() == CHECKS


def _check_class(name: str, extra: str = "forbid") -> type[Check]:
    class Config(BaseModel):
        model_config = ConfigDict(extra=extra)

    return type("Probe", (Check,), {"name": name, "section": "quality", "Config": Config})


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("MetricBound", "forbid", "check name 'MetricBound' must be snake_case"),
        ("metric-bound", "forbid", "check name 'metric-bound' must be snake_case"),
        ("metric_bound", "forbid", "check name 'metric_bound' is already registered by MetricBound"),
        ("probe_check", "ignore", "Probe.Config must set extra='forbid'"),
    ],
)
def test_register_refuses_bad_checks(name, extra, message):
    with pytest.raises(ConfigError) as info:
        register(_check_class(name, extra))
    assert str(info.value) == message
    assert registered_checks() == CHECKS
