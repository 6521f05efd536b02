"""Bulk loading of a generated population with COPY, in one transaction.

The tables the load writes are locked against other writers for its whole duration, so the id
ranges taken from their sequences at the start (``nextval``, then ``setval`` to the last id
used) cannot be handed to anyone else. Rows are made in chunks of members (bounded memory) by
worker processes (lms.generator.parallel), which encode them as COPY binary data; this process
streams each chunk, table by table, in chunk order. On a database without members the secondary
indexes of those tables are dropped first and rebuilt at the end (one sort per index instead of
millions of insertions); all of it commits together, so a failed load leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.passwords import hash_password
from lms.clock import utcnow
from lms.db import Database, raw_connection, to_sync_url
from lms.generator.locales import LOCALES
from lms.generator.parallel import BLOCKED, TABLES, Chunk, Plan, chunk_rng, worker_main
from lms.generator.reference import phone_stems, routes
from lms.generator.simulate import Context, Counters, Partner, Rows, Simulator, SystemBook
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.ledger.types import SystemAccount
from lms.settings import Settings

# Every generated member signs in with this password (one argon2 hash, computed once per run,
# is stored for all of them: hashing a million passwords would take hours).
DEMO_PASSWORD = "generated-demo-password"
CHUNK_MEMBERS = 2_000
ADVISORY_LOCK = 7_000_017

# Partners the generated purchases and redemptions happen at: (code, name, kind).
PARTNERS = (("GEN-SHOP", "Skyline Shopping", "shop"), ("GEN-HOTEL", "Harbour Hotels", "ota"),
            ("GEN-CARS", "Roadrunner Cars", "shop"), ("GEN-DINE", "Table Club Dining", "shop"))
# Members simulated to size the id blocks of the chunks, and the margin on top.
SAMPLE_MEMBERS = 400
BLOCK_MARGIN = 1.3
BLOCK_SLACK = 2_000


class Refused(Exception):
    """The database already has members and ``--force`` was not given."""


@dataclass(frozen=True, slots=True)
class Options:
    members: int
    seed: int = 1
    months: int = 48
    force: bool = False
    chunk: int = CHUNK_MEMBERS
    jobs: int = 2


@dataclass(slots=True)
class Report:
    members: int
    now: datetime
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    copy_seconds: dict[str, float] = field(default_factory=dict)
    index_seconds: float = 0.0
    dropped_indexes: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    first_member_id: int = 0
    workers: int = 1


def plain_url(url: str) -> str:
    return to_sync_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def count_members(url: str) -> int:
    with psycopg.connect(plain_url(url)) as conn:
        row = conn.execute("SELECT count(*) FROM members").fetchone()
        return int(row[0]) if row else 0


async def prepare(url: str, settings: Settings, months: int) -> None:
    """System accounts and the generated partners (with earn rates), through their own
    services: these are few rows, written the ordinary way."""
    from datetime import timedelta

    from lms.partners.errors import PartnerExists
    from lms.partners.schemas import EarnRateSet, PartnerCreate
    from lms.partners.service import PartnerService

    db = Database(url)
    system = SystemAccounts(settings.system_account_shards)
    try:
        async def ensure(session: AsyncSession) -> None:
            await system.ensure(LedgerRepository(await raw_connection(session)))
        await db.transaction(ensure)
        for code, name, kind in PARTNERS:
            async def create(session: AsyncSession, code: str = code, name: str = name,
                             kind: str = kind) -> None:
                partners = PartnerService(session, system)
                try:
                    await partners.create(PartnerCreate(
                        code=code, name=name, kind=kind, currency="EUR",  # type: ignore[arg-type]
                        price_per_mile_milli_minor=1200, value_per_mile_milli_minor=800))
                except PartnerExists:
                    return
                await partners.set_earn_rate(code, EarnRateSet(
                    category="general", miles_per_unit_bp=10000,
                    effective_from=utcnow() - timedelta(days=31 * (months + 1))))
            await db.transaction(create)
    finally:
        await db.dispose()


def say_now(line: str) -> None:
    print(line, flush=True)  # progress must show even when the output is a file


def generate(url: str, settings: Settings, options: Options,
             say: Callable[[str], None] = say_now) -> Report:
    if options.members < 1:
        raise ValueError("--members must be at least 1")
    existing = count_members(url)
    if existing and not options.force:
        raise Refused(f"the database already has {existing:,} members; "
                      "use --force to add generated members beside them")
    asyncio.run(prepare(url, settings, options.months))
    started = time.monotonic()
    now = utcnow()
    report = Report(members=options.members, now=now)
    with psycopg.connect(plain_url(url)) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        # Readers go on; writers to these tables wait until the load commits.
        conn.execute("LOCK TABLE accounts, balances, members, journal_entries, postings, lots,"
                     " holds IN EXCLUSIVE MODE")
        existing = int(conn.execute("SELECT count(*) FROM members").fetchone()[0])  # type: ignore[index]
        if existing and not options.force:
            raise Refused(f"the database already has {existing:,} members")
        indexes = [] if existing else drop_indexes(conn)
        report.dropped_indexes = len(indexes)
        say(f"dropped {len(indexes)} secondary indexes for the load" if indexes
            else "keeping the indexes (the database has members)")
        ctx, posted = context(conn, settings, options, now)
        workers = max(1, min(options.jobs, len(ctx.partners), len(ctx.issuance),
                             len(ctx.qualification), len(ctx.redemptions), len(ctx.breakage)))
        report.workers = workers
        block = calibrate(ctx, options, posted)
        first = reserve(conn, options.members)
        report.first_member_id = first.member
        plan = Plan(ctx=ctx, members=options.members, chunk=options.chunk, seed=options.seed,
                    first=first, block=block, posted=posted)
        say(f"simulating in {workers} worker processes, {plan.chunks} chunks of "
            f"{options.chunk:,} members")
        ends, deltas = copy_chunks(conn, plan, workers, report, say)
        finish_sequences(conn, ends)
        update_system_balances(conn, deltas)
        # The simulated history is not news: the relay's feed of miles events (read from the
        # journal, lms.outbox.feed) starts after what this transaction wrote.
        conn.execute("UPDATE outbox_feeds SET xid = pg_current_xact_id()::text::bigint, "
                     "entry_id = (SELECT max(id) FROM journal_entries) WHERE name = 'ledger'")
        t0 = time.monotonic()
        for name, definition in indexes:
            t1 = time.monotonic()
            conn.execute(definition)
            say(f"  rebuilt {name} in {time.monotonic() - t1:.1f}s")
        report.index_seconds = time.monotonic() - t0
        conn.execute("ANALYZE accounts, balances, members, journal_entries, postings, lots,"
                     " holds")
    report.seconds = time.monotonic() - started
    return report


def drop_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Drop the secondary indexes of the loaded tables that no constraint relies on (primary
    keys, unique constraints and the unique indexes foreign keys point at stay); returns
    their definitions to rebuild them."""
    rows = conn.execute("""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace
          AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
    """, (list(TABLES),)).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [(r[0], r[1]) for r in rows]


def context(conn: psycopg.Connection[Any], settings: Settings, options: Options,
            now: datetime) -> tuple[Context, dict[tuple[int, str], int]]:
    def shards(code: SystemAccount) -> tuple[int, ...]:
        found = conn.execute("SELECT id FROM accounts WHERE kind = 'system' AND code = %s "
                             "ORDER BY shard", (str(code),)).fetchall()
        return tuple(r[0] for r in found)

    partners = tuple(Partner(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT id, clearing_account_id, name FROM partners WHERE code = ANY(%s) ORDER BY id",
        ([p[0] for p in PARTNERS],)).fetchall())
    posted = {(r[0], r[1]): int(r[2]) for r in conn.execute(
        "SELECT b.account_id, b.unit, b.posted FROM balances b "
        "JOIN accounts a ON a.id = b.account_id WHERE a.kind = 'system'").fetchall()}
    rng = random.Random(options.seed)  # noqa: S311 - demo data, not secrets
    network = routes()
    ctx = Context(
        now=now, months=options.months, lot_validity_months=settings.lot_validity_months,
        password_hash=hash_password(DEMO_PASSWORD), card_prefix=settings.card_number_prefix,
        issuance=shards(SystemAccount.ISSUANCE),
        qualification=shards(SystemAccount.QUALIFICATION),
        redemptions=shards(SystemAccount.REDEMPTIONS), breakage=shards(SystemAccount.BREAKAGE),
        partners=partners,
        short_routes=tuple(r for r in network if not r.long_haul),
        long_routes=tuple(r for r in network if r.long_haul),
        phone_stems={loc.region: phone_stems(loc.region, rng) for loc in LOCALES})
    return ctx, posted


def sequence(table: str) -> str:
    return f"pg_get_serial_sequence('public.{table}', 'id')"


def reserve(conn: psycopg.Connection[Any], members: int) -> Counters:
    """The first id of each table. Members, accounts and card numbers are known in advance
    and reserved whole; the ledger tables' ranges end where the load ends (finish_sequences)."""
    def whole(seq_expr: str) -> int:
        row = conn.execute(f"SELECT setval({seq_expr}, nextval({seq_expr}) + %s - 1)",
                           (members,)).fetchone()
        assert row is not None
        return int(row[0]) - members + 1

    def first(table: str) -> int:
        row = conn.execute(f"SELECT nextval({sequence(table)})").fetchone()
        assert row is not None
        return int(row[0])

    return Counters(member=whole(sequence("members")), account=whole(sequence("accounts")),
                    card=whole("'card_number_seq'"), entry=first("journal_entries"),
                    posting=first("postings"), lot=first("lots"), hold=first("holds"))


def finish_sequences(conn: psycopg.Connection[Any], ids: Counters) -> None:
    for table, next_id in (("journal_entries", ids.entry), ("postings", ids.posting),
                           ("lots", ids.lot), ("holds", ids.hold)):
        conn.execute(f"SELECT setval({sequence(table)}, %s)", (next_id - 1,))


def update_system_balances(conn: psycopg.Connection[Any],
                           deltas: list[tuple[int, str, int]]) -> None:
    if not deltas:
        return
    conn.execute("""
        UPDATE balances b SET posted = b.posted + d.amount
        FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS d(account_id, unit, amount)
        WHERE b.account_id = d.account_id AND b.unit = d.unit
    """, ([d[0] for d in deltas], [d[1] for d in deltas], [d[2] for d in deltas]))


def calibrate(ctx: Context, options: Options, posted: dict[tuple[int, str], int]
              ) -> dict[str, int]:
    """Ids per chunk and table: a sample's rows per member, times the chunk, with margin."""
    sample = min(SAMPLE_MEMBERS, options.members)
    ids = Counters(0, 0, 0, 0, 0, 0, 0)
    sim = Simulator(ctx, ids, SystemBook(posted))
    rng = chunk_rng(options.seed + 1, 0)
    rows = Rows()
    for _ in range(sample):
        sim.member(rng, rows)
    chunk = min(options.chunk, options.members)
    return {name: int(getattr(ids, name) / sample * chunk * BLOCK_MARGIN) + BLOCK_SLACK
            for name in BLOCKED}


def copy_chunks(conn: psycopg.Connection[Any], plan: Plan, workers: int, report: Report,
                say: Callable[[str], None]) -> tuple[Counters, list[tuple[int, str, int]]]:
    """Start the workers, stream their chunks in chunk order, table by table; returns the
    next free id of each blocked table and the system accounts' deltas."""
    mp = multiprocessing.get_context("spawn")  # never fork a process holding a connection
    queues: list[Queue[Any]] = [mp.Queue(maxsize=2) for _ in range(workers)]
    procs = [mp.Process(target=worker_main, args=(plan, w, workers, queues[w]),
                        name=f"generate-{w}", daemon=True) for w in range(workers)]
    for proc in procs:
        proc.start()
    ends = {name: getattr(plan.first, name) for name in BLOCKED}
    deltas: list[tuple[int, str, int]] = []
    started = last = time.monotonic()
    done = 0
    try:
        with conn.cursor() as cur:
            for chunk_no in range(plan.chunks):
                chunk = receive(queues[chunk_no % workers], procs[chunk_no % workers])
                assert isinstance(chunk, Chunk) and chunk.number == chunk_no
                for table, (columns, _, _) in TABLES.items():
                    data = chunk.data.get(table)
                    if data is None:
                        continue
                    t0 = time.monotonic()
                    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.write(data)
                    report.copy_seconds[table] = (report.copy_seconds.get(table, 0.0)
                                                  + time.monotonic() - t0)
                    report.rows[table] = report.rows.get(table, 0) + chunk.rows[table]
                for tier, n in chunk.tiers.items():
                    report.tiers[tier] = report.tiers.get(tier, 0) + n
                for name, end in chunk.ends.items():
                    ends[name] = max(ends[name], end)
                done += chunk.rows["members"]
                if time.monotonic() - last >= 15 or done == plan.members:
                    last = time.monotonic()
                    say(f"  {done:,}/{plan.members:,} members, "
                        f"{report.rows.get('journal_entries', 0):,} entries, "
                        f"{report.rows.get('postings', 0):,} postings copied "
                        f"({done / (last - started):,.0f} members/s)")
        for w in range(workers):
            deltas += receive(queues[w], procs[w])
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    for table in TABLES:
        say(f"  {table}: {report.rows.get(table, 0):,} rows, "
            f"COPY {report.copy_seconds.get(table, 0.0):.1f}s")
    return replace(plan.first, **ends), deltas


def receive(q: Queue[Any], proc: BaseProcess) -> Any:
    while True:
        try:
            kind, payload = q.get(timeout=5)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{proc.name} died (exit code {proc.exitcode})") from None
            continue
        if kind == "error":
            raise RuntimeError(f"{proc.name} failed:\n{payload}")
        return payload
