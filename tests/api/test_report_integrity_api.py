"""``GET /v1/reports/{model}`` over real HTTP says when a record it shows no longer matches its trail event; on
SQLite and PostgreSQL.

Regression: the report read the model's data set, run and audits from their tables; a row edited in place left the
trail and its checkpoint intact, and the page showed the edited figures as the trail's.
"""

from __future__ import annotations

from sqlalchemy import text, update

from audits.models import DatasetVersion, ModelVersion


def _switch_off_append_only(session, table: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        for name in session.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}).scalars().all():
            session.execute(text(f'DROP TRIGGER "{name}"'))


def test_a_data_set_edited_in_place_is_reported_over_http(server) -> None:
    with server.client("auditor") as http:
        before = http.get(f"/v1/reports/{server.model_version}")
        assert before.status_code == 200 and 'data-integrity="sound"' in before.text
        with server.store.session() as session:
            data_id = session.get(ModelVersion, server.model_version).dataset_version_id
            stored = session.get(DatasetVersion, data_id).n_users
            _switch_off_append_only(session, "dataset_versions")
            session.execute(update(DatasetVersion).where(DatasetVersion.id == data_id).values(n_users=stored - 1))
        after = http.get(f"/v1/reports/{server.model_version}")
        assert after.status_code == 200
        banner = after.text[: after.text.index('id="system"')]
        assert 'data-integrity="broken"' in banner
        assert f"n_users is {stored - 1} in the store but the trail recorded {stored}" in banner
