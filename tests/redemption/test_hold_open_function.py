"""partner_hold_open() and member_code_check() (migration 0025): a hold's whole unit of work,
with its member code's check, in one statement. The answer against HoldOut's encoding, the
rows and events as before, the refusals that roll everything back (the code stays usable, the
key free), and one code used by racing requests."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from lms.db import Database, RawConnection
from lms.errors import ValidationFailed
from lms.ledger.service import SystemAccounts
from lms.redemption import codes, pricing
from lms.redemption.repository import HoldWriteRepository
from lms.redemption.service import GuardPolicy, hold_refusal
from lms.settings import Settings
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.redemption.support import (
    fetchrow,
    funded_member,
    hold_body,
    miles_of,
    new_code,
    open_hold,
    redeeming_partner,
    scalar,
)


async def test_the_hold_answers_what_hold_out_encodes_and_writes_its_rows(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    code = await new_code(client, member)
    reference = 'O "ü" \\ \u0001\t/ ' + uuid.uuid4().hex[:8]
    key = str(uuid.uuid4())
    body = hold_body(member["card"], code, miles=1500, cashAmount=250,
                     orderReference=reference, ttlSeconds=900)
    opened = await open_hold(client, shop["key"], body, key)
    assert opened.status_code == 201, opened.text
    hold = opened.json()
    got = await client.get(f"/v1/partner/holds/{hold['id']}", headers=bearer(shop["key"]))
    assert got.status_code == 200 and opened.content == got.content
    assert hold["status"] == "pending" and hold["orderReference"] == reference
    replay = await open_hold(client, shop["key"], body, key)
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.status_code == 201 and replay.content == opened.content

    row = await fetchrow(
        db, "SELECT h.account_id, h.amount, h.actor_type, h.actor_id, h.reference, "
            "h.expires_at, h.created_at, ph.member_id, ph.code_id, ph.miles, ph.cash_amount, "
            "ph.currency, ph.value_per_mile_milli_minor, ph.origin, c.used_at "
            "FROM holds h JOIN partner_holds ph ON ph.hold_id = h.id "
            "JOIN redemption_codes c ON c.id = ph.code_id WHERE h.id = $1", hold["id"])
    assert (row["account_id"], row["amount"], row["actor_type"], row["actor_id"],
            row["reference"]) == (member["accountId"], 1500, "partner",
                                  str(shop["partner"]["id"]), reference)
    assert (row["member_id"], row["miles"], row["cash_amount"], row["currency"],
            row["value_per_mile_milli_minor"], row["origin"]) == (
        member["member"]["id"], 1500, 250, "EUR", 1000, "partner")
    assert row["used_at"] is not None
    assert timedelta(seconds=899) < row["expires_at"] - row["created_at"] < timedelta(
        seconds=901)
    event = await fetchrow(db, "SELECT payload::text AS payload FROM outbox_events "
                               "WHERE topic = 'hold.created' "
                               "AND (payload->>'holdId')::bigint = $1", hold["id"])
    assert json.loads(event["payload"]) == {
        "holdId": hold["id"], "accountId": member["accountId"], "amount": 1500,
        "expiresAt": row["expires_at"].isoformat()}
    assert await miles_of(client, member) == {"posted": 10_000, "held": 1500,
                                              "available": 8500}


@pytest.mark.parametrize("microsecond", [0, 7, 250_000])
async def test_py_isoformat_writes_what_python_writes(db: Database, microsecond: int) -> None:
    moment = datetime(2026, 10, 25, 2, 30, 0, microsecond, tzinfo=UTC)

    async def run(conn: RawConnection) -> str:
        await conn.execute("SET LOCAL timezone = 'America/St_Johns'")
        text: str = await conn.fetchval("SELECT py_isoformat($1)", moment)
        return text

    assert await db.raw_transaction(run) == moment.isoformat()


async def test_the_lock_tells_its_end_as_python_wrote_it(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    wrong = [f"{n:08d}" for n in range(1, 7) if f"{n:08d}" != code][:5]
    for guess in wrong:
        assert_problem(await open_hold(client, shop["key"], hold_body(member["card"], guess)),
                       403, "invalid_member_code")
    guard = await fetchrow(db, "SELECT failures, locked_until FROM redemption_guards "
                               "WHERE card_number = $1", member["card"])
    assert guard["failures"] == 0 and guard["locked_until"] is not None
    event = await fetchrow(db, "SELECT payload::text AS payload FROM outbox_events "
                               "WHERE topic = 'member.redemption_locked' "
                               "AND (payload->>'memberId')::bigint = $1",
                           member["member"]["id"])
    assert json.loads(event["payload"]) == {
        "memberId": member["member"]["id"], "cardNumber": member["card"],
        "lockedUntil": guard["locked_until"].isoformat(), "failures": 5}
    locked = await open_hold(client, shop["key"], hold_body(member["card"], code))
    body = assert_problem(locked, 403, "redemption_locked")
    assert body["lockedUntil"] == guard["locked_until"].isoformat()


async def test_refusals_after_the_check_leave_the_code_usable_and_the_key_free(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await redeeming_partner(client, admin, value=1000, min_cash_bp=2000)
    member = await funded_member(client, db, system, 1000)
    code = await new_code(client, member)
    key = str(uuid.uuid4())
    refusals = [
        (hold_body(member["card"], code, miles=1000, cashAmount=200), 422,
         "cash_share_too_low", "At least 20% of the order must be paid in cash"),
        (hold_body(member["card"], code, miles=1000, cashAmount=250, currency="USD"), 422,
         "currency_mismatch", "The contract's currency is EUR"),
        (hold_body(member["card"], code, miles=1001, cashAmount=500), 409,
         "insufficient_miles", "1000 miles available, 1001 needed"),
    ]
    for body, status, problem, detail in refusals:
        answer = assert_problem(await open_hold(client, shop["key"], body, key), status,
                                problem)
        assert answer["detail"] == detail
    used = await scalar(db, "SELECT count(*) FROM redemption_codes WHERE member_id = :m "
                            "AND used_at IS NOT NULL", m=member["member"]["id"])
    assert used == 0
    failures = await scalar(db, "SELECT coalesce(max(failures), 0) FROM redemption_guards "
                                "WHERE card_number = :c", c=member["card"])
    assert failures == 0  # a good code refused for another reason is no wrong guess
    ok = await open_hold(client, shop["key"], hold_body(member["card"], code, miles=1000,
                                                        cashAmount=250), key)
    assert ok.status_code == 201 and "Idempotency-Replayed" not in ok.headers


async def test_the_partner_and_the_hold_length_are_checked_in_order(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database, settings: Settings) -> None:
    partner_id = shop["partner"]["id"]
    policy = GuardPolicy.from_settings(settings)

    async def call(partner: int, code: str, *, ttl: int = 600,
                   max_ttl: timedelta = timedelta(days=7)) -> tuple[str, Exception | None]:
        now = datetime.now(UTC)

        async def run(conn: RawConnection) -> asyncpg.Record:
            return await HoldWriteRepository(conn).open_hold(
                f"partner:{partner}", str(uuid.uuid4()), "fingerprint", partner_id=partner,
                card_number=member["card"],
                code_hash=codes.code_hash(settings.redemption_code_secret, member["card"],
                                          code),
                miles=100, cash_amount=500, currency="EUR", order_reference="ORD-P",
                expires_at=now + timedelta(seconds=ttl), now=now,
                max_failures=policy.max_failures, window=policy.window, lock=policy.lock,
                hold_max_ttl=max_ttl)

        with pytest.raises(asyncpg.PostgresError) as caught:
            await db.autocommit(run)
        return caught.value.sqlstate, hold_refusal(caught.value)

    code = await new_code(client, member)
    state, problem = await call(9_000_000_000, code)
    assert state == "RH001" and problem is not None
    assert problem.code == "partner_not_found"  # type: ignore[attr-defined]
    await scalar(db, "UPDATE partners SET status = 'suspended' WHERE id = :p RETURNING 1",
                 p=partner_id)
    try:
        state, problem = await call(partner_id, code)
        assert state == "RH002"
        assert problem.code == "partner_suspended"  # type: ignore[union-attr]
    finally:
        await scalar(db, "UPDATE partners SET status = 'active' WHERE id = :p RETURNING 1",
                     p=partner_id)
    state, problem = await call(partner_id, code, ttl=61, max_ttl=timedelta(seconds=60))
    assert state == "RH012" and isinstance(problem, ValidationFailed)
    # None of it used the code up.
    opened = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert opened.status_code == 201, opened.text


async def test_one_code_used_by_racing_requests_opens_one_hold(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    body = hold_body(member["card"], code, miles=400)
    responses = await asyncio.gather(*(open_hold(client, shop["key"], body)
                                       for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [201, 403, 403, 403], [
        r.text for r in responses]
    for r in responses:
        if r.status_code == 403:
            assert r.json()["code"] == "invalid_member_code"
    assert (await miles_of(client, member))["held"] == 400
    # The others found the code used, as they would have after the first had finished:
    # each is a wrong code, counted.
    failures = await scalar(db, "SELECT failures FROM redemption_guards "
                                "WHERE card_number = :c", c=member["card"])
    assert failures == 3


async def test_the_cash_share_is_pricing_within_cash_share_at_its_edge(
        client: httpx.AsyncClient, admin: dict[str, str], member: dict[str, Any]) -> None:
    shop = await redeeming_partner(client, admin, value=800, min_cash_bp=2500)
    for miles, cash in ((936, 251), (937, 250), (3, 0), (1, 1), (1, 3)):
        response = await open_hold(client, shop["key"], hold_body(
            member["card"], await new_code(client, member), miles=miles, cashAmount=cash))
        if pricing.within_cash_share(miles, cash, 800, 2500):
            assert response.status_code == 201, (miles, cash, response.text)
        else:
            assert_problem(response, 422, "cash_share_too_low")
