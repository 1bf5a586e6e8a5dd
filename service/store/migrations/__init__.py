"""Alembic migrations of the SQL store, run by ``SqlStore.migrate()`` (no alembic.ini involved)."""
