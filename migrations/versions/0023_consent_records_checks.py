"""Consent records: on SQLite, the checks on status, lawful basis and source spelled as comparisons.

SQLite evaluates a check ``status IN ('granted', 'denied', ...)`` by building a
temporary lookup table of the listed values for every row inserted; with the
three checks of ``consent_records`` that was most of the cost of appending a
record (about 5 us of 7 per row in a bulk import). The same rule written as
``status = 'granted' OR status = 'denied' OR ...`` is checked in place. It
admits exactly the same values (a NULL passes both forms, and the columns are
NOT NULL anyway), under the same constraint names.

SQLite cannot change a table's checks in place: the table is rebuilt (created
under a new name with the new checks, its rows copied with their ids, the old
one dropped, the new one renamed), and its index and its append-only triggers
made again as they were. PostgreSQL is left as it is: its ``IN`` check costs
no more than the comparisons.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "consent_records"
REBUILT = "consent_records_rebuilt"
CHECKS = {
    "status": ("granted", "denied", "withdrawn", "opted_out", "objected"),
    "lawful_basis": ("consent", "legitimate_interest", "contract"),
    "source": ("api", "banner", "tcf", "gpc", "import"),
}


def in_list(column: str, values: tuple[str, ...]) -> str:
    """The check as revision 0004 wrote it."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def comparisons(column: str, values: tuple[str, ...]) -> str:
    """The same check as comparisons joined by OR."""
    return " OR ".join(f"{column} = {v!r}" for v in values)


def _rebuild(old_form, new_form) -> None:  # type: ignore[no-untyped-def]
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    schema = bind.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'").scalar_one()
    for column, values in CHECKS.items():
        before, after = f"CHECK ({old_form(column, values)})", f"CHECK ({new_form(column, values)})"
        if before not in schema:
            raise RuntimeError(f"{TABLE}: the check on {column} is not {before}; the table is left as it is")
        schema = schema.replace(before, after)
    prefix = next((p for p in (f"CREATE TABLE {TABLE} (", f'CREATE TABLE "{TABLE}" (') if schema.startswith(p)), None)
    if prefix is None:  # as created, or as renamed by an earlier rebuild
        raise RuntimeError(f"{TABLE}: unexpected table definition; the table is left as it is")
    dependents = bind.exec_driver_sql(
        f"SELECT type, name, sql FROM sqlite_master WHERE tbl_name = '{TABLE}' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).all()
    for kind, name, _sql in dependents:
        if kind == "trigger":  # the append-only triggers first, so that nothing below counts as a delete
            op.execute(f'DROP TRIGGER "{name}"')
    op.execute(f"CREATE TABLE {REBUILT} (" + schema[len(prefix) :])
    op.execute(f"INSERT INTO {REBUILT} SELECT * FROM {TABLE}")  # same columns, same order, ids kept
    op.execute(f"DROP TABLE {TABLE}")
    op.execute(f"ALTER TABLE {REBUILT} RENAME TO {TABLE}")
    for kind, _name, sql in sorted(dependents, key=lambda d: d[0]):  # indexes, then triggers
        op.execute(sql)


def upgrade() -> None:
    _rebuild(in_list, comparisons)


def downgrade() -> None:
    _rebuild(comparisons, in_list)
