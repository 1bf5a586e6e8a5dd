"""Alembic environment of the SQL store.

``SqlStore.migrate()`` builds the alembic ``Config`` in code and hands over an open connection, already in its
transaction (and, on PostgreSQL, holding the migration advisory lock) as ``config.attributes["connection"]``;
everything then commits together. Without one (a developer running ``alembic`` with an ini file of their own,
e.g. for ``revision --autogenerate``), the URL comes from ``sqlalchemy.url``, default ``sqlite:///./lrserve.db``.

SQLite: ``migrate()`` turns foreign keys off around the migration, so that the table rebuilds of batch mode
(``op.batch_alter_table``, which any ALTER beyond ADD COLUMN needs there) do not cascade-delete events.
"""

from alembic import context
from sqlalchemy import Connection

from lrserve.service.store.engines import DEFAULT_URL, WRITE, make_engine
from lrserve.service.store.sql import metadata

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("lrserve's migrations run online only (SqlStore.migrate())")

given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or DEFAULT_URL)
    try:
        with engine.execution_options(**{WRITE: True}).begin() as connection:
            run(connection)
    finally:
        engine.dispose()
