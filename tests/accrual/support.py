"""Factories for accrual tests: members, carriers of their own, coupons."""

from __future__ import annotations

import itertools
import random
import string
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.cards import make_card_number
from lms.accrual.earning import Coupon
from lms.accrual.schemas import EarnRuleIn, PromotionIn
from lms.accrual.service import ProgrammeRules
from lms.db import Database, RawConnection
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Unit

_tickets = itertools.count(random.randrange(10**9, 9 * 10**9) * 100)
_used_codes: set[str] = set()


@dataclass(frozen=True)
class Flyer:
    id: int
    account_id: int
    card_number: str
    tier: str


def carrier_code() -> str:
    """A carrier code of the test's own, so that rules and promotions of other tests (the
    database is shared by the session) never apply to its coupons."""
    while True:
        code = "".join(random.choices(string.ascii_uppercase + string.digits, k=3))
        if code not in _used_codes and not code.isdigit():
            _used_codes.add(code)
            return code


def tier_name() -> str:
    return "T" + "".join(random.choices(string.ascii_uppercase, k=8))


async def make_member(db: Database, system: SystemAccounts, tier: str = "BASIC",
                      status: str = "active") -> Flyer:
    async def work(session: AsyncSession) -> Flyer:
        account_id = await Ledger(session, system).open_account(AccountKind.MEMBER)
        seq = (await session.execute(text("SELECT nextval('card_number_seq')"))).scalar_one()
        card = make_card_number("7", seq)
        member_id = (await session.execute(text(
            "INSERT INTO members (card_number, account_id, email, password_hash, first_name, "
            "last_name, tier, status) VALUES (:card, :account, :email, 'x', 'Test', 'Flyer', "
            ":tier, :status) RETURNING id"),
            {"card": card, "account": account_id, "email": f"flyer-{seq}@example.com",
             "tier": tier, "status": status})).scalar_one()
        return Flyer(member_id, account_id, card, tier)

    return await db.transaction(work)


def coupon(member: Flyer, carrier: str, **overrides: Any) -> Coupon:
    base = Coupon(ticket_number=f"{next(_tickets):013d}", coupon_number=1,
                  card_number=member.card_number, flight_date=date(2026, 6, 1),
                  marketing_carrier=carrier, operating_carrier=carrier, flight_number="100",
                  origin="LHR", destination="JFK", booking_class="Y")
    return replace(base, **overrides)


async def add_rules(db: Database, *rules: EarnRuleIn) -> None:
    async def work(conn: RawConnection) -> None:
        for rule in rules:
            await ProgrammeRules(conn).add_rule(rule, "tests")

    await db.raw_transaction(work)


async def add_promotion(db: Database, promotion: PromotionIn) -> None:
    await db.raw_transaction(lambda conn: ProgrammeRules(conn).add_promotion(promotion))


async def distance_carrier(db: Database, *, since: date = date(2020, 1, 1),
                           min_miles: int = 500, classes: dict[str, tuple[int, int, int, bool]]
                           | None = None) -> str:
    """A distance-based carrier with classes {class: (miles %, status %, segments, ok)}."""
    code = carrier_code()
    classes = classes or {"J": (200, 200, 1, True), "Y": (100, 100, 1, True),
                          "Q": (25, 25, 1, True), "G": (0, 0, 0, False)}
    await add_rules(db, EarnRuleIn("carrier", code, since, {
        "name": f"Test {code}", "minMilesPerSegment": min_miles}), *(
        EarnRuleIn("booking_class", f"{code}/{c}", since, {
            "cabin": "economy", "milesPercent": m, "statusMilesPercent": s, "segments": g,
            "eligible": ok}) for c, (m, s, g, ok) in classes.items()))
    return code


async def balances(db: Database, system: SystemAccounts, account_id: int) -> dict[Unit, int]:
    async def work(session: AsyncSession) -> dict[Unit, int]:
        return {b.unit: b.posted for b in await Ledger(session, system).balances(account_id)}

    return await db.transaction(work)
