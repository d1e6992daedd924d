"""Loading a pack: the public entry points, warnings, dataset columns, positions and the content hash."""

from __future__ import annotations

import re

import pytest

from governance.located import PackIssue
from governance.policy import LoadedPack, PolicyError, load_pack, parse_pack
from recommender.errors import ConfigError

PACK = """\
# A small pack used throughout this module.
apiVersion: recgov/v1
metadata:
  name: load-test
  version: 1.2.0
  owner: tests
minimization:
  purposes:
    personalization:
      allowed_inputs: [user_id, item_id, value]
  audit_only_attributes: [gender]
  rules:
    - id: min-inputs
      check: input_allowlist
      description: Only interaction fields reach the model.
carbon:
  rules:
    - id: carbon-budget
      check: carbon_budget
      description: At most 1 kWh.
      params:
        max_energy_kwh: 1.0
quality:
  k: 10
  rules:
    - id: lift
      check: baseline_lift
      description: Beat popularity by 20%.
      params:
        metric: ndcg
        min_ratio: 1.2
    - id: segments
      check: segment_consistency
      description: Groups by gender are served alike.
      params:
        segment: gender
        max_gap: 0.05
gate:
  required_rules: [min-inputs]
"""

# The same pack: other comments, whitespace, key order, flow style, explicit defaults.
PACK_REWRITTEN = """\
apiVersion:   recgov/v1
quality:
  rules:
    - {id: lift, description: Beat popularity by 20%., check: baseline_lift, params: {min_ratio: 1.2, metric: ndcg}}
    - check: segment_consistency
      id: segments
      severity: block          # the default, written out
      description: Groups by gender are served alike.
      params: {max_gap: 0.05, segment: gender}


  k: 10
gate: {required_rules: [min-inputs]}
metadata: {owner: tests, version: 1.2.0, name: load-test}
carbon:
  rules:
    - id: carbon-budget
      description: At most 1 kWh.
      check: carbon_budget
      params: {max_energy_kwh: 1}     # an int where a float is expected
minimization:
  rules:
    - check: input_allowlist
      id: min-inputs
      description: Only interaction fields reach the model.
  audit_only_attributes:
    - gender
  purposes:
    personalization: {allowed_inputs: [user_id, item_id, value]}
"""


def position_of(text: str, fragment: str) -> tuple[int, int]:
    """1-based (line, column) of the only occurrence of ``fragment`` in ``text``."""
    assert text.count(fragment) == 1, fragment
    before = text[: text.index(fragment)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def test_load_and_parse_agree(tmp_path):
    path = tmp_path / "pack.yaml"
    path.write_text(PACK, encoding="utf-8")
    loaded = load_pack(path)
    parsed = parse_pack(PACK, "inline.yaml")
    assert isinstance(loaded, LoadedPack)
    assert loaded.source == str(path) and parsed.source == "inline.yaml"
    assert loaded.content_hash == parsed.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", loaded.content_hash)
    assert [r.id for _, r in loaded.pack.rules()] == ["min-inputs", "carbon-budget", "lift", "segments"]
    assert loaded.warnings == []


def test_stamp_carries_name_version_and_hash():
    loaded = parse_pack(PACK)
    assert loaded.stamp() == {"pack": "load-test", "pack_version": "1.2.0", "pack_hash": loaded.content_hash}


def test_rule_position_is_the_rule_item_in_the_file():
    loaded = parse_pack(PACK)
    lines = PACK.splitlines()
    for rule_id in ("min-inputs", "carbon-budget", "lift", "segments"):
        line, column = loaded.rule_position(rule_id)
        assert lines[line - 1][column - 1 :] == f"id: {rule_id}"
    assert loaded.rule_position("no-such-rule") is None


def test_missing_file_is_a_policy_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_pack(path)
    assert info.value.issues == [PackIssue(str(path), None, None, "", "no such file; expected a YAML policy pack")]
    assert isinstance(info.value, ConfigError)


def test_a_directory_cannot_be_read(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_pack(tmp_path)
    assert info.value.issues == [PackIssue(str(tmp_path), None, None, "", "cannot be read (Is a directory)")]


def test_a_never_failing_threshold_is_a_warning_not_an_error():
    text = PACK.replace("max_gap: 0.05", "max_gap: 0.05\n    - id: ndcg-any\n      check: metric_bound\n      description: Always true.\n      params: {metric: ndcg, min: 0.0}")
    loaded = parse_pack(text, "w.yaml")
    line, column = position_of(text, "0.0}")
    assert [(w.line, w.column, w.path, w.message, w.severity) for w in loaded.warnings] == [
        (line, column, "quality.rules.2.params.min", "rule 'ndcg-any' can never fail: min 0.0 is at or below the lowest possible value 0.0", "warning")
    ]
    assert str(loaded.warnings[0]) == (
        f"w.yaml:{line}:{column}: warning: quality.rules.2.params.min: rule 'ndcg-any' can never fail: min 0.0 is at or below the lowest possible value 0.0"
    )


def test_dataset_columns_find_attributes_the_data_lacks():
    columns = ["user_id", "item_id", "timestamp", "age"]
    with pytest.raises(PolicyError) as info:
        parse_pack(PACK, "p.yaml", dataset_columns=columns)
    issues = [i.to_dict() for i in info.value.issues]
    params_at = position_of(PACK, "segment: gender")
    value_at = position_of(PACK, "value]")
    assert issues == [
        {"file": "p.yaml", "line": params_at[0], "column": params_at[1], "path": "quality.rules.1.params",
         "message": "attribute 'gender' is not in the dataset (its columns: age, item_id, timestamp, user_id)", "severity": "error"},
        {"file": "p.yaml", "line": value_at[0], "column": value_at[1], "path": "minimization.purposes.personalization.allowed_inputs.2",
         "message": "allowed input 'value' is not in the dataset", "severity": "warning"},
    ]  # fmt: skip


def test_dataset_columns_that_cover_the_pack_load_cleanly():
    loaded = parse_pack(PACK, dataset_columns=["user_id", "item_id", "value", "timestamp", "gender"])
    assert loaded.warnings == []


def test_yaml_merge_keys_load():
    """Regression: a key merged with ``<<: *anchor`` has no position of its own; the loader raised KeyError."""
    text = PACK.replace(
        "  rules:\n    - id: lift\n      check: baseline_lift\n      description: Beat popularity by 20%.\n      params:\n        metric: ndcg\n",
        "  rules:\n    - id: lift\n      check: baseline_lift\n      description: Beat popularity by 20%.\n      params:\n        <<: &ndcg {metric: ndcg}\n",
    )
    assert "<<: &ndcg" in text
    assert parse_pack(text).content_hash == parse_pack(PACK).content_hash


# -- content hash -------------------------------------------------------------------
def test_hash_ignores_comments_whitespace_key_order_and_style():
    assert parse_pack(PACK_REWRITTEN).content_hash == parse_pack(PACK).content_hash


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("min_ratio: 1.2", "min_ratio: 1.21"),
        ("max_gap: 0.05", "max_gap: 0.06"),
        ("max_energy_kwh: 1.0", "max_energy_kwh: 0.9"),
        ("k: 10", "k: 20"),
        ("version: 1.2.0", "version: 1.2.1"),
        ("At most 1 kWh.", "At most one kWh."),
        ("[user_id, item_id, value]", "[user_id, item_id, value, timestamp]"),
        ("required_rules: [min-inputs]", "required_rules: [min-inputs, lift]"),
    ],
)
def test_any_change_of_content_changes_the_hash(old, new):
    assert old in PACK
    assert parse_pack(PACK.replace(old, new)).content_hash != parse_pack(PACK).content_hash


def test_version_is_stamped_and_hashed():
    bumped = parse_pack(PACK.replace("version: 1.2.0", "version: 1.3.0-rc.1"))
    assert bumped.version == "1.3.0-rc.1"
    assert bumped.stamp()["pack_version"] == "1.3.0-rc.1"
    assert bumped.stamp()["pack_hash"] == bumped.content_hash != parse_pack(PACK).content_hash
