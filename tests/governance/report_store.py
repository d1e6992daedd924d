"""A store with what a regulator's report shows, built through the public CLI (for the report tests).

Not a test module: ``test_report.py`` and ``test_report_browser.py`` import it.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from governance.cli import app

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def run_cli(runner: CliRunner, *args: str, codes: tuple[int, ...] = (0,)) -> str:
    """Run a recgov command; assert its exit code; return its stdout."""
    done = runner.invoke(app, list(args), catch_exceptions=False)
    assert done.exit_code in codes, (args, done.exit_code, done.output)
    return done.stdout


def build_report_store(root: Path, subjects: tuple[str, str]) -> str:
    """Train and audit a model, record a grant and a withdrawal, erase the second subject, sign a checkpoint.

    Runs against the store the environment names (the caller sets ``RECGOV_HOME``
    and ``RECGOV_DATABASE_URL``); returns the model version.
    """
    runner = CliRunner()
    version = json.loads(run_cli(runner, "train", DATA, "--no-tune", "--no-carbon", "--json"))["model_version"]
    run_cli(runner, "audit", DATA, "--pack", "baseline", "--model", version, "--no-train", "--out", str(root / "gate"), "--json", codes=(0, 1))
    for subject, status in zip(subjects, ("granted", "withdrawn")):
        run_cli(runner, "consent", "set", subject, "--purpose", "personalization", "--status", status, "--basis", "consent")
    run_cli(runner, "subject", "erase", subjects[1], "--pack", "baseline")
    run_cli(runner, "trail", "checkpoint")
    return version
