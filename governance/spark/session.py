"""The Spark session the batch engine runs on, and what it takes to have one.

PySpark is an optional extra (``pip install 'recgov[spark]'``) and needs a Java
runtime (OpenJDK 17 is what CI installs). :func:`spark_session` says which of the
two is missing, and how to get it, instead of failing deep inside py4j.
The driver's heap is ``RECGOV_SPARK_DRIVER_MEMORY`` (``2g`` by default; it only takes effect when the
session's JVM starts). The master URL comes from ``RECGOV_SPARK_MASTER`` (``local[2]`` by default: two
local cores); a real cluster is named the usual way (``spark://host:7077``,
``yarn``, ``k8s://...``), and then every path handed to the engine must be one the
executors can read and write (a shared file system or an object store).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import Any

from recommender.errors import ConfigError

__all__ = ["DEFAULT_MASTER", "NO_JAVA", "NO_PYSPARK", "check_reachable", "java_available", "spark_available", "spark_master", "spark_session"]

DEFAULT_MASTER = "local[2]"
_MASTER_FORMS = re.compile(
    r"local(\[\s*([1-9][0-9]*|\*)\s*(,\s*[0-9]+\s*)?\])?"
    r"|local-cluster\[\s*[0-9]+\s*,\s*[0-9]+\s*,\s*[0-9]+\s*\]"
    r"|yarn|spark://\S+|k8s://\S+"
)
"""The master URLs ``spark-submit`` accepts (Spark 4: ``local``, ``local[n]``, ``local[*]``, ``local[n,retries]``,
``local-cluster[...]``, ``spark://``, ``yarn``, ``k8s://``); anything else makes the JVM exit before PySpark
can say why."""
MASTER_FORMS_TEXT = "local[2], local[*], spark://host:7077, yarn or k8s://https://host:443"
NO_PYSPARK = "the Spark engine needs PySpark: pip install 'recgov[spark]' (or pip install pyspark), then run again"
NO_JAVA = (
    "the Spark engine needs a Java runtime (17 or newer) and found none on PATH or in JAVA_HOME: install one "
    "(Debian: apt-get install openjdk-17-jre-headless), or run without --engine spark"
)


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH or under ``JAVA_HOME``."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def spark_available() -> str | None:
    """None when Spark can run here, else why not (the message to show)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return NO_PYSPARK
    if not java_available():
        return NO_JAVA
    return None


def spark_master(master: str | None = None) -> str:
    """The master URL: the one given, else ``RECGOV_SPARK_MASTER``, else :data:`DEFAULT_MASTER`.

    Checked here, before a JVM starts: an unknown form (``bogus://x``) makes ``spark-submit`` exit
    and PySpark report only that its gateway died.

    Raises
    ------
    ConfigError
        The URL is empty or not a form Spark accepts; the message names where it came from.
    """
    source = "--spark-master" if master else "RECGOV_SPARK_MASTER" if os.environ.get("RECGOV_SPARK_MASTER") else "the default"
    chosen = master or os.environ.get("RECGOV_SPARK_MASTER") or DEFAULT_MASTER
    if not isinstance(chosen, str) or not chosen.strip() or not _MASTER_FORMS.fullmatch(chosen.strip()):
        shown = chosen if isinstance(chosen, str) and len(chosen) <= 200 else f"{str(chosen)[:200]}..."
        raise ConfigError(f"{source}: the Spark master must be a URL such as {MASTER_FORMS_TEXT}. Got {shown!r} instead.")
    return chosen.strip()


def spark_session(master: str | None = None, *, app_name: str = "recgov", shuffle_partitions: int | None = None) -> Any:
    """A (possibly already running) SparkSession on ``master`` with the settings recgov relies on.

    Times are read and written in UTC (events, erasures and the retention cutoff are compared
    as instants); Arrow carries pandas frames in and out (the re-rankers run on pandas);
    the web UI is off. ``shuffle_partitions`` defaults to twice the local cores for a local
    master, Spark's own default elsewhere.

    Raises
    ------
    ConfigError
        PySpark or Java is missing (the message says how to install it), the master URL is not
        one Spark accepts, or Spark could not start on it (the message names the master and the cause).
    """
    missing = spark_available()
    if missing:
        raise ConfigError(missing)
    from pyspark.sql import SparkSession

    url = spark_master(master)
    check_reachable(url)
    # Python workers run this interpreter (recgov and its re-rankers are installed here), unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(url)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.driver.memory", os.environ.get("RECGOV_SPARK_DRIVER_MEMORY", "2g"))
    )
    if shuffle_partitions is None and url.startswith("local"):
        shuffle_partitions = 2 * max(1, _local_cores(url))
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    try:
        session = builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - py4j, PySpark and the JVM fail in many types; each is one user-facing line
        raise ConfigError(f"Spark could not start on master {url!r}: {_first_line(err)}") from err
    session.sparkContext.setLogLevel("ERROR")
    return session


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """For a standalone master (``spark://host:port``, or several for high availability): refuse one that
    no TCP connection reaches, before a JVM starts. Spark itself would start a driver, retry the master
    for a minute and then stop its context under the running command; yarn and k8s masters are left to Spark.

    Raises
    ------
    ConfigError
        No listed master accepts a connection (the message names each and why).
    """
    import socket

    if not url.startswith("spark://"):
        return
    problems = []
    for part in url[len("spark://") :].split(","):
        host, _, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ConfigError(f"the Spark master {url!r} must name host:port for each master (spark://host:7077)")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as err:
            problems.append(f"{host}:{port} ({err.strerror or type(err).__name__})")
    raise ConfigError(f"the Spark master {url!r} cannot be reached: {', '.join(problems)}; start it, or name a reachable one")


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an error's text (a Java stack trace stays out of the message), at most 300 characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _local_cores(url: str) -> int:
    """The cores of a ``local[n]`` / ``local[*]`` / ``local`` master."""
    inside = url[url.find("[") + 1 : url.find("]")] if "[" in url else "1"
    if inside.strip() == "*":
        return os.cpu_count() or 1
    try:
        return int(inside.split(",")[0])
    except ValueError:
        return 1
