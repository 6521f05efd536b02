"""Flown-coupon import through the CLI beside a plain COPY of the same rows, in the same run.

    uv run python bench/accrual_import.py [--coupons 200000] [--members 50000]
                                          [--concurrency 4] [--keep]

Generates members (set-based SQL: accounts, balance rows, members) and a CSV of N coupons on
the demo programme's carriers (programme/demo.toml), with 1 % repeated coupons and 0.5 %
unknown cards, then runs ``lms import flights FILE.csv`` as a subprocess, end to end: CSV
parsing, duplicate checks, earn rules, one journal entry per coupon with its postings,
balances, lots and outbox events, commits. The baseline is ``COPY`` of the same file into an
unindexed table of text columns. The import runs with ``--no-tiers``: the closing tier pass
over all members is the nightly job's, measured by bench/nightly_jobs.py. Prints coupons/s
for both; the last line is ``ratio <x>`` (import rate / COPY rate). Beside the rates, what
does not depend on the machine's other load: CPU per coupon of the import process (process
start included: with PYTHONDONTWRITEBYTECODE set it compiles every module, ~1.7 s) and of its
PostgreSQL backends (from /proc, sampled every 0.2 s: a little under), and its peak RSS.

The server is LMS_BENCH_DATABASE_URL, else LMS_TEST_DATABASE_URL, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench._common import BackendCpu, database, recreate, server_url
from lms import migrate
from lms.accounts.cards import make_card_number
from lms.accrual.importer import COLUMNS
from lms.accrual.programme import demo_programme_path, load_file
from lms.db import Database, RawConnection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.ledger.verify import verify
from lms.settings import PROJECT_ROOT

SHARDS = 16
# Per run: two runs on one shared server must not drop each other's database.
DB_NAME = f"lms_bench_accrual_{os.getpid()}"
AIRPORTS = ("LHR", "JFK", "CDG", "FRA", "AMS", "MAD", "FCO", "DXB", "SIN", "HKG", "NRT",
            "LAX", "SFO", "ORD", "YYZ", "GRU", "SYD", "JNB", "IST", "DEL", "BOS", "MIA",
            "ZRH", "VIE", "CPH", "OSL", "ARN", "HEL", "DUB", "EDI", "MAN", "LIS")
CLASSES = {"LM": "FAJCDWYBMKQ", "PA": "FJYMS"}


# Members in three set-based statements: the same rows lms.accounts would write, without
# the per-member password hashing that would dominate the set-up.
MEMBERS_SQL = [
    """
    INSERT INTO accounts (kind, allow_negative)
    SELECT 'member', false FROM generate_series(1, %(n)s)
    """,
    """
    INSERT INTO balances (account_id, unit, allow_negative)
    SELECT a.id, u, false FROM accounts a,
           unnest(ARRAY['MILES', 'STATUS_MILES', 'SEGMENTS']) AS u
    WHERE a.kind = 'member'
    """,
    """
    INSERT INTO members (card_number, account_id, email, password_hash, first_name, last_name,
                         tier)
    SELECT c.card, a.id, 'bench' || a.rn || '@example.com', 'x', 'Bench', 'Member',
           (ARRAY['BASIC', 'BASIC', 'BASIC', 'SILVER', 'GOLD', 'PLATINUM'])[1 + a.rn %% 6]
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM accounts
          WHERE kind = 'member') a
    JOIN unnest(%(cards)s::text[]) WITH ORDINALITY AS c(card, rn) ON c.rn = a.rn
    """,
]


def make_members(url: str, n: int) -> list[str]:
    cards = [make_card_number("7", 1_000_000 + i) for i in range(n)]
    with psycopg.connect(url) as conn:
        for statement in MEMBERS_SQL:
            conn.execute(statement, {"n": n, "cards": cards})
    return cards


def write_feed(path: Path, cards: list[str], n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = date(2026, 1, 1)
    written: list[list[str]] = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(n):
            if written and rng.random() < 0.01:  # the feed repeats a coupon
                row = rng.choice(written)
            else:
                carrier = "LM" if rng.random() < 0.8 else "PA"
                origin, destination = rng.sample(AIRPORTS, 2)
                card = cards[rng.randrange(len(cards))] if rng.random() > 0.005 else "70000"
                row = [f"{1250000000000 + i}", "1", card,
                       (start + timedelta(days=rng.randrange(300))).isoformat(), carrier,
                       carrier, str(rng.randrange(1, 9999)), origin, destination,
                       rng.choice(CLASSES[carrier]), "", "", "", ""]
                if len(written) < 1000:
                    written.append(row)
            writer.writerow(row)


def import_with_cli(url: str, path: Path, concurrency: int
                    ) -> tuple[float, str, float, float, int]:
    """(wall s, summary, client CPU s, server CPU s, client peak RSS kB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env |= {"LMS_DATABASE_URL": url, "LMS_LOG_LEVEL": "WARNING",
            "LMS_SYSTEM_ACCOUNT_SHARDS": str(SHARDS)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with BackendCpu(url, DB_NAME) as server:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "lms.cli", "import", "flights", str(path), "--quiet",
             "--no-tiers",
             "--concurrency", str(concurrency)], env=env, cwd=PROJECT_ROOT,
            capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"lms import flights failed:\n{result.stdout}\n{result.stderr}")
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, result.stdout, client, server.seconds, after.ru_maxrss


def copy_baseline(url: str, path: Path) -> float:
    columns = ", ".join(f"{c} text" for c in COLUMNS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_coupons_copy")
        conn.execute(f"CREATE TABLE bench_coupons_copy ({columns})")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                "COPY bench_coupons_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy, \
                path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        return time.perf_counter() - started


async def prepare(url: str) -> None:
    db = Database(url)
    try:
        async def ensure(conn: RawConnection) -> None:
            await SystemAccounts(SHARDS).ensure(LedgerRepository(conn))

        await db.raw_transaction(ensure)
        await load_file(db, demo_programme_path(), "bench")
    finally:
        await db.dispose()


async def check(url: str) -> int:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return len(await verify(conn))
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coupons", type=int, default=200_000)
    parser.add_argument("--members", type=int, default=None,
                        help="default: one member per 10 coupons")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    url = recreate(server_url(), DB_NAME)
    migrate.upgrade(url)
    asyncio.run(prepare(url))
    members = args.members or max(args.coupons // 10, 100)
    t = time.perf_counter()
    cards = make_members(url, members)
    print(f"set-up: {members:,} members in {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "flown.csv"
        t = time.perf_counter()
        write_feed(feed, cards, args.coupons)
        size = feed.stat().st_size
        print(f"set-up: {args.coupons:,} coupons, {size / 1e6:.1f} MB CSV in "
              f"{time.perf_counter() - t:.1f} s")

        copy_seconds = copy_baseline(url, feed)
        import_seconds, summary, client_cpu, server_cpu, rss = import_with_cli(
            url, feed, args.concurrency)
        copy_after = copy_baseline(url, feed)
    copy_mean = (copy_seconds + copy_after) / 2
    print(summary.rstrip())
    import_rate = args.coupons / import_seconds
    copy_rate = args.coupons / copy_mean
    print(f"lms import flights: {import_rate:>12,.0f} coupons/s ({import_seconds:.1f} s, "
          f"concurrency {args.concurrency}, process start included)")
    inner = [line.split()[1] for line in summary.splitlines() if line.startswith("time ")]
    if inner:  # what the import reports itself: from the file's first row to its last commit
        print(f"  of which importing {float(inner[0]):.1f} s, process start and exit "
              f"{import_seconds - float(inner[0]):.1f} s")
    per = 1e6 / args.coupons
    print(f"CPU per coupon:     client {client_cpu * per:,.0f} µs ({client_cpu:.1f} s, process "
          f"start included), server {server_cpu * per:,.0f} µs ({server_cpu:.1f} s, its "
          f"backends from /proc)")
    print(f"client peak RSS {rss / 1024:,.0f} MB; load average {os.getloadavg()[0]:.1f}")
    print(f"COPY (unindexed):   {copy_rate:>12,.0f} coupons/s ({copy_mean:.2f} s, mean of "
          "before and after)")
    if args.verify:
        problems = asyncio.run(check(url))
        print(f"ledger verify: {'clean' if not problems else f'{problems} violations'}")
    if not args.keep:
        with psycopg.connect(database(server_url(), "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    print(f"ratio {import_rate / copy_rate:.4f}")


if __name__ == "__main__":
    main()
