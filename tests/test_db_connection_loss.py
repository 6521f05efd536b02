"""A pooled connection whose server session has ended (PostgreSQL shutting down, an
administrator terminating it) is never used again: the request on it gets
ServiceUnavailable (503), and the next one gets a fresh connection.

Found by tests/chaos/test_postgres_restart.py: on a busy machine a pooled connection can
read the server's FATAL goodbye well before the end of its socket. asyncpg then still counts
it as open, hands it out, and refuses the next statement with InternalClientError ("another
operation is in progress"), which was a 500, and again on every use until the socket's end
was read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from lms.db import Database, RawConnection, raw_connection
from lms.errors import ServiceUnavailable


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Database]:
    # One connection in the pool: the statement after the failure gets the same holder.
    database = Database(database_url, pool_size=1, max_overflow=0)
    try:
        yield database
    finally:
        await database.dispose()


async def terminated_under(database: Database, run: Any, admin: Database) -> None:
    """Start a slow statement through ``run``, end its server session from outside, and
    expect ServiceUnavailable."""
    started = asyncio.Event()
    pid: list[int] = []

    async def slow(conn: RawConnection) -> Any:
        pid.append(conn.get_server_pid())
        started.set()
        return await conn.fetchval("SELECT pg_sleep(30)")

    task = asyncio.ensure_future(run(slow))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.2)  # the statement is running
    assert await admin.autocommit(
        lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid[0])) is True
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("path", ["autocommit", "raw_transaction"])
async def test_a_connection_killed_under_a_statement_is_not_reused(
        one_connection: Database, db: Database, path: str) -> None:
    run = getattr(one_connection, path)
    await terminated_under(one_connection, run, db)
    # At once, before the event loop may have seen the socket close.
    assert await run(lambda conn: conn.fetchval("SELECT 41 + 1")) == 42
    for _ in range(3):
        await terminated_under(one_connection, run, db)
        assert await run(lambda conn: conn.fetchval("SELECT 1")) == 1


class SlowToCloseProxy:
    """A TCP proxy to PostgreSQL that passes every byte through but, when the server closes
    a connection, keeps the client's side open for ``delay`` seconds: the client reads the
    server's last words (its FATAL error) well before it learns that the socket is gone, as
    happens on a busy machine."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> SlowToCloseProxy:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def handle(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            await asyncio.sleep(delay)
            w.close()

        await asyncio.gather(pump(client_r, server_w, 0), pump(server_r, client_w, self.delay),
                             return_exceptions=True)


async def test_an_idle_connection_told_to_go_away_is_not_reused(
        database_url: str, db: Database) -> None:
    parts = urlsplit(database_url)
    async with SlowToCloseProxy((parts.hostname or "127.0.0.1", parts.port or 5432),
                                delay=1.5) as proxy:
        url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        database = Database(url, pool_size=1, max_overflow=0)
        try:
            pid = await database.autocommit(
                lambda conn: conn.fetchval("SELECT pg_backend_pid()"))
            assert await db.autocommit(
                lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid)) is True
            await asyncio.sleep(0.3)  # the FATAL error has arrived; the end of the socket not
            # The request on the dead connection: 503, not asyncpg's InternalClientError.
            with pytest.raises(ServiceUnavailable):
                await database.autocommit(lambda conn: conn.fetchval("SELECT 1"))
            # At once, while the dead socket is still open: a fresh connection.
            assert await database.autocommit(lambda conn: conn.fetchval("SELECT 2")) == 2
        finally:
            await database.dispose()


async def test_a_session_on_a_connection_told_to_go_away_gets_503(
        database_url: str, db: Database) -> None:
    """The same goodbye under a unit of work through the ORM session: the ledger's statements
    start the session's transaction themselves (``raw_connection``), and SQLAlchemy's adapter
    raises its own copy of asyncpg's error there, which was a 500."""
    parts = urlsplit(database_url)
    async with SlowToCloseProxy((parts.hostname or "127.0.0.1", parts.port or 5432),
                                delay=1.5) as proxy:
        url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        database = Database(url, pool_size=1, max_overflow=0)

        async def pid_of(session: Any) -> int:
            conn = await raw_connection(session)
            pid: int = await conn.fetchval("SELECT pg_backend_pid()")
            return pid

        try:
            pid = await database.transaction(pid_of)
            assert await db.autocommit(
                lambda conn: conn.fetchval("SELECT pg_terminate_backend($1)", pid)) is True
            await asyncio.sleep(0.3)  # the FATAL error has arrived; the end of the socket not
            with pytest.raises(ServiceUnavailable):
                await database.transaction(pid_of)
            await asyncio.sleep(1.5)  # the socket's end is read: the pool replaces it
            assert await database.transaction(pid_of) != pid
        finally:
            await database.dispose()
