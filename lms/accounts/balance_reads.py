"""GET /v1/me/balance's statements, shared by the requests of one process that wait at once.

The balance read is the API's most frequent call, and almost all it costs PostgreSQL and
asyncpg is per statement, not per page: the round trip, the snapshot, the executor's
start-up, the protocol's messages. So a process's concurrent reads share statements
(``BALANCE_PAGES_FOR_TOKENS``): a request's token joins the next statement to be sent, and
at most ``IN_FLIGHT`` statements run at once. An idle process sends a lone request's
statement at once (a batch of one: no waiting for company); under load, the requests that
arrive while statements run go together in the next one.

Authentication is unchanged: each token is checked by the statement that reads its page,
which is sent after the request arrived, so a token revoked or expired before the request
is refused exactly as before. The pages of one statement are read in one snapshot.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from lms.accounts.repository import balance_pages_for_tokens
from lms.db import Database

# Statements running at once per process: one, answered while the next one's requests
# gather. Measured (bench/http_load.py --phases reads, lms_gen_1m, 2 workers, 32 clients,
# alternated runs): one in flight, 70 us of PostgreSQL and 130 us of API CPU per read;
# two, 105-170 us and 170-180 us (smaller batches: 4 pages a statement on average).
IN_FLIGHT = 1
# Enough to carry a process's whole share of a busy minute's callers; a bound so that one
# statement's answer stays small.
MAX_BATCH = 64


class BalanceReads:
    """One process's (one app's) balance reads; ``page`` is all a request calls."""

    def __init__(self, expiring_within: timedelta, lots: int, *, in_flight: int = IN_FLIGHT,
                 max_batch: int = MAX_BATCH) -> None:
        self._expiring_within = expiring_within
        self._lots = lots
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[str, asyncio.Future[asyncpg.Record | None]]] = []
        self._running = 0
        # The running statements' tasks: the event loop holds only weak references.
        self._tasks: set[asyncio.Task[None]] = set()

    async def page(self, db: Database, token_hash: str) -> asyncpg.Record | None:
        """The row of ``token_hash``'s live token with its balance page, None if the token
        is not live (``BALANCE_PAGES_FOR_TOKENS``)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A statement of a loop that was closed while it ran never ends: forget it and
            # whoever waited for it there, or this loop's reads would wait for ever (an app
            # serving several loops in turn, as tests do).
            self._loop, self._waiting, self._running, self._tasks = loop, [], 0, set()
        future: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        self._waiting.append((token_hash, future))
        if self._running < self._in_flight:
            self._send(db)
        return await future

    def _send(self, db: Database) -> None:
        batch = self._waiting[:self._max_batch]
        del self._waiting[:self._max_batch]
        self._running += 1
        assert self._loop is not None
        task = self._loop.create_task(self._read(self._loop, db, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, loop: asyncio.AbstractEventLoop, db: Database,
                    batch: list[tuple[str, asyncio.Future[asyncpg.Record | None]]]) -> None:
        try:
            now = datetime.now(UTC)
            hashes = [token_hash for token_hash, _ in batch]
            rows = await db.autocommit(lambda conn: balance_pages_for_tokens(
                conn, hashes, now, now + self._expiring_within, self._lots))
        except BaseException as exc:
            # Every request of the batch answers with the statement's failure, as each
            # would have with a statement of its own (a 503 when the database is away);
            # unless the batch's loop is gone (page), and its requests with it.
            if self._loop is loop:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            by_position = {row["ord"]: row for row in rows}
            for position, (_, future) in enumerate(batch, 1):
                # A request whose client went away was cancelled: nobody waits for it.
                if not future.done():
                    future.set_result(by_position.get(position))
        finally:
            if self._loop is loop:
                self._running -= 1
                if self._waiting:
                    self._send(db)
