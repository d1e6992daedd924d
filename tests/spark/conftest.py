"""One small local Spark session for every Spark test.

Under ``CI=true`` a missing PySpark or Java fails these tests (CI installs both: a skipped
engine would pass unseen); elsewhere they are skipped, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from governance.spark.session import spark_available


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A ``local[2]`` session with few shuffle partitions (the data sets here are small)."""
    missing = spark_available()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs the Spark engine's tests, but: {missing}")
        pytest.skip(missing)
    from governance.spark.session import spark_session

    session = spark_session("local[2]", app_name="recgov-tests", shuffle_partitions=2)
    try:
        yield session
    finally:
        session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """PySpark warns that it does not yet fully support pandas 3 on every conversion; the tests here
    check the conversions' results instead, so the warning is not repeated on every test."""
    for item in items:
        if "tests/spark/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning:pyspark"))
            item.add_marker(pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"))


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Any]:
    """A store on SQLite only, for Spark tests whose store reading is the in-process code (tested on both
    databases elsewhere): a PostgreSQL copy would double their Spark time and test nothing new."""
    from audits import open_store

    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        opened.close()
