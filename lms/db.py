"""Database engine, the unit-of-work boundary with bounded retry, and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from lms.connection_pool import ConnectionPool
from lms.errors import ServiceUnavailable
from lms.group_commit import GroupCommit
from lms.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# What the money path works with: an asyncpg connection, bare or lent by the pool.
# (A string: asyncpg's classes are generic only in the stubs, not at run time.)
RawConnection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# SQLSTATEs after which the whole unit of work is safe to run again from the start.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# Connection-level failures: the database is restarting or unreachable.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001"})


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_retryable(exc: BaseException) -> bool:
    return sqlstate(exc) in RETRYABLE_SQLSTATES


def is_unavailable(exc: BaseException) -> bool:
    # The driver's error itself, SQLAlchemy's wrapping of it (``orig``), or the adapter's own
    # copy raised from it (``__cause__``) when a statement bypasses the engine
    # (``raw_connection`` starting a transaction). InternalClientError: a connection that read
    # the server's FATAL goodbye but not yet the end of its socket (a restart on a busy
    # machine) refuses the next statement with it.
    orig = getattr(exc, "orig", None)
    for e in (exc, orig, getattr(orig, "__cause__", None), exc.__cause__):
        if isinstance(e, OSError | asyncpg.exceptions.ConnectionDoesNotExistError
                      | asyncpg.exceptions.InterfaceError | asyncpg.InternalClientError):
            return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError | OperationalError) and sqlstate(exc) is None:
        return True
    return sqlstate(exc) in UNAVAILABLE_SQLSTATES


def advisory_keys(ids: Iterable[int]) -> list[int]:
    """The second keys of ``pg_advisory_xact_lock(int, int)`` for these row ids, in the order
    to take them. A key is an int4 and ids are bigints: an id beyond int4 shares a key with a
    smaller one (the lock covers both, never an error), and sorting the keys, not the ids, keeps
    two transactions taking a shared key in one order, so that they queue, not deadlock."""
    return sorted({i % 2**31 for i in ids})


def to_async_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def to_sync_url(url: str) -> str:
    """The same database for psycopg (Alembic, CLI bulk work)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL as a DSN asyncpg understands."""
    return to_async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or join) the project-local embedded PostgreSQL and return its URL.

    pgserver keeps one server per data directory and reference-counts the processes that use
    it, so ``lms serve`` and ``lms worker`` share one instance.
    """
    import pgserver  # imported lazily: only the embedded mode needs its binaries

    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    uri: str = server.get_uri()
    # pgserver answers postgresql://postgres:@/postgres?host=/socket/dir
    database = "lms"
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {database};")
    socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(socket_dir)}"


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return to_async_url(settings.database_url)
    return embedded_postgres_url(settings.data_dir)


class Database:
    """Owns the engine; ``transaction`` is the single commit point of every unit of work."""

    def __init__(self, url: str, *, pool_size: int = 20, max_overflow: int = 20,
                 raw_pool_size: int = 4, retry_attempts: int = 5) -> None:
        self.url = to_async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,
            connect_args={"server_settings": {"application_name": "lms"}},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False,
                                           autoflush=False)
        self.retry_attempts = retry_attempts
        self.raw_pool_size = raw_pool_size
        self._raw_pool: ConnectionPool | None = None
        self._groups: dict[str, GroupCommit] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings), pool_size=settings.db_pool_size,
                   max_overflow=settings.db_max_overflow,
                   raw_pool_size=settings.db_raw_pool_size,
                   retry_attempts=settings.db_retry_attempts)

    async def transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction and commit; rerun it on serialization failure or
        deadlock, a bounded number of times. ``work`` must not have side effects outside the
        database (enqueue through the outbox instead)."""

        async def once() -> T:
            async with self.sessions() as session, session.begin():
                try:
                    return await work(session)
                except BaseException as exc:
                    # Statements sent straight to asyncpg (raw_connection) bypass the
                    # engine, which would otherwise notice a dead connection: drop it here,
                    # or the pool hands it out again.
                    if is_unavailable(exc):
                        await (await session.connection()).invalidate()
                    raise

        return await self._with_retry(once)

    async def raw_transaction(self, work: Callable[[RawConnection], Awaitable[T]]) -> T:
        """The same contract as ``transaction`` over a bare asyncpg connection.

        This is the money path: a SQLAlchemy session costs about half a millisecond of CPU
        per transaction, more than the ledger's own work, so operations that only need the
        ledger's SQL (transfers, holds, captures) run here.
        """

        async def once() -> T:
            pool = self._raw_pool or await self.raw_pool()
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)

        return await self._with_retry(once)

    async def autocommit(self, work: Callable[[RawConnection], Awaitable[T]]) -> T:
        """Run ``work`` on a bare connection outside any transaction block: every statement
        it sends commits by itself.

        For work that is one statement, such as ``Ledger.transfer`` (one ledger_post()):
        PostgreSQL runs a lone statement atomically, and leaving out BEGIN and COMMIT saves
        two of the three round trips. For work whose statements need not stand or fall
        together: reads (under READ COMMITTED each statement sees its own snapshot inside a
        transaction as well), or an API key's lookup and then its rate-limit counter, whose
        row lock is then held for one statement. Statements that must stand or fall together
        use ``raw_transaction``.
        """

        pool = self._raw_pool or await self.raw_pool()
        return await self._with_retry(partial(pool.run, work))

    async def call_grouped(self, function: str, args: Sequence[Any], *,
                           shared: Sequence[int] = ()) -> asyncpg.Record:
        """One call of the SQL function ``function`` (its row of ``status_code``,
        ``response_body``, ``replayed``), sent with the calls of it that arrive meanwhile in
        one transaction (lms.group_commit); ``shared``: the positions of the arguments that
        are the same for every call. An error of this call alone is raised as asyncpg's; one
        that a rerun may clear (a deadlock, a serialization failure) is rerun first, as
        ``autocommit`` reruns its work."""
        group = self._groups.get(function)
        if group is None:
            group = self._groups[function] = GroupCommit(self.autocommit, function, len(args),
                                                         shared=shared)
        return await self._with_retry(partial(group.call, args))

    def group(self, function: str) -> GroupCommit | None:
        """The batches of ``function`` sent so far, if any (for tests and diagnostics)."""
        return self._groups.get(function)

    async def raw_pool(self) -> ConnectionPool:
        if self._raw_pool is None:
            # The pool sends no reset statement on release (lms.connection_pool), which is
            # what would otherwise notice a connection the server has ended: after a
            # connection-level failure (is_unavailable) the pool closes the connection, so
            # that the next request opens a fresh one instead of failing on this one.
            self._raw_pool = ConnectionPool(asyncpg_dsn(self.url), max_size=self.raw_pool_size,
                                            server_settings={"application_name": "lms"},
                                            broken=is_unavailable)
        return self._raw_pool

    async def _with_retry(self, once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await once()
            except (DBAPIError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    asyncpg.InternalClientError, AsyncAdapt_asyncpg_dbapi.Error) as exc:
                if is_retryable(exc) and attempt < self.retry_attempts:
                    await asyncio.sleep(0.002 * (2**attempt))
                    continue
                if is_retryable(exc):
                    raise ServiceUnavailable("The operation conflicted with concurrent "
                                             "operations; try again") from exc
                if is_unavailable(exc):
                    raise ServiceUnavailable("The database is unavailable; try again") from exc
                raise

    async def dispose(self) -> None:
        if self._raw_pool is not None:
            await self._raw_pool.close()
            self._raw_pool = None
        await self.engine.dispose()


async def raw_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under a session's current transaction.

    The ledger's hot path talks to asyncpg directly (prepared statements, array parameters)
    while staying inside the session's unit of work.
    """
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, on its own first statement; start the
    # transaction here so that statements sent straight to asyncpg are inside it.
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        await adapter._start_transaction()
    return raw.driver_connection
