"""A partner's clearing account is split into shards: concurrent accruals of one partner spread
over them instead of queueing on one balance row, every reader sums them all, a partner that
has only its first shard (opened before the split) keeps working, and the migration opens the
other shards of existing partners."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import psycopg
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession

from lms import migrate
from lms.db import Database, asyncpg_dsn, raw_connection, to_sync_url
from lms.partners.clearing import CLEARING_SHARDS
from lms.partners.repository import PartnerRepository
from lms.partners.schemas import AccrualRequest
from lms.partners.service import AccrualService
from lms.settings import Settings
from tests.factories import register_member
from tests.partners.support import (
    accrual_body,
    accrue,
    clearing_posted,
    issue_key,
    make_partner,
    reverse,
)


async def shard_postings(db: Database, partner_id: int) -> dict[int, int]:
    """Per shard of the partner's clearing account: how many postings it carries."""
    async def work(session: AsyncSession) -> dict[int, int]:
        conn = await raw_connection(session)
        rows = await conn.fetch(
            "SELECT a.shard, count(p.*)::int AS n FROM accounts a "
            "LEFT JOIN postings p ON p.account_id = a.id "
            "WHERE a.kind = 'system' AND a.code = $1 GROUP BY a.shard",
            f"partner:{partner_id}")
        return {r["shard"]: r["n"] for r in rows}

    return await db.transaction(work)


async def test_a_new_partner_has_every_clearing_shard(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database) -> None:
    partner = await make_partner(client, admin)
    shards = await db.transaction(
        lambda s: PartnerRepository(s).clearing_shards(partner["id"]))
    assert len(shards) == CLEARING_SHARDS
    # Shard 0 is the account the API shows.
    assert shards[0] == partner["clearingAccountId"]


async def test_an_accrual_posts_to_the_clearing_shard_of_its_backend(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        settings: Settings) -> None:
    """The shard is the serving backend's (pg_backend_pid(), migration 0026): the accruals
    of one batch share a shard, concurrent batches on other backends mostly use others."""
    partner = await make_partner(client, admin)
    members = [await register_member(client) for _ in range(6)]
    bodies = [accrual_body(m["member"]["cardNumber"], amount=10000) for m in members]
    expected: dict[str, int] = {}
    connections = [await asyncpg.connect(asyncpg_dsn(db.url)) for _ in bodies]
    try:
        for conn, body in zip(connections, bodies, strict=True):
            request = msgspec.json.decode(msgspec.json.encode(body), type=AccrualRequest)
            service = AccrualService(partner["id"], request)
            args = await service.arguments(f"partner:{partner['id']}", str(uuid.uuid4()), "h")
            row = await conn.fetchrow(
                "SELECT status_code, pg_backend_pid() % $16 AS shard FROM partner_accrue("
                + ", ".join(f"${n}" for n in range(1, 16)) + ")", *args, CLEARING_SHARDS)
            assert row is not None and row["status_code"] == 201
            expected[body["partnerTxnId"]] = row["shard"]
    finally:
        for conn in connections:
            await conn.close()
    rows = await db.autocommit(lambda conn: conn.fetch(
        "SELECT e.external_ref, a.shard FROM journal_entries e "
        "JOIN postings p ON p.entry_id = e.id JOIN accounts a ON a.id = p.account_id "
        "WHERE e.source = $1 AND a.kind = 'system'", f"partner:{partner['id']}"))
    assert {r["external_ref"]: r["shard"] for r in rows} == expected
    assert len(set(expected.values())) > 1  # six backends' pids, not all alike mod 16


async def test_concurrent_accruals_of_one_partner_keep_the_clearing_sum_exact(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"])
    members = [await register_member(client) for _ in range(8)]
    bodies = [accrual_body(m["member"]["cardNumber"], amount=10000) for m in members]
    responses = await asyncio.gather(*(accrue(client, key, body) for body in bodies))
    assert [r.status_code for r in responses] == [201] * len(bodies), [
        r.text for r in responses]
    assert await clearing_posted(db, partner["id"]) == -150 * len(bodies)
    # A reversal credits a shard of the same account: the sum stays exact.
    reversed_ = await asyncio.gather(*(reverse(client, key, body["partnerTxnId"])
                                       for body in bodies[:3]))
    assert [r.status_code for r in reversed_] == [201] * 3
    assert await clearing_posted(db, partner["id"]) == -150 * (len(bodies) - 3)


async def test_a_partner_with_only_its_first_shard_keeps_working(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database) -> None:
    partner = await make_partner(client, admin)
    code = f"partner:{partner['id']}"

    async def forget_shards(session: AsyncSession) -> None:
        # What a partner looked like before the split: shard 0 alone. The other shards are
        # renamed away, untouched (nothing was posted to them).
        conn = await raw_connection(session)
        await conn.execute("UPDATE accounts SET code = 'gone:' || id WHERE code = $1 "
                           "AND shard > 0", code)

    await db.transaction(forget_shards)
    key = await issue_key(client, admin, partner["code"])
    member = await register_member(client)
    body = accrual_body(member["member"]["cardNumber"], amount=10000)
    response = await accrue(client, key, body)
    assert response.status_code == 201, response.text
    assert (await shard_postings(db, partner["id"])) == {0: 1}
    assert await clearing_posted(db, partner["id"]) == -150


def test_the_migration_opens_the_shards_of_existing_partners(
        scratch_database_url: str) -> None:
    url = scratch_database_url
    config = migrate.alembic_config(url)
    command.downgrade(config, "0016")
    with psycopg.connect(to_sync_url(url).replace("+psycopg", ""), autocommit=True) as conn:
        account = conn.execute(
            "INSERT INTO accounts (kind, code, shard, allow_negative) "
            "VALUES ('system', 'partner:0', 0, true) RETURNING id").fetchone()
        assert account is not None
        conn.execute("INSERT INTO balances (account_id, unit, allow_negative) "
                     "SELECT %s, u, true FROM unnest(ARRAY['MILES', 'STATUS_MILES', "
                     "'SEGMENTS']) u", (account[0],))
        partner = conn.execute(
            "INSERT INTO partners (code, name, kind, currency, clearing_account_id) "
            "VALUES ('old-shop', 'Old Shop', 'shop', 'EUR', %s) RETURNING id",
            (account[0],)).fetchone()
        assert partner is not None
        conn.execute("UPDATE accounts SET code = %s WHERE id = %s",
                     (f"partner:{partner[0]}", account[0]))
    migrate.upgrade(url)
    with psycopg.connect(to_sync_url(url).replace("+psycopg", "")) as conn:
        rows: list[Any] = conn.execute(
            "SELECT a.shard, count(b.*) FROM accounts a JOIN balances b "
            "ON b.account_id = a.id WHERE a.code = %s GROUP BY a.shard ORDER BY a.shard",
            (f"partner:{partner[0]}",)).fetchall()
    assert rows == [(shard, 3) for shard in range(CLEARING_SHARDS)]
    # ... and only the untouched shards go on the way down.
    command.downgrade(config, "0016")
    with psycopg.connect(to_sync_url(url).replace("+psycopg", "")) as conn:
        left = conn.execute("SELECT count(*) FROM accounts WHERE code = %s",
                            (f"partner:{partner[0]}",)).fetchone()
    assert left == (1,)
    migrate.upgrade(url)

