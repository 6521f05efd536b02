"""Partner statements: a month of a partner's clearing account, live or closed.

- A month is a calendar month in UTC, and an entry belongs to the month of its posting time
  (``journal_entries.created_at``), not of the purchase it records: an accrual posted on
  3 December for a purchase of 28 November is on December's statement. So an entry that
  arrives late never changes a month that is closed.
- Issued miles = miles the partner credited to members (accruals) net of returns
  (reversals); the partner owes them at its contract's ``price_per_mile``. Redeemed miles =
  miles captured at the partner net of refunds; the programme owes them at
  ``value_per_mile``. Money is rounded once per total, half away from zero, to the minor unit
  (each line's amount is rounded the same way, for information).
- A month is closed (``close_month``) once it has ended and ``CLOSE_GRACE`` has passed: every
  transaction posted in it has committed by then. Closing copies the totals per entry kind and
  every line into insert-only tables; a closed month is served from that copy, with the prices
  in force when it was closed. An open month is computed from the ledger on every request,
  at today's prices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.outbox.service import emit
from lms.partners.errors import PartnerNotFound
from lms.partners.models import Partner
from lms.partners.repository import PartnerRepository
from lms.settlement.errors import InvalidMonth, MonthInFuture, MonthNotOver
from lms.settlement.repository import ISSUED_KINDS, REDEEMED_KINDS, SettlementRepository
from lms.settlement.schemas import KindTotalOut, StatementLineOut, StatementOut

# Longer than any unit of work runs: a transaction that began (and so took its posting time)
# before the month ended has committed by the time the month is closed.
CLOSE_GRACE = timedelta(hours=1)
MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        found = MONTH_PATTERN.match(text)
        if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1970:
            raise InvalidMonth(f"{text!r} is not a month like 2026-11", field="month")
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, moment: datetime) -> Month:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def end(self) -> datetime:
        return self.next().start

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def money(miles: int, milli_minor_per_mile: int) -> int:
    """Minor units for ``miles`` at a price in thousandths of a minor unit, rounded half away
    from zero (the same rule as the lines' SQL)."""
    sign = -1 if miles < 0 else 1
    return sign * ((abs(miles) * milli_minor_per_mile + 500) // 1000)


@dataclass(frozen=True, slots=True)
class Totals:
    issued_miles: int
    partner_owes: int
    redeemed_miles: int
    programme_owes: int

    @classmethod
    def from_kinds(cls, by_kind: dict[str, tuple[int, int]], price: int, value: int
                   ) -> Totals:
        issued = -sum(by_kind.get(k, (0, 0))[0] for k in ISSUED_KINDS)
        redeemed = sum(by_kind.get(k, (0, 0))[0] for k in REDEEMED_KINDS)
        return cls(issued, money(issued, price), redeemed, money(redeemed, value))


def last_closable(now: datetime) -> Month:
    """The latest month that may be closed at ``now``."""
    return Month.of(now - CLOSE_GRACE).previous()


def line_out(row: Any) -> StatementLineOut:
    return StatementLineOut(entry_id=row.entry_id, posted_at=row.posted_at, kind=row.kind,
                            side=row.side, reference=row.reference,
                            card_number=row.card_number, miles=row.miles, amount=row.amount)


def kinds_out(by_kind: dict[str, tuple[int, int]]) -> list[KindTotalOut]:
    return [KindTotalOut(kind=k, clearing_miles=m, entries=n)
            for k, (m, n) in sorted(by_kind.items())]


def kinds_of_lines(lines: list[Any]) -> dict[str, tuple[int, int]]:
    by_kind: dict[str, tuple[int, int]] = {}
    for line in lines:
        miles, entries = by_kind.get(line.kind, (0, 0))
        by_kind[line.kind] = (miles + line.clearing_miles, entries + 1)
    return by_kind


class SettlementService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = SettlementRepository(session)
        self.partners = PartnerRepository(session)

    async def _partner(self, partner_id: int) -> Partner:
        partner = await self.partners.by_id(partner_id)
        if partner is None or partner.clearing_account_id is None:
            raise PartnerNotFound()
        return partner

    async def statement(self, partner_id: int, month_text: str,
                        now: datetime | None = None) -> StatementOut:
        """The partner's own statement for a month: the closed snapshot, or computed live
        for the current month and any past month not closed yet."""
        month = Month.parse(month_text)
        if month > Month.of(now or utcnow()):
            raise MonthInFuture(f"{month} has not begun", field="month")
        partner = await self._partner(partner_id)
        closed = await self.repo.statement(partner.id, month.first_day)
        if closed is not None:
            by_kind = await self.repo.statement_totals(closed.id)
            lines = await self.repo.statement_lines(closed.id)
            return self._out(partner, month, by_kind, lines, Totals(
                closed.issued_miles, closed.partner_owes, closed.redeemed_miles,
                closed.programme_owes), closed=closed)
        clearing = await self.partners.clearing_shards(partner.id)
        price, value = partner.price_per_mile_milli_minor, partner.value_per_mile_milli_minor
        lines = await self.repo.live_lines(clearing, month.start,
                                           month.end, price=price, value=value)
        by_kind = kinds_of_lines(lines)
        return self._out(partner, month, by_kind, lines,
                         Totals.from_kinds(by_kind, price, value), closed=None)

    @staticmethod
    def _out(partner: Partner, month: Month, by_kind: dict[str, tuple[int, int]],
             lines: list[Any], totals: Totals, *, closed: Any | None) -> StatementOut:
        return StatementOut(
            partner_code=partner.code, month=str(month),
            status="open" if closed is None else "closed",
            period_start=month.start, period_end=month.end,
            currency=partner.currency if closed is None else closed.currency,
            price_per_mile_milli_minor=(partner.price_per_mile_milli_minor if closed is None
                                        else closed.price_per_mile_milli_minor),
            value_per_mile_milli_minor=(partner.value_per_mile_milli_minor if closed is None
                                        else closed.value_per_mile_milli_minor),
            issued_miles=totals.issued_miles, partner_owes=totals.partner_owes,
            redeemed_miles=totals.redeemed_miles, programme_owes=totals.programme_owes,
            net=totals.partner_owes - totals.programme_owes,
            closed_at=None if closed is None else closed.closed_at,
            totals_by_kind=kinds_out(by_kind), lines=[line_out(r) for r in lines])

    async def close_month(self, partner_id: int, month: Month,
                          now: datetime | None = None) -> bool:
        """Snapshot a partner's month; False when it was closed already. Emits
        ``statement.closed`` in the same unit of work."""
        if month > last_closable(now or utcnow()):
            raise MonthNotOver(f"{month} can be closed from {month.end + CLOSE_GRACE}")
        partner = await self._partner(partner_id)
        clearing = await self.partners.clearing_shards(partner.id)
        price, value = partner.price_per_mile_milli_minor, partner.value_per_mile_milli_minor
        by_kind = await self.repo.ledger_totals(clearing, month.start, month.end)
        totals = Totals.from_kinds(by_kind, price, value)
        statement_id = await self.repo.add_statement(
            partner_id=partner.id, month=month.first_day,
            clearing_account_id=partner.clearing_account_id,
            currency=partner.currency, price=price, value=value,
            issued_miles=totals.issued_miles, partner_owes=totals.partner_owes,
            redeemed_miles=totals.redeemed_miles, programme_owes=totals.programme_owes,
            line_count=sum(n for _, n in by_kind.values()))
        if statement_id is None:
            return False
        await self.repo.add_totals(statement_id, by_kind)
        await self.repo.snapshot_lines(statement_id, clearing, month.start, month.end,
                                       price=price, value=value)
        await emit(self.session, "statement.closed", {
            "partnerId": partner.id, "statementId": statement_id, "month": str(month),
            "currency": partner.currency, "issuedMiles": totals.issued_miles,
            "partnerOwes": totals.partner_owes, "redeemedMiles": totals.redeemed_miles,
            "programmeOwes": totals.programme_owes,
            "net": totals.partner_owes - totals.programme_owes})
        return True

    async def months_to_close(self, now: datetime | None = None
                              ) -> list[tuple[int, Month]]:
        """Every (partner, month) that has ended and is not closed, from the month the
        partner was created: a job that was down for a while catches up."""
        last = last_closable(now or utcnow())
        due: list[tuple[int, Month]] = []
        for partner in await self.partners.all():
            if partner.clearing_account_id is None:
                continue
            closed = await self.repo.closed_months(partner.id)
            month = Month.of(partner.created_at)
            while month <= last:
                if month.first_day not in closed:
                    due.append((partner.id, month))
                month = month.next()
        return due
