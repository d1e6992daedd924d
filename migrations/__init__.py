"""Alembic migrations of recgov's store (see :mod:`audits.migrate` to run them from code)."""
