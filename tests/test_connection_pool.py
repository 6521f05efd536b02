"""The money path's connection pool, against the real PostgreSQL: connections are reused,
bounded, and never lent again when their state is unknown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from lms.connection_pool import ConnectionPool
from lms.db import asyncpg_dsn


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(asyncpg_dsn(database_url), max_size=3)
    yield pool
    await pool.close()


async def backend(pool: ConnectionPool) -> int:
    async with pool.acquire() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_concurrent_units_of_work_share_at_most_max_size_connections(
        pool: ConnectionPool) -> None:
    async def work() -> int:
        async with pool.acquire() as conn:
            pid: int = await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
            return pid

    pids = await asyncio.gather(*(work() for _ in range(20)))
    assert len(set(pids)) <= 3
    assert pool.size <= 3
    assert pool.idle == pool.size
    # A connection given back is lent again rather than a new one opened.
    assert await backend(pool) in pids


async def test_a_server_error_gives_the_connection_back(pool: ConnectionPool) -> None:
    first = await backend(pool)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert await backend(pool) == first
    assert pool.size == 1


async def test_an_error_of_the_caller_after_the_answer_gives_the_connection_back(
        pool: ConnectionPool) -> None:
    first = await backend(pool)
    with pytest.raises(LookupError):
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            raise LookupError("the caller's own failure")
    assert await backend(pool) == first


async def test_a_cancelled_unit_of_work_does_not_lend_its_connection_again(
        pool: ConnectionPool) -> None:
    first = await backend(pool)
    started = asyncio.Event()

    async def slow() -> None:
        async with pool.acquire() as conn:
            started.set()
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.size == 0
    assert await backend(pool) != first


async def test_a_connection_left_in_a_transaction_is_closed(pool: ConnectionPool) -> None:
    async with pool.acquire() as conn:
        first = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("BEGIN")
    assert pool.size == 0
    assert await backend(pool) != first


async def test_a_connection_the_server_closed_is_replaced(pool: ConnectionPool,
                                                          database_url: str) -> None:
    first = await backend(pool)
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)
    # Either the pool already saw the socket close and opens a new connection, or the first
    # statement fails on the dead one; the connection after that is a live, new one.
    try:
        replaced = await backend(pool)
    except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
        replaced = await backend(pool)
    assert replaced != first
    assert pool.size == 1


async def test_a_waiter_gets_the_connection_given_back(database_url: str) -> None:
    pool = ConnectionPool(asyncpg_dsn(database_url), max_size=1)
    try:
        order: list[str] = []

        async def holder() -> None:
            async with pool.acquire():
                order.append("held")
                await asyncio.sleep(0.05)
            order.append("given back")

        async def waiter() -> None:
            await asyncio.sleep(0.01)
            async with pool.acquire():
                order.append("waiter")

        await asyncio.gather(holder(), waiter())
        assert order == ["held", "given back", "waiter"]
        assert pool.size == 1
    finally:
        await pool.close()


async def test_a_closed_pool_lends_nothing(pool: ConnectionPool) -> None:
    await backend(pool)
    await pool.close()
    assert pool.size == 0
    with pytest.raises(asyncpg.InterfaceError):
        async with pool.acquire():
            pass


async def pid_of(conn: asyncpg.Connection[Any]) -> int:
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_run_lends_and_gives_back_as_acquire_does(pool: ConnectionPool) -> None:
    first = await pool.run(pid_of)
    assert pool.idle == pool.size == 1

    async def divide_by_zero(conn: asyncpg.Connection[Any]) -> None:
        await conn.fetchval("SELECT 1 / 0")

    with pytest.raises(asyncpg.DivisionByZeroError):
        await pool.run(divide_by_zero)
    assert await pool.run(pid_of) == first

    started = asyncio.Event()

    async def slow(conn: asyncpg.Connection[Any]) -> None:
        started.set()
        await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(pool.run(slow))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.size == 0
    assert await pool.run(pid_of) != first


async def test_an_error_the_pool_is_told_is_broken_closes_the_connection(
        database_url: str) -> None:
    """lms.db passes is_unavailable: after the server's "going away" answers a connection
    is closed, not lent again. Here division by zero stands for such an answer."""
    pool = ConnectionPool(asyncpg_dsn(database_url), max_size=2,
                          broken=lambda exc: isinstance(exc, asyncpg.DivisionByZeroError))
    try:
        first = await pool.run(pid_of)
        for lend in (lambda: pool.run(lambda conn: conn.fetchval("SELECT 1 / 0")),
                     lambda: backend_failing(pool)):
            with pytest.raises(asyncpg.DivisionByZeroError):
                await lend()
            assert pool.size == 0
            assert await pool.run(pid_of) != first
            first = await pool.run(pid_of)
    finally:
        await pool.close()


async def backend_failing(pool: ConnectionPool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1 / 0")
