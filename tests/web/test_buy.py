"""Buying miles and status from the portal, paid at the (fake) provider, whose webhook reaches
a live API; the miles then show on the overview and in the statement."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from lms.app import create_app
from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from tests.factories import TEST_ACTOR
from tests.payments.support import (
    FakeProvider,
    live_api,
    live_settings,
    provider,
    provider_completes,
    purchase_rules,
)
from tests.web.support import account_of, browser, sign_up, submit

__all__ = ["live_api", "live_settings", "provider", "purchase_rules"]

PAY = re.compile(r'href="(http://127\.0\.0\.1:\d+/[^"]+)"[^>]*>Pay now<')


@pytest.fixture(scope="session")
def shop_app(live_settings: Settings, db: Database) -> Litestar:
    return create_app(live_settings, db=db)


@pytest.fixture
async def web(shop_app: Litestar, live_api: str, purchase_rules: None
              ) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(shop_app) as c:
        yield c


async def test_buy_miles_and_pay(web: httpx.AsyncClient, provider: FakeProvider,
                                 db: Database) -> None:
    await sign_up(web)
    shop = await web.get("/buy")
    assert shop.status_code == 200
    assert "€30.00" in shop.text  # the first price band, per 1,000 miles
    refused = await submit(web, "/buy", "/buy/miles", {"miles": "1500"})
    assert refused.status_code == 422
    hostile = await submit(web, "/buy", "/buy/miles", {"miles": "-5"})
    assert hostile.status_code == 422
    started = await submit(web, "/buy", "/buy/miles", {"miles": "2,000"})
    assert started.status_code == 303, started.text
    pending = (await web.get(started.headers["location"])).text
    assert "Waiting for payment" in pending and "€60.00" in pending
    found = PAY.search(pending)
    assert found, pending
    await provider_completes(provider, {"paymentUrl": found.group(1)})
    after = (await web.get("/buy")).text
    assert "Completed" in after
    assert "2,000" in (await web.get("/")).text
    statement = (await web.get("/statement")).text
    assert "Miles bought" in statement and "+2,000" in statement


async def test_status_offer_within_reach(web: httpx.AsyncClient, db: Database,
                                         in_ledger: Any) -> None:
    fields = await sign_up(web)
    assert "Buy Silver" not in (await web.get("/buy")).text
    _, account = await account_of(db, fields["email"])

    async def earn(ledger: Ledger) -> None:
        await ledger.credit(account, 21000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.STATUS_MILES)

    await in_ledger(earn)
    shop = (await web.get("/buy")).text
    assert "Buy Silver" in shop
    started = await submit(web, "/buy", "/buy/status", {"tier": "SILVER"})
    assert started.status_code == 303, started.text
    assert "Status SILVER" in (await web.get("/buy")).text
    refused = await submit(web, "/buy", "/buy/status", {"tier": "PLATINUM"})
    assert refused.status_code == 409
