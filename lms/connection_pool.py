"""The money path's connections: asyncpg connections lent to one unit of work at a time.

asyncpg's own ``Pool`` wraps every loan in a proxy object, a timeout context, a shielded
release task and a reset hook. Measured here (2 cores, 16 concurrent tasks), that machinery
cost 60-80 µs of client CPU per unit of work, more than the ledger's one round trip itself
(a ``SELECT`` of three parameters: 121 µs of CPU through ``Pool.acquire``, 39 µs on a bare
connection). This pool only keeps idle connections on a stack and hands a returned one
straight to the oldest waiter.

A connection goes back on the stack only when the unit of work ended with the server's
answer (a result or an error) and no transaction open; after a cancellation, a timeout or
a broken socket its protocol state is unknown, so it is closed and the next loan opens a
fresh one. Units of work leave no session state behind (no LISTEN, advisory lock or SET
outside a transaction), which is why no reset statement is sent on return.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

# Errors after which a connection cannot be trusted to be between two statements
# (InternalClientError: one that read the server's goodbye but not yet its socket's end).
UNKNOWN_STATE = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                 asyncio.TimeoutError)


class ConnectionPool:
    """At most ``max_size`` connections to ``dsn``, opened on demand and kept open."""

    def __init__(self, dsn: str, *, max_size: int,
                 server_settings: dict[str, str] | None = None,
                 broken: Callable[[BaseException], bool] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._dsn = dsn
        self._max_size = max_size
        self._server_settings = server_settings or {}
        # Errors, beyond UNKNOWN_STATE, after which a connection is closed rather than lent
        # again (lms.db: the server's "going away" answers).
        self._broken = broken
        self._idle: list[asyncpg.Connection[Any]] = []
        self._opened = 0  # idle + lent + being opened
        # Each waiter is woken with a connection, or with None: "a slot is free, open one".
        self._waiters: deque[asyncio.Future[asyncpg.Connection[Any] | None]] = deque()
        self._closed = False
        self._query_loggers: list[Callable[[Any], None]] = []

    @property
    def size(self) -> int:
        return self._opened

    @property
    def idle(self) -> int:
        return len(self._idle)

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """asyncpg's query logger (``Connection.add_query_logger``) on every idle connection
        and every one opened from now on, for tests and diagnostics that count what a unit
        of work sends. Not on connections lent at the time of the call."""
        self._query_loggers.append(callback)
        for conn in self._idle:
            conn.add_query_logger(callback)

    def remove_query_logger(self, callback: Callable[[Any], None]) -> None:
        self._query_loggers.remove(callback)
        for conn in self._idle:
            conn.remove_query_logger(callback)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        conn = await self._take()
        try:
            yield conn
        except BaseException as exc:
            self._give_back(conn, self._reusable_after(exc))
            raise
        self._give_back(conn, True)

    async def run(self, work: Callable[[asyncpg.Connection[Any]], Awaitable[T]]) -> T:
        """``work`` on a lent connection: ``async with acquire()`` without a context
        manager. The request path lends a connection for one statement, and a generator's
        context manager (entered, left, its frames) costs about as much client CPU as the
        statement itself."""
        conn = await self._take()
        try:
            result = await work(conn)
        except BaseException as exc:
            self._give_back(conn, self._reusable_after(exc))
            raise
        self._give_back(conn, True)
        return result

    def _reusable_after(self, exc: BaseException) -> bool:
        """After a server's error, or the caller's own failure on an answer, the connection
        is between two statements. Not after a cancellation (not an Exception), a timeout or
        a broken socket: its protocol state is unknown."""
        return (isinstance(exc, Exception) and not isinstance(exc, UNKNOWN_STATE)
                and not (self._broken is not None and self._broken(exc)))

    async def _take(self) -> asyncpg.Connection[Any]:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the connection pool is closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._opened -= 1
            if self._opened < self._max_size:
                self._opened += 1
                try:
                    conn = await asyncpg.connect(self._dsn,
                                                 server_settings=self._server_settings)
                    for callback in self._query_loggers:
                        conn.add_query_logger(callback)
                    return conn
                except BaseException:
                    self._opened -= 1
                    self._wake_one(None)
                    raise
            waiter: asyncio.Future[asyncpg.Connection[Any] | None] = (
                asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                conn_or_slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Woken and cancelled in the same turn: pass on what we were given.
                    given = waiter.result()
                    if given is None:
                        self._wake_one(None)
                    else:
                        self._give_back(given, True)
                else:
                    self._waiters.remove(waiter)
                raise
            if conn_or_slot is not None:
                return conn_or_slot

    def _give_back(self, conn: asyncpg.Connection[Any], reusable: bool) -> None:
        if (not reusable or self._closed or conn.is_closed()
                or conn.is_in_transaction()):
            self._opened -= 1
            conn.terminate()
            self._wake_one(None)
            return
        if not self._wake_one(conn):
            self._idle.append(conn)

    def _wake_one(self, value: asyncpg.Connection[Any] | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False

    async def close(self) -> None:
        """Close the idle connections; a lent one is closed when it comes back."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # wakes it to find the pool closed
        self._waiters.clear()
        await asyncio.gather(*(conn.close() for conn in idle), return_exceptions=True)
