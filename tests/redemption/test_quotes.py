"""Quotes: the range of miles an order may take under the balance, the order value and the
contract's minimum cash share, and the cash left at each end (integer rounding)."""

from __future__ import annotations

from typing import Any

import httpx

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.redemption import pricing
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.redemption.support import (
    funded_member,
    hold_body,
    new_code,
    open_hold,
    redeeming_partner,
)


def test_pricing_rounds_in_favour_of_the_rules() -> None:
    # 0.8 cent per mile, 25% cash at least: a 9.99 EUR order may take 936.56 -> 936 miles,
    # worth 748.8 -> 748 cents, leaving 251 cents (>= 249.75).
    figures = pricing.quote(999, 100_000, 800, 2500)
    assert (figures.min_miles, figures.max_miles) == (1, 936)
    assert (figures.cash_at_min, figures.cash_at_max) == (999, 251)
    assert pricing.within_cash_share(936, 251, 800, 2500)
    assert not pricing.within_cash_share(937, 250, 800, 2500)
    # The balance bounds the range; an order too small for one mile takes none.
    assert pricing.quote(999, 100, 800, 2500).max_miles == 100
    assert pricing.quote(999, 100, 800, 2500).cash_at_max == 999 - 80
    assert pricing.quote(1, 100, 800, 2500) == pricing.QuoteFigures(0, 0, 1, 1)
    for order in range(1, 400):
        f = pricing.quote(order, 10**9, 1234, 3333)
        assert f.cash_at_max * 10_000 >= order * 3333
        assert pricing.within_cash_share(f.max_miles, f.cash_at_max, 1234, 3333)
        assert not pricing.within_cash_share(f.max_miles + 1,
                                             order - pricing.miles_worth(f.max_miles + 1,
                                                                         1234), 1234, 3333)


async def quote(client: httpx.AsyncClient, shop: dict[str, Any], card: str, code: str,
                amount: int, currency: str = "EUR") -> httpx.Response:
    return await client.post("/v1/partner/redemption-quotes", headers=bearer(shop["key"]),
                             json={"cardNumber": card, "memberCode": code,
                                   "orderAmount": amount, "currency": currency})


async def test_quote_with_minimum_cash_share(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await redeeming_partner(client, admin, value=800, min_cash_bp=2500)
    member = await funded_member(client, db, system, 100_000)
    code = await new_code(client, member)
    response = await quote(client, shop, member["card"], code, 10_000)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "currency": "EUR", "orderAmount": 10_000, "milesAvailable": 100_000,
        "valuePerMileMilliMinor": 800, "minCashShareBp": 2500,
        "minMiles": 1, "maxMiles": 9375, "cashAtMinMiles": 10_000, "cashAtMaxMiles": 2500}
    # Bounded by the balance; the code was not used up by the quotes.
    poorer = await funded_member(client, db, system, 5000)
    poorer_code = await new_code(client, poorer)
    body = (await quote(client, shop, poorer["card"], poorer_code, 10_000)).json()
    assert (body["maxMiles"], body["cashAtMaxMiles"]) == (5000, 6000)
    hold = await open_hold(client, shop["key"], hold_body(
        poorer["card"], poorer_code, miles=body["maxMiles"],
        cashAmount=body["cashAtMaxMiles"]))
    assert hold.status_code == 201, hold.text
    # Holds reduce what the next quote offers.
    body = (await quote(client, shop, poorer["card"], await new_code(client, poorer),
                        10_000)).json()
    assert (body["milesAvailable"], body["minMiles"], body["maxMiles"]) == (0, 0, 0)
    assert_problem(await quote(client, shop, member["card"], code, 10_000, "USD"), 422,
                   "currency_mismatch")
