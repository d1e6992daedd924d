"""Red team: real data reaches provider rules through ``--items``; without it they are skipped, never passed.

Hole pinned: ``recgov audit`` on a MovieLens-100K directory (which names no provider) with a
provider-exposure rule passed it, every item in one group; and no command could bring an item
table to the rules. Run through the CLI, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from governance.cli.core import ITEMS_MAP_WITHOUT_ITEMS
from governance.collect_fairness import EMPTY_ITEM_COLUMN
from recommender.item_table import DUPLICATE_ITEM
from recommender.loaders import write_movielens_100k
from recommender.synthetic import SyntheticSpec, generate

runner = CliRunner()

PACK = """\
apiVersion: recgov/v1
metadata: {name: items-pack, version: 0.1.0, owner: tests}
carbon: {measure: false}
quality: {tune: false}
fairness:
  provider_attribute: provider
  rules:
    - {id: exposure, check: provider_exposure, description: d, params: {min_ratio: 0.01, min_group_size: 2}}
    - {id: decades, check: exposure_gini, description: d, params: {max: 1.0}}
"""


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ml")
    return write_movielens_100k(
        generate(SyntheticSpec(n_users=150, n_items=80, n_interactions=4000, seed=2)), directory
    )


def audit(db_url: str, tmp_path: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    args = ["audit", str(data), "--pack", str(pack), "--out", str(tmp_path / "out"), "--database-url", db_url, *extra]
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, result.stdout, result.stderr


def statuses(stdout: str) -> dict[str, dict]:
    return {r["rule_id"]: r for r in json.loads(stdout)["results"]}


def test_movielens_without_providers_skips_the_provider_rule(db_url: str, tmp_path: Path, movielens: Path) -> None:
    code, stdout, stderr = audit(db_url, tmp_path, movielens)
    assert code == 0, stderr
    exposure = statuses(stdout)["exposure"]
    assert exposure["status"] == "skipped"
    assert EMPTY_ITEM_COLUMN.split("{n}")[0].format(column="provider") in exposure["message"]


def test_an_item_table_brings_providers_to_the_rule(db_url: str, tmp_path: Path, movielens: Path) -> None:
    rows = ["movie,studio"] + [f"{i},{'major' if i % 3 else 'indie'}" for i in range(1, 81)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    code, stdout, stderr = audit(
        db_url,
        tmp_path,
        movielens,
        "--items",
        str(tmp_path / "items.csv"),
        "--items-map",
        "item_id=movie,provider=studio",
    )
    assert code == 0, stderr
    exposure = statuses(stdout)["exposure"]
    assert exposure["status"] in ("pass", "fail") and set(exposure["evidence"]["groups"]) == {"indie", "major"}


def test_a_bad_item_table_is_one_located_line_and_exit_2(db_url: str, tmp_path: Path, movielens: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("movie,studio\n1,major\n2,indie\n1,indie\n")
    code, stdout, stderr = audit(
        db_url, tmp_path, movielens, "--items", str(path), "--items-map", "item_id=movie,provider=studio"
    )
    expected = DUPLICATE_ITEM.format(path=path, where="line 4", column="movie", item="1", first="line 2")
    assert code == 2, stdout
    [issue] = json.loads(stdout)["issues"]  # under --json the error is the one document on stdout
    assert json.loads(stdout)["valid"] is False and " ".join(issue["message"].split()) == expected
    assert " ".join(stderr.split()) == f"error: {expected}"
    code, _, stderr = audit(db_url, tmp_path, movielens, "--items-map", "item_id=movie")
    assert code == 2 and " ".join(stderr.split()) == f"error: {ITEMS_MAP_WITHOUT_ITEMS}"


@pytest.mark.parametrize("command", [["data", "validate"], ["evaluate", "--no-tune"], ["train", "--no-tune", "--no-carbon"],
                                     ["audit", "--pack", "baseline"], ["gate", "--pack", "baseline"],
                                     ["policy", "validate"], ["deploy", "promote"], ["recommend", "u1"]])  # fmt: skip
def test_every_command_that_takes_data_takes_an_item_table(command: list[str]) -> None:
    """One definition of the options, on every command that loads DATA for a model, an audit or a pack check
    (the subject-request commands load a subject's events only: an item table has nothing to add there)."""
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--items " in result.stdout and "--items-map" in result.stdout
