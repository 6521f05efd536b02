"""Bulk loading of a generated population with COPY, in one transaction.

The tables the load writes are locked against other writers for its whole duration, so the id
ranges taken from their sequences at the start (``nextval``, then ``setval`` to the last id
used) cannot be handed to anyone else. Rows are made in chunks of members (bounded memory); a
second thread COPYs one chunk, table by table, while the first simulates the next, so that on
two cores Python and PostgreSQL work side by side. On a database without members the secondary
indexes of those tables are dropped first and rebuilt at the end (one sort per index instead of
millions of insertions); all of it commits together, so a failed load leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.passwords import hash_password
from lms.clock import utcnow
from lms.db import Database, raw_connection, to_sync_url
from lms.generator.locales import LOCALES
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

# Table -> (COPY columns, binary types). The order is the load order (foreign keys).
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "accounts": ("id, kind, allow_negative, status, created_at",
                 ("int8", "text", "bool", "text", "timestamptz")),
    "balances": ("account_id, unit, posted, held, allow_negative",
                 ("int8", "text", "int8", "int8", "bool")),
    "members": ("id, card_number, account_id, email, password_hash, first_name, last_name, "
                "phone, phone_region, birth_date, locale, timezone, status, tier, "
                "tier_valid_until, joined_at, last_activity_at",
                ("int8", "text", "int8", "text", "text", "text", "text", "text", "text", "date",
                 "text", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz")),
    "journal_entries": ("id, kind, actor_type, actor_id, description, source, external_ref, "
                        "hold_id, effective_at, created_at",
                        ("int8", "text", "text", "text", "text", "text", "text", "int8",
                         "timestamptz", "timestamptz")),
    "postings": ("id, entry_id, account_id, unit, amount, balance_after, created_at",
                 ("int8", "int8", "int8", "text", "int8", "int8", "timestamptz")),
    "lots": ("id, account_id, entry_id, amount, remaining, expires_at, created_at",
             ("int8", "int8", "int8", "int8", "int8", "timestamptz", "timestamptz")),
    "holds": ("id, account_id, unit, amount, captured, status, actor_type, actor_id, "
              "reference, entry_id, expires_at, created_at, closed_at",
              ("int8", "int8", "text", "int8", "int8", "text", "text", "text", "text", "int8",
               "timestamptz", "timestamptz", "timestamptz")),
}
ROWS_OF = {"accounts": "accounts", "balances": "balances", "members": "members",
           "journal_entries": "entries", "postings": "postings", "lots": "lots",
           "holds": "holds"}
SEQUENCED = ("accounts", "members", "journal_entries", "postings", "lots", "holds")
# Partners the generated purchases and redemptions happen at: (code, name, kind).
PARTNERS = (("GEN-SHOP", "Skyline Shopping", "shop"), ("GEN-HOTEL", "Harbour Hotels", "ota"),
            ("GEN-CARS", "Roadrunner Cars", "shop"))


class Refused(Exception):
    """The database already has members and ``--force`` was not given."""


@dataclass(frozen=True, slots=True)
class Options:
    members: int
    seed: int = 1
    months: int = 48
    force: bool = False
    chunk: int = CHUNK_MEMBERS


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


def generate(url: str, settings: Settings, options: Options,
             say: Callable[[str], None] = print) -> Report:
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
        conn.execute("SET maintenance_work_mem = '256MB'")
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
        ctx, book = context(conn, settings, options, now)
        ids = reserve(conn, options.members)
        report.first_member_id = ids.member
        sim = Simulator(ctx, ids, book)
        copy_chunks(conn, sim, options, report, say)
        finish_sequences(conn, ids)
        update_system_balances(conn, book)
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
            now: datetime) -> tuple[Context, SystemBook]:
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
    return ctx, SystemBook(posted)


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


def update_system_balances(conn: psycopg.Connection[Any], book: SystemBook) -> None:
    deltas = book.deltas()
    if not deltas:
        return
    conn.execute("""
        UPDATE balances b SET posted = b.posted + d.amount
        FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS d(account_id, unit, amount)
        WHERE b.account_id = d.account_id AND b.unit = d.unit
    """, ([d[0] for d in deltas], [d[1] for d in deltas], [d[2] for d in deltas]))


def copy_rows(conn: psycopg.Connection[Any], rows: Rows, report: Report) -> None:
    with conn.cursor() as cur:
        for table, (columns, types) in TABLES.items():
            data: list[tuple[Any, ...]] = getattr(rows, ROWS_OF[table])
            if not data:
                continue
            t0 = time.monotonic()
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(types))
                for row in data:
                    copy.write_row(row)
            report.copy_seconds[table] = (report.copy_seconds.get(table, 0.0)
                                          + time.monotonic() - t0)
            report.rows[table] = report.rows.get(table, 0) + len(data)


def copy_chunks(conn: psycopg.Connection[Any], sim: Simulator, options: Options,
                report: Report, say: Callable[[str], None]) -> None:
    """Simulate chunks on this thread while a writer thread COPYs the previous one."""
    pending: queue.Queue[Rows | None] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            while (rows := pending.get()) is not None:
                copy_rows(conn, rows, report)
        except BaseException as exc:  # re-raised on the main thread
            failure.append(exc)
            while pending.get() is not None:
                pass

    thread = threading.Thread(target=writer, name="copy-writer", daemon=True)
    thread.start()
    started = last = time.monotonic()
    done = 0
    try:
        for chunk_no, start in enumerate(range(0, options.members, options.chunk)):
            if failure:
                break
            rng = random.Random(options.seed * 1_000_003 + chunk_no)  # noqa: S311
            rows = Rows()
            for _ in range(min(options.chunk, options.members - start)):
                sim.member(rng, rows)
            for tier, n in rows.tiers.items():
                report.tiers[tier] = report.tiers.get(tier, 0) + n
            pending.put(rows)
            done += min(options.chunk, options.members - start)
            if time.monotonic() - last >= 10 or done == options.members:
                last = time.monotonic()
                elapsed = last - started
                say(f"  {done:,}/{options.members:,} members simulated, "
                    f"{report.rows.get('journal_entries', 0):,} entries copied, "
                    f"{done / elapsed:,.0f} members/s")
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]
    for table in TABLES:
        say(f"  {table}: {report.rows.get(table, 0):,} rows, "
            f"COPY {report.copy_seconds.get(table, 0.0):.1f}s")
