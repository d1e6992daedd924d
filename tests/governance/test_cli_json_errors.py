"""Under ``--json`` a command that fails prints one JSON error document on stdout, in the shape of a pack that
cannot be loaded (``{"valid": false, "issues": [...]}``), with the exit code it has without ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from cli_helpers import invoke
from typer.testing import CliRunner

from governance.cli._common import JsonErrorsGroup, emit_json, fail

ISSUE_KEYS = {"file", "line", "column", "path", "message", "severity"}


def _error_document(stdout: str) -> dict:
    doc = json.loads(stdout)  # one document, nothing else on stdout
    assert doc["valid"] is False and len(doc["issues"]) >= 1
    assert all(set(issue) == ISSUE_KEYS and issue["severity"] == "error" for issue in doc["issues"])
    return doc


def test_a_pack_that_cannot_be_loaded_gives_the_shape_the_other_errors_follow(tmp_path: Path) -> None:
    result = invoke("policy", "validate", tmp_path / "missing.yaml", "--json")
    assert result.exit_code == 2
    assert "no such file" in _error_document(result.stdout)["issues"][0]["message"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("lineage", "no-such-model"), "unknown model version 'no-such-model'"),
        (("train", "{missing}", "--no-tune", "--no-carbon"), "no such file or directory"),
        (("data", "validate", "{missing}"), "no such file or directory"),
        (("evaluate", "{missing}"), "no such file or directory"),
        (("train", "synthetic:n_users=oops", "--no-tune", "--no-carbon"), "n_users"),
    ],
)
def test_a_run_time_error_under_json_is_one_json_document_with_the_same_exit_code(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    argv = [a.format(missing=tmp_path / "missing.csv") for a in args]
    plain = invoke(*argv)
    as_json = invoke(*argv, "--json")
    assert plain.exit_code == as_json.exit_code == 2
    assert words in plain.stderr and plain.stdout == ""
    doc = _error_document(as_json.stdout)
    assert words in doc["issues"][0]["message"]


def test_an_error_after_the_commands_document_stays_on_stderr() -> None:
    app = typer.Typer(cls=JsonErrorsGroup)

    @app.command()
    def refuse(json_output: bool = typer.Option(False, "--json")) -> None:
        if json_output:
            emit_json({"promoted": False})
        raise fail("the gate refused", code=1)

    @app.command()
    def other() -> None:
        raise fail("no JSON asked for")

    result = CliRunner().invoke(app, ["refuse", "--json"], catch_exceptions=False)
    assert result.exit_code == 1 and json.loads(result.stdout) == {"promoted": False}
    assert "the gate refused" in result.stderr
    plain = CliRunner().invoke(app, ["other"], catch_exceptions=False)
    assert plain.exit_code == 2 and plain.stdout == "" and "no JSON asked for" in plain.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("recommend", "u1", "--k", "abc"), "Invalid value for '--k'"),  # a bad option value
        (("lineage", "--no-such-option"), "No such option: --no-such-option"),
        (("no-such-command",), "No such command 'no-such-command'"),
        (("deploy", "rollback", "--expected"), "Option '--expected' requires an argument"),
    ],
)
def test_a_usage_error_of_the_parser_under_json_is_one_json_document_with_exit_code_2(args: tuple[str, ...], words: str) -> None:
    plain = invoke(*args)
    as_json = invoke(*args, "--json") if args[-1] != "--expected" else invoke(*args[:-1], "--json", args[-1])
    assert plain.exit_code == as_json.exit_code == 2
    assert plain.stdout == ""
    message = _error_document(as_json.stdout)["issues"][0]["message"]
    assert words in message and message.startswith("recgov")  # the command it is about, then click's own words
    assert words in as_json.stderr  # the usual text stays on stderr for the person reading the log


def test_a_json_option_after_the_end_of_options_asks_for_no_json() -> None:
    result = invoke("lineage", "--no-such-option", "--", "--json")
    assert result.exit_code == 2 and result.stdout == ""
