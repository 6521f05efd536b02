"""Ledger throughput beside pgbench, on the same PostgreSQL in the same run.

    uv run python bench/ledger.py [--seconds 20] [--tasks 32] [--members 10000]

Single transfers member -> member through the service layer (``Database.autocommit`` +
``Ledger.transfer``: lock, check, entry, postings, balances, lot consumption and a new lot, the
outbox events, commit), 32 concurrent asyncio tasks, one transaction per transfer. The baseline
is pgbench's built-in TPC-B-like script with as many clients, run before and after ours
(``--rounds N``: N ledger phases, each followed by pgbench); the ratio is against their mean.
The last line is ``ratio <x>``.

Both sides start from the same state: ``pgbench -i`` ends with VACUUM ANALYZE of its tables,
so the bench does the same to the ledger's tables after funding the members (the CI server
runs with autovacuum off, conf.d/90-ci.conf: without it the ledger's plans were made on
tables never analyzed). Each phase prints the checkpoints the server ran during it and the
load average, the two things seen to move pgbench most on a shared server: at scale 32 its
accounts (about 480 MB with their index) do not fit in shared_buffers (128 MB here), and
after each checkpoint its random updates write full-page images into the WAL. Every DROP
DATABASE forces a checkpoint, so test suites sharing the server (each drops its databases)
set the pace; pgbench always started right after one (its database is re-created), and now
each ledger phase does too.

The server is LMS_BENCH_DATABASE_URL, else LMS_TEST_DATABASE_URL, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvloop
from sqlalchemy.ext.asyncio import AsyncSession

from bench._common import (
    BackendCpu,
    database,
    pgbench_args,
    pgbench_binary,
    pgbench_init,
    plain,
    recreate,
    server_url,
)
from lms import migrate
from lms.db import Database, RawConnection, raw_connection
from lms.ledger.errors import InsufficientMiles
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Actor, EntryKind, PostedEntry
from lms.ledger.verify import verify

ACTOR = Actor("system", "bench")
# Per run: two runs on one shared server must not drop each other's databases.
LEDGER_DB = f"lms_bench_ledger_{os.getpid()}"
PGBENCH_DB = f"lms_bench_pgbench_{os.getpid()}"
SHARDS = 16


def drop(url: str, name: str) -> None:
    with psycopg.connect(database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def vacuum_analyze(url: str) -> None:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def checkpoint(url: str) -> None:
    """Each phase starts right after a checkpoint, as pgbench's always did (its database is
    dropped and re-created first, and DROP DATABASE forces a checkpoint)."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def checkpoints(url: str) -> int:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()
    return int(row[0]) if row else 0


def environment(url: str, since: int) -> str:
    return (f"checkpoints {checkpoints(url) - since}, "
            f"load {os.getloadavg()[0]:.1f}")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    rate: float  # transactions per second
    count: int
    server_cpu: float  # seconds
    client_cpu: float


def run_pgbench(url: str, clients: int, seconds: int, scale: int) -> Phase:
    name = PGBENCH_DB
    pgbench_init(url, scale, name)
    args = pgbench_args(url)
    client = children_cpu()
    with BackendCpu(url, name, since_first_sample=True, start_at=time.time(),
                    end_at=time.time() + seconds + 5) as server:
        out = subprocess.run(
            [pgbench_binary(), *args, "-c", str(clients), "-j", "2", "-T", str(seconds), name],
            check=True, capture_output=True, text=True).stdout
    client = children_cpu() - client
    match = re.search(r"tps = ([\d.]+)", out)
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    if not match or not processed:
        raise SystemExit("could not read pgbench output:\n" + out)
    return Phase(float(match.group(1)), int(processed.group(1)), server.seconds, client)


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
    transaction = db.raw_transaction if explicit else db.autocommit
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
                     ready: Any, seed: int, explicit: bool
                     ) -> tuple[int, list[float], int, float]:
    """One load process: its own pool and event loop, like one API process. Returns the
    transfers, their latencies, how many were refused and the process's CPU seconds."""

    async def run() -> tuple[int, list[float], int, float]:
        db = Database(url, pool_size=tasks, max_overflow=0)
        system = SystemAccounts(SHARDS)
        try:
            await db.raw_transaction(lambda c: system.load(LedgerRepository(c)))
            await run_transfers(db, system, accounts, tasks, 1.0, seed, explicit)  # warm-up
            ready.wait(timeout=600)  # all processes measure the same seconds
            cpu = time.process_time()
            count, latencies, refused = await run_transfers(
                db, system, accounts, tasks, seconds, seed + 1, explicit)
            return count, latencies, refused, time.process_time() - cpu
        finally:
            await db.dispose()

    return uvloop.run(run())


async def run_parallel(url: str, accounts: list[int], tasks: int, processes: int,
                       seconds: float, explicit: bool) -> tuple[Phase, list[float], int]:
    loop = asyncio.get_running_loop()
    context = get_context("spawn")
    # Started processes import the whole service, which takes seconds on a loaded machine:
    # they start measuring together, when the last one is ready, not at a fixed time.
    with context.Manager() as manager, ProcessPoolExecutor(processes,
                                                           mp_context=context) as pool:
        ready = manager.Barrier(processes + 1)
        running = [loop.run_in_executor(pool, transfer_process, url, accounts,
                                        tasks // processes, seconds, ready, 1000 * i,
                                        explicit)
                   for i in range(processes)]
        await asyncio.to_thread(ready.wait, 600)
        start_at = time.time()
        with BackendCpu(url, LEDGER_DB, since_first_sample=True, start_at=start_at,
                        end_at=start_at + seconds + 1) as server:
            results = await asyncio.gather(*running)
    count = sum(r[0] for r in results)
    phase = Phase(count / seconds, count, server.seconds, sum(r[3] for r in results))
    return phase, [x for r in results for x in r[1]], sum(r[2] for r in results)


async def bench(args: argparse.Namespace) -> None:
    base = server_url()
    url = recreate(base, LEDGER_DB)
    migrate.upgrade(url)
    db = Database(url, pool_size=args.tasks, max_overflow=0)
    try:
        print(f"setting up {args.members} funded member accounts ...", flush=True)
        _, accounts = await setup(db, args.members, 1_000_000)
        if args.vacuum:
            vacuum_analyze(url)
        print(f"pgbench: {args.tasks} clients, {args.seconds}s, scale {args.scale}; "
              f"{args.rounds} round(s) of ledger then pgbench after a first pgbench",
              flush=True)
        pgbench = [await pgbench_phase(base, args, "pgbench (before)")]
        ledger: list[Phase] = []
        latencies: list[float] = []
        refused = 0
        for _ in range(args.rounds):
            checkpoint(base)
            mark = checkpoints(base)
            phase, lat, ref = await run_parallel(url, accounts, args.tasks, args.processes,
                                                 args.seconds, args.explicit_transactions)
            ledger.append(phase)
            latencies.extend(lat)
            refused += ref
            print(f"ledger: transfers/s {phase.rate:.0f} ({environment(base, mark)})",
                  flush=True)
            pgbench.append(await pgbench_phase(base, args, "pgbench"))
        async with db.engine.connect() as conn:
            problems = await verify(conn)
    finally:
        await db.dispose()
        drop(base, LEDGER_DB)
        drop(base, PGBENCH_DB)

    latencies.sort()
    count = sum(p.count for p in ledger)
    seconds = args.seconds * args.rounds
    rate = count / seconds
    tps = [p.rate for p in pgbench]
    # Each ledger phase sits between two pgbench phases: the baseline is their mean, with
    # the first and last counted half, like the before/after mean of a single round.
    baseline = (sum(tps) - (tps[0] + tps[-1]) / 2) / args.rounds
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"ledger transfers: {count} in {seconds}s with {args.tasks} tasks in "
          f"{args.processes} processes "
          f"({refused} refused for insufficient miles)")
    print(f"transfers/s {rate:.0f}  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"pgbench tpc-b tps {baseline:.0f} (phases: {', '.join(f'{t:.0f}' for t in tps)})")
    # What a transaction costs in CPU does not depend on what else the machine runs, as
    # throughput on a shared machine does: the steadier comparison of the two.
    ledger_cpu = cpu_per_transaction(ledger)
    pgbench_cpu = cpu_per_transaction(pgbench)
    if ledger_cpu[0] and pgbench_cpu[0]:
        print(f"CPU per transaction, server + client: ledger {ledger_cpu[0]:.0f} + "
              f"{ledger_cpu[1]:.0f} us, pgbench {pgbench_cpu[0]:.0f} + {pgbench_cpu[1]:.0f} "
              f"us; cpu ratio {sum(pgbench_cpu) / sum(ledger_cpu):.2f}")
    print(f"ledger verify: {'clean' if not problems else f'{len(problems)} violations'}")
    print(f"ratio {rate / baseline:.2f}")


def cpu_per_transaction(phases: list[Phase]) -> tuple[float, float]:
    """(server, client) CPU microseconds per transaction over these phases."""
    count = sum(p.count for p in phases) or 1
    return (1e6 * sum(p.server_cpu for p in phases) / count,
            1e6 * sum(p.client_cpu for p in phases) / count)


async def pgbench_phase(base: str, args: argparse.Namespace, label: str) -> Phase:
    mark = checkpoints(base)
    phase = await asyncio.to_thread(run_pgbench, base, args.tasks, args.seconds, args.scale)
    print(f"{label}: tps {phase.rate:.0f} ({environment(base, mark)}, pgbench -i included)",
          flush=True)
    return phase


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="ledger phases, each followed by a pgbench phase (the load of "
                             "a shared machine moves between phases: more rounds, steadier)")
    parser.add_argument("--no-vacuum", dest="vacuum", action="store_false",
                        help="skip the VACUUM ANALYZE after set-up (how runs before "
                             "2026-11-24 01:00 were made)")
    parser.add_argument("--scale", type=int, default=32,
                        help="pgbench scale factor (>= clients, as pgbench advises)")
    # uvloop, as under uvicorn in production: the stock event loop costs ~3x the CPU per
    # database round trip.
    uvloop.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
