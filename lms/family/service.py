"""Family pools: create, invite, accept or decline, remove, leave, dissolve, and the view
every member of a pool sees. Rules (max members, cooling-off, invitation validity) are
versions with effective dates in ``family_rules`` (programme file section ``family_rules``);
without one in force, DEFAULT_TERMS apply.

What happens to pooled miles (docs/family-pools.md): a member who leaves or is removed takes
their contribution's share of the pool's available miles (rounded down); dissolving the pool
gives every member their share by contribution, largest remainder, summing to the balance
exactly. Both are one ``pool_transfer`` journal entry each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.db import raw_connection
from lms.family.errors import (
    AlreadyInPool,
    AlreadyInvited,
    CoolingOff,
    HeadCannotLeave,
    InvitationNotFound,
    InvitationNotPending,
    InviteeNotFound,
    MemberLocked,
    NotInPool,
    NotPoolHead,
    PoolFull,
    PoolHasHolds,
    PoolMemberNotFound,
)
from lms.family.repository import FamilyRepository
from lms.family.schemas import (
    DissolveOut,
    FamilyOut,
    InvitationOut,
    LeaveOut,
    PayoutOut,
    PoolBalance,
    PoolMemberOut,
    PoolOut,
)
from lms.family.shares import leaver_share, proportional
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Actor, EntryKind, Leg, Unit
from lms.outbox.service import emit


@dataclass(frozen=True, slots=True)
class FamilyTerms:
    max_members: int = 8
    cooling_off_days: int = 90
    invitation_days: int = 14


DEFAULT_TERMS = FamilyTerms()


def invitation_out(r: asyncpg.Record) -> InvitationOut:
    keys = set(r.keys())
    return InvitationOut(
        id=r["id"], pool_id=r["pool_id"], member_id=r["member_id"], status=r["status"],
        created_at=r["created_at"], expires_at=r["expires_at"],
        card_number=r["card_number"] if "card_number" in keys else None,
        first_name=r["first_name"] if "first_name" in keys else None,
        last_name=r["last_name"] if "last_name" in keys else None,
        head_card_number=r["head_card_number"] if "head_card_number" in keys else None,
        head_name=(f"{r['head_first_name']} {r['head_last_name']}"
                   if "head_first_name" in keys else None))


class FamilyService:
    def __init__(self, session: AsyncSession, system: SystemAccounts) -> None:
        self.session = session
        self.ledger = Ledger(session, system)
        self._repo: FamilyRepository | None = None

    async def repo(self) -> FamilyRepository:
        if self._repo is None:
            self._repo = FamilyRepository(await raw_connection(self.session))
        return self._repo

    async def terms(self, day: date | None = None) -> FamilyTerms:
        row = await (await self.repo()).rule_in_force(day or utcnow().date())
        if row is None:
            return DEFAULT_TERMS
        return FamilyTerms(row["max_members"], row["cooling_off_days"], row["invitation_days"])

    async def _active_member(self, member_id: int) -> asyncpg.Record:
        member = await (await self.repo()).member(member_id)
        if member is None:
            raise NotInPool("Member not found")
        if member["status"] != "active":
            raise MemberLocked()
        return member

    async def _may_join(self, member_id: int, terms: FamilyTerms, now: datetime) -> None:
        """Under the member's advisory lock: not in a pool, and not within cooling-off."""
        repo = await self.repo()
        if await repo.current_membership(member_id) is not None:
            raise AlreadyInPool()
        left = await repo.last_left(member_id)
        if left is not None and left + timedelta(days=terms.cooling_off_days) > now:
            until = left + timedelta(days=terms.cooling_off_days)
            raise CoolingOff(f"Possible again from {until.isoformat()}",
                             availableFrom=until.isoformat())

    async def _head_pool(self, head_id: int) -> asyncpg.Record:
        """The caller's current pool, locked; the caller must be its head."""
        repo = await self.repo()
        membership = await repo.current_membership(head_id)
        if membership is None:
            raise NotInPool()
        if membership["role"] != "head":
            raise NotPoolHead()
        pool = await repo.lock_pool(membership["pool_id"])
        assert pool is not None
        if pool["status"] != "active" or pool["head_id"] != head_id:
            raise NotInPool()
        return pool

    # -- lifecycle ---------------------------------------------------------------------------

    async def create(self, member_id: int) -> FamilyOut:
        repo = await self.repo()
        await self._active_member(member_id)
        await repo.lock_member_changes([member_id])
        now = utcnow()
        await self._may_join(member_id, await self.terms(now.date()), now)
        account_id = await self.ledger.open_account(AccountKind.POOL)
        pool = await repo.insert_pool(account_id, member_id)
        await repo.insert_membership(pool["id"], member_id, "head")
        await emit(self.session, "family.created", {
            "poolId": pool["id"], "accountId": account_id, "memberId": member_id})
        await emit(self.session, "family.joined", {
            "poolId": pool["id"], "memberId": member_id, "role": "head"})
        return await self.view(member_id)

    async def invite(self, head_id: int, card_number: str) -> InvitationOut:
        repo = await self.repo()
        await self._active_member(head_id)
        pool = await self._head_pool(head_id)
        invitee = await repo.member_by_card(card_number)
        # Not found, not active and oneself answer alike: the head learns nothing about cards.
        if invitee is None or invitee["status"] != "active" or invitee["id"] == head_id:
            raise InviteeNotFound()
        now = utcnow()
        terms = await self.terms(now.date())
        members = await repo.pool_members(pool["id"])
        if any(m["member_id"] == invitee["id"] for m in members):
            raise AlreadyInPool("The member is already in this pool")
        pending = await repo.pending_invitations(pool["id"], now)
        if len(members) + len(pending) >= terms.max_members:
            raise PoolFull(f"At most {terms.max_members} members, pending invitations "
                           "included", maxMembers=terms.max_members)
        row = await repo.insert_invitation(pool["id"], invitee["id"], head_id,
                                           now + timedelta(days=terms.invitation_days), now)
        if row is None:
            raise AlreadyInvited()
        await emit(self.session, "family.invited", {
            "poolId": pool["id"], "invitationId": row["id"], "memberId": invitee["id"],
            "invitedBy": head_id, "expiresAt": row["expires_at"].isoformat()})
        return InvitationOut(
            id=row["id"], pool_id=row["pool_id"], member_id=row["member_id"],
            status=row["status"], created_at=row["created_at"], expires_at=row["expires_at"],
            card_number=invitee["card_number"], first_name=invitee["first_name"],
            last_name=invitee["last_name"])

    async def _pending_invitation(self, member_id: int, invitation_id: int,
                                  row: asyncpg.Record | None, now: datetime) -> asyncpg.Record:
        # Another member's invitation answers 404, as if it did not exist.
        if row is None or row["member_id"] != member_id:
            raise InvitationNotFound()
        if row["status"] != "pending" or row["expires_at"] <= now:
            raise InvitationNotPending(f"The invitation is {row['status']}"
                                       if row["status"] != "pending" else "It has expired")
        return row

    async def accept(self, member_id: int, invitation_id: int) -> FamilyOut:
        repo = await self.repo()
        await self._active_member(member_id)
        await repo.lock_member_changes([member_id])
        now = utcnow()
        # Read, then lock the pool, then the invitation: dissolving locks the pool and then
        # cancels its invitations, so this order cannot deadlock with it.
        first = await self._pending_invitation(
            member_id, invitation_id, await repo.member_invitation(invitation_id), now)
        pool = await repo.lock_pool(first["pool_id"])
        invitation = await self._pending_invitation(
            member_id, invitation_id, await repo.lock_invitation(invitation_id), now)
        assert pool is not None
        if pool["status"] != "active":
            raise InvitationNotPending("The pool was dissolved")
        terms = await self.terms(now.date())
        await self._may_join(member_id, terms, now)
        if len(await repo.pool_members(pool["id"])) >= terms.max_members:
            raise PoolFull(f"At most {terms.max_members} members",
                           maxMembers=terms.max_members)
        await repo.answer_invitation(invitation["id"], "accepted", now)
        await repo.insert_membership(pool["id"], member_id, "member")
        await emit(self.session, "family.joined", {
            "poolId": pool["id"], "memberId": member_id, "role": "member",
            "invitationId": invitation["id"]})
        return await self.view(member_id)

    async def decline(self, member_id: int, invitation_id: int) -> InvitationOut:
        repo = await self.repo()
        now = utcnow()
        invitation = await self._pending_invitation(
            member_id, invitation_id, await repo.lock_invitation(invitation_id), now)
        row = await repo.answer_invitation(invitation["id"], "declined", now)
        await emit(self.session, "family.invitation_declined", {
            "poolId": row["pool_id"], "invitationId": row["id"], "memberId": member_id})
        return invitation_out(row)

    async def remove(self, head_id: int, member_id: int) -> LeaveOut:
        repo = await self.repo()
        if member_id == head_id:
            raise HeadCannotLeave()
        await repo.lock_member_changes([member_id])
        pool = await self._head_pool(head_id)
        return await self._end(pool, member_id, "removed", Actor("member", str(head_id)))

    async def leave(self, member_id: int) -> LeaveOut:
        repo = await self.repo()
        await repo.lock_member_changes([member_id])
        membership = await repo.current_membership(member_id)
        if membership is None:
            raise NotInPool()
        if membership["role"] == "head":
            raise HeadCannotLeave()
        pool = await repo.lock_pool(membership["pool_id"])
        assert pool is not None
        return await self._end(pool, member_id, "left", Actor("member", str(member_id)))

    async def _locked_pool_balance(self, account_id: int) -> tuple[int, int]:
        """(posted, held) of the pool's MILES, its balance row locked until commit (after the
        membership rows, as the accrual paths lock them)."""
        rows = await (await self.ledger.repo()).lock_balances([(account_id, Unit.MILES)])
        return rows[0]["posted"], rows[0]["held"]

    async def _end(self, pool: asyncpg.Record, member_id: int, reason: str,
                   actor: Actor) -> LeaveOut:
        repo = await self.repo()
        memberships = await repo.lock_pool_members(pool["id"])
        leaving = next((m for m in memberships if m["member_id"] == member_id), None)
        if leaving is None:
            raise PoolMemberNotFound()
        posted, held = await self._locked_pool_balance(pool["account_id"])
        member = await repo.member(member_id)
        assert member is not None
        take = leaver_share(posted - held, leaving["contributed"],
                            sum(m["contributed"] for m in memberships))
        entry_id = None
        if take > 0:
            entry = await self.ledger.post(
                kind=EntryKind.POOL_TRANSFER, actor=actor,
                description=f"Family pool {pool['id']}: share on leaving",
                legs=[Leg(pool["account_id"], Unit.MILES, -take),
                      Leg(member["account_id"], Unit.MILES, take)],
                details={"poolId": pool["id"], "reason": reason,
                         "contributed": leaving["contributed"]})
            entry_id = entry.id
        now = utcnow()
        await repo.end_memberships({leaving["id"]: take}, now, reason)
        await emit(self.session, f"family.{reason}", {
            "poolId": pool["id"], "memberId": member_id, "milesTaken": take,
            "entryId": entry_id})
        return LeaveOut(pool_id=pool["id"], member_id=member_id, reason=reason,
                        miles_taken=take, entry_id=entry_id)

    async def _account_of(self, member_id: int) -> int:
        member = await (await self.repo()).member(member_id)
        assert member is not None
        account_id: int = member["account_id"]
        return account_id

    async def dissolve(self, head_id: int) -> DissolveOut:
        repo = await self.repo()
        await repo.lock_member_changes([head_id])
        pool = await self._head_pool(head_id)
        memberships = await repo.lock_pool_members(pool["id"])
        posted, held = await self._locked_pool_balance(pool["account_id"])
        if held:
            raise PoolHasHolds(f"{held} miles are held")
        # The head first: ties of remainder go to them, then by member id.
        memberships.sort(key=lambda m: (m["role"] != "head", m["member_id"]))
        shares = proportional(posted, [m["contributed"] for m in memberships])
        accounts = {m["member_id"]: await self._account_of(m["member_id"]) for m in memberships}
        legs = [Leg(accounts[m["member_id"]], Unit.MILES, share)
                for m, share in zip(memberships, shares, strict=True) if share > 0]
        entry_id = None
        if legs:
            entry = await self.ledger.post(
                kind=EntryKind.POOL_TRANSFER, actor=Actor("member", str(head_id)),
                description=f"Family pool {pool['id']} dissolved",
                legs=[Leg(pool["account_id"], Unit.MILES, -posted), *legs],
                details={"poolId": pool["id"], "reason": "dissolved", "shares": {
                    str(m["member_id"]): s for m, s in zip(memberships, shares, strict=True)}})
            entry_id = entry.id
        now = utcnow()
        await repo.end_memberships(
            {m["id"]: s for m, s in zip(memberships, shares, strict=True)}, now, "dissolved")
        await repo.dissolve_pool(pool["id"], now)
        await self.ledger.set_account_status(pool["account_id"], "closed")
        payouts = [PayoutOut(member_id=m["member_id"], miles=s)
                   for m, s in zip(memberships, shares, strict=True)]
        await emit(self.session, "family.dissolved", {
            "poolId": pool["id"], "headId": head_id, "entryId": entry_id,
            "payouts": {str(p.member_id): p.miles for p in payouts}})
        return DissolveOut(pool_id=pool["id"], distributed=posted, payouts=payouts,
                           entry_id=entry_id)

    # -- reading -----------------------------------------------------------------------------

    async def view(self, member_id: int) -> FamilyOut:
        repo = await self.repo()
        now = utcnow()
        received = [invitation_out(r) for r in await repo.invitations_for(member_id, now)]
        membership = await repo.current_membership(member_id)
        if membership is None:
            return FamilyOut(role=None, pool=None, invitations_received=received)
        pool_id = membership["pool_id"]
        members = await repo.pool_members(pool_id)
        balances = {b.unit: b for b in await self.ledger.balances(membership["account_id"])}
        miles = balances[Unit.MILES]
        terms = await self.terms(now.date())
        members.sort(key=lambda m: (m["role"] != "head", m["member_id"]))
        pool = PoolOut(
            id=pool_id, account_id=membership["account_id"],
            head_member_id=membership["head_id"], created_at=members[0]["joined_at"],
            balance=PoolBalance(posted=miles.posted, held=miles.held,
                                available=miles.available),
            members=[PoolMemberOut(member_id=m["member_id"], card_number=m["card_number"],
                                   first_name=m["first_name"], last_name=m["last_name"],
                                   role=m["role"], contributed=m["contributed"],
                                   joined_at=m["joined_at"]) for m in members],
            pending_invitations=[invitation_out(r)
                                 for r in await repo.pending_invitations(pool_id, now)],
            max_members=terms.max_members,
            contributions_total=sum(m["contributed"] for m in members))
        return FamilyOut(role=membership["role"], pool=pool, invitations_received=received)
