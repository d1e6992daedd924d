"""A store with what a regulator's report shows, built through the public CLI (for the report tests).

Not a test module: ``test_report.py`` and ``test_report_browser.py`` import it, and the
tests of the regulator's package build on :class:`ConsentedStore` (the ``consented_store``
fixture of ``conftest.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


CONSENTED_DATA = DATA
"""The data the consented store's models are trained on (its users are the consent export's subjects)."""
CONSENTED_USERS = 300
_TRAIN = ("train", CONSENTED_DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--json")


def consent_denied(user: int) -> bool:
    """Whether synthetic user ``user`` denied personalization in the consented store's export (every sixth)."""
    return user % 6 == 0


@dataclass(frozen=True)
class ConsentedStore:
    """A store under its own ``RECGOV_HOME``, named by ``RECGOV_DATABASE_URL`` while the module runs, with consent imported."""

    root: Path
    """The module's folder: the store file, ``home/`` (RECGOV_HOME), and whatever the module writes."""
    url: str
    """The store's SQLAlchemy URL (a SQLite file under ``root``)."""
    runner: CliRunner

    def cli(self, *args: str, codes: tuple[int, ...] = (0,)) -> str:
        """Run a recgov command on the store; assert its exit code is one of ``codes``; its stdout."""
        return run_cli(self.runner, *args, codes=codes)

    def train(self, *extra: str) -> str:
        """Train a small model (8 factors, 4 iterations, no tuning) on :data:`CONSENTED_DATA`; its model version."""
        return json.loads(self.cli(*_TRAIN, *extra))["model_version"]

    def train_under_eu_pack(self) -> str:
        """Train under the EU pack (its training filter judges consent as of 2025-01-01); its model version."""
        return self.train("--pack", "eu-gdpr-dsa", "--as-of", "2025-01-01")
