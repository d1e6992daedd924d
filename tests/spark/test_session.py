"""Starting Spark: a master URL Spark does not accept, or a JVM that cannot start, is one line and exit 2, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.spark.session import spark_available, spark_master
from recommender.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DATA = "synthetic:n_users=30,n_items=20,n_interactions=300,seed=1"


@pytest.mark.parametrize("url", ["local", "local[2]", "local[*]", "local[4,3]", "local-cluster[2,1,1024]", "yarn", "spark://h:7077,h2:7077", "k8s://https://h:443"])
def test_the_master_forms_spark_accepts_pass(url: str) -> None:
    assert spark_master(url) == url


@pytest.mark.parametrize("url", ["bogus://x", "local[0]", "local[two]", "mesos://h:5050", "spark:/h", " "])
def test_a_master_spark_would_refuse_is_refused_before_a_jvm_starts(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECGOV_SPARK_MASTER", raising=False)
    with pytest.raises(ConfigError, match="the Spark master must be a URL such as local"):
        spark_master(url)
    monkeypatch.setenv("RECGOV_SPARK_MASTER", "bogus://env")
    with pytest.raises(ConfigError, match="^RECGOV_SPARK_MASTER: .*'bogus://env'"):
        spark_master()


def test_the_commands_refuse_a_bad_master_in_one_line_and_write_nothing(tmp_path: Path, recgov_home: Path) -> None:
    from governance.cli import app

    runner = CliRunner()
    out = tmp_path / "o2"
    for args in (["batch", DATA, "--pack", "eu-gdpr-dsa", "--engine", "spark", "--spark-master", "bogus://x", "--out", str(out)],
                 ["train", DATA, "--pack", "eu-gdpr-dsa", "--engine", "spark", "--spark-master", "bogus://x"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "--spark-master: the Spark master must be a URL" in result.output and "'bogus://x'" in result.output
        assert "Traceback" not in result.output
    assert not out.exists()


def test_a_jvm_that_cannot_start_is_one_line_naming_the_master(tmp_path: Path, recgov_home: Path) -> None:
    """A real failed start (a driver heap the JVM refuses), in a fresh process: no JVM runs there yet."""
    missing = spark_available()
    if missing:
        pytest.skip(missing)
    env = {**os.environ, "RECGOV_HOME": str(recgov_home), "RECGOV_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
           "RECGOV_SPARK_DRIVER_MEMORY": "bogus", "RECGOV_SPARK_MASTER": "local[1]"}  # fmt: skip
    cli = [sys.executable, "-c", "from governance.cli import main; main()", "batch", DATA, "--pack", "eu-gdpr-dsa", "--engine", "spark", "--out", str(tmp_path / "o")]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "Spark could not start on master 'local[1]'" in ours[0], done.stderr
    assert not (tmp_path / "o").exists()


def test_the_commands_refuse_a_master_no_connection_reaches_before_reading_the_data(tmp_path: Path, recgov_home: Path) -> None:
    """Regression: ``recgov batch`` and ``recgov train --engine spark`` read the whole data set (minutes at scale) and
    only then found that the standalone master does not answer; ``recgov gate`` already refused it first."""
    import socket

    from governance.cli import app

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    master = f"spark://127.0.0.1:{port}"
    unread = str(tmp_path / "never-read.csv")  # no such file: reading it would be the first error
    runner = CliRunner()
    for args in (["batch", unread, "--pack", "eu-gdpr-dsa", "--engine", "spark", "--spark-master", master, "--out", str(tmp_path / "o")],
                 ["train", unread, "--pack", "eu-gdpr-dsa", "--engine", "spark", "--spark-master", master]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"the Spark master '{master}' cannot be reached" in result.output and "no such file" not in result.output
