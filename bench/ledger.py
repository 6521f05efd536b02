"""Ledger throughput beside pgbench, on the same PostgreSQL in the same run.

    uv run python bench/ledger.py [--seconds 20] [--tasks 32] [--members 10000]

Single transfers member -> member through the service layer (``Database.transaction`` +
``Ledger.transfer``: lock, check, entry, postings, balances, lot consumption and a new lot, the
outbox events, commit), 32 concurrent asyncio tasks, one transaction per transfer. The baseline
is pgbench's built-in TPC-B-like script with as many clients, run before and after ours; the
ratio is against their mean. The last line is ``ratio <x>``.

The server is LMS_BENCH_DATABASE_URL, else LMS_TEST_DATABASE_URL, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from sqlalchemy.ext.asyncio import AsyncSession

from bench._common import recreate, run_pgbench, server_url
from lms import migrate
from lms.db import Database, RawConnection, raw_connection
from lms.ledger.errors import InsufficientMiles
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Actor, EntryKind, PostedEntry
from lms.ledger.verify import verify

ACTOR = Actor("system", "bench")
SHARDS = 16


async def setup(db: Database, members: int, miles: int) -> tuple[SystemAccounts, list[int]]:
    system = SystemAccounts(SHARDS)

    async def ensure(session: AsyncSession) -> None:
        await system.ensure(LedgerRepository(await raw_connection(session)))

    await db.transaction(ensure)
    accounts: list[int] = []

    async def open_batch(session: AsyncSession) -> list[int]:
        ledger = Ledger(session, system)
        ids = []
        for _ in range(500):
            account = await ledger.open_account(AccountKind.MEMBER)
            await ledger.credit(account, miles, kind=EntryKind.ACCRUAL, actor=ACTOR)
            ids.append(account)
        return ids

    while len(accounts) < members:
        accounts.extend(await db.transaction(open_batch))
    return system, accounts


async def run_transfers(db: Database, system: SystemAccounts, accounts: list[int],
                        tasks: int, seconds: float, seed: int = 0, explicit: bool = False
                        ) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    refused = 0
    # A transfer is one ledger_post() call: by default it runs as one implicit transaction;
    # --explicit-transactions wraps it in BEGIN/COMMIT, as when it shares a unit of work.
    transaction = db.raw_transaction if explicit else db.single_statement
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        nonlocal refused
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            a, b = rng.sample(accounts, 2)
            amount = rng.randint(1, 100)
            start = time.perf_counter()
            async def transfer(conn: RawConnection, a: int = a, b: int = b,
                               n: int = amount) -> PostedEntry:
                return await Ledger(conn, system).transfer(a, b, n, actor=ACTOR)

            try:
                await transaction(transfer)
            except InsufficientMiles:
                refused += 1
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(seed + i) for i in range(tasks)))
    return len(latencies), latencies, refused


def transfer_process(url: str, accounts: list[int], tasks: int, seconds: float,
                     start_at: float, seed: int, explicit: bool
                     ) -> tuple[int, list[float], int]:
    """One load process: its own pool and event loop, like one API process."""

    async def run() -> tuple[int, list[float], int]:
        db = Database(url, pool_size=tasks, max_overflow=0)
        system = SystemAccounts(SHARDS)
        try:
            await db.raw_transaction(lambda c: system.load(LedgerRepository(c)))
            await run_transfers(db, system, accounts, tasks, 1.0, seed, explicit)  # warm-up
            await asyncio.sleep(max(0.0, start_at - time.time()))
            return await run_transfers(db, system, accounts, tasks, seconds, seed + 1,
                                       explicit)
        finally:
            await db.dispose()

    return uvloop.run(run())


async def run_parallel(url: str, accounts: list[int], tasks: int, processes: int,
                       seconds: float, explicit: bool) -> tuple[int, list[float], int]:
    loop = asyncio.get_running_loop()
    start_at = time.time() + 3.0
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        results = await asyncio.gather(*(
            loop.run_in_executor(pool, transfer_process, url, accounts, tasks // processes,
                                 seconds, start_at, 1000 * i, explicit)
            for i in range(processes)))
    return (sum(r[0] for r in results), [x for r in results for x in r[1]],
            sum(r[2] for r in results))


async def bench(args: argparse.Namespace) -> None:
    base = server_url()
    url = recreate(base, "lms_bench")
    migrate.upgrade(url)
    db = Database(url, pool_size=args.tasks, max_overflow=0)
    try:
        print(f"setting up {args.members} funded member accounts ...", flush=True)
        _, accounts = await setup(db, args.members, 1_000_000)
        print(f"pgbench (before): {args.tasks} clients, {args.seconds}s, scale {args.scale}",
              flush=True)
        tps_before = await asyncio.to_thread(run_pgbench, base, args.tasks, args.seconds,
                                             args.scale)
        print(f"  tps {tps_before:.0f}", flush=True)
        count, latencies, refused = await run_parallel(url, accounts, args.tasks,
                                                       args.processes, args.seconds,
                                                       args.explicit_transactions)
        tps_after = await asyncio.to_thread(run_pgbench, base, args.tasks, args.seconds,
                                            args.scale)
        print(f"pgbench (after): tps {tps_after:.0f}", flush=True)
        async with db.engine.connect() as conn:
            problems = await verify(conn)
    finally:
        await db.dispose()

    latencies.sort()
    rate = count / args.seconds
    baseline = (tps_before + tps_after) / 2
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"ledger transfers: {count} in {args.seconds}s with {args.tasks} tasks in "
          f"{args.processes} processes "
          f"({refused} refused for insufficient miles)")
    print(f"transfers/s {rate:.0f}  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"pgbench tpc-b tps {baseline:.0f} (mean of {tps_before:.0f} and {tps_after:.0f})")
    print(f"ledger verify: {'clean' if not problems else f'{len(problems)} violations'}")
    print(f"ratio {rate / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--explicit-transactions", action="store_true",
                        help="BEGIN/COMMIT around each transfer (3 round trips, not 1)")
    parser.add_argument("--processes", type=int, default=2,
                        help="load processes sharing the tasks, like API processes")
    parser.add_argument("--scale", type=int, default=32,
                        help="pgbench scale factor (>= clients, as pgbench advises)")
    # uvloop, as under uvicorn in production: the stock event loop costs ~3x the CPU per
    # database round trip.
    uvloop.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
