"""The nightly tier and expiry jobs over a generated programme of members.

    uv run python bench/nightly_jobs.py [--members 100000] [--due-fraction 0.1]
                                        [--concurrency 4] [--expiry-batch 1000]
                                        [--expiry-policy fixed|activity] [--keep]

Generates ``--members`` members (1,000,000 for the issue's figure) into a dedicated database,
bulk loaded with COPY (psycopg): per member an account with its balance rows, one qualifying
entry (MILES + STATUS_MILES + SEGMENTS, dated within the last 11 months) and one later MILES
credit, their postings and two lots, system balances to match. Tiers are what the sums
qualify for, except a few members one tier short (the nightly pass upgrades them) and a few
whose period ended yesterday (it reviews them); ``--due-fraction`` of the members have a lot
that expired yesterday, about 1% one that expires within the notice period.

Then it times ``tiers_nightly`` and ``expiry_nightly`` (exactly what the beat tasks run), each
twice (the second run must change nothing), printing seconds, members/s and the process's
peak RSS. Target: under 60 s each for 1,000,000 members.

The server is LMS_BENCH_DATABASE_URL, else LMS_TEST_DATABASE_URL, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from bench._common import database, recreate, server_url
from lms import migrate
from lms.db import Database, raw_connection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.tiers.jobs import expiry_nightly, tiers_nightly

SHARDS = 16
CHUNK = 20_000
# The demo programme's thresholds (migration 0005): rank -> (status miles, segments).
LADDER = [("BASIC", 0, 0), ("SILVER", 25_000, 30), ("GOLD", 50_000, 60),
          ("PLATINUM", 100_000, 100)]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ts(moment: datetime) -> str:
    return moment.isoformat()


def qualified(sm: int, seg: int) -> int:
    return max(rank for rank, (_, t_sm, t_seg) in enumerate(LADDER)
               if sm >= t_sm or seg >= t_seg)


class Tables:
    """Text buffers for COPY, one per table, flushed every CHUNK members."""

    NAMES = {
        "accounts": "accounts (id, kind, allow_negative)",
        "balances": "balances (account_id, unit, posted, held, allow_negative)",
        "members": ("members (id, card_number, account_id, email, password_hash, first_name, "
                    "last_name, tier, tier_valid_until)"),
        "journal_entries": ("journal_entries (id, kind, actor_type, actor_id, description, "
                            "effective_at, created_at)"),
        "postings": "postings (entry_id, account_id, unit, amount, balance_after, created_at)",
        "lots": "lots (account_id, entry_id, amount, remaining, expires_at, created_at)",
    }

    def __init__(self) -> None:
        self.buffers = {name: io.StringIO() for name in self.NAMES}
        self.rows = 0

    def add(self, table: str, *values: object) -> None:
        self.buffers[table].write("\t".join("\\N" if v is None else str(v) for v in values))
        self.buffers[table].write("\n")
        self.rows += 1

    def flush(self, conn: psycopg.Connection) -> None:
        with conn.cursor() as cur:
            for name, columns in self.NAMES.items():
                data = self.buffers[name].getvalue()
                if data:
                    with cur.copy(f"COPY {columns} FROM STDIN") as copy:
                        copy.write(data)
                self.buffers[name] = io.StringIO()


def generate(url: str, members: int, due_fraction: float, now: datetime,
             seed: int = 7) -> dict[str, int]:
    """Bulk load the programme; returns counts of what the jobs should find."""
    rng = random.Random(seed)
    expected: defaultdict[str, int] = defaultdict(int)
    with psycopg.connect(url) as conn:
        system: dict[str, list[int]] = defaultdict(list)
        for code, ident in conn.execute(
                "SELECT code, id FROM accounts WHERE kind = 'system' ORDER BY code, shard"):
            system[code].append(ident)
        issuance, qualification = system["issuance"], system["qualification"]
        account0 = conn.execute("SELECT COALESCE(max(id), 0) + 1 FROM accounts").fetchone()
        entry0 = conn.execute("SELECT COALESCE(max(id), 0) + 1 FROM journal_entries").fetchone()
        assert account0 is not None and entry0 is not None
        next_account, next_entry = account0[0], entry0[0]
        running: dict[tuple[int, str], int] = defaultdict(int)
        tables = Tables()
        for i in range(members):
            account, member = next_account, i + 1
            next_account += 1
            tables.add("accounts", account, "member", "f")
            sm = min(int(rng.expovariate(1 / 22_000)), 250_000)
            seg = min(int(rng.expovariate(1 / 22)), 200)
            rank = qualified(sm, seg)
            roll = rng.random()
            until: datetime | None = None
            if rank > 0 and roll < 0.03:
                rank -= 1  # one tier short: the nightly pass upgrades
                expected["upgrades"] += 1
            if rank > 0:
                until = now + timedelta(days=rng.randint(1, 365))
                if 0.03 <= roll < 0.06:
                    until = now - timedelta(hours=12)  # period ended: reviewed tonight
                    expected["reviews"] += 1
            tables.add("members", member, f"9{member:015d}", account,
                       f"m{member}@bench.example", "x", "Bench", f"Member{member}",
                       LADDER[rank][0], ts(until) if until else None)

            earned_at = now - timedelta(days=rng.randint(1, 330), seconds=rng.randint(0, 86399))
            due = rng.random() < due_fraction
            if due:
                expires = now - timedelta(days=1)
                expected["due"] += 1
            elif rng.random() < 0.01:
                expires = now + timedelta(days=rng.randint(1, 29))
                expected["notices"] += 1
            else:
                expires = now + timedelta(days=rng.randint(31, 1000))
            first = rng.randint(200, 5000)
            legs = [(rng.choice(issuance), account, "MILES", first),
                    (rng.choice(qualification), account, "STATUS_MILES", sm),
                    (rng.choice(qualification), account, "SEGMENTS", seg)]
            entry = next_entry
            next_entry += 1
            tables.add("journal_entries", entry, "accrual", "system", "bench", "Flight",
                       ts(earned_at), ts(earned_at))
            for counter, acct, unit, amount in legs:
                if amount == 0:
                    continue
                for who, signed in ((counter, -amount), (acct, amount)):
                    running[(who, unit)] += signed
                    tables.add("postings", entry, who, unit, signed, running[(who, unit)],
                               ts(earned_at))
            tables.add("lots", account, entry, first, first, ts(expires), ts(earned_at))

            later = now - timedelta(days=rng.randint(0, 30))
            second = rng.randint(100, 2000)
            entry = next_entry
            next_entry += 1
            tables.add("journal_entries", entry, "accrual", "system", "bench", "Partner",
                       ts(later), ts(later))
            counter = rng.choice(issuance)
            for who, signed in ((counter, -second), (account, second)):
                running[(who, "MILES")] += signed
                tables.add("postings", entry, who, "MILES", signed, running[(who, "MILES")],
                           ts(later))
            tables.add("lots", account, entry, second, second,
                       ts(now + timedelta(days=rng.randint(400, 1000))), ts(later))
            for unit in ("MILES", "STATUS_MILES", "SEGMENTS"):
                tables.add("balances", account, unit, running.pop((account, unit), 0), 0, "f")
            if (i + 1) % CHUNK == 0:
                tables.flush(conn)
        tables.flush(conn)
        expected["rows"] = tables.rows
        # System accounts carry the other side of every credit.
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE balances SET posted = posted + %s WHERE account_id = %s AND unit = %s",
                [(amount, acct, unit) for (acct, unit), amount in running.items()])
            for table in ("accounts", "journal_entries", "members"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return dict(expected)


async def ensure_system(url: str) -> None:
    db = Database(url)
    system = SystemAccounts(SHARDS)

    async def ensure(session: AsyncSession) -> None:
        await system.ensure(LedgerRepository(await raw_connection(session)))

    await db.transaction(ensure)
    await db.dispose()


async def run_jobs(url: str, members: int, concurrency: int, now: datetime,
                   expiry_batch: int) -> None:
    db = Database(url, pool_size=concurrency + 2, max_overflow=2)
    system = SystemAccounts(SHARDS)

    async def load(session: AsyncSession) -> None:
        await system.load(LedgerRepository(await raw_connection(session)))

    await db.transaction(load)
    try:
        for attempt in (1, 2):
            started = time.perf_counter()
            changed = await tiers_nightly(db, now=now, concurrency=concurrency)
            seconds = time.perf_counter() - started
            print(f"tiers  run {attempt}: {seconds:7.2f} s  {members / seconds:10,.0f} "
                  f"members/s  changed {changed:,}  peak RSS {peak_rss_mib():,.0f} MiB")
        for attempt in (1, 2):
            started = time.perf_counter()
            run = await expiry_nightly(db, system, now=now, concurrency=concurrency,
                                       batch=expiry_batch)
            seconds = time.perf_counter() - started
            print(f"expiry run {attempt}: {seconds:7.2f} s  {members / seconds:10,.0f} "
                  f"members/s  expired {run.expired:,} accounts  notices {run.notices:,}  "
                  f"extended {run.extended:,}  peak RSS {peak_rss_mib():,.0f} MiB")
    finally:
        await db.dispose()


def main(argv: Iterator[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--due-fraction", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--expiry-batch", type=int, default=1000,
                        help="accounts per expiry transaction (and ledger entry)")
    parser.add_argument("--database", default="lms_bench_nightly")
    parser.add_argument("--expiry-policy", choices=("fixed", "activity"), default="fixed",
                        help="activity: the expiry job first extends the lots of members "
                             "who earned in the last 36 months (all of them, here)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(list(argv) if argv is not None else None)

    url = recreate(server_url(), args.database)
    migrate.upgrade(url)
    asyncio.run(ensure_system(url))
    now = datetime.now(UTC)
    started = time.perf_counter()
    expected = generate(url, args.members, args.due_fraction, now)
    seconds = time.perf_counter() - started
    if args.expiry_policy == "activity":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO policy_settings (name, value, effective_from) "
                         "VALUES ('expiry_policy', 'activity', %s)",
                         (now - timedelta(hours=1),))
    print(f"load: {args.members:,} members, {expected['rows']:,} rows by COPY in "
          f"{seconds:.1f} s ({expected['rows'] / seconds:,.0f} rows/s, with VACUUM ANALYZE); "
          f"expected: {expected.get('upgrades', 0):,} upgrades, "
          f"{expected.get('reviews', 0):,} reviews, {expected.get('due', 0):,} accounts with "
          f"due lots, ~{expected.get('notices', 0):,} notices; peak RSS "
          f"{peak_rss_mib():,.0f} MiB")
    try:
        asyncio.run(run_jobs(url, args.members, args.concurrency, now, args.expiry_batch))
    finally:
        if not args.keep:
            with psycopg.connect(database(server_url(), "postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
