"""A partner with some traffic on its clearing account: accruals and a reversal through the
API, a capture and a refund through the ledger (the redemption API is built elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind, Leg, Unit
from tests.factories import register_member
from tests.partners.support import accrual_body, accrue, issue_key, make_partner, now, reverse

PRICE = 1200  # 1.2 cents per mile issued
VALUE = 2500  # 2.5 cents per mile redeemed


@dataclass
class Shop:
    partner: dict[str, Any]
    key: str
    member: dict[str, Any] = field(default_factory=dict)
    account_id: int = 0

    @property
    def id(self) -> int:
        return int(self.partner["id"])

    @property
    def clearing(self) -> int:
        return int(self.partner["clearingAccountId"])

    @property
    def card(self) -> str:
        return str(self.member["member"]["cardNumber"])


async def new_shop(client: httpx.AsyncClient, admin: dict[str, str], db: Database,
                   scopes: list[str] | None = None, **overrides: Any) -> Shop:
    partner = await make_partner(client, admin, valuePerMileMilliMinor=VALUE,
                                 pricePerMileMilliMinor=PRICE, **overrides)
    key = await issue_key(client, admin, partner["code"],
                          scopes or ["accrue", "statements"])
    shop = Shop(partner, key)
    shop.member = await register_member(client)

    async def account(session: AsyncSession) -> int:
        member = await MemberRepository(session).by_card(shop.card)
        assert member is not None
        return member.account_id

    shop.account_id = await db.transaction(account)
    return shop


async def buy(client: httpx.AsyncClient, shop: Shop, amount: int, txn: str) -> dict[str, Any]:
    response = await accrue(client, shop.key, accrual_body(shop.card, amount=amount,
                                                           partnerTxnId=txn))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def give_back(client: httpx.AsyncClient, shop: Shop, txn: str, amount: int) -> None:
    response = await reverse(client, shop.key, txn, amount)
    assert response.status_code == 201, response.text


async def redeem(db: Database, system: SystemAccounts, shop: Shop, hold: int, capture: int,
                 order: str) -> int:
    """A hold opened by the partner, captured in part onto its clearing account; the
    capture's entry id."""
    async def work(session: AsyncSession) -> int:
        ledger = Ledger(session, system)
        held = await ledger.create_hold(shop.account_id, hold,
                                        actor=Actor("partner", str(shop.id)),
                                        expires_at=now() + timedelta(hours=1), reference=order)
        _, entry = await ledger.capture(held.id, capture, actor=Actor("partner", str(shop.id)),
                                        to_system=shop.clearing,
                                        details={"orderReference": order})
        return entry.id

    return await db.transaction(work)


async def refund(db: Database, system: SystemAccounts, shop: Shop, miles: int,
                 order: str) -> None:
    await db.transaction(lambda s: Ledger(s, system).post(
        kind=EntryKind.REFUND, actor=Actor("partner", str(shop.id)),
        legs=[Leg(shop.clearing, Unit.MILES, -miles), Leg(shop.account_id, Unit.MILES, miles)],
        details={"orderReference": order}))


async def clearing_sums(db: Database, shop: Shop) -> dict[str, int]:
    """The ledger's own view: the clearing account's postings this month (every shard), by
    entry kind."""
    from sqlalchemy import text

    async with db.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT e.kind, sum(p.amount) AS miles FROM postings p "
            "JOIN journal_entries e ON e.id = p.entry_id "
            "JOIN accounts a ON a.id = p.account_id "
            "WHERE a.kind = 'system' AND a.code = :code AND e.created_at >= "
            "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
            "GROUP BY e.kind"), {"code": f"partner:{shop.id}"})
        return {r.kind: int(r.miles) for r in rows}
