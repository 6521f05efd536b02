"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from sqlalchemy import text

from lms import migrate
from lms.api.openapi import problems
from lms.errors import ServiceUnavailable


class Health(msgspec.Struct, rename="camel"):
    status: str


class Readiness(msgspec.Struct, rename="camel"):
    status: str
    database: str
    migration: str | None
    expected_migration: str | None


class HealthController(Controller):
    tags = ["health"]

    @get("/health", operation_id="health", summary="Liveness: the process answers")
    async def health(self) -> Health:
        return Health(status="ok")

    @get("/ready", operation_id="ready",
         summary="Readiness: the database answers and its schema is at the latest migration",
         responses=problems(ServiceUnavailable))
    async def ready(self, state: State) -> Readiness:
        db: Any = state.db
        try:
            async with db.engine.connect() as conn:
                current = (await conn.execute(
                    text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
        except Exception as exc:
            raise ServiceUnavailable("The database is not reachable") from exc
        expected = migrate.head_revision()
        if current != expected:
            raise ServiceUnavailable(f"Database schema is at {current}, expected {expected}",
                                     migration=current, expectedMigration=expected)
        return Readiness(status="ready", database="ok", migration=current,
                         expected_migration=expected)
