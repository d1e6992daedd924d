"""Red team: a pack file cannot stall or crash the loader, on the command line as over the API.

Holes pinned (each test fails on the loader without limits):

* an alias bomb ("billion laughs") was expanded node by node: a few hundred
  bytes took seconds and gigabytes (9 levels of 9 aliases: 387 million strings);
* nesting thousands deep (brackets or indented mappings) ended in a
  ``RecursionError``: a traceback, not a located error with exit 2 (an alias
  inside the node it names is pinned as a guard: it did not crash before);
* a pack file was read whole whatever its size (a device such as
  ``/dev/zero`` never ends).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from governance.located import (
    ALIAS_CYCLE,
    TOO_DEEP,
    TOO_LARGE,
    TOO_MANY_ALIASES,
    TOO_MANY_NODES,
    YAML_LIMITS,
    measure_yaml,
)
from governance.policy import PolicyError, load_pack, parse_pack

HEADER = "apiVersion: recgov/v1\nmetadata: {name: hostile, version: 1.0.0, owner: red team}\n"
SHIPPED = Path(__file__).resolve().parents[2] / "policies"


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = [HEADER.rstrip("\n"), 'l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion-laughs": (billion_laughs(), 8, TOO_MANY_NODES.format(limit=YAML_LIMITS.max_nodes)),
    "alias-cycle": (HEADER + "x: &loop {again: *loop}\n", 3, ALIAS_CYCLE.format(anchor="loop")),
    "nested-sequences": ("x: " + "[" * 50_000, 1, TOO_DEEP.format(limit=YAML_LIMITS.max_depth)),
    "nested-mappings": ("x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)) + " " * 200 + "v: 1\n", 33, TOO_DEEP.format(limit=YAML_LIMITS.max_depth)),
    "many-aliases": (HEADER + "a: &a 1\nx: [" + ", ".join(["*a"] * (YAML_LIMITS.max_aliases + 1)) + "]\n", 4, TOO_MANY_ALIASES.format(limit=YAML_LIMITS.max_aliases)),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_pack_is_refused_cheaply_with_a_located_reason(name: str) -> None:
    text, line, message = HOSTILE[name]
    began = time.monotonic()
    with pytest.raises(PolicyError) as caught:
        parse_pack(text, "hostile.yaml")
    assert time.monotonic() - began < 2.0
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.message) == ("hostile.yaml", line, message)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_cli_gives_the_same_limit_as_one_located_line_and_exit_2(name: str, tmp_path: Path) -> None:
    text, line, message = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = [entry for entry in result.output.splitlines() if entry.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{path}:{line}:") and lines[0].endswith(message)


def test_a_pack_file_over_the_size_limit_is_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: a gigabyte that takes no disk
        handle.write(HEADER.encode())
        handle.truncate(1024**3)
    with pytest.raises(PolicyError) as caught:
        load_pack(big)
    assert caught.value.issues[0].message == TOO_LARGE.format(size=1024**3, limit=YAML_LIMITS.max_bytes)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_that_never_ends_is_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        load_pack("/dev/zero")
    assert caught.value.issues[0].message == TOO_LARGE.format(size=f"more than {YAML_LIMITS.max_bytes}", limit=YAML_LIMITS.max_bytes)


def test_a_small_pack_with_anchors_still_loads() -> None:
    """The limits refuse bombs, not anchors: a pack may share a value through an alias."""
    text = HEADER + "fairness:\n  rules: []\nquality:\n  rules: &none []\ncarbon:\n  rules: *none\n"
    assert parse_pack(text).name == "hostile"


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_file_is_well_within_the_limits(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.encode()) < YAML_LIMITS.max_bytes // 4
    assert measure_yaml(text, str(path)) < YAML_LIMITS.max_nodes // 4
