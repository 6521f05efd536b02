"""Group commit: the calls of one write function that arrive together, sent as one.

A hot write (a partner accrual, a gift) is one call of a SQL function that does the whole
unit of work (lms.api.idempotency.idempotent_grouped). Sent one by one, each is a transaction
of its own: under load the server spends as much on the commits, snapshots and protocol of
thirty concurrent backends, and on their contention for two cores and for WAL, as on the work.
Here a process sends at most one batch of a function at a time: a call that arrives while
the function's batch is in flight waits for it and goes with the next, all of them in one
call of the function's ``_batch`` wrapper (migration 0026): one transaction and one commit,
each call in a subtransaction of its own, so that it stands or falls alone. A call that
finds nothing in flight goes at once, alone: no call waits for company.

What comes back per call is the function's row, or its error raised as the asyncpg error it
would have been had the call been sent alone (same SQLSTATE, message and DETAIL), so callers
read refusals as before. A failure of the whole batch (the connection lost, the server
restarting) is every call's failure; the batch's transaction is then rolled back or its
outcome unknown, as for a call sent alone, and a retry under the same Idempotency-Key answers
once either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import asyncpg

# Under the 64 subtransaction ids a backend keeps in shared memory (migration 0026).
MAX_BATCH = 32

# Runs its work on a pooled connection in autocommit mode (``Database.autocommit``).
Run = Callable[[Callable[[Any], Awaitable[list[asyncpg.Record]]]],
               Awaitable[list[asyncpg.Record]]]


class GroupCommit:
    """The batches of one SQL function ``name`` with ``arity`` arguments, ``shared`` the
    positions of those given once per batch (each call must pass the same value)."""

    def __init__(self, run: Run, name: str, arity: int, *, shared: Sequence[int] = (),
                 max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._shared = frozenset(shared)
        self._arity = arity
        self._max_batch = max_batch
        self.statement = (f"SELECT status_code, response_body, replayed, error_code, "
                          f"error_message, error_detail FROM {name}_batch("
                          + ", ".join(f"${n}" for n in range(1, arity + 1)) + ")")
        self._queue: list[tuple[Sequence[Any], asyncio.Future[asyncpg.Record]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0  # sent so far, for tests and diagnostics
        self.calls = 0

    async def call(self, args: Sequence[Any]) -> asyncpg.Record:
        """The function's row for these arguments (``status_code``, ``response_body``,
        ``replayed``), or its error raised."""
        if len(args) != self._arity:
            raise TypeError(f"{len(args)} arguments for a function of {self._arity}")
        future: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[Sequence[Any], asyncio.Future[asyncpg.Record]]]
                    ) -> None:
        try:
            columns = batch_arguments([args for args, _ in batch], self._shared)
        except ValueError as error:
            for _, future in batch:
                _settle(future, error=error)
            return
        self.batches += 1
        self.calls += len(batch)
        try:
            rows = await self._run(lambda conn: conn.fetch(self.statement, *columns))
        except Exception as exc:  # the whole batch failed: so did each of its calls
            for _, future in batch:
                _settle(future, error=exc)
            return
        except BaseException as exc:  # cancelled with the process: no caller left waiting
            for _, future in batch:
                _settle(future, error=asyncio.CancelledError())
            raise exc
        if len(rows) != len(batch):  # never left waiting, whatever the function answered
            short = RuntimeError(f"{len(rows)} rows from {self.statement} for {len(batch)} calls")
            for _, future in batch:
                _settle(future, error=short)
            return
        for (_, future), row in zip(batch, rows, strict=True):
            if row["error_code"] is None:
                _settle(future, result=row)
            else:
                fields = {"C": row["error_code"], "M": row["error_message"]}
                if row["error_detail"]:
                    fields["D"] = row["error_detail"]
                _settle(future, error=asyncpg.PostgresError.new(fields, query=self.statement))


def batch_arguments(calls: Sequence[Sequence[Any]], shared: Collection[int]) -> list[Any]:
    """A ``_batch`` function's arguments for these calls: each argument as the array of the
    calls' values, but those at the ``shared`` positions once (ValueError when the calls do
    not all pass the same)."""
    columns: list[Any] = []
    for n, column in enumerate(zip(*calls, strict=True)):
        if n in shared:
            if any(value != column[0] for value in column):
                raise ValueError(f"argument {n + 1} differs between calls of a batch")
            columns.append(column[0])
        else:
            columns.append(list(column))
    return columns


def _settle(future: asyncio.Future[asyncpg.Record], *, result: asyncpg.Record | None = None,
            error: BaseException | None = None) -> None:
    if future.done():  # its request was cancelled (the client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
