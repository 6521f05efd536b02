"""What partner_accrue() (migration 0023) decides, which a partner accrual is since it became
one SQL function: the answer's bytes against the response struct's encoding, each refusal
and their order, that a refusal changes nothing, and duplicates caught by either of the two
unique transaction ids (the journal's reference, the accrual's row), also concurrently."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.serialization import encode_json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts, add_months
from lms.partners.errors import PartnerNotFound, PartnerSuspended
from lms.partners.schemas import AccrualOut, AccrualRequest
from lms.partners.service import AccrualService
from lms.settings import Settings
from tests.family.support import M, make_member
from tests.partners.support import (
    accrual_body,
    accrue,
    assert_problem,
    clearing_posted,
    issue_key,
    make_partner,
    now,
    set_rate,
)


@pytest.fixture
async def member(db: Database, system: SystemAccounts, settings: Settings) -> M:
    return await make_member(db, system, settings)


async def written(db: Database, partner_id: int) -> tuple[int, int, int]:
    """The partner's journal entries, accrual rows and clearing balance: what an accrual
    writes."""
    async def read(session: AsyncSession) -> tuple[int, int]:
        row = (await session.execute(text(
            "SELECT (SELECT count(*) FROM journal_entries WHERE source = :source), "
            "(SELECT count(*) FROM partner_accruals WHERE partner_id = :id)"),
            {"source": f"partner:{partner_id}", "id": partner_id})).one()
        return int(row[0]), int(row[1])

    entries, rows = await db.transaction(read)
    return entries, rows, await clearing_posted(db, partner_id)


def expected(response: httpx.Response, body: dict[str, Any], miles: int,
             balance_after: int | None) -> bytes:
    """What the Python path answered: the request's values in AccrualOut, encoded by the
    API's encoder (the entry id is the one thing only the database knows)."""
    request = msgspec.json.decode(msgspec.json.encode(body), type=AccrualRequest)
    return encode_json(AccrualOut(
        id=response.json()["id"], card_number=request.card_number,
        partner_txn_id=request.partner_txn_id, miles=miles, amount=request.amount,
        currency=request.currency, category=request.category,
        occurred_at=request.occurred_at, reversed_amount=0, reversed_miles=0,
        balance_after=balance_after))


@pytest.mark.parametrize("occurred", [
    # UTC written with "Z", whole seconds; an offset with microseconds.
    lambda: (now() - timedelta(hours=1)).replace(microsecond=0),
    lambda: (now() - timedelta(hours=2)).astimezone(timezone(timedelta(hours=5, minutes=30))),
], ids=["utc", "offset"])
async def test_the_answer_is_the_bytes_the_response_struct_encodes_and_a_replay_repeats_them(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M,
        occurred: Any) -> None:
    moment: datetime = occurred()
    body = accrual_body(member.card, amount=12345, occurredAt=moment.isoformat())
    key = str(uuid.uuid4())
    response = await accrue(client, shop["key"], body, key)
    assert response.status_code == 201, response.text
    assert isinstance(response.json()["id"], int)
    assert response.content == expected(response, body, 185, 185)
    assert response.headers["content-type"] == "application/json"

    replay = await accrue(client, shop["key"], body, key)
    assert replay.status_code == 201
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.content == response.content


async def test_an_accrual_of_no_miles_has_no_entry_and_no_balance(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database) -> None:
    body = accrual_body(member.card, amount=66)  # 0.66 EUR at 1.5 miles per EUR: 0.99
    response = await accrue(client, shop["key"], body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] is None
    assert response.content == expected(response, body, 0, None)
    assert await written(db, shop["partner"]["id"]) == (0, 1, 0)


async def test_miles_of_the_largest_purchase_at_the_highest_rate(
        client: httpx.AsyncClient, admin: dict[str, str], member: M) -> None:
    partner = await make_partner(client, admin, rates={"luxury": 100_000_000})
    key = await issue_key(client, admin, partner["code"])
    body = accrual_body(member.card, amount=10**12, category="luxury")
    response = await accrue(client, key, body)
    assert response.status_code == 201, response.text
    # Beyond bigint on the way (10^20), not in the result.
    assert response.json()["miles"] == 10**12 * 100_000_000 // (100 * 10_000)


async def test_a_currency_of_three_decimals(client: httpx.AsyncClient,
                                            admin: dict[str, str], member: M) -> None:
    partner = await make_partner(client, admin, currency="KWD", rates={"retail": 20000})
    key = await issue_key(client, admin, partner["code"])
    response = await accrue(client, key, accrual_body(member.card, amount=1999,
                                                      currency="KWD"))
    assert response.json()["miles"] == 3  # 1.999 KWD at 2 miles per KWD, rounded down


async def test_refusals_come_in_the_order_of_the_rules_and_change_nothing(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database) -> None:
    key, card = shop["key"], member.card
    unknown_card = "9" * 16
    too_old = (now() - timedelta(days=366)).isoformat()
    currency = assert_problem(await accrue(client, key, accrual_body(
        card, currency="USD", occurredAt=too_old)), 422, "currency_mismatch")
    assert currency["detail"] == "The contract's currency is EUR"
    assert currency["field"] == "currency"
    assert_problem(await accrue(client, key, accrual_body(
        unknown_card, occurredAt=too_old)), 422, "invalid_occurred_at")
    assert_problem(await accrue(client, key, accrual_body(card, occurredAt=too_old)), 422,
                   "invalid_occurred_at")
    assert_problem(await accrue(client, key, accrual_body(unknown_card, category="fuel")),
                   404, "member_not_found")
    moment = now() - timedelta(hours=1)
    rate = assert_problem(await accrue(client, key, accrual_body(
        card, category="fuel", occurredAt=moment.isoformat())), 422, "no_earn_rate")
    assert rate["detail"] == f"No rate for 'fuel' at {moment.isoformat()}"
    assert rate["field"] == "category"
    # A time without an offset.
    naive = accrual_body(card, occurredAt=moment.replace(tzinfo=None).isoformat())
    assert_problem(await accrue(client, key, naive), 422, "invalid_occurred_at")
    assert await written(db, shop["partner"]["id"]) == (0, 0, 0)


async def test_the_key_is_claimed_before_any_rule_and_a_refusal_frees_it(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database) -> None:
    key = str(uuid.uuid4())
    body = accrual_body(member.card)
    naive = body | {"occurredAt": (now() - timedelta(hours=1)).replace(tzinfo=None)
                    .isoformat()}
    assert_problem(await accrue(client, shop["key"], naive, key), 422, "invalid_occurred_at")
    # Not stored: the same key serves the corrected request.
    first = await accrue(client, shop["key"], body, key)
    assert first.status_code == 201, first.text
    assert "Idempotency-Replayed" not in first.headers
    # Now taken: another request under it is refused before its own faults are looked at.
    assert_problem(await accrue(client, shop["key"], naive, key), 409,
                   "idempotency_key_reused")
    assert await written(db, shop["partner"]["id"]) == (1, 1, -150)


async def direct(db: Database, partner_id: int, body: dict[str, Any]) -> Exception | None:
    """partner_accrue() past the API key's check, which refuses an unknown or suspended
    partner first: the function's own checks for what changes under a request."""
    request = msgspec.json.decode(msgspec.json.encode(body), type=AccrualRequest)
    service = AccrualService(partner_id, request)
    try:
        await db.call_grouped(service.function, await service.arguments(
            f"partner:{partner_id}", str(uuid.uuid4()), "fingerprint"))
    except asyncpg.PostgresError as exc:
        return service.refusal(exc)
    return None


async def test_an_unknown_or_suspended_partner_is_refused_by_the_function(
        shop: dict[str, Any], member: M, db: Database) -> None:
    partner_id = shop["partner"]["id"]
    refused = await direct(db, 10**15, accrual_body(member.card))
    assert isinstance(refused, PartnerNotFound)
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE partners SET status = 'suspended' WHERE id = $1", partner_id))
    # Before the currency, as the rules go.
    refused = await direct(db, partner_id, accrual_body(member.card, currency="USD"))
    assert isinstance(refused, PartnerSuspended)
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE partners SET status = 'active' WHERE id = $1", partner_id))
    assert await direct(db, partner_id, accrual_body(member.card)) is None
    assert await written(db, partner_id) == (1, 1, -150)


async def test_a_closed_account_is_refused_and_nothing_is_written(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database,
        system: SystemAccounts) -> None:
    async def close(session: AsyncSession) -> None:
        await Ledger(session, system).set_account_status(member.account_id, "closed")

    await db.transaction(close)
    assert_problem(await accrue(client, shop["key"], accrual_body(member.card)), 409,
                   "account_closed")
    assert await written(db, shop["partner"]["id"]) == (0, 0, 0)


async def test_a_transaction_id_of_no_miles_is_credited_once(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database) -> None:
    body = accrual_body(member.card, amount=50)
    assert (await accrue(client, shop["key"], body)).status_code == 201
    # Caught by the accrual's row: no entry to catch it in the journal.
    assert_problem(await accrue(client, shop["key"], body), 409,
                   "duplicate_partner_transaction")
    # With miles this time: the entry is posted, then undone with the refusal.
    assert_problem(await accrue(client, shop["key"], body | {"amount": 10000}), 409,
                   "duplicate_partner_transaction")
    assert await written(db, shop["partner"]["id"]) == (0, 1, 0)


@pytest.mark.parametrize("amount, miles", [(10000, 150), (50, 0)])
async def test_one_transaction_id_for_several_cards_at_once_is_credited_once(
        client: httpx.AsyncClient, shop: dict[str, Any], db: Database,
        system: SystemAccounts, settings: Settings, amount: int, miles: int) -> None:
    members = [await make_member(db, system, settings) for _ in range(6)]
    txn = f"T-{uuid.uuid4().hex[:16]}"
    # Different members lock different balance rows: with miles, the journal's unique
    # reference catches the duplicates; without, the accrual's unique row.
    responses = await asyncio.gather(*(
        accrue(client, shop["key"], accrual_body(m.card, partnerTxnId=txn, amount=amount))
        for m in members))
    assert [r.status_code for r in responses].count(201) == 1, [r.text for r in responses]
    for r in responses:
        if r.status_code != 201:
            assert_problem(r, 409, "duplicate_partner_transaction")
    [credited] = [r.json() for r in responses if r.status_code == 201]
    assert credited["miles"] == miles
    assert await written(db, shop["partner"]["id"]) == (1 if miles else 0, 1, -miles)


async def test_a_rate_ended_before_the_purchase_does_not_apply(
        client: httpx.AsyncClient, admin: dict[str, str], member: M) -> None:
    partner = await make_partner(client, admin, rates={})
    t = now()
    assert (await set_rate(client, admin, partner["code"], "retail", 10000,
                           t - timedelta(days=20), t - timedelta(days=10))
            ).status_code == 201
    key = await issue_key(client, admin, partner["code"])
    # At the rate's end exactly: the rate is no longer in force.
    at_end = accrual_body(member.card, occurredAt=(t - timedelta(days=10)).isoformat())
    assert_problem(await accrue(client, key, at_end), 422, "no_earn_rate")
    inside = accrual_body(member.card, occurredAt=(t - timedelta(days=15)).isoformat())
    assert (await accrue(client, key, inside)).json()["miles"] == 100


async def test_one_key_sent_many_times_at_once_credits_once_and_every_answer_is_the_first(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database) -> None:
    body, key = accrual_body(member.card), str(uuid.uuid4())
    responses = await asyncio.gather(*(accrue(client, shop["key"], body, key)
                                       for _ in range(8)))
    # The claim waits for the first request's commit, which stored its answer with it: no
    # duplicate is left to answer idempotency_request_unfinished.
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert sorted(r.headers.get("Idempotency-Replayed", "") for r in responses) == [
        ""] + ["true"] * 7
    assert await written(db, shop["partner"]["id"]) == (1, 1, -150)


async def test_the_entry_and_its_lot_are_what_the_ledger_wrote_for_an_accrual(
        client: httpx.AsyncClient, shop: dict[str, Any], member: M, db: Database,
        settings: Settings) -> None:
    # Late in the evening at an offset west of UTC: the lot runs from the purchase's own date.
    moment = (now() - timedelta(days=10)).astimezone(timezone(timedelta(hours=-4))).replace(
        hour=22, minute=30, second=0, microsecond=0)
    body = accrual_body(member.card, amount=12345, occurredAt=moment.isoformat())
    response = await accrue(client, shop["key"], body)
    assert response.status_code == 201, response.text
    partner = shop["partner"]

    async def read(session: AsyncSession) -> Any:
        return (await session.execute(text(
            "SELECT j.kind, j.actor_type, j.actor_id, j.description, j.source, "
            "j.external_ref, j.effective_at, j.details, l.expires_at, l.account_id, "
            "(SELECT id FROM partner_earn_rates WHERE partner_id = :partner) "
            "FROM journal_entries j JOIN lots l ON l.entry_id = j.id WHERE j.id = :id"),
            {"id": response.json()["id"], "partner": partner["id"]})).one()

    *row, rate_id = await db.transaction(read)
    assert tuple(row) == (
        "accrual", "partner", str(partner["id"]), f"{partner['name']}: retail",
        f"partner:{partner['id']}", body["partnerTxnId"], moment,
        {"partnerTxnId": body["partnerTxnId"], "amount": 12345, "currency": "EUR",
         "category": "retail", "rateId": rate_id, "memberId": member.id},
        add_months(moment, settings.lot_validity_months), member.account_id)
