"""Gifting over the API: fee, limits at their edges, who may give to whom, what the
recipient sees, idempotency, and gifts in both directions at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.gifts.service import GiftService, GiftTerms, name_key
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Unit
from lms.settings import Settings
from tests.family.support import M, fund, make_member, miles, problem, set_status


async def terms(db: Database, system: SystemAccounts) -> GiftTerms:
    return await db.transaction(lambda s: GiftService(s, system).terms())


def body(to: M, amount: int, **overrides: Any) -> dict[str, Any]:
    return {"recipientCardNumber": to.card, "recipientLastName": to.last_name,
            "miles": amount, "message": "Happy birthday!"} | overrides


async def pair(db: Database, system: SystemAccounts, settings: Settings,
               fund_each: int = 0) -> tuple[M, M]:
    a = await make_member(db, system, settings, first_name="Ada", last_name="Lovelace")
    b = await make_member(db, system, settings, first_name="José", last_name="Müller-Núñez")
    for m in (a, b):
        if fund_each:
            await fund(db, system, m.account_id, fund_each)
    return a, b


async def test_a_gift_moves_miles_and_fee_in_one_entry_and_the_recipient_sees_the_sender(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    assert (rules.fee_bp, rules.fee_minimum) == (500, 100)  # programme/demo.toml
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)

    # Case, accents and hyphen do not matter in the last name.
    sent = await client.post("/v1/me/gifts", headers=a.key(),
                             json=body(b, 3000, recipientLastName="muller nunez"))
    assert sent.status_code == 201, sent.text
    gift = sent.json()
    assert (gift["miles"], gift["fee"], gift["direction"]) == (3000, 150, "sent")
    assert await miles(db, system, a.account_id) == 10_000 - 3150
    assert await miles(db, system, b.account_id) == 3000

    received = (await client.get("/v1/me/gifts?direction=received", headers=b.headers)).json()
    [item] = received["items"]
    assert item["sender"] == {"memberId": a.id, "cardNumber": a.card, "firstName": "Ada",
                              "lastName": "Lovelace"}
    assert (item["message"], item["miles"], item["id"]) == ("Happy birthday!", 3000,
                                                           gift["id"])
    assert (await client.get("/v1/me/gifts?direction=sent", headers=b.headers)
            ).json()["items"] == []
    assert (await client.get("/v1/me/gifts?direction=sent", headers=a.headers)
            ).json()["items"][0]["recipient"]["memberId"] == b.id

    line = (await client.get("/v1/me/statement", headers=b.headers)).json()["lines"][0]
    assert (line["kind"], line["amount"], line["entryId"]) == ("gift", 3000, gift["entryId"])
    assert line["description"].startswith("Gift from Ada Lovelace")

    async def facts(session: AsyncSession) -> tuple[Any, ...]:
        entry = (await session.execute(text(
            "SELECT kind, (SELECT sum(amount) FROM postings p WHERE p.entry_id = e.id), "
            "(SELECT count(*) FROM postings p WHERE p.entry_id = e.id), "
            "details->'sender'->>'cardNumber', details->>'message' "
            "FROM journal_entries e WHERE id = :id"), {"id": gift["entryId"]})).one()
        lots = await Ledger(session, system).open_lots(b.account_id)
        events = (await session.execute(text(
            "SELECT topic FROM outbox_events WHERE topic LIKE 'gift.%' AND "
            "(payload->>'memberId')::bigint IN (:a, :b) ORDER BY topic"),
            {"a": a.id, "b": b.id})).scalars().all()
        return tuple(entry), lots, events

    entry, lots, events = await db.transaction(facts)
    assert entry == ("gift", 0, 3, a.card, "Happy birthday!")
    # A fresh validity for the recipient: a new lot expiring about three years from now.
    [lot] = lots
    assert lot["remaining"] == 3000
    assert lot["expires_at"] > datetime.now(UTC) + timedelta(days=3 * 365 - 5)
    assert events == ["gift.received", "gift.sent"]


async def test_unknown_card_and_wrong_last_name_answer_the_same(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    wrong_name = await client.post("/v1/me/gifts", headers=a.key(),
                                   json=body(b, 1000, recipientLastName="Smith"))
    unknown = await client.post("/v1/me/gifts", headers=a.key(),
                                json=body(b, 1000, recipientCardNumber="7000000000000"))
    for response in (wrong_name, unknown):
        problem(response, 404, "gift_recipient_not_found")
    assert {k: v for k, v in wrong_name.json().items() if k != "instance"} == \
        {k: v for k, v in unknown.json().items() if k != "instance"}
    assert await miles(db, system, a.account_id) == 10_000


def test_last_names_compare_without_case_accents_or_spacing() -> None:
    assert name_key("Müller-Núñez") == name_key("MULLER NUNEZ") == name_key(" muller  nunez")
    assert name_key("de la Cruz") == name_key("De La  Cruz")
    assert name_key("Smith") != name_key("Smyth")


async def test_fee_is_a_rounded_up_percentage_with_a_minimum(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    assert rules.fee(500) == 100  # 25 by the percentage: the minimum applies
    assert rules.fee(2000) == 100  # exactly the minimum
    assert rules.fee(2001) == 101  # 100.05 rounded up
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, rules.min_miles + 100)
    too_small = await client.post("/v1/me/gifts", headers=a.key(),
                                  json=body(b, rules.min_miles - 1))
    problem(too_small, 422, "gift_too_small")
    # The whole balance, fee included, is exactly enough.
    ok = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, rules.min_miles))
    assert ok.status_code == 201, ok.text
    assert ok.json()["fee"] == 100
    assert await miles(db, system, a.account_id) == 0
    await fund(db, system, a.account_id, rules.min_miles + 99)
    short = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, rules.min_miles))
    problem(short, 409, "insufficient_miles")
    assert await miles(db, system, a.account_id) == rules.min_miles + 99


async def test_daily_limit_exactly_reached_passes_and_one_mile_more_fails(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 2 * rules.daily_limit)
    over = await client.post("/v1/me/gifts", headers=a.key(),
                             json=body(b, rules.daily_limit + 1))
    assert problem(over, 409, "gift_limit_exceeded")["period"] == "daily"
    first = await client.post("/v1/me/gifts", headers=a.key(),
                              json=body(b, rules.daily_limit - rules.min_miles))
    assert first.status_code == 201, first.text
    last = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, rules.min_miles))
    assert last.status_code == 201, last.text
    more = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, rules.min_miles))
    assert problem(more, 409, "gift_limit_exceeded")["remaining"] == 0
    assert await miles(db, system, b.account_id) == rules.daily_limit
    terms_now = (await client.get("/v1/me/gifts/terms", headers=a.headers)).json()
    assert terms_now["sentToday"] == rules.daily_limit


async def test_yearly_limit_counts_earlier_days_of_the_year(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, rules.yearly_limit)
    # Gifts of earlier days this year (and one of last year, which no longer counts).
    now = datetime.now(UTC)
    earlier = [now.replace(month=1, day=1, hour=0, minute=0) + timedelta(hours=1),
               now - timedelta(days=1) if now.timetuple().tm_yday > 1 else now]
    used = rules.yearly_limit - rules.daily_limit // 2

    async def backdate(session: AsyncSession) -> None:
        entry = (await session.execute(text("SELECT min(id) FROM journal_entries"))).scalar()
        for moment, amount in ((earlier[0], used - 1000), (earlier[1], 1000),
                               (now.replace(year=now.year - 1), rules.daily_limit)):
            await session.execute(text(
                "INSERT INTO gifts (sender_id, recipient_id, miles, fee, entry_id, created_at)"
                " VALUES (:a, :b, :m, 0, :e, :t)"),
                {"a": a.id, "b": b.id, "m": amount, "e": entry, "t": moment})

    await db.transaction(backdate)
    left = rules.yearly_limit - used
    over = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, left + 1))
    assert problem(over, 409, "gift_limit_exceeded")["period"] == "yearly"
    ok = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, left))
    assert ok.status_code == 201, ok.text


async def test_the_recipients_yearly_cap_counts_what_others_gave_them(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    assert rules.yearly_received_limit is not None and rules.daily_received_limit is None
    a, b = await pair(db, system, settings)
    others = [await make_member(db, system, settings, last_name=f"Other {i}")
              for i in range(3)]
    await fund(db, system, a.account_id, 10 * rules.min_miles)
    # Others gave b almost the cap this year; what a gave elsewhere does not count for b.
    received = rules.yearly_received_limit - rules.min_miles - 1
    start = datetime.now(UTC).replace(month=1, day=1, hour=0, minute=0) + timedelta(hours=1)

    async def backdate(session: AsyncSession) -> None:
        entry = (await session.execute(text("SELECT min(id) FROM journal_entries"))).scalar()
        amounts = [received // 3, received // 3, received - 2 * (received // 3)]
        for other, amount in zip(others, amounts, strict=True):
            await session.execute(text(
                "INSERT INTO gifts (sender_id, recipient_id, miles, fee, entry_id, created_at)"
                " VALUES (:a, :b, :m, 0, :e, :t)"),
                {"a": other.id, "b": b.id, "m": amount, "e": entry, "t": start})
        await session.execute(text(
            "INSERT INTO gifts (sender_id, recipient_id, miles, fee, entry_id, created_at)"
            " VALUES (:a, :b, :m, 0, :e, :t)"),
            {"a": a.id, "b": others[0].id, "m": rules.min_miles, "e": entry, "t": start})

    await db.transaction(backdate)
    over = await client.post("/v1/me/gifts", headers=a.key(),
                             json=body(b, rules.min_miles + 2))
    refused = problem(over, 409, "gift_limit_exceeded")
    # How much is left is the recipient's business, not the sender's.
    assert refused["period"] == "yearly" and "remaining" not in refused
    ok = await client.post("/v1/me/gifts", headers=a.key(), json=body(b, rules.min_miles + 1))
    assert ok.status_code == 201, ok.text


async def test_who_may_give_and_receive(client: httpx.AsyncClient, db: Database,
                                        system: SystemAccounts, settings: Settings) -> None:
    a, b = await pair(db, system, settings, fund_each=10_000)
    to_self = await client.post("/v1/me/gifts", headers=a.key(), json=body(a, 1000))
    problem(to_self, 422, "gift_to_self")
    await set_status(db, b.id, "locked")
    problem(await client.post("/v1/me/gifts", headers=a.key(), json=body(b, 1000)),
            409, "gift_recipient_not_active")
    problem(await client.post("/v1/me/gifts", headers=b.key(), json=body(a, 1000)),
            403, "member_locked")
    await set_status(db, b.id, "closed")
    problem(await client.post("/v1/me/gifts", headers=a.key(), json=body(b, 1000)),
            409, "gift_recipient_not_active")
    assert await miles(db, system, a.account_id) == 10_000
    assert await miles(db, system, b.account_id) == 10_000


async def test_idempotency_key_is_required_and_a_replay_gifts_once(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    problem(await client.post("/v1/me/gifts", headers=a.headers, json=body(b, 1000)),
            400, "idempotency_key_required")
    headers = a.key()
    first = await client.post("/v1/me/gifts", headers=headers, json=body(b, 1000))
    again = await client.post("/v1/me/gifts", headers=headers, json=body(b, 1000))
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    problem(await client.post("/v1/me/gifts", headers=headers, json=body(b, 2000)),
            409, "idempotency_key_reused")
    assert await miles(db, system, b.account_id) == 1000


async def test_concurrent_retries_under_one_key_give_once(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    """The key is claimed by the gift's first statement, which also locks both members: the
    retries wait for the first to commit, then replay its answer."""
    a, b = await pair(db, system, settings)
    await fund(db, system, a.account_id, 10_000)
    headers = a.key()
    responses = await asyncio.gather(*(
        client.post("/v1/me/gifts", headers=headers, json=body(b, 1000)) for _ in range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    replayed = [r.headers.get("Idempotency-Replayed") == "true" for r in responses]
    assert replayed.count(False) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    assert await miles(db, system, b.account_id) == 1000


async def test_concurrent_gifts_both_ways_never_deadlock_or_pass_the_daily_limit(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    rules = await terms(db, system)
    a, b = await pair(db, system, settings, fund_each=200_000)
    each = 2500
    per_side = rules.daily_limit // each + 4  # four too many each way
    fits = rules.daily_limit // each

    async def give(sender: M, to: M) -> httpx.Response:
        return await client.post("/v1/me/gifts", headers=sender.key(), json=body(to, each))

    calls = [give(a, b) for _ in range(per_side)] + [give(b, a) for _ in range(per_side)]
    responses = await asyncio.gather(*calls)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code >= 500]
    for side in (responses[:per_side], responses[per_side:]):
        assert sum(r.status_code == 201 for r in side) == fits
        assert {r.json()["code"] for r in side if r.status_code == 409} == {
            "gift_limit_exceeded"}
    fee = rules.fee(each)
    assert await miles(db, system, a.account_id) == 200_000 - fits * fee
    assert await miles(db, system, b.account_id) == 200_000 - fits * fee

    async def sent(session: AsyncSession) -> list[int]:
        return list((await session.execute(text(
            "SELECT sum(miles) FROM gifts WHERE sender_id IN (:a, :b) GROUP BY sender_id"),
            {"a": a.id, "b": b.id})).scalars())

    assert await db.transaction(sent) == [rules.daily_limit, rules.daily_limit]
    assert await miles(db, system, a.account_id, Unit.STATUS_MILES) == 0
