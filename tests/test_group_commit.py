"""Group commit (lms.group_commit, migration 0026): concurrent gifts and partner accruals go in
shared transactions, each call standing or falling alone, answered as if sent alone, and
batches on different connections never deadlock one another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from lms.clock import utcnow
from lms.db import Database
from lms.gifts.schemas import GiftCreate
from lms.gifts.service import GIFT_SHARED_ARGUMENTS, gift_arguments
from lms.group_commit import GroupCommit, batch_arguments
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.family.support import M, fund, make_member
from tests.partners.support import accrual_body, accrue, admin_headers, issue_key, make_partner


def gift(to: M, miles: int = 1000) -> dict[str, Any]:
    return {"recipientCardNumber": to.card, "recipientLastName": to.last_name, "miles": miles}


async def balance(db: Database, account_id: int) -> int:
    posted: int = await db.autocommit(lambda conn: conn.fetchval(
        "SELECT posted FROM balances WHERE account_id = $1 AND unit = 'MILES'", account_id))
    return posted


@pytest.fixture
async def members(db: Database, system: SystemAccounts, settings: Settings) -> list[M]:
    people = [await make_member(db, system, settings, last_name=f"Lovelace{n}")
              for n in range(4)]
    for m in people:
        await fund(db, system, m.account_id, 100_000)
    return people


async def test_concurrent_gifts_share_batches_and_each_is_answered_as_if_alone(
        client: httpx.AsyncClient, db: Database, members: list[M]) -> None:
    sender, *recipients = members
    group_before = db.group("gift_send")
    before = (group_before.batches, group_before.calls) if group_before else (0, 0)
    responses = await asyncio.gather(*(
        client.post("/v1/me/gifts", json=gift(recipients[n % 3], 1000 + n),
                    headers=sender.key()) for n in range(12)))
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
    assert sorted(r.json()["miles"] for r in responses) == [1000 + n for n in range(12)]
    group = db.group("gift_send")
    assert group is not None
    batches, calls = group.batches - before[0], group.calls - before[1]
    assert calls == 12
    assert batches < calls  # some went together
    fees = sum(r.json()["fee"] for r in responses)
    assert await balance(db, sender.account_id) == 100_000 - sum(
        1000 + n for n in range(12)) - fees


async def test_a_refused_call_rolls_back_alone_and_its_batch_commits_the_rest(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts, settings: Settings,
        members: list[M]) -> None:
    sender, a, b, _ = members
    poor = await make_member(db, system, settings)
    group = db.group("gift_send")
    batches_before = group.batches if group else 0
    unknown = {"recipientCardNumber": a.card, "recipientLastName": "Nobody", "miles": 1000}
    responses = await asyncio.gather(*(
        client.post("/v1/me/gifts", json=body, headers=who.key())
        for who, body in ((sender, gift(a, 2000)), (sender, unknown),
                          (sender, gift(b, 10_000_000)), (poor, gift(a, 1000)),
                          (sender, gift(b, 3000)))))
    assert [r.status_code for r in responses] == [201, 404, 409, 409, 201], [
        r.text for r in responses]
    group = db.group("gift_send")
    assert group is not None and group.batches - batches_before < 5  # some went together
    assert [r.json()["code"] for r in responses[1:4]] == [
        "gift_recipient_not_found", "gift_limit_exceeded", "insufficient_miles"]
    assert await balance(db, a.account_id) == 102_000
    assert await balance(db, b.account_id) == 103_000
    assert await balance(db, poor.account_id) == 0


async def test_one_key_twice_in_one_batch_is_one_gift_and_a_replay(
        client: httpx.AsyncClient, db: Database, members: list[M]) -> None:
    sender, recipient, _, _ = members
    headers = sender.key()
    first, second = await asyncio.gather(*(
        client.post("/v1/me/gifts", json=gift(recipient), headers=headers) for _ in range(2)))
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert sorted(r.headers.get("Idempotency-Replayed", "") for r in (first, second)) == [
        "", "true"]
    assert await balance(db, recipient.account_id) == 101_000


async def test_batches_on_two_connections_in_opposite_directions_do_not_deadlock(
        database_url: str, db: Database, system: SystemAccounts, client: httpx.AsyncClient,
        settings: Settings, members: list[M]) -> None:
    """Two processes' batches (two Databases, so two GroupCommits and two connections), each
    giving between the same members in the opposite order: without the batch's locks taken up
    front in one order, the first call of each would hold what the second of the other needs."""
    a, b, c, d = members
    other = Database(database_url)
    admin = await admin_headers(db, settings)
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"])
    # Batches straight from GroupCommit, without call_grouped's rerun of a call that a
    # deadlock broke: such a call fails here.
    mine, theirs = (GroupCommit(database.autocommit, "gift_send", 13,
                                shared=GIFT_SHARED_ARGUMENTS) for database in (db, other))
    try:
        async def give(group: GroupCommit, sender: M, to: M, n: int) -> asyncpg.Record:
            data = GiftCreate(recipient_card_number=to.card, recipient_last_name=to.last_name,
                              miles=1000)
            args = await gift_arguments(db, system, f"member:{sender.id}",
                                        f"deadlock-{sender.id}-{to.id}-{n}", "h", sender.id,
                                        data, utcnow())
            return await group.call(args)

        rounds = 15
        gifts_done = asyncio.gather(*(
            call for n in range(rounds) for call in (
                give(mine, a, b, n), give(mine, c, d, n), give(mine, b, c, n),
                give(theirs, d, c, n), give(theirs, b, a, n), give(theirs, c, b, n))))
        accruals_done = asyncio.gather(*(accrue(client, key, accrual_body(m.card))
                                         for m in members for _ in range(3)))
        gifts, accruals = await asyncio.gather(gifts_done, accruals_done)
        assert [r["status_code"] for r in gifts] == [201] * 6 * rounds
        assert [r.status_code for r in accruals] == [201] * 12
        # Each member gave as much as it got: a->b, b->a; c->d, d->c; b->c, c->b.
        fees = sum(json.loads(bytes(r["response_body"]))["fee"] for r in gifts)
        total = sum([await balance(db, m.account_id) for m in members])
        assert total == 4 * 100_000 - fees + 12 * 150
    finally:
        await other.dispose()


async def test_a_failure_of_the_whole_batch_is_every_calls_failure(db: Database) -> None:
    group = GroupCommit(db.autocommit, "no_such_function", 2)
    results = await asyncio.gather(group.call((1, 2)), group.call((3, 4)),
                                   return_exceptions=True)
    assert all(isinstance(r, asyncpg.UndefinedFunctionError) for r in results), results


async def test_a_shared_argument_must_be_the_same_for_every_call(db: Database) -> None:
    group = GroupCommit(db.autocommit, "gift_send", 13, shared=(10,))
    # Queued before the first batch is sent: both go in it.
    first = asyncio.ensure_future(group.call((None,) * 10 + ([1],) + (None,) * 2))
    second = asyncio.ensure_future(group.call((None,) * 10 + ([2],) + (None,) * 2))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results), results
    assert group.batches == 0


async def test_a_batch_answered_with_too_few_rows_fails_its_calls_instead_of_leaving_them(
        db: Database) -> None:
    await db.autocommit(lambda conn: conn.execute("""
        CREATE FUNCTION test_rowless_batch(a integer[])
        RETURNS TABLE (status_code integer, response_body bytea, replayed boolean,
                       error_code text, error_message text, error_detail text)
        LANGUAGE sql AS 'SELECT NULL::integer, NULL::bytea, NULL::boolean, NULL::text,
                                NULL::text, NULL::text WHERE false'"""))
    try:
        group = GroupCommit(db.autocommit, "test_rowless", 1)
        results = await asyncio.wait_for(asyncio.gather(
            group.call((1,)), group.call((2,)), return_exceptions=True), timeout=10)
        assert all(isinstance(r, RuntimeError) for r in results), results
    finally:
        await db.autocommit(lambda conn: conn.execute("DROP FUNCTION test_rowless_batch"))


async def test_the_batches_and_the_stored_answer_plan_once_per_session(db: Database) -> None:
    # Migration 0028: planned at every call, the batches' lock statements cost twice their
    # run time and idempotency_answer() (as a SQL function) more than its UPDATE.
    rows = await db.autocommit(lambda conn: conn.fetch(
        "SELECT p.proname, l.lanname, p.proconfig FROM pg_proc p"
        " JOIN pg_language l ON l.oid = p.prolang"
        " WHERE p.proname IN ('partner_accrue_batch', 'gift_send_batch', 'idempotency_answer')"))
    found = {r["proname"]: (r["lanname"], r["proconfig"]) for r in rows}
    assert found == {
        "partner_accrue_batch": ("plpgsql", ["plan_cache_mode=force_generic_plan"]),
        "gift_send_batch": ("plpgsql", ["plan_cache_mode=force_generic_plan"]),
        "idempotency_answer": ("plpgsql", None),
    }


async def test_a_batch_of_one_reads_the_balances_as_its_call_alone_does(
        db: Database, system: SystemAccounts, members: list[M]) -> None:
    # Migration 0029: a batch of one call skips the batch's up-front locks, which read the
    # balance rows once more; a batch of two takes them.
    sender, recipient, *_ = members
    data = GiftCreate(recipient_card_number=recipient.card,
                      recipient_last_name=recipient.last_name, miles=1000)
    calls = [await gift_arguments(db, system, f"member:{sender.id}", f"scans-{n}", "h",
                                  sender.id, data, utcnow()) for n in range(4)]
    placeholders = ", ".join(f"${n}" for n in range(1, len(calls[0]) + 1))
    batched = GroupCommit(db.autocommit, "gift_send", len(calls[0]),
                          shared=GIFT_SHARED_ARGUMENTS).statement
    counted = ("SELECT COALESCE(sum(idx_scan + seq_scan), 0) FROM pg_stat_xact_user_tables"
               " WHERE relname = 'balances'")

    async def work(conn: Any) -> tuple[int, int, int]:
        async def scans(statement: str, arguments: Sequence[Any]) -> int:
            before = await conn.fetchval(counted)
            rows = await conn.fetch(statement, *arguments)
            assert [r["status_code"] for r in rows] == [201] * len(rows)
            return int(await conn.fetchval(counted) - before)

        transaction = conn.transaction()
        await transaction.start()
        try:
            alone = await scans(f"SELECT * FROM gift_send({placeholders})", calls[0])
            one = await scans(batched, batch_arguments(calls[1:2], GIFT_SHARED_ARGUMENTS))
            two = await scans(batched, batch_arguments(calls[2:4], GIFT_SHARED_ARGUMENTS))
            return alone, one, two
        finally:
            await transaction.rollback()

    alone, one, two = await db.autocommit(work)
    assert alone > 0
    assert one == alone
    assert two > 2 * alone
