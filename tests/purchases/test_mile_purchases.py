"""Buying miles over HTTP against the real fake provider: price, payment, signed webhook,
miles posted once; cancellation, expiry, the yearly cap (also under concurrency)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.payments.errors import PaymentProviderUnavailable
from lms.purchases.service import PurchaseService
from lms.purchases.tasks import _expire as expire_task
from lms.settings import Settings
from tests.factories import bearer
from tests.partners.support import admin_headers, assert_problem
from tests.payments.support import (
    FakeProvider,
    buy_miles,
    miles_of,
    payment_rows,
    provider_completes,
    provider_resends,
    purchase_entries,
)
from tests.tiers.support import events, new_member


async def test_full_flow_pays_and_posts_the_miles_once(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    response = await buy_miles(api, token, 20000)
    assert response.status_code == 201, response.text
    purchase = response.json()
    # 20,000 miles fall in the second band: 27.50 EUR per 1,000.
    assert purchase["status"] == "pending"
    assert purchase["price"] == {"amount": 55000, "currency": "EUR"}
    assert purchase["paymentUrl"].startswith(provider.url + "/pay/")
    assert await miles_of(db, member["accountId"]) == 0

    delivery = await provider_completes(provider, purchase)
    assert delivery["statusCode"] == 200, delivery
    assert '"outcome":"completed"' in delivery["body"]

    assert await miles_of(db, member["accountId"]) == 20000
    assert await purchase_entries(db, purchase["reference"]) == 1
    read = await api.get(f"/v1/me/mile-purchases/{purchase['id']}", headers=bearer(token))
    assert read.status_code == 200
    done = read.json()
    assert done["status"] == "completed" and done["entryId"] is not None
    assert done["closedAt"] is not None and done["refundDue"] is False
    completed = await events(db, "purchase.completed", "purchaseId", purchase["id"])
    assert len(completed) == 1 and completed[0]["miles"] == 20000

    # The provider retries the same webhook: 200, replayed, nothing changes.
    again = await provider_resends(provider, purchase)
    assert again["statusCode"] == 200 and '"replayed":true' in again["body"], again
    assert await miles_of(db, member["accountId"]) == 20000
    assert await purchase_entries(db, purchase["reference"]) == 1
    assert await payment_rows(db, purchase["reference"]) == [("succeeded", "completed")]

    listed = await api.get("/v1/me/mile-purchases", headers=bearer(token))
    assert [p["id"] for p in listed.json()] == [purchase["id"]]


async def test_the_hosted_page_pays_with_its_button(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    purchase = (await buy_miles(api, member["accessToken"], 1000)).json()
    assert purchase["price"] == {"amount": 3000, "currency": "EUR"}
    async with httpx.AsyncClient(timeout=60, follow_redirects=True) as browser:
        page = await browser.get(purchase["paymentUrl"])
        assert page.status_code == 200
        assert "Pay" in page.text and "Cancel" in page.text and "30.00 EUR" in page.text
        paid = await browser.post(f"{purchase['paymentUrl']}/pay")
    # Back on our return page, after the webhook was applied.
    assert paid.status_code == 200
    assert str(paid.url).endswith(f"/v1/payments/return/{purchase['reference']}")
    assert "completed" in paid.text
    assert await miles_of(db, member["accountId"]) == 1000


async def test_the_hosted_page_cancels_with_its_other_button(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    purchase = (await buy_miles(api, member["accessToken"], 1000)).json()
    async with httpx.AsyncClient(timeout=60, follow_redirects=True) as browser:
        back = await browser.post(f"{purchase['paymentUrl']}/cancel")
        assert back.status_code == 200 and "canceled" in back.text
        page = await browser.get(purchase["paymentUrl"])
        assert "This payment is canceled" in page.text
    read = (await api.get(f"/v1/me/mile-purchases/{purchase['id']}",
                          headers=bearer(member["accessToken"]))).json()
    assert read["status"] == "canceled"
    assert await miles_of(db, member["accountId"]) == 0


async def test_a_failed_or_canceled_payment_cancels_the_purchase(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    for status in ("failed", "canceled"):
        purchase = (await buy_miles(api, token, 5000)).json()
        delivery = await provider_completes(provider, purchase, status=status)
        assert delivery["statusCode"] == 200 and '"outcome":"canceled"' in delivery["body"]
        read = (await api.get(f"/v1/me/mile-purchases/{purchase['id']}",
                              headers=bearer(token))).json()
        assert read["status"] == "canceled" and read["note"] == f"payment {status}"
        assert await purchase_entries(db, purchase["reference"]) == 0
    assert await miles_of(db, member["accountId"]) == 0
    # Canceled purchases no longer count against the cap: the whole cap is still there.
    assert (await buy_miles(api, token, 100000)).status_code == 201
    assert (await buy_miles(api, token, 50000)).status_code == 201


async def test_a_wrong_amount_or_currency_is_recorded_and_refused(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider,
        live_settings: Settings) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    for wrong in ({"amount": 2999}, {"currency": "USD"}):
        purchase = (await buy_miles(api, token, 1000)).json()
        delivery = await provider_completes(provider, purchase, **wrong)
        assert delivery["statusCode"] == 422, delivery
        assert '"code":"payment_amount_mismatch"' in delivery["body"]
        read = (await api.get(f"/v1/me/mile-purchases/{purchase['id']}",
                              headers=bearer(token))).json()
        assert read["status"] == "rejected" and read["refundDue"] is True
        assert await payment_rows(db, purchase["reference"]) == [
            ("succeeded", "amount_mismatch")]
        # A retry of the same webhook is a replay: 200, still nothing posted.
        again = await provider_resends(provider, purchase)
        assert again["statusCode"] == 200 and '"replayed":true' in again["body"]
        assert await purchase_entries(db, purchase["reference"]) == 0
    assert await miles_of(db, member["accountId"]) == 0
    # Both wait for a refund, as staff see them.
    admin = await admin_headers(db, live_settings)
    due = await api.get("/v1/admin/purchases/refunds-due", headers=admin)
    assert due.status_code == 200, due.text
    mine = [p for p in due.json() if p["memberId"] == member["id"]]
    assert [(p["status"], p["refundDue"]) for p in mine] == [("rejected", True)] * 2
    assert (await api.get("/v1/admin/purchases/refunds-due",
                          headers=bearer(token))).status_code == 403


async def test_bad_amounts_are_refused_with_nothing_created(
        api: httpx.AsyncClient, db: Database) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    for miles in (999, 1500, 101000, 0):
        response = await buy_miles(api, token, miles)
        assert response.status_code in (400, 422), response.text
    body = assert_problem(await buy_miles(api, token, 1500), 422, "invalid_miles_amount")
    assert body["stepMiles"] == 1000
    assert (await api.get("/v1/me/mile-purchases", headers=bearer(token))).json() == []
    assert (await buy_miles(api, token, 100000)).status_code == 201


async def test_the_idempotency_key_answers_the_same_purchase(
        api: httpx.AsyncClient, db: Database) -> None:
    member = await new_member(api, db)
    first = await buy_miles(api, member["accessToken"], 3000, key="buy-3000")
    again = await buy_miles(api, member["accessToken"], 3000, key="buy-3000")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert again.json() == first.json()
    listed = await api.get("/v1/me/mile-purchases", headers=bearer(member["accessToken"]))
    assert len(listed.json()) == 1


async def test_the_yearly_cap_at_its_edge(api: httpx.AsyncClient, db: Database,
                                         provider: FakeProvider) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    first = (await buy_miles(api, token, 100000)).json()
    await provider_completes(provider, first)
    # 149,000 bought or pending: 1,000 more is exactly the cap of 150,000, 2,000 is over.
    assert (await buy_miles(api, token, 49000)).status_code == 201
    over = assert_problem(await buy_miles(api, token, 2000), 409, "yearly_cap_exceeded")
    assert over["remaining"] == 1000 and over["bought"] == 149000
    assert (await buy_miles(api, token, 1000)).status_code == 201
    assert_problem(await buy_miles(api, token, 1000), 409, "yearly_cap_exceeded")


async def test_concurrent_purchases_never_exceed_the_cap_together(
        api: httpx.AsyncClient, db: Database) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    # Each fits alone (100,000 of 150,000), no two fit together.
    answers = await asyncio.gather(*(buy_miles(api, token, 100000) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409], [a.text for a in answers]
    for a in answers:
        if a.status_code == 409:
            assert a.json()["code"] == "yearly_cap_exceeded"

    other = await new_member(api, db)
    # 75,000 twice is exactly the cap: both fit, a third 1,000 does not.
    both = await asyncio.gather(*(buy_miles(api, other["accessToken"], 75000)
                                  for _ in range(2)))
    assert [b.status_code for b in both] == [201, 201]
    assert_problem(await buy_miles(api, other["accessToken"], 1000), 409,
                   "yearly_cap_exceeded")


async def test_unpaid_purchases_expire_and_a_late_payment_is_refused(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    token = member["accessToken"]
    late = (await buy_miles(api, token, 100000)).json()
    kept = (await buy_miles(api, token, 50000)).json()
    assert_problem(await buy_miles(api, token, 1000), 409, "yearly_cap_exceeded")

    async def backdate(session: Any) -> None:
        await session.execute(text(
            "UPDATE purchases SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": late["id"]})
    await db.transaction(backdate)
    # The beat task's own code path (lms.purchases.tasks), on this database.
    assert await expire_task(db) >= 1
    assert len(await events(db, "purchase.expired", "purchaseId", late["id"])) == 1
    read = (await api.get(f"/v1/me/mile-purchases/{late['id']}", headers=bearer(token))).json()
    assert read["status"] == "expired"
    # The expired purchase no longer counts against the cap.
    assert (await buy_miles(api, token, 100000)).status_code == 201

    delivery = await provider_completes(provider, late)
    assert delivery["statusCode"] == 409 and '"code":"purchase_expired"' in delivery["body"]
    read = (await api.get(f"/v1/me/mile-purchases/{late['id']}", headers=bearer(token))).json()
    assert read["status"] == "expired" and read["refundDue"] is True
    assert await purchase_entries(db, late["reference"]) == 0
    assert await payment_rows(db, late["reference"]) == [("succeeded", "expired")]
    # The one still pending is paid normally.
    assert (await provider_completes(provider, kept))["statusCode"] == 200
    assert await miles_of(db, member["accountId"]) == 50000


async def test_a_pending_purchase_past_its_time_is_expired_by_the_webhook_itself(
        api: httpx.AsyncClient, db: Database, provider: FakeProvider) -> None:
    member = await new_member(api, db)
    purchase = (await buy_miles(api, member["accessToken"], 2000)).json()

    async def backdate(session: Any) -> None:
        await session.execute(text(
            "UPDATE purchases SET expires_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(minutes=1), "id": purchase["id"]})
    await db.transaction(backdate)
    delivery = await provider_completes(provider, purchase)
    assert delivery["statusCode"] == 409, delivery
    assert await miles_of(db, member["accountId"]) == 0


async def test_a_member_sees_only_their_own_purchases(
        api: httpx.AsyncClient, db: Database) -> None:
    owner, other = await new_member(api, db), await new_member(api, db)
    purchase = (await buy_miles(api, owner["accessToken"], 1000)).json()
    assert_problem(await api.get(f"/v1/me/mile-purchases/{purchase['id']}",
                                 headers=bearer(other["accessToken"])),
                   404, "purchase_not_found")
    assert (await api.post("/v1/me/mile-purchases", json={"miles": 1000})).status_code == 401


async def test_a_locked_member_cannot_buy(api: httpx.AsyncClient, db: Database) -> None:
    member = await new_member(api, db)

    async def lock(session: Any) -> None:
        await session.execute(text("UPDATE members SET status = 'locked' WHERE id = :id"),
                              {"id": member["id"]})
    await db.transaction(lock)
    assert_problem(await buy_miles(api, member["accessToken"], 1000), 409, "member_locked")


async def test_a_provider_that_does_not_answer_leaves_nothing_behind(
        api: httpx.AsyncClient, db: Database, live_settings: Settings,
        system: SystemAccounts) -> None:
    member = await new_member(api, db)
    # Nothing listens on the discard port.
    down = live_settings.model_copy(update={"payment_provider_url": "http://127.0.0.1:9"})

    async def buy(session: Any) -> Any:
        return await PurchaseService(session, system, down).buy_miles(
            member["id"], 1000, "mp_provider_down")

    with pytest.raises(PaymentProviderUnavailable):
        await db.transaction(buy)
    assert (await api.get("/v1/me/mile-purchases",
                          headers=bearer(member["accessToken"]))).json() == []
