"""A gift as one call of gift_send() (migration 0024): the answer, the entry and the events
exactly as the Python unit of work made them, the refusals the function now decides (each
leaving nothing behind and the key free), the terms' defaults, the members' own time zones,
and gifts racing for one balance."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import msgspec
import pytest
from litestar.serialization import encode_json

from lms.db import Database, RawConnection
from lms.errors import LmsError
from lms.gifts.service import GiftService, gift_refusal, local_starts
from lms.ledger.service import SystemAccounts, add_months
from lms.ledger.types import SystemAccount
from lms.settings import Settings
from tests.family.support import M, fund, make_member, miles, problem, set_status

GIFT = "/v1/me/gifts"


def body(to: M, amount: int, **overrides: Any) -> dict[str, Any]:
    return {"recipientCardNumber": to.card, "recipientLastName": to.last_name,
            "miles": amount, "message": "Für dich ✈"} | overrides


async def pair(db: Database, system: SystemAccounts, settings: Settings, *,
               sender_zone: str = "UTC", recipient_zone: str = "UTC") -> tuple[M, M]:
    a = await make_member(db, system, settings, first_name="Ada", last_name="Lovelace",
                          timezone=sender_zone)
    b = await make_member(db, system, settings, first_name="José", last_name="Müller-Núñez",
                          timezone=recipient_zone)
    return a, b


async def fetch(db: Database, sql: str, *args: Any) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.autocommit(lambda conn: conn.fetch(sql, *args))
    return rows


async def written(db: Database, a: M) -> tuple[int, int, int]:
    """Gifts, gift entries and stored idempotency keys of member ``a``."""
    [row] = await fetch(
        db, "SELECT (SELECT count(*) FROM gifts WHERE sender_id = $1) AS gifts, "
            "(SELECT count(*) FROM journal_entries WHERE kind = 'gift' AND actor_id = $2) "
            "AS entries, "
            "(SELECT count(*) FROM idempotency_keys WHERE principal = $3) AS keys",
        a.id, str(a.id), f"member:{a.id}")
    return row["gifts"], row["entries"], row["keys"]


async def test_the_answer_is_the_gift_as_the_api_lists_it_and_a_replay_its_bytes(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    headers = a.key()
    sent = await client.post(GIFT, headers=headers, json=body(b, 2001))
    assert sent.status_code == 201, sent.text
    assert sent.headers["content-type"] == "application/json"

    # The response struct as the Python code encodes it, from what was stored.
    listed = await db.transaction(lambda s: GiftService(s, system).list(a.id, sent=True))
    assert sent.json() == msgspec.json.decode(encode_json(listed[0]))
    assert sent.json()["createdAt"] == encode_json(listed[0].created_at).decode()[1:-1]
    assert list(sent.json()) == ["id", "direction", "sender", "recipient", "miles", "fee",
                                 "message", "entryId", "createdAt"]
    assert (sent.json()["fee"], sent.json()["message"]) == (101, "Für dich ✈")

    again = await client.post(GIFT, headers=headers, json=body(b, 2001))
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.content == sent.content


def test_created_at_is_written_as_msgspec_writes_it_with_or_without_microseconds() -> None:
    for moment in (datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
                   datetime(2026, 11, 24, 9, 30, 0, 120, tzinfo=UTC)):
        assert msgspec.json.encode(moment).decode()[1:-1] == \
            encode_json(moment).decode()[1:-1]


async def test_the_entry_postings_lot_and_events_are_as_before(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    sent = await client.post(GIFT, headers=a.key(), json=body(b, 3000))
    assert sent.status_code == 201, sent.text
    gift = sent.json()
    summary = {"miles": 3000, "fee": 150, "message": "Für dich ✈",
               "sender": {"memberId": a.id, "cardNumber": a.card, "name": "Ada Lovelace"},
               "recipient": {"memberId": b.id, "cardNumber": b.card,
                             "name": "José Müller-Núñez"}}

    [entry] = await fetch(db, "SELECT * FROM journal_entries WHERE id = $1", gift["entryId"])
    assert (entry["kind"], entry["actor_type"], entry["actor_id"], entry["source"],
            entry["external_ref"]) == ("gift", "member", str(a.id), None, None)
    assert entry["description"] == "Gift from Ada Lovelace to José Müller-Núñez"
    assert json.loads(entry["details"]) == summary

    legs = await fetch(db, "SELECT account_id, unit, amount FROM postings WHERE entry_id = $1 "
                           "ORDER BY id", gift["entryId"])
    assert [(r["account_id"], r["unit"], r["amount"]) for r in legs[:2]] == [
        (a.account_id, "MILES", -3150), (b.account_id, "MILES", 3000)]
    assert legs[2]["account_id"] in system.all(SystemAccount.FEES)
    assert (legs[2]["unit"], legs[2]["amount"]) == ("MILES", 150)

    [lot] = await fetch(db, "SELECT amount, expires_at FROM lots WHERE entry_id = $1",
                        gift["entryId"])
    created = datetime.fromisoformat(gift["createdAt"])
    assert lot["amount"] == 3000
    assert lot["expires_at"] == add_months(created, settings.lot_validity_months)

    events = await fetch(db, "SELECT topic, payload FROM outbox_events WHERE topic LIKE "
                             "'gift.%' AND (payload->>'entryId')::bigint = $1 ORDER BY id",
                         gift["entryId"])
    assert [(e["topic"], json.loads(e["payload"])) for e in events] == [
        ("gift.sent", summary | {"memberId": a.id, "entryId": gift["entryId"]}),
        ("gift.received", summary | {"memberId": b.id, "entryId": gift["entryId"]})]
    [row] = await fetch(db, "SELECT * FROM gifts WHERE id = $1", gift["id"])
    assert (row["sender_id"], row["recipient_id"], row["miles"], row["fee"], row["message"],
            row["entry_id"], row["created_at"]) == (a.id, b.id, 3000, 150, "Für dich ✈",
                                                    gift["entryId"], created)
    assert row["rule_id"] is not None


async def test_every_refusal_writes_nothing_and_leaves_the_key_free(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    locked = await make_member(db, system, settings, last_name="Locked", status="locked")
    await fund(db, system, a.account_id, 1_000)
    headers = a.key()
    refusals = [
        (body(b, 600, recipientLastName="Lovelace"), 404, "gift_recipient_not_found"),
        (body(b, 600, recipientCardNumber="7000000000000"), 404, "gift_recipient_not_found"),
        (body(a, 600), 422, "gift_to_self"),
        (body(locked, 600), 409, "gift_recipient_not_active"),
        (body(b, 499), 422, "gift_too_small"),
        (body(b, 50_001), 409, "gift_limit_exceeded"),
        (body(b, 1_000), 409, "insufficient_miles"),
    ]
    for gift, status, code in refusals:
        answer = problem(await client.post(GIFT, headers=headers, json=gift), status, code)
        if code == "gift_too_small":
            assert (answer["minMiles"], answer["field"]) == (500, "miles")
        if code == "gift_to_self":
            assert answer["field"] == "recipientCardNumber"
        if code == "gift_limit_exceeded":
            assert (answer["period"], answer["limit"], answer["remaining"]) == (
                "daily", 50_000, 50_000)
        if code == "insufficient_miles":
            assert (answer["available"], answer["requested"]) == (1_000, 1_100)
        assert await written(db, a) == (0, 0, 0)
    problem(await client.post(GIFT, headers=locked.key(), json=body(a, 600)), 403,
            "member_locked")
    assert await written(db, locked) == (0, 0, 0)
    # The key that every refusal above carried is still free.
    ok = await client.post(GIFT, headers=headers, json=body(b, 500))
    assert ok.status_code == 201, ok.text
    assert "Idempotency-Replayed" not in ok.headers
    assert await written(db, a) == (1, 1, 1)
    assert await miles(db, system, a.account_id) == 400


async def test_a_nul_character_answers_as_the_python_unit_of_work_did(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    # In the name: no stored name can hold it, so it names nobody.
    problem(await client.post(GIFT, headers=a.key(),
                              json=body(b, 600, recipientLastName="Müller\u0000")),
            404, "gift_recipient_not_found")
    # In the message: refused where the entry would have stored it, after every check.
    problem(await client.post(GIFT, headers=a.key(), json=body(b, 499, message="a\u0000")),
            422, "gift_too_small")
    problem(await client.post(GIFT, headers=a.key(), json=body(b, 600, message="a\u0000")),
            422, "unstorable_text")
    await set_status(db, a.id, "locked")
    problem(await client.post(GIFT, headers=a.key(), json=body(b, 600, message="a\u0000")),
            403, "member_locked")
    assert await written(db, a) == (0, 0, 0)


async def send_directly(conn: RawConnection, system: SystemAccounts, a: M, b: M,
                        amount: int, default_terms: list[int | None]) -> asyncpg.Record:
    """gift_send() called as GiftService.send calls it, with other default terms."""
    now = datetime.now(UTC)
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM gift_send($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        f"member:{a.id}", uuid.uuid4().hex, "test", a.id, b.card, "muller nunez", amount, "",
        now, msgspec.json.encode(now).decode()[1:-1], default_terms,
        system.pick(SystemAccount.FEES), add_months(now, 36))
    assert row is not None
    return row


async def test_without_terms_in_force_the_defaults_given_apply(
        db: Database, system: SystemAccounts, settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 100_000)

    async def work(conn: RawConnection) -> tuple[asyncpg.Record, Exception | None]:
        await conn.execute("DELETE FROM gift_rules")
        # fee 10 % (at least 7), at least 10 miles, 1,000 a day, 5,000 a year, 1,200 a day
        # received.
        defaults: list[int | None] = [1000, 7, 10, 1000, 5000, 1200, None]
        row = await send_directly(conn, system, a, b, 11, defaults)
        try:
            async with conn.transaction():
                await send_directly(conn, system, a, b, 990, defaults)
        except asyncpg.PostgresError as exc:
            return row, gift_refusal(exc)
        return row, None

    async def rolled_back(conn: RawConnection) -> tuple[asyncpg.Record, Exception | None]:
        transaction = conn.transaction()
        await transaction.start()
        try:
            return await work(conn)
        finally:
            await transaction.rollback()

    row, refusal = await db.autocommit(rolled_back)
    gift = json.loads(bytes(row["response_body"]))
    assert (gift["miles"], gift["fee"]) == (11, 7)  # 1.1 rounded up is 2; the minimum is 7
    assert isinstance(refusal, LmsError) and refusal.extra == {"limit": 1000, "period": "daily",
                                                     "remaining": 989}


async def test_the_recipients_daily_cap(client: httpx.AsyncClient, db: Database,
                                        system: SystemAccounts, settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    other = await make_member(db, system, settings, last_name="Other")
    await fund(db, system, a.account_id, 100_000)
    await fund(db, system, other.account_id, 100_000)

    async def work(conn: RawConnection) -> list[Exception | None]:
        transaction = conn.transaction()
        await transaction.start()
        try:
            # Terms of today's own (all rolled back): another test's terms from today give way.
            await conn.execute("DELETE FROM gift_rules WHERE effective_from = $1",
                               datetime.now(UTC).date())
            await conn.execute(
                "INSERT INTO gift_rules (effective_from, fee_bp, fee_minimum, min_miles, "
                "daily_limit, yearly_limit, daily_received_limit, yearly_received_limit, "
                "created_by) VALUES ($1, 0, 0, 1, 100000, 100000, 1500, NULL, 'test')",
                datetime.now(UTC).date())
            outcomes: list[Exception | None] = []
            for amount in (1000, 501, 500):
                try:
                    async with conn.transaction():
                        await send_directly(conn, system, a, b, amount, [0, 0, 1, 1, 1, None,
                                                                         None])
                    outcomes.append(None)
                except asyncpg.PostgresError as exc:
                    outcomes.append(gift_refusal(exc))
            return outcomes
        finally:
            await transaction.rollback()

    outcomes = await db.autocommit(work)
    assert outcomes[0] is None and outcomes[2] is None
    refused = outcomes[1]
    assert isinstance(refused, LmsError) and refused.extra == {"period": "daily"}


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
async def test_the_day_and_year_are_the_senders_and_the_recipients_own(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings, zone: str) -> None:
    """Gifts counted from the start of the member's local day (the sender's daily limit) and
    year (the recipient's yearly cap), 14 hours ahead of UTC or 11 behind: a gift a
    microsecond before that start does not count, one at that instant does."""
    terms = await db.transaction(lambda s: GiftService(s, system).terms())
    assert terms.yearly_received_limit is not None
    a, b = await pair(db, system, settings, sender_zone=zone)
    c = await make_member(db, system, settings, last_name="Third", timezone=zone)
    d = await make_member(db, system, settings, last_name="Fourth")
    await fund(db, system, a.account_id, 200_000)
    day_start, _ = local_starts(datetime.now(UTC), zone)
    _, year_start = local_starts(datetime.now(UTC), zone)
    for start in (day_start, year_start):
        assert start.astimezone(ZoneInfo(zone)).hour == 0
    entry = (await fetch(db, "SELECT min(id) AS id FROM journal_entries"))[0]["id"]

    async def backdate(sender: int, recipient: int, amount: int, at: datetime) -> None:
        await db.autocommit(lambda conn: conn.execute(
            "INSERT INTO gifts (sender_id, recipient_id, miles, fee, entry_id, created_at) "
            "VALUES ($1, $2, $3, 0, $4, $5)", sender, recipient, amount, entry, at))

    # Enough to refuse any gift if it counted; then, at the start, one more than leaves room.
    await backdate(a.id, d.id, terms.daily_limit, day_start - timedelta(microseconds=1))
    assert (await client.post(GIFT, headers=a.key(), json=body(b, 500))).status_code == 201
    await backdate(a.id, d.id, terms.daily_limit - 999, day_start)
    problem(await client.post(GIFT, headers=a.key(), json=body(b, 500)), 409,
            "gift_limit_exceeded")

    await fund(db, system, d.account_id, 10_000)
    await backdate(b.id, c.id, terms.yearly_received_limit,
                   year_start - timedelta(microseconds=1))
    assert (await client.post(GIFT, headers=d.key(), json=body(c, 500))).status_code == 201
    await backdate(b.id, c.id, terms.yearly_received_limit - 999, year_start)
    refused = problem(await client.post(GIFT, headers=d.key(), json=body(c, 500)), 409,
                      "gift_limit_exceeded")
    assert refused["period"] == "yearly" and "remaining" not in refused


async def test_racing_gifts_spend_the_balance_once(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a = await make_member(db, system, settings, last_name="Giver")
    recipients = [await make_member(db, system, settings, last_name=f"Taker {i}")
                  for i in range(6)]
    await fund(db, system, a.account_id, 3 * 600)  # three gifts of 500 with their fees

    responses = await asyncio.gather(*(
        client.post(GIFT, headers=a.key(), json=body(r, 500)) for r in recipients * 2))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 9, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {
        "insufficient_miles"}
    assert await miles(db, system, a.account_id) == 0
    assert await written(db, a) == (3, 3, 3)


async def test_the_same_key_racing_with_another_request_is_refused_or_replayed(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    headers = a.key()
    responses = await asyncio.gather(*(
        client.post(GIFT, headers=headers, json=body(b, 500 + i % 2)) for i in range(6)))
    won = [r for r in responses if r.status_code == 201]
    assert len({r.json()["id"] for r in won}) == 1
    assert sum("Idempotency-Replayed" not in r.headers for r in won) == 1
    assert all(r.json()["code"] == "idempotency_key_reused"
               for r in responses if r.status_code != 201)
    assert len(won) == 3
    assert await written(db, a) == (1, 1, 1)


async def test_only_a_gift_near_a_limit_finds_the_local_starts_and_only_a_replay_reads_its_key(
        db: Database, system: SystemAccounts, settings: Settings) -> None:
    """Migration 0029: a gift far from every limit neither looks up its members' local day
    and year nor calls the Idempotency-Key's functions (its own statements claim and answer
    the key); its replay reads the stored answer through idempotency_claim(); a gift whose
    last 367 days come near a limit looks the starts up, and passes when they leave room."""
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 100_000)
    entry = (await fetch(db, "SELECT min(id) AS id FROM journal_entries"))[0]["id"]

    async def work(conn: RawConnection) -> list[tuple[int, dict[str, int]]]:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("DELETE FROM gift_rules")
            await conn.execute("SET LOCAL track_functions = 'pl'")
            # No fee, 1,000 a day, 100,000 a year, no caps on receiving.
            defaults: list[int | None] = [0, 0, 1, 1000, 100_000, None, None]
            seen: dict[str, int] = {}
            outcomes: list[tuple[int, dict[str, int]]] = []
            for key, amount in (("far", 400), ("far", 400), ("near", 500)):
                if key == "near":
                    # Two days ago: in the last 367 days and this year, not today.
                    await conn.execute(
                        "INSERT INTO gifts (sender_id, recipient_id, miles, fee, entry_id, "
                        "created_at) VALUES ($1, $2, 900, 0, $3, now() - interval '2 days')",
                        a.id, b.id, entry)
                now = datetime.now(UTC)
                row = await conn.fetchrow(
                    "SELECT * FROM gift_send($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
                    "$12, $13)", f"member:{a.id}", key, "test", a.id, b.card, "muller nunez",
                    amount, "", now, msgspec.json.encode(now).decode()[1:-1], defaults,
                    system.pick(SystemAccount.FEES), add_months(now, 36))
                assert row is not None
                calls = {r["funcname"]: r["calls"] for r in await conn.fetch(
                    "SELECT funcname, calls FROM pg_stat_xact_user_functions")}
                outcomes.append((row["status_code"], {
                    name: calls.get(name, 0) - seen.get(name, 0)
                    for name in ("gift_send", "gift_local_starts", "idempotency_claim",
                                 "idempotency_answer")}))
                seen = calls
            return outcomes
        finally:
            await transaction.rollback()

    far, replay, near = await db.autocommit(work)
    assert far == (201, {"gift_send": 1, "gift_local_starts": 0, "idempotency_claim": 0,
                         "idempotency_answer": 0})
    assert replay == (201, {"gift_send": 1, "gift_local_starts": 0, "idempotency_claim": 1,
                            "idempotency_answer": 0})
    # 400 today and 900 two days ago: 1,800 with this gift in the last 367 days, over the
    # daily 1,000, so the day is looked up (both members count in UTC: one look-up), and
    # today's 900 passes.
    assert near == (201, {"gift_send": 1, "gift_local_starts": 1, "idempotency_claim": 0,
                          "idempotency_answer": 0})
