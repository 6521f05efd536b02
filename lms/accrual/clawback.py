"""Taking back a flown coupon's credit (a refunded ticket, a fraudulent claim).

The coupon's whole entry is reversed: miles, status miles and segments, bonuses included. Miles
the member has already spent are taken all the same and become debt on the account the coupon
credited (see ``Ledger.reverse(clawback=True)``). The coupon stays claimed, so a reversed coupon
is never credited again; the promotion budget it used is not given back.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.errors import CouponNotCredited
from lms.accrual.schemas import CouponReversalOut
from lms.accrual.service import SOURCE
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, Unit


async def reverse_coupon(session: AsyncSession, system: SystemAccounts, ticket_number: str,
                         coupon_number: int, *, actor: Actor, reason: str
                         ) -> CouponReversalOut:
    ledger = Ledger(session, system)
    entry_id = await ledger.entry_for(SOURCE, f"{ticket_number}/{coupon_number}")
    if entry_id is None:
        raise CouponNotCredited()
    entry = await ledger.reverse(entry_id, actor=actor, clawback=True,
                                 reason=reason or f"Flight {ticket_number}/{coupon_number} "
                                                  "reversed")
    taken: dict[Unit, int] = {}
    debtor: int | None = None
    for leg in await (await ledger.repo()).entry_postings(entry.id):
        if leg["account_kind"] != "system":
            taken[Unit(leg["unit"])] = -leg["amount"]
            debtor = leg["account_id"]
    assert debtor is not None
    miles = next(b for b in await ledger.balances(debtor) if b.unit is Unit.MILES)
    return CouponReversalOut(
        ticket_number=ticket_number, coupon_number=coupon_number, entry_id=entry.id,
        miles=taken.get(Unit.MILES, 0), status_miles=taken.get(Unit.STATUS_MILES, 0),
        segments=taken.get(Unit.SEGMENTS, 0), balance_after=miles.posted,
        debt=max(0, -miles.available))
