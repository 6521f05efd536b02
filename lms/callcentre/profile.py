"""The 360° view of a member for the agent on the phone: profile, balances, lots, holds,
statement, tier history, flights, claims, purchases, adjustments and the audit trail.
Duplicates merged into the member contribute their history. Every view is in the audit log."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.models import Member
from lms.accounts.schemas import StatementPage, UnitBalance
from lms.accounts.service import MemberService
from lms.callcentre.adjustments import adjustment_out
from lms.callcentre.audit import StaffContext, audit_out, record
from lms.callcentre.paging import NO_CURSOR
from lms.callcentre.repository import CallCentreRepository
from lms.callcentre.schemas import (
    FlightOut,
    HoldOut,
    LotOut,
    Member360,
    MemberClaimOut,
    ProfileOut,
    PurchaseOut,
    TierChangeOut,
)
from lms.claims.service import claim_out
from lms.family.service import FamilyService
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Unit
from lms.settings import Settings

SECTION = 20
LOTS = 50


class ProfileService:
    def __init__(self, session: AsyncSession, settings: Settings, system: SystemAccounts,
                 ctx: StaffContext) -> None:
        self.repo = CallCentreRepository(session)
        self.ledger = Ledger(session, system)
        self.members = MemberService(session, settings, system)
        self.family = FamilyService(session, system)
        self.ctx = ctx

    async def member(self, card: str) -> Member:
        member = await self.repo.member_by_card(card)
        if member is None:
            raise MemberNotFound()
        return member

    async def view(self, card: str) -> Member360:
        member = await self.member(card)
        merged = await self.repo.merged_set(member.id)
        ids = sorted(merged)
        into = (await self.repo.member_by_id(member.merged_into_id)
                if member.merged_into_id is not None else None)
        balances = await self.ledger.balances(member.account_id)
        view = Member360(
            profile=ProfileOut(
                id=member.id, card_number=member.card_number, first_name=member.first_name,
                last_name=member.last_name, email=member.email, phone=member.phone,
                phone_region=member.phone_region, birth_date=member.birth_date,
                locale=member.locale, timezone=member.timezone, status=member.status,
                tier=member.tier, tier_valid_until=member.tier_valid_until,
                joined_at=member.joined_at, last_activity_at=member.last_activity_at,
                merged_into_card_number=into.card_number if into else None,
                merged_at=member.merged_at,
                merged_from=sorted(c for i, c in merged.items() if i != member.id)),
            balances=[UnitBalance(unit=str(b.unit), posted=b.posted, held=b.held,
                                  available=b.available, debt=max(0, -b.available))
                      for b in sorted(balances, key=lambda b: list(Unit).index(b.unit))],
            lots=[LotOut(id=r["id"], amount=r["amount"], remaining=r["remaining"],
                         expires_at=r["expires_at"], created_at=r["created_at"])
                  for r in await self.ledger.open_lots(member.account_id, limit=LOTS)],
            holds=[HoldOut(**r._asdict())
                   for r in await self.repo.holds(member.account_id, SECTION)],
            statement=await self.statement_of(member, unit=Unit.MILES, cursor=None,
                                              limit=SECTION),
            tier_history=[TierChangeOut(**r._asdict())
                          for r in await self.repo.tier_history(ids, SECTION)],
            flights=[FlightOut(**r._asdict()) for r in await self.repo.flights(ids, SECTION)],
            claims=[MemberClaimOut(card_number=r.card_number, claim=claim_out(r))
                    for r in await self.repo.claims(ids, SECTION)],
            adjustments=[adjustment_out(a, c) for a, c in await self.repo.adjustments(
                status=None, requested_by=None, member_ids=ids, before=NO_CURSOR,
                limit=SECTION)],
            purchases=[PurchaseOut(**r._asdict())
                       for r in await self.repo.purchases(ids, SECTION)],
            family_pool=await self.family.view(member.id),
            audit_trail=[audit_out(r) for r in await self.repo.audit_records(
                actor_type=None, actor_id=None, action=None, target_type="member",
                target_ids=list(merged.values()), since=None, until=None, before=NO_CURSOR,
                limit=SECTION)],
        )
        await record(self.repo, self.ctx, "member.view", target_type="member",
                     target_id=member.card_number)
        return view

    async def statement(self, card: str, *, unit: Unit, cursor: str | None,
                        limit: int) -> StatementPage:
        member = await self.member(card)
        page = await self.statement_of(member, unit=unit, cursor=cursor, limit=limit)
        await record(self.repo, self.ctx, "member.statement.view", target_type="member",
                     target_id=member.card_number, after={"unit": str(unit)})
        return page

    async def statement_of(self, member: Member, *, unit: Unit, cursor: str | None,
                           limit: int) -> StatementPage:
        return await self.members.statement(member.id, unit=unit, cursor=cursor, limit=limit)
