"""Webhooks: enqueued once per event from the outbox, signed, retried with backoff until a
2xx or the last attempt, never sent twice, also under concurrent senders."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor
from lms.settings import Settings
from lms.webhooks import signing
from lms.webhooks.delivery import RetryPolicy, attempt, deliver_due
from tests.factories import TEST_ACTOR
from tests.partners.support import admin_headers, assert_problem, now
from tests.settlement.support import buy, give_back, new_shop
from tests.settlement.test_statements import close_now
from tests.webhooks.receiver import Receiver, receiver
from tests.webhooks.support import deliveries, hooked_shop, relay_webhooks

FAST = RetryPolicy(max_attempts=4, base_seconds=10.0)


@pytest.fixture
async def admin(db: Database, settings: Settings) -> dict[str, str]:
    return await admin_headers(db, settings)


@pytest.fixture
async def sender() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def endpoint() -> Any:
    with receiver() as r:
        yield r


async def test_an_event_is_enqueued_once_signed_and_sent_once(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database, endpoint: Receiver,
        sender: httpx.AsyncClient) -> None:
    shop = await hooked_shop(client, admin, db, endpoint)
    await buy(client, shop, 10000, "T-1")
    await give_back(client, shop, "T-1", 10000)

    # Relays side by side, and again: the outbox hands each event over once per relay run
    # at most, and the (partner, event) key keeps a second hand-over from enqueuing twice.
    await asyncio.gather(relay_webhooks(db), relay_webhooks(db))
    await relay_webhooks(db)
    [row] = await deliveries(db, shop)
    assert (row["event_type"], row["status"], row["attempts"]) == (
        "accrual.reversed", "pending", 0)

    assert "delivered" in await deliver_due(db, sender)
    assert "delivered" not in await deliver_due(db, sender, now=now() + timedelta(days=1))
    [request] = endpoint.requests
    assert request.signature_ok
    body = request.json
    assert body == {"id": f"whd_{row['id']}", "type": "accrual.reversed",
                    "createdAt": body["createdAt"],
                    "data": {"partnerTxnId": "T-1", "amount": 10000, "miles": 150}}
    assert request.headers["Webhook-Id"] == body["id"]
    assert request.headers["Content-Type"] == "application/json"
    # The documented scheme, computed here by hand.
    timestamp = request.headers["Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(endpoint.secret.encode(), f"{timestamp}.".encode() + request.body,
                        hashlib.sha256).hexdigest()
    assert request.headers["Webhook-Signature"] == f"v1={expected}"
    assert not signing.verify("whsec_wrong", request.headers["Webhook-Signature"],
                              timestamp, request.body, int(time.time()))
    [done] = await deliveries(db, shop)
    assert (done["status"], done["attempts"], done["last_status_code"]) == (
        "delivered", 1, 200)


async def test_retries_with_backoff_then_success(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        sender: httpx.AsyncClient) -> None:
    with receiver(fail_first=2) as endpoint:
        shop = await hooked_shop(client, admin, db, endpoint)
        await buy(client, shop, 10000, "T-1")
        await give_back(client, shop, "T-1", 5000)
        await relay_webhooks(db)

        clock = now()
        gaps = []
        for expected in (1, 2):
            await deliver_due(db, sender, policy=FAST, now=clock)
            [row] = await deliveries(db, shop)
            assert (row["status"], row["attempts"], row["last_status_code"]) == (
                "pending", expected, 500)
            gaps.append((row["next_attempt_at"] - clock).total_seconds())
            # Not due yet: nothing is sent before the backoff has passed.
            await deliver_due(db, sender, policy=FAST, now=clock)
            assert len(endpoint.requests) == expected
            clock = row["next_attempt_at"] + timedelta(seconds=1)
        # base x 2^(n-1), times a jitter factor in [0.5, 1]
        assert 5 <= gaps[0] <= 10 and 10 <= gaps[1] <= 20

        await deliver_due(db, sender, policy=FAST, now=clock)
        [row] = await deliveries(db, shop)
        assert (row["status"], row["attempts"], row["last_status_code"]) == (
            "delivered", 3, 200)
        await deliver_due(db, sender, policy=FAST, now=clock + timedelta(days=1))
        assert [r.status for r in endpoint.requests] == [500, 500, 200]
        assert all(r.signature_ok for r in endpoint.requests)
        assert len({r.headers["Webhook-Id"] for r in endpoint.requests}) == 1


async def test_gives_up_after_the_last_attempt(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        sender: httpx.AsyncClient) -> None:
    with receiver(fail_first=100) as endpoint:
        shop = await hooked_shop(client, admin, db, endpoint)
        await buy(client, shop, 10000, "T-1")
        await give_back(client, shop, "T-1", 5000)
        await relay_webhooks(db)
        clock = now()
        for _ in range(FAST.max_attempts + 2):
            await deliver_due(db, sender, policy=FAST, now=clock)
            clock += timedelta(hours=1)
        [row] = await deliveries(db, shop)
        assert (row["status"], row["attempts"]) == ("failed", FAST.max_attempts)
        assert len(endpoint.requests) == FAST.max_attempts


async def test_two_concurrent_senders_send_once(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        sender: httpx.AsyncClient) -> None:
    with receiver(delay=0.3) as endpoint:
        shop = await hooked_shop(client, admin, db, endpoint)
        await buy(client, shop, 10000, "T-1")
        await give_back(client, shop, "T-1", 5000)
        await relay_webhooks(db)
        [row] = await deliveries(db, shop)

        outcomes = await asyncio.gather(*(attempt(db, row["id"], 0, client=sender)
                                          for _ in range(4)))
        assert sorted(outcomes) == ["delivered", "skipped", "skipped", "skipped"]
        # A task queued twice for the same attempt, after it was made: nothing happens.
        assert await attempt(db, row["id"], 0, client=sender) == "skipped"
        assert await attempt(db, row["id"], 1, client=sender) == "skipped"
        await asyncio.gather(deliver_due(db, sender, now=now() + timedelta(days=1)),
                             deliver_due(db, sender, now=now() + timedelta(days=1)))
        assert len(endpoint.requests) == 1
        [done] = await deliveries(db, shop)
        assert (done["status"], done["attempts"]) == ("delivered", 1)


async def test_hold_expired_goes_to_the_partner_that_opened_the_hold(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts, endpoint: Receiver, sender: httpx.AsyncClient) -> None:
    shop = await hooked_shop(client, admin, db, endpoint)
    other = await hooked_shop(client, admin, db, endpoint)
    await buy(client, shop, 10000, "T-1")

    async def holds(session: Any) -> int:
        ledger = Ledger(session, system)
        mine = await ledger.create_hold(shop.account_id, 40, reference="ORDER-7",
                                        actor=Actor("partner", str(shop.id)),
                                        expires_at=now() - timedelta(seconds=1))
        await ledger.create_hold(shop.account_id, 10, actor=TEST_ACTOR,
                                 expires_at=now() - timedelta(seconds=1))
        await ledger.expire_holds()
        return mine.id

    hold_id = await db.transaction(holds)
    await relay_webhooks(db)
    [row] = await deliveries(db, shop)
    assert row["event_type"] == "hold.expired"
    assert row["payload"] == {"holdId": hold_id, "miles": 40, "status": "expired",
                              "orderReference": "ORDER-7"}
    assert await deliveries(db, other) == []


async def test_statement_closed_is_sent(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database, endpoint: Receiver,
        sender: httpx.AsyncClient) -> None:
    shop = await hooked_shop(client, admin, db, endpoint)
    await buy(client, shop, 10000, "T-1")
    assert await close_now(db, shop)
    await relay_webhooks(db)
    [row] = await deliveries(db, shop)
    assert row["event_type"] == "statement.closed"
    await deliver_due(db, sender)
    [request] = endpoint.requests
    data = request.json["data"]
    assert request.signature_ok and "partnerId" not in data
    assert (data["issuedMiles"], data["partnerOwes"], data["currency"]) == (150, 180, "EUR")


async def test_secret_rotation_and_partners_without_a_url(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database, endpoint: Receiver,
        sender: httpx.AsyncClient) -> None:
    shop = await hooked_shop(client, admin, db, endpoint)
    code = shop.partner["code"]
    again = await client.put(f"/v1/admin/partners/{code}/webhook",
                             json={"url": endpoint.url}, headers=admin)
    assert again.status_code == 200 and again.json()["secret"] is None  # kept, not shown
    rotated = await client.post(f"/v1/admin/partners/{code}/webhook-secret", headers=admin)
    assert rotated.status_code == 201, rotated.text
    old, endpoint.secret = endpoint.secret, rotated.json()["secret"]
    assert endpoint.secret != old

    await buy(client, shop, 10000, "T-1")
    await give_back(client, shop, "T-1", 5000)
    await relay_webhooks(db)
    await deliver_due(db, sender)
    [request] = endpoint.requests
    assert request.signature_ok
    assert not signing.verify(old, request.headers["Webhook-Signature"],
                              request.headers["Webhook-Timestamp"], request.body,
                              int(time.time()))

    listed = await client.get(f"/v1/admin/partners/{code}/webhook-deliveries", headers=admin)
    assert listed.status_code == 200
    [item] = listed.json()
    assert (item["type"], item["status"], item["attempts"]) == ("accrual.reversed",
                                                                "delivered", 1)
    assert "secret" not in json.dumps(listed.json())

    silent = await new_shop(client, admin, db)
    await buy(client, silent, 10000, "T-2")
    await give_back(client, silent, "T-2", 5000)
    await relay_webhooks(db)
    assert await deliveries(db, silent) == []

    partner_key = await client.put(f"/v1/admin/partners/{code}/webhook",
                                   json={"url": None}, headers={"Authorization":
                                                                f"Bearer {shop.key}"})
    assert_problem(partner_key, 403, "forbidden")
    bad = await client.put(f"/v1/admin/partners/{code}/webhook", json={"url": "ftp://x"},
                           headers=admin)
    assert bad.status_code in (400, 422)
