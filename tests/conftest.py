"""Test fixtures: a real PostgreSQL built by ``alembic upgrade head``, the app, the ledger.

The server is ``LMS_TEST_DATABASE_URL`` when set (CI and development machines run one at
127.0.0.1:5432), otherwise the embedded PostgreSQL. Each run gets its own freshly migrated
database; tests are isolated by creating their own members and accounts, and every test that
touched the database ends with the ledger invariants checked over the whole of it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from lms import migrate
from lms.app import create_app
from lms.db import Database, embedded_postgres_url, raw_connection, to_sync_url
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.verify import verify
from lms.settings import PROJECT_ROOT, Settings
from tests.factories import asgi_client

T = TypeVar("T")
SHARDS = 4


def server_url() -> str:
    url = os.environ.get("LMS_TEST_DATABASE_URL")
    if url:
        return url
    return embedded_postgres_url(PROJECT_ROOT / ".lms-data" / "test")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def plain(url: str) -> str:
    return to_sync_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def recreate_database(url: str, name: str) -> str:
    with psycopg.connect(plain(with_database(url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def migrated_database(name: str) -> str:
    url = recreate_database(server_url(), name)
    migrate.upgrade(url)
    return url


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(plain(with_database(url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    # One database per pytest process, so that runs side by side never share one.
    url = migrated_database(f"lms_test_{os.getpid()}")
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=40, max_overflow=20, retry_attempts=8)
    system = SystemAccounts(SHARDS)

    async def ensure(session: AsyncSession) -> None:
        await system.ensure(LedgerRepository(await raw_connection(session)))

    await database.transaction(ensure)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, system_account_shards=SHARDS,
                    login_max_failures=5, log_level="WARNING")


@pytest.fixture(scope="session")
async def system(db: Database) -> SystemAccounts:
    accounts = SystemAccounts(SHARDS)

    async def load(session: AsyncSession) -> None:
        await accounts.load(LedgerRepository(await raw_connection(session)))

    await db.transaction(load)
    return accounts


LedgerRunner = Callable[[Callable[[Ledger], Awaitable[T]]], Awaitable[T]]


@pytest.fixture
def in_ledger(db: Database, system: SystemAccounts) -> LedgerRunner[Any]:
    """Run ``fn(ledger)`` as one committed unit of work."""

    async def run(fn: Callable[[Ledger], Awaitable[T]]) -> T:
        return await db.transaction(lambda session: fn(Ledger(session, system)))

    return run


async def violations(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return [str(v) for v in await verify(conn)]


@pytest.fixture(autouse=True)
async def ledger_invariants(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every test that used the database, the whole ledger must still verify."""
    yield
    if "db" in request.fixturenames:
        db: Database = request.getfixturevalue("db")
        assert await violations(db) == []


@pytest.fixture(scope="session")
def app(settings: Settings, db: Database) -> Litestar:
    return create_app(settings, db=db)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # Not litestar's AsyncTestClient: it runs the app in a thread with its own event loop, where
    # the session's asyncpg pool cannot be used, and it serialises requests, so concurrent
    # requests could not be tested. The app's lifespan is not needed: ``db`` is passed in.
    async with asgi_client(app) as c:
        yield c


@pytest.fixture
def scratch_database_url() -> Iterator[str]:
    """A database of its own, for tests that break the ledger on purpose."""
    url = migrated_database(f"lms_test_{os.getpid()}_scratch")
    yield url
    drop_database(url)
