"""Alembic environment: runs migrations over a synchronous psycopg connection.

The URL comes from ``config.attributes["url"]`` (set by lms.migrate) or the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from lms.db import database_url, to_sync_url
from lms.models import metadata
from lms.settings import get_settings

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("url") or database_url(get_settings())
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()


run()
