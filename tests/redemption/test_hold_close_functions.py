"""partner_hold_capture() and partner_hold_void() (migration 0025): a capture's and a void's
whole unit of work in one statement. Their answers against what the API's structs encode,
their journal entry and events, each refusal in its order with nothing written and nothing
stored, and captures and voids racing on one hold."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.serialization import encode_json

from lms.db import Database, RawConnection
from lms.ledger.errors import AccountClosed
from lms.ledger.repository import hold_from_row
from lms.ledger.service import Ledger, SystemAccounts, hold_event
from lms.partners.clearing import clearing_shard
from lms.redemption.service import HoldClose, hold_refusal
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.redemption.support import (
    capture,
    fetchrow,
    funded_member,
    hold_for,
    miles_of,
    redeeming_partner,
    void,
)


async def execute(db: Database, sql: str, *args: Any) -> None:
    async def run(conn: RawConnection) -> None:
        await conn.execute(sql, *args)

    await db.autocommit(run)


async def refused(db: Database, partner_id: int, hold_id: int, *, void_it: bool = False,
                  miles: int | None = None) -> tuple[str, Exception | None]:
    """The SQLSTATE the function refuses with when called directly, and its problem."""
    close = HoldClose(partner_id, hold_id, miles)
    key = str(uuid.uuid4())

    async def run(conn: RawConnection) -> asyncpg.Record:
        call = close.void if void_it else close.capture
        return await call(conn, f"partner:{partner_id}", key, "fingerprint")

    with pytest.raises(asyncpg.PostgresError) as caught:
        await db.autocommit(run)
    stored = await fetchrow(db, "SELECT count(*) AS n FROM idempotency_keys WHERE key = $1",
                            key)
    assert stored["n"] == 0  # the claim rolled back with the refusal
    return caught.value.sqlstate, hold_refusal(caught.value)


async def hold_state(db: Database, hold_id: int) -> tuple[str, int, int, int]:
    """(status, captured, the account's held and posted MILES)."""
    row = await fetchrow(
        db, "SELECT h.status, h.captured, b.held, b.posted FROM holds h JOIN balances b "
            "ON b.account_id = h.account_id AND b.unit = 'MILES' WHERE h.id = $1", hold_id)
    return row["status"], row["captured"], row["held"], row["posted"]


# -- the answers ----------------------------------------------------------------------------

async def test_the_capture_answers_what_redemption_out_encodes(
        client: httpx.AsyncClient, admin: dict[str, str], member: dict[str, Any]) -> None:
    # A value per mile that rounds the miles' worth down, and an order reference that JSON
    # must escape.
    shop = await redeeming_partner(client, admin, value=1234)
    reference = 'O "ü" \\ \u0001\t/ ' + uuid.uuid4().hex[:8]
    hold = await hold_for(client, shop, member, miles=900, cashAmount=5000,
                          orderReference=reference)
    key = str(uuid.uuid4())
    captured = await capture(client, shop["key"], hold["id"], 777, key)
    assert captured.status_code == 201, captured.text
    body = captured.json()
    assert body["milesValue"] == 777 * 1234 // 1000
    assert body["orderReference"] == reference and body["refunds"] == []
    # The read path builds RedemptionOut and encodes it with the API's encoder.
    got = await client.get(f"/v1/partner/redemptions/{body['id']}",
                           headers=bearer(shop["key"]))
    assert got.status_code == 200
    assert captured.content == got.content
    replay = await capture(client, shop["key"], hold["id"], 777, key)
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.status_code == 201 and replay.content == captured.content


async def test_the_void_answers_what_hold_out_encodes(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    hold = await hold_for(client, shop, member, orderReference="Ünïcode \"quoted\"")
    key = str(uuid.uuid4())
    voided = await void(client, shop["key"], hold["id"], key)
    assert voided.status_code == 200, voided.text
    got = await client.get(f"/v1/partner/holds/{hold['id']}", headers=bearer(shop["key"]))
    assert got.status_code == 200
    assert voided.content == got.content
    assert voided.json()["status"] == "voided" and voided.json()["closedAt"]
    replay = await void(client, shop["key"], hold["id"], key)
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.status_code == 200 and replay.content == voided.content


@pytest.mark.parametrize("microsecond", [0, 5, 120_000, 999_999])
async def test_api_datetime_writes_what_msgspec_writes(db: Database, microsecond: int
                                                       ) -> None:
    moment = datetime(2026, 3, 29, 1, 59, 7, microsecond, tzinfo=UTC)

    async def run(conn: RawConnection) -> str:
        # Whatever the session's time zone.
        await conn.execute("SET LOCAL timezone = 'Asia/Kolkata'")
        text: str = await conn.fetchval("SELECT api_datetime($1)", moment)
        return text

    written = await db.raw_transaction(run)
    assert f'"{written}"'.encode() == encode_json(moment)


# -- what is written ------------------------------------------------------------------------

async def test_a_capture_posts_the_entry_and_event_it_posted_before(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=3000, cashAmount=700,
                          orderReference="ORD-E")
    captured = await capture(client, shop["key"], hold["id"], 2500)
    assert captured.status_code == 201, captured.text
    partner = shop["partner"]
    entry = await fetchrow(
        db, "SELECT e.id, e.kind, e.actor_type, e.actor_id, e.description, e.hold_id, "
            "e.details::text AS details FROM journal_entries e JOIN redemptions r "
            "ON r.entry_id = e.id WHERE r.id = $1", captured.json()["id"])
    assert (entry["kind"], entry["actor_type"], entry["actor_id"], entry["hold_id"]) == (
        "capture", "partner", str(partner["id"]), hold["id"])
    assert entry["description"] == f"{partner['name']}: order ORD-E"
    assert json.loads(entry["details"]) == {
        "partnerId": partner["id"], "holdId": hold["id"], "orderReference": "ORD-E",
        "cashAmount": 700, "currency": "EUR"}
    shards = [r["id"] for r in await db.autocommit(lambda conn: conn.fetch(
        "SELECT id FROM accounts WHERE kind = 'system' AND code = $1 ORDER BY shard",
        f"partner:{partner['id']}"))]
    postings = await db.autocommit(lambda conn: conn.fetch(
        "SELECT account_id, unit, amount FROM postings WHERE entry_id = $1 ORDER BY id",
        entry["id"]))
    assert [tuple(p) for p in postings] == [
        (member["accountId"], "MILES", -2500),
        (clearing_shard(shards, member["member"]["id"]), "MILES", 2500)]
    assert await miles_of(client, member) == {"posted": 7500, "held": 0, "available": 7500}

    closed = hold_from_row(await fetchrow(
        db, "SELECT id, account_id, amount, captured, status, expires_at, created_at, "
            "closed_at, reference, entry_id FROM holds WHERE id = $1", hold["id"]))
    assert closed.entry_id == entry["id"] and closed.captured == 2500
    event = await fetchrow(db, "SELECT payload::text AS payload FROM outbox_events "
                               "WHERE topic = 'redemption.captured' "
                               "AND (payload->>'holdId')::bigint = $1", hold["id"])
    assert json.loads(event["payload"]) == hold_event(closed)


async def test_a_void_releases_and_posts_its_event(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=1200, orderReference="ORD-V")
    assert (await void(client, shop["key"], hold["id"])).status_code == 200
    assert await hold_state(db, hold["id"]) == ("voided", 0, 0, 10_000)
    closed = hold_from_row(await fetchrow(
        db, "SELECT id, account_id, amount, captured, status, expires_at, created_at, "
            "closed_at, reference, entry_id FROM holds WHERE id = $1", hold["id"]))
    assert closed.entry_id is None
    event = await fetchrow(db, "SELECT payload::text AS payload FROM outbox_events "
                               "WHERE topic = 'hold.voided' "
                               "AND (payload->>'holdId')::bigint = $1", hold["id"])
    assert json.loads(event["payload"]) == hold_event(closed) | {"actor": "partner"}
    entries = await fetchrow(db, "SELECT count(*) AS n FROM journal_entries "
                                 "WHERE hold_id = $1", hold["id"])
    assert entries["n"] == 0


# -- refusals -------------------------------------------------------------------------------

async def test_capturing_more_than_is_held_is_refused_and_changes_nothing(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=1000)
    key = str(uuid.uuid4())
    beyond = await capture(client, shop["key"], hold["id"], 1001, key)
    body = assert_problem(beyond, 409, "capture_exceeds_hold")
    assert body["detail"] == "1001 requested, 1000 held"
    assert await hold_state(db, hold["id"]) == ("pending", 0, 1000, 10_000)
    # Not stored: the key serves a corrected request.
    ok = await capture(client, shop["key"], hold["id"], 1000, key)
    assert ok.status_code == 201 and "Idempotency-Replayed" not in ok.headers
    assert await hold_state(db, hold["id"]) == ("captured", 1000, 0, 9000)


async def test_the_key_is_checked_before_the_hold(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    hold = await hold_for(client, shop, member)
    key = str(uuid.uuid4())
    assert (await capture(client, shop["key"], hold["id"], idempotency_key=key)
            ).status_code == 201
    # A replay is answered although the hold is no longer pending; the same key for
    # another request is refused as such, not as a hold that is not pending.
    replay = await capture(client, shop["key"], hold["id"], idempotency_key=key)
    assert replay.status_code == 201
    assert_problem(await void(client, shop["key"], hold["id"], key), 409,
                   "idempotency_key_reused")


async def test_a_closed_accounts_hold_cannot_be_captured_but_can_be_voided(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database, system: SystemAccounts) -> None:
    hold = await hold_for(client, shop, member, miles=500)
    await db.transaction(lambda s: Ledger(s, system).set_account_status(
        member["accountId"], "closed"))
    body = assert_problem(await capture(client, shop["key"], hold["id"]), 409,
                          "account_closed")
    assert body["detail"] == f"Account {member['accountId']} is not open"
    assert await hold_state(db, hold["id"]) == ("pending", 0, 500, 10_000)
    # A void moves no miles between accounts: the ledger never refused it for this.
    assert (await void(client, shop["key"], hold["id"])).status_code == 200
    assert await hold_state(db, hold["id"]) == ("voided", 0, 0, 10_000)


async def test_each_refusal_in_its_order(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await redeeming_partner(client, admin)
    other = await redeeming_partner(client, admin)
    partner_id = shop["partner"]["id"]
    member = await funded_member(client, db, system, 10_000)
    pending = await hold_for(client, shop, member, miles=100)
    others = await hold_for(client, other, member, miles=100)
    done = await hold_for(client, shop, member, miles=100, ttlSeconds=1)
    assert (await void(client, shop["key"], done["id"])).status_code == 200
    due = await hold_for(client, shop, member, miles=100)
    await execute(db, "UPDATE holds SET expires_at = now() - interval '1 second' "
                      "WHERE id = $1", due["id"])
    await asyncio.sleep(1.1)  # ``done`` is past its time too: not pending comes first
    missing = 9_000_000_000

    for void_it in (False, True):
        # Unknown partner, before anything about the hold.
        state, problem = await refused(db, missing, pending["id"], void_it=void_it)
        assert state == "RH001" and problem is not None
        assert problem.code == "partner_not_found"  # type: ignore[attr-defined]
        # Another partner's hold, and no hold at all, are not found.
        for hold_id in (others["id"], missing):
            state, problem = await refused(db, partner_id, hold_id, void_it=void_it)
            assert state == "RH003"
            assert problem.code == "hold_not_found"  # type: ignore[union-attr]
        state, problem = await refused(db, partner_id, done["id"], void_it=void_it)
        assert state == "RH004"
        assert problem.code == "hold_not_pending"  # type: ignore[union-attr]
        assert problem.detail == "The hold is voided"  # type: ignore[union-attr]
        state, problem = await refused(db, partner_id, due["id"], void_it=void_it)
        assert state == "RH005"
        assert problem.code == "hold_expired"  # type: ignore[union-attr]
    state, problem = await refused(db, partner_id, pending["id"], miles=101)
    assert state == "RH006"
    assert problem.code == "capture_exceeds_hold"  # type: ignore[union-attr]

    # A suspended partner, before whether the hold is its own.
    await execute(db, "UPDATE partners SET status = 'suspended' WHERE id = $1", partner_id)
    try:
        for hold_id in (pending["id"], others["id"], missing):
            state, problem = await refused(db, partner_id, hold_id)
            assert state == "RH002"
            assert problem.code == "partner_suspended"  # type: ignore[union-attr]
    finally:
        await execute(db, "UPDATE partners SET status = 'active' WHERE id = $1", partner_id)
    # None of it changed anything.
    # Held: ``pending``, ``due`` and the other partner's hold.
    assert await hold_state(db, pending["id"]) == ("pending", 0, 300, 10_000)
    assert await hold_state(db, due["id"]) == ("pending", 0, 300, 10_000)
    # ledger_post()'s errors are the ledger's problems; anything else is no refusal (None:
    # raised as it is).
    assert isinstance(hold_refusal(await raised(db, "LD003", "1")), AccountClosed)
    assert hold_refusal(await raised(db, "22012", "")) is None


async def raised(db: Database, state: str, detail: str) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await execute(db, f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{state}', "
                          f"DETAIL = '{detail}'; END $$")
    return caught.value


# -- concurrency ----------------------------------------------------------------------------

async def test_one_key_racing_captures_once(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=800)
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(capture(client, shop["key"], hold["id"], 600, key)
                                     for _ in range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("Idempotency-Replayed") == "true" for a in answers) == 5
    count = await fetchrow(db, "SELECT count(*) AS n FROM redemptions WHERE hold_id = $1",
                           hold["id"])
    assert count["n"] == 1
    assert await hold_state(db, hold["id"]) == ("captured", 600, 0, 9400)


async def test_captures_and_voids_racing_on_one_hold_close_it_once(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    for _ in range(3):
        hold = await hold_for(client, shop, member, miles=100)
        calls = [capture(client, shop["key"], hold["id"]) for _ in range(3)] + [
            void(client, shop["key"], hold["id"]) for _ in range(3)]
        answers = await asyncio.gather(*calls)
        won = [a for a in answers if a.status_code in (200, 201)]
        assert len(won) == 1, [a.text for a in answers]
        for a in answers:
            if a is not won[0]:
                assert_problem(a, 409, "hold_not_pending")
        status, captured, held, _ = await hold_state(db, hold["id"])
        assert held == 0
        assert (status, captured) == (("captured", 100) if won[0].status_code == 201
                                      else ("voided", 0))
        entries = await fetchrow(db, "SELECT count(*) AS n FROM journal_entries "
                                     "WHERE hold_id = $1", hold["id"])
        assert entries["n"] == (1 if status == "captured" else 0)


async def test_a_due_hold_is_refused_however_long_ago_it_was_opened(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=100)
    await execute(db, "UPDATE holds SET expires_at = $2 WHERE id = $1", hold["id"],
                  datetime.now(UTC) - timedelta(days=1))
    assert_problem(await capture(client, shop["key"], hold["id"]), 409, "hold_expired")
    assert_problem(await void(client, shop["key"], hold["id"]), 409, "hold_expired")
    # Left for the expiry job or the next read, which release it.
    got = await client.get(f"/v1/partner/holds/{hold['id']}", headers=bearer(shop["key"]))
    assert got.json()["status"] == "expired"
    assert (await miles_of(client, member))["held"] == 0
