"""Alembic environment: run by ``pixgen.jobs.db.migrate`` with a connection already open (and locked)."""

from alembic import context

from pixgen.jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
