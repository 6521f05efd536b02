"""The models and the migrations describe the same schema, and the migrations run both ways."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from lms import migrate
from lms.db import to_sync_url
from lms.models import metadata


def schema_diff(url: str) -> list[Any]:
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(to_sync_url(url), poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    diff = schema_diff(database_url)
    assert diff == [], (
        "The models and the migrations differ; write a migration "
        "(uv run alembic revision --autogenerate -m '...') and review it:\n"
        + "\n".join(map(str, diff)))


def test_upgrade_downgrade_upgrade(scratch_database_url: str) -> None:
    url = scratch_database_url
    head = migrate.head_revision()
    assert migrate.current_revision(url) == head
    assert set(metadata.tables) <= tables(url)

    command.downgrade(migrate.alembic_config(url), "base")
    assert migrate.current_revision(url) is None
    assert tables(url) - {"alembic_version"} == set()

    migrate.upgrade(url)
    assert migrate.current_revision(url) == head
    assert set(metadata.tables) <= tables(url)
    assert schema_diff(url) == []
