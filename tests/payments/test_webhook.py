"""POST /v1/payments/webhook: forged and stale signatures change nothing, each provider payment
is applied once (replays and concurrent duplicates included), and payments that cannot be
applied are recorded and refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from lms.db import Database
from lms.payments.signature import sign
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.payments.support import (
    SECRET,
    FakeProvider,
    buy_miles,
    miles_of,
    payment_id,
    payment_rows,
    post_webhook,
    purchase_entries,
)
from tests.tiers.support import new_member


async def pending(api: httpx.AsyncClient, db: Database, miles: int = 1000
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    member = await new_member(api, db)
    response = await buy_miles(api, member["accessToken"], miles)
    assert response.status_code == 201, response.text
    return member, response.json()


def success(purchase: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"id": f"evt_{purchase['id']}", "paymentId": payment_id(purchase),
            "status": "succeeded", "amount": purchase["price"]["amount"],
            "currency": purchase["price"]["currency"],
            "reference": purchase["reference"]} | overrides


async def status_of(api: httpx.AsyncClient, member: dict[str, Any],
                    purchase: dict[str, Any]) -> str:
    response = await api.get(f"/v1/me/mile-purchases/{purchase['id']}",
                             headers=bearer(member["accessToken"]))
    status: str = response.json()["status"]
    return status


async def test_forged_and_stale_signatures_are_refused_and_change_nothing(
        api: httpx.AsyncClient, db: Database) -> None:
    member, purchase = await pending(api, db)
    body = success(purchase)
    for attempt in (
        post_webhook(api, body, secret="not-the-secret"),
        post_webhook(api, body, header=""),
        post_webhook(api, body, header="t=1,v1=00"),
        post_webhook(api, body | {"amount": 1}, header=None, secret="guess"),
    ):
        assert_problem(await attempt, 401, "webhook_signature_invalid")
    stale = await post_webhook(api, body, timestamp=int(time.time()) - 301)
    assert_problem(stale, 401, "webhook_signature_stale")
    future = await post_webhook(api, body, timestamp=int(time.time()) + 301)
    assert_problem(future, 401, "webhook_signature_stale")
    # A body changed after signing.
    raw = b'{"tampered": true}'
    signed_other = sign(SECRET, b"{}")
    tampered = await api.post("/v1/payments/webhook", content=raw,
                              headers={"LMS-Signature": signed_other})
    assert_problem(tampered, 401, "webhook_signature_invalid")

    assert await payment_rows(db, purchase["reference"]) == []
    assert await status_of(api, member, purchase) == "pending"
    assert await miles_of(db, member["accountId"]) == 0
    # The genuine webhook still works afterwards.
    genuine = await post_webhook(api, body)
    assert genuine.status_code == 200, genuine.text
    assert genuine.json() == {"outcome": "completed", "replayed": False,
                              "reference": purchase["reference"],
                              "paymentId": payment_id(purchase)}
    assert await miles_of(db, member["accountId"]) == 1000


async def test_a_replay_answers_200_and_changes_nothing(
        api: httpx.AsyncClient, db: Database) -> None:
    member, purchase = await pending(api, db, 4000)
    body = success(purchase)
    assert (await post_webhook(api, body)).json()["outcome"] == "completed"
    for replay in (body, body | {"id": "evt_other"}, body | {"status": "canceled"}):
        again = await post_webhook(api, replay)
        assert again.status_code == 200, again.text
        assert again.json()["replayed"] is True and again.json()["outcome"] == "completed"
    assert await miles_of(db, member["accountId"]) == 4000
    assert await purchase_entries(db, purchase["reference"]) == 1
    assert await status_of(api, member, purchase) == "completed"


async def test_concurrent_duplicate_webhooks_post_the_miles_once(
        api: httpx.AsyncClient, db: Database) -> None:
    member, purchase = await pending(api, db, 7000)
    body = success(purchase)
    answers = await asyncio.gather(*(post_webhook(api, body) for _ in range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sorted(a.json()["replayed"] for a in answers) == [False] + [True] * 5
    assert await miles_of(db, member["accountId"]) == 7000
    assert await purchase_entries(db, purchase["reference"]) == 1


async def test_unknown_reference_and_other_payment_are_recorded_and_refused(
        api: httpx.AsyncClient, db: Database) -> None:
    member, purchase = await pending(api, db)
    unknown = await post_webhook(api, success(purchase, reference="mp_nobody",
                                              paymentId="pay_unknown"))
    assert_problem(unknown, 404, "unknown_payment_reference")
    assert await payment_rows(db, "mp_nobody") == [("succeeded", "unknown_reference")]
    other = await post_webhook(api, success(purchase, paymentId="pay_someone_else"))
    assert_problem(other, 422, "payment_mismatch")
    assert await status_of(api, member, purchase) == "pending"
    assert await miles_of(db, member["accountId"]) == 0


async def test_a_body_that_is_not_a_payment_is_refused(
        api: httpx.AsyncClient, db: Database) -> None:
    member, purchase = await pending(api, db)
    for body in (success(purchase, status="pending"), success(purchase, amount=-5),
                 {"reference": purchase["reference"]}):
        assert_problem(await post_webhook(api, body), 422, "validation_error")
    assert await payment_rows(db, purchase["reference"]) == []
    assert await status_of(api, member, purchase) == "pending"


async def test_the_fake_provider_answers_the_same_payment_for_the_same_reference(
        provider: FakeProvider) -> None:
    body = {"amount": 100, "currency": "EUR", "reference": "mp_same", "description": "x",
            "returnUrl": "http://127.0.0.1:9/r", "webhookUrl": "http://127.0.0.1:9/w"}
    async with httpx.AsyncClient(base_url=provider.url) as client:
        first = await client.post("/v1/payments", json=body)
        second = await client.post("/v1/payments", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
