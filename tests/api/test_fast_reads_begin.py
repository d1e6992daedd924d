"""The read-only snapshot's transaction (governance.api.reads): one statement begins it on PostgreSQL,
it is repeatable-read and read-only, and the connection goes back to the pool as it came, also after
an error inside it (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audits import Store, record_consent
from audits.models import StoreMeta
from governance.api.reads import FastReads


def test_the_snapshot_is_read_only_and_the_pooled_connection_is_left_as_it_came(store: Store) -> None:
    reads = FastReads(store.engine)
    with reads.snapshot() as read:
        read.execute(select(StoreMeta.value)).all()
        if store.dialect == "postgresql":
            cursor = read._cursor
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "repeatable read"
            cursor.execute("SHOW transaction_read_only")
            assert cursor.fetchone()[0] == "on"
            with pytest.raises(Exception, match="read-only"):
                cursor.execute("CREATE TABLE never_made (x int)")
    with pytest.raises(ZeroDivisionError), reads.snapshot() as read:  # an error inside: ended all the same
        read.execute(select(StoreMeta.value)).all()
        1 / 0
    for _ in range(8):  # every pooled connection, as the next user gets it: in a transaction of its own, writable
        with reads.snapshot() as read:
            read.execute(select(StoreMeta.value)).all()
    with store.session() as session:
        record_consent(session, subject_id="x", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    connection = store.engine.raw_connection()
    try:
        if store.dialect == "postgresql":
            assert connection.dbapi_connection.autocommit is False
    finally:
        connection.close()
